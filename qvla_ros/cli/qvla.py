# Copyright 2026 qvla_ros authors. Apache-2.0.
"""``qvla``: the ROS-free quantization pipeline (sensitivity, allocate, quantize, inspect)."""

import argparse
from pathlib import Path
import sys
from typing import List, Optional


def cmd_version(args) -> int:
    """Print the package version and the versions of the libraries it runs on."""
    import torch
    import qvla_ros
    print(f'qvla_ros {qvla_ros.__version__} (torch {torch.__version__})')
    return 0


def cmd_sim_collect(args) -> int:
    """Record scripted-expert (or policy) episodes into a rollout dataset."""
    from qvla_ros.sim.collect import collect
    keep = (lambda success: success) if args.successes_only else None
    summary = collect(args.suite, args.episodes, args.out, args.seed, progress=True,
                      keep=keep, action_noise=args.action_noise, policy=args.policy,
                      execute_steps=args.execute_steps, workers=args.workers,
                      expert_labels=args.expert_labels,
                      tasks=[t.strip() for t in args.tasks.split(',')] if args.tasks else None)
    who = 'policy' if args.policy else 'expert'
    ran = summary['episodes'] - summary['resumed']
    print(f'wrote {summary["written"]} episodes to {args.out}; {who} success '
          f'{summary["successes"]}/{ran}'
          + (f'; {summary["resumed"]} already present (resumed)' if summary['resumed'] else ''))
    return 0


def cmd_sim_merge(args) -> int:
    """Write the episodes of several rollout datasets, in order, into a new one."""
    from qvla_ros.data.rollouts import append_datasets
    from qvla_ros.storage.atomic import check_output, fill_folder
    out = Path(args.out)
    check_output(out, False, args.sources)
    written = fill_folder(out, lambda tmp: append_datasets(args.sources, tmp, progress=True))
    print(f'wrote {written} episodes to {out}')
    return 0


def cmd_train(args) -> int:
    """Behaviour-clone qvla-ref on a rollout dataset."""
    from dataclasses import replace
    from qvla_ros.models.recipes import recipe
    from qvla_ros.models.reference import CONFIGS
    from qvla_ros.models.training import train
    if args.config not in CONFIGS:
        raise ValueError(f'unknown config {args.config!r}; expected one of {sorted(CONFIGS)}')
    cfg = recipe(args.recipe, steps=args.steps, batch_size=args.batch_size, lr=args.lr,
                 seed=args.seed, bf16=False if args.fp32 else None, val_every=args.val_every,
                 save_every=args.save_every, crop_scale=args.crop_scale, jitter=args.jitter,
                 loss=args.loss, aux_weight=args.aux_weight, pos_init=args.pos_init,
                 init=args.init, widen_init=args.widen_init)
    if args.proprio_dim is not None and args.proprio_dim < 0:
        raise ValueError(f'--proprio-dim must be >= 0, got {args.proprio_dim}')
    config = CONFIGS[args.config]
    initial = {}
    if args.init:  # a warm start keeps its cameras and proprio unless told otherwise
        from qvla_ros.storage.errors import read_json_object
        initial = read_json_object(Path(args.init) / 'config.json',
                                   'a checkpoint config').get('config') or {}
    cameras = (tuple(initial.get('cameras', ())) if args.cameras is None else
               tuple(c.strip() for c in args.cameras.split(',') if c.strip()))
    proprio = initial.get('proprio_dim') if args.proprio_dim is None else args.proprio_dim
    config = replace(config, cameras=cameras,
                     proprio_dim=proprio if isinstance(proprio, int) else config.proprio_dim)
    from qvla_ros.models.training import STATE
    from qvla_ros.storage.atomic import check_output
    out = Path(args.out)
    resuming = (out / STATE).is_dir()  # an interrupted run of this command continues
    check_output(out, args.overwrite or resuming or not out.exists(), [args.dataset, args.init])
    summary = train(args.dataset, config, out, cfg, progress=True)
    print(f'wrote {args.out}: {summary}')
    return 0


