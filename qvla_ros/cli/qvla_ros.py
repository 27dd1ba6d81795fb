# Copyright 2026 qvla_ros authors. Apache-2.0.
"""``qvla-ros``: ROS-side tools (interfaces, environment, launch runner, demo)."""

import argparse
from pathlib import Path
import sys
from typing import List, Optional


def _msg_dir() -> Path:
    from qvla_ros.ros.env import share_directory
    return share_directory() / 'msg'


def cmd_build_interfaces(args) -> int:
    """Build qvla_ros_interfaces into a prefix, or export it into a colcon workspace."""
    from qvla_ros.ros import interfaces
    msg_dir = Path(args.msg_dir) if args.msg_dir else _msg_dir()
    if args.export_workspace:
        out = interfaces.export_to_workspace(msg_dir, Path(args.export_workspace))
        print(f'wrote {out}; now run `colcon build` in {args.export_workspace}')
        return 0
    prefix = Path(args.prefix or sys.prefix)
    built = interfaces.build_into_prefix(msg_dir, prefix, Path(args.build_dir),
                                         force=args.force)
    print(f'{interfaces.INTERFACES} {"built into" if built else "up to date in"} {prefix}')
    return 0


def cmd_register(args) -> int:
    """Make share/qvla_ros resolvable for an editable (source tree) install."""
    from qvla_ros.ros.env import register_source_tree, source_root
    root = source_root()
    if root is None:
        print('not running from a source checkout; nothing to register', file=sys.stderr)
        return 2
    print(f'ament overlay: {register_source_tree(root)}')
    return 0


def cmd_env(args) -> int:
    """Print the loopback-only environment as shell exports."""
    import os
    import shlex
    from qvla_ros.ros.env import loopback_env, LOOPBACK_KEYS
    env = loopback_env(os.environ, args.domain_id)
    for key in LOOPBACK_KEYS + ('AMENT_PREFIX_PATH',) + (
            ('ROS_DOMAIN_ID',) if args.domain_id is not None else ()):
        print(f'export {key}={shlex.quote(env[key])}')
    return 0


def cmd_launch(args) -> int:
    """Run a launch by name with the same executables and YAML as launch/*.launch.py."""
    from qvla_ros.ros.launcher import Launch
    return Launch(args.name, params=args.params, overrides=args.overrides,
                  domain_id=args.domain_id, remaps=args.remap).run()


def cmd_demo(args) -> int:
    """Run the sim demo launch (sim, quantized policy, supervisor) and print its results."""
    import json
    import time
    from qvla_ros.ros.launcher import Launch
    out = Path(args.out).resolve()
    summary_path = out / 'summary.json'
    if summary_path.exists():
        summary_path.unlink()
    overrides = [f'episodes:={args.episodes}', f'out_dir:={out}']
    if args.model:
        overrides.append(f'model:={args.model}')
    start = time.monotonic()
    code = Launch('sim_demo', overrides=overrides, domain_id=args.domain_id).run()
    wall = time.monotonic() - start
    if code != 0 or not summary_path.is_file():
        print(f'demo failed: the launch ended with code {code}; see the node logs above',
              file=sys.stderr)
        return 1
    s = json.loads(summary_path.read_text())
    print(f'\nqvla_ros sim demo: tabletop over ROS 2, policy {s["model_id"]} '
          f'(plan {s["plan_id"] or "none: full precision"})')
    for r in s['per_episode']:
        print(f'  episode {r["episode"]} seed {r["seed"]:>6}  {r["instruction"]:<40} '
              f'{"success" if r["success"] else "FAIL   "}  {r["steps"]:>2} steps '
              f'{r["wall_s"]:5.1f} s')
    low, high = s['wilson95']
    fmt = (lambda v, unit: f'{v:.1f} {unit}' if v is not None else 'n/a')  # noqa: E731
    print(f'success: {s["successes"]}/{s["episodes"]} = {100 * s["success_rate"]:.0f} % '
          f'(Wilson 95 %: {100 * low:.0f}-{100 * high:.0f} %)')
    print(f'policy latency p50 {fmt(s["latency_p50_ms"], "ms")}, p99 '
          f'{fmt(s["latency_p99_ms"], "ms")}; control rate {fmt(s["control_rate_hz"], "Hz")}')
    print(f'wall time {wall:.0f} s; wrote {summary_path} and {out / "episode0.png"}')
    return 0