def cmd_export(args) -> int:
    """Re-save an FP checkpoint with its floating tensors in another dtype."""
    import torch
    from qvla_ros.models.checkpoint import load_policy, save_policy
    from qvla_ros.storage.atomic import check_output
    dtypes = {'bf16': torch.bfloat16, 'fp16': torch.float16, 'fp32': torch.float32}
    check_output(args.out, args.overwrite, [args.checkpoint])
    schedule = None
    if args.execute_steps is not None:  # record the schedule the policy was evaluated with
        from qvla_ros.runtime.chunking import ScheduleSpec
        schedule = ScheduleSpec('replan', args.execute_steps).to_dict()
    save_policy(load_policy(args.checkpoint), Path(args.out), dtypes[args.dtype],
                args.overwrite, schedule)
    size = sum(f.stat().st_size for f in Path(args.out).iterdir())
    print(f'wrote {args.out} ({size / 1e6:.1f} MB, {args.dtype})')
    return 0


def cmd_from_bag(args) -> int:
    """Import a rosbag2 recording into a rollout dataset."""
    from qvla_ros.data.align import SplitRule
    from qvla_ros.data.bag import BagTopics, import_bag
    split = set(args.split.split(','))
    unknown = split - {'instruction', 'gap', 'marker'}
    if unknown:
        raise ValueError(f'--split takes instruction, gap and/or marker, got {sorted(unknown)}')
    rule = SplitRule('instruction' in split, args.max_gap if 'gap' in split else None,
                     'marker' in split)
    cameras = []
    for item in args.image_topic:
        name, sep, topic = item.rpartition('=')
        cameras.append((name if sep else args.camera, topic))
    topics = BagTopics(tuple(cameras), args.instruction_topic, args.action_topic,
                       args.gripper_topic, args.proprio_topic, args.marker_topic)
    summary = import_bag(args.bag, topics, args.out, args.control_hz, rule, args.policy)
    print(f'wrote {summary["episodes"]} episodes ({summary["steps"]} steps) to {args.out}')
    if summary['dropped_nonfinite']:
        print(f'dropped {summary["dropped_nonfinite"]} steps whose action or proprio was not '
              'finite')
    if summary['damage']:
        print(f'the bag is damaged ({summary["damage"]["reason"]}); imported what is whole:')
        for f in summary['damage']['files']:
            lost = f['file_size'] - f['bytes_read']
            print(f'  {f["file"]}: read {f["bytes_read"]} of {f["file_size"]} bytes '
                  f'({f["messages"]} messages); dropped {lost} bytes'
                  + (f' from the damage on: {f["damage"]}' if f['damage'] else ''))
    return 0


def cmd_eval(args) -> int:
    """Closed-loop evaluation of a policy on a simulated suite."""
    from qvla_ros.sim.evaluate import EvalConfig, evaluate, seed_range
    from qvla_ros.storage.atomic import check_output, write_json
    seeds = seed_range(args.seeds)[:args.episodes]
    if args.out:
        check_output(args.out, args.overwrite, [args.checkpoint, args.reference, args.plan])
    import tempfile
    with tempfile.TemporaryDirectory(prefix='qvla-eval-') as tmp:
        model, reference = args.checkpoint, args.reference
        if args.plan or args.method:
            from qvla_ros.cli.quant_cmds import build_quantized, input_options
            model = str(Path(tmp) / 'quantized')
            print(build_quantized(args.checkpoint, Path(model), args.plan, args.method,
                                  args.bits, input_options(args), args.dataset, args.max_samples,
                                  args.stride, args.refine_fraction, args.upstream))
            reference = reference or args.checkpoint
        cfg = EvalConfig(model, args.suite, tuple(seeds), args.execute_steps, reference,
                         max_steps=args.max_steps)
        result = evaluate(cfg, workers=args.workers)
    low, high = result['wilson95']
    what = args.checkpoint + (' (quantized)' if args.plan or args.method else '')
    print(f'{what} on {args.suite}: success {result["successes"]}/'
          f'{result["episodes"]} = {100 * result["success_rate"]:.1f} % '
          f'(Wilson 95 % {100 * low:.1f}-{100 * high:.1f}), policy latency '
          f'{result["policy_latency_ms"]:.1f} ms, packed bytes {result["packed_bytes"]}')
    print('by task: ' + ', '.join(f'{k} {s}/{n}' for k, (s, n) in result['by_task'].items()))
    if result['mean_deviation'] is not None:
        print(f'deviation from {cfg.reference}: mean {result["mean_deviation"]:.4g}, final '
              f'step {result["final_step_deviation"]:.4g}')
    if args.out:
        write_json(Path(args.out), result)
    return 0


def cmd_convert(args) -> int:
    """Copy an upstream OpenVLA / OFT folder with its .pt parts turned into safetensors."""
    from qvla_ros.models.openvla_loader import convert_upstream
    converted = convert_upstream(Path(args.folder), Path(args.out), args.overwrite)
    print(f'wrote {args.out}: ' + (f'converted {", ".join(converted)} to safetensors'
                                   if converted else 'no pickle files to convert'))
    return 0


def add_train_command(sub) -> None:
    """Add ``qvla train``; every setting not given comes from the chosen recipe."""
    from qvla_ros.cli.quant_cmds import add_overwrite
    from qvla_ros.models.recipes import describe, RECIPES
    from qvla_ros.models.reference import CONFIGS
    recipes = '\n'.join(f'  {describe(name)}' for name in RECIPES)
    p = sub.add_parser('train', help='behaviour-clone qvla-ref on a rollout dataset',
                       epilog=f'recipes (settings not given on the command line):\n{recipes}')
    p.add_argument('--dataset', required=True)
    p.add_argument('--config', default='small',
                   help=f'model size preset: {" | ".join(CONFIGS)}')
    p.add_argument('--recipe', default='default',
                   help='named training settings, listed below (default: default); options '
                   "not given take the recipe's values")
    p.add_argument('--out', required=True, help='checkpoint folder (resumes if interrupted)')
    p.add_argument('--steps', type=int)
    p.add_argument('--batch-size', type=int)
    p.add_argument('--lr', type=float)
    p.add_argument('--seed', type=int)
    p.add_argument('--val-every', type=int)
    p.add_argument('--save-every', type=int)
    p.add_argument('--fp32', action='store_true',
                   help='never autocast to bf16 (by default on where the CPU has native bf16)')
    p.add_argument('--crop-scale', type=float, help='random-crop area fraction (1.0: no crop)')
    p.add_argument('--jitter', type=float, help='colour jitter strength')
    p.add_argument('--loss', choices=['l1', 'mse'],
                   help='training loss on normalized chunks (validation is always L1)')
    p.add_argument('--aux-weight', type=float,
                   help='weight of the auxiliary colour-localization loss (0: off)')
    p.add_argument('--pos-init', choices=['random', 'sincos'],
                   help='initialisation of the vision position embeddings')
    p.add_argument('--cameras', help='comma-separated dataset cameras the model reads, in order '
                   '(default: as --init, else the first camera only, a single-camera model)')
    p.add_argument('--proprio-dim', type=int,
                   help='proprio values the model takes (default: as --init, else the config '
                   'preset); it reads the first ones of each sample')
    p.add_argument('--init', help='warm-start from this float qvla-ref checkpoint folder (same '
                   'config, except that --proprio-dim may add inputs and --cameras cameras; its '
                   'action and proprio normalization are kept)')
    add_overwrite(p)
    p.add_argument('--widen-init', choices=['zero', 'matched'],
                   help='weights of the proprio inputs --proprio-dim adds to an --init model: '
                   'zero (the policy starts unchanged) or matched (random, at the scale of the '
                   "old inputs' weights)")
    p.set_defaults(func=cmd_train)