def cmd_demo_toy(args) -> int:
    """Start the toy demo launch, enable the policy and print the actions it publishes."""
    from qvla_ros.ros.launcher import Launch
    from qvla_ros.ros.watch import run_collect
    launch = Launch('demo', domain_id=args.domain_id).start()
    try:
        commands, chunks, elapsed = run_collect('/policy_node', args.count, args.timeout,
                                                args.domain_id)
    except TimeoutError as err:
        print(f'demo failed: {err}', file=sys.stderr)
        return 1
    finally:
        launch.stop()
    print(f'received {len(commands)} TwistStamped commands and {chunks} ActionChunks '
          f'in {elapsed:.1f} s from policy_node (toy random model, synthetic camera)')
    t0 = commands[0].t
    for i, c in enumerate(commands):
        lin = ' '.join(f'{v:+.4f}' for v in c.linear)
        ang = ' '.join(f'{v:+.4f}' for v in c.angular)
        print(f'  #{i:02d} t={c.t - t0:6.3f}s  linear [{lin}] m/s  angular [{ang}] rad/s')
    if len(commands) > 1:
        rate = (len(commands) - 1) / (commands[-1].t - t0)
        print(f'achieved control rate: {rate:.1f} Hz')
    return 0


def cmd_enable(args) -> int:
    """Switch a running policy node's actuation on or off through its ~/enable service."""
    from qvla_ros.ros.watch import run_enable
    answer = run_enable(args.node, args.state == 'on', args.timeout, args.domain_id)
    print(f'{args.node}: actuation {args.state}' + (f' ({answer})' if answer else ''))
    return 0


def build_parser() -> argparse.ArgumentParser:
    """Return the argument parser of ``qvla-ros``."""
    from qvla_ros.cli.parser import Parser
    parser = Parser(prog='qvla-ros', description=__doc__)
    sub = parser.add_subparsers(dest='command', required=True)
    p = sub.add_parser('build-interfaces', help='build or export qvla_ros_interfaces')
    p.add_argument('--prefix', help='install prefix (default: this Python environment)')
    p.add_argument('--build-dir', default='build/interfaces', help='cmake build folder')
    p.add_argument('--export-workspace', help='write the package into WS/src instead')
    p.add_argument('--msg-dir', help='folder of .msg files (default: share/qvla_ros/msg)')
    p.add_argument('--force', action='store_true', help='rebuild even if up to date')
    p.set_defaults(func=cmd_build_interfaces)
    p = sub.add_parser('register-source-tree', help='ament overlay for editable installs')
    p.set_defaults(func=cmd_register)
    p = sub.add_parser('env', help='print the loopback-only ROS environment')
    p.add_argument('--domain-id', type=int)
    p.set_defaults(func=cmd_env)
    p = sub.add_parser('launch', help='run a launch without ros2 launch')
    p.add_argument('name', help='policy | calibration | demo | sim_demo')
    p.add_argument('--params', help='parameter YAML (default: the package config)')
    p.add_argument('-r', '--remap', action='append', default=[], metavar='FROM:=TO',
                   help='topic remapping for every node of the launch, e.g. '
                   '/policy_node/image/wrist:=/wrist_cam/image_raw (repeatable)')
    p.add_argument('--domain-id', type=int)
    p.add_argument('overrides', nargs='*', help='name:=value parameter overrides')
    p.set_defaults(func=cmd_launch)
    p = sub.add_parser('enable', help="switch a policy node's actuation on or off (off sends "
                                      'a zero twist first)')
    p.add_argument('state', choices=['on', 'off'])
    p.add_argument('--node', default='/policy_node', help='fully qualified node name')
    p.add_argument('--timeout', type=float, default=10.0, help='seconds to wait for the node')
    p.add_argument('--domain-id', type=int)
    p.set_defaults(func=cmd_enable)
    p = sub.add_parser('demo', help='the main job: the sim driven over ROS 2 by the quantized '
                                    'reference policy; prints success and latency')
    p.add_argument('--episodes', type=int, default=10)
    p.add_argument('--out', default='demo_out', help='folder for summary.json and the PNG')
    p.add_argument('--model', help='checkpoint folder (default: config/sim_demo.yaml)')
    p.add_argument('--domain-id', type=int)
    p.set_defaults(func=cmd_demo)
    p = sub.add_parser('demo-toy', help='toy demo: print actions published by policy_node')
    p.add_argument('--count', type=int, default=20, help='commands to print')
    p.add_argument('--timeout', type=float, default=60.0, help='seconds before giving up')
    p.add_argument('--domain-id', type=int)
    p.set_defaults(func=cmd_demo_toy)
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    """Entry point of ``qvla-ros``."""
    from qvla_ros.cli.errors import run
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra and args.command == 'launch' and not any(e.startswith('-') for e in extra):
        args.overrides += extra  # name:=value after a -r option
    elif extra:
        parser.error(f'unrecognized arguments: {" ".join(extra)}')
    return run('qvla-ros', args.command, lambda: args.func(args))


if __name__ == '__main__':
    sys.exit(main())