def build_parser() -> argparse.ArgumentParser:
    """Return the argument parser of ``qvla``."""
    from qvla_ros.cli.parser import Parser
    parser = Parser(prog='qvla', description=__doc__)
    sub = parser.add_subparsers(dest='command', required=True)
    sub.add_parser('version', help='print versions').set_defaults(func=cmd_version)
    from qvla_ros.cli.quant_cmds import add_commands, add_overwrite, add_quant_source
    add_commands(sub)
    add_train_command(sub)
    p = sub.add_parser('export', help='re-save an FP checkpoint in bf16 / fp16 / fp32')
    p.add_argument('checkpoint')
    p.add_argument('--dtype', default='bf16', choices=['bf16', 'fp16', 'fp32'])
    p.add_argument('--execute-steps', type=int,
                   help="record this replan schedule (default: keep the checkpoint's)")
    p.add_argument('--out', required=True)
    add_overwrite(p)
    p.set_defaults(func=cmd_export)

    p = sub.add_parser('convert', help="an upstream OpenVLA / OFT folder with OFT's .pt parts "
                                       'as safetensors (a deployed folder holds no pickle)')
    p.add_argument('folder')
    p.add_argument('--out', required=True)
    add_overwrite(p)
    p.set_defaults(func=cmd_convert)
    p = sub.add_parser('calibrate', help='calibration data tools')
    cal = p.add_subparsers(dest='calibrate_command', required=True)
    c = cal.add_parser('from-bag', help='rosbag2 (sqlite3 or mcap) -> rollout dataset')
    c.add_argument('bag')
    c.add_argument('--image-topic', required=True, action='append', metavar='[CAMERA=]TOPIC',
                   help='a camera topic, sensor_msgs/Image or CompressedImage; repeat it with '
                   'CAMERA=TOPIC for several cameras (in the order a model takes them)')
    c.add_argument('--instruction-topic', required=True)
    c.add_argument('--action-topic', required=True, help='executed TwistStamped commands')
    c.add_argument('--gripper-topic')
    c.add_argument('--proprio-topic', help='JointState or PoseStamped')
    c.add_argument('--marker-topic', help="std_msgs/String 'start' / 'end' episode markers")
    c.add_argument('--split', default='instruction,gap', help='instruction,gap,marker')
    c.add_argument('--max-gap', type=float, default=1.0, help='seconds')
    c.add_argument('--control-hz', type=float, required=True)
    c.add_argument('--camera', default='front', help='the name of a single --image-topic')
    c.add_argument('--policy', default='expert', help='who acted: expert, fp or a plan id')
    c.add_argument('--out', required=True)
    c.set_defaults(func=cmd_from_bag)
    p = sub.add_parser('eval', help='closed-loop success rate on a simulated suite')
    p.add_argument('--suite', default='tabletop', choices=['tabletop', 'metaworld'])
    p.add_argument('--checkpoint', required=True, help='model spec or checkpoint folder (FP '
                   'when --plan or --method quantizes it first)')
    p.add_argument('--reference', help='FP model to measure action deviation against')
    p.add_argument('--episodes', type=int, default=100)
    p.add_argument('--seeds', default='100000:100100', help='A:B, disjoint from training')
    p.add_argument('--execute-steps', type=int,
                   help='actions run from each chunk before replanning (default: the '
                   'schedule the checkpoint records)')
    p.add_argument('--max-steps', type=int,
                   help="episode horizon (default: the suite's, tabletop 80, metaworld 200)")
    p.add_argument('--workers', type=int, default=2)
    p.add_argument('--out', help='write the full result JSON here')
    add_overwrite(p)
    add_quant_source(p)
    p.set_defaults(func=cmd_eval)
    p = sub.add_parser('sim', help='simulation tools')
    sim = p.add_subparsers(dest='sim_command', required=True)
    c = sim.add_parser('collect', help='record scripted-expert episodes as a rollout dataset')
    c.add_argument('--suite', default='tabletop', choices=['tabletop', 'metaworld'])
    c.add_argument('--episodes', type=int, required=True)
    c.add_argument('--seed', type=int, default=0, help='first episode seed')
    c.add_argument('--action-noise', type=float, default=0.0,
                   help='std of noise added to executed actions (labels stay clean)')
    c.add_argument('--successes-only', action='store_true', help='drop failed episodes')
    c.add_argument('--policy', help='record this policy (checkpoint) instead of the expert')
    c.add_argument('--execute-steps', type=int,
                   help='--policy: actions run from each chunk before replanning (default: '
                   'the schedule the checkpoint records)')
    c.add_argument('--expert-labels', action='store_true',
                   help='--policy: record the expert action at each state the policy visits '
                        '(DAgger); each episode keeps the success of the policy')
    c.add_argument('--workers', type=int, default=1,
                   help='processes, each recording a contiguous range of seeds')
    c.add_argument('--tasks', help='metaworld: comma-separated MT10 tasks to draw episodes '
                                   'from (default: all ten)')
    c.add_argument('--out', required=True)
    c.set_defaults(func=cmd_sim_collect)
    c = sim.add_parser('merge', help='concatenate rollout datasets (e.g. DAgger aggregation)')
    c.add_argument('sources', nargs='+', help='dataset folders, appended in this order')
    c.add_argument('--out', required=True, help='new dataset folder (must not exist)')
    c.set_defaults(func=cmd_sim_merge)
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    """Entry point of ``qvla``."""
    from qvla_ros.cli.errors import run
    args = build_parser().parse_args(argv)
    return run('qvla', args.command, lambda: args.func(args))


if __name__ == '__main__':
    sys.exit(main())
