# Copyright 2026 qvla_ros authors. Apache-2.0.
"""Fault campaign: stops, damaged artifacts and concurrent writers, counted (loopback only).

* **Stops**: policy_node (toy model, actuation enabled, a 30 Hz camera) is stopped each way
  actuation can end, ``--repeats`` times: ``~/enable`` false, SIGINT/SIGTERM/SIGHUP to the
  node, lifecycle deactivate and shutdown, the camera going silent (watchdog), and SIGTERM,
  SIGKILL, SIGHUP and a double SIGINT to the ``qvla-ros launch`` runner. Counted: whether the
  last command an external subscriber saw was a zero twist, node processes left alive 2 s
  after the runner was stopped, and tracebacks on stderr.
* **Damaged artifacts**: checkpoints, sensitivity files, datasets and paths damaged the ways
  files get damaged, each fed to the ``qvla`` command that reads it. Counted: one-line errors
  (exit 2, one stderr line, no traceback) against everything else.
* **Concurrent writers**: two ``qvla sim collect`` into one dataset at once, and a parallel
  collection SIGKILLed mid-way and rerun. Counted: episodes lost, duplicated or unreadable,
  and whether the second writer was refused with one line.

    python bench/faults.py --repeats 3       # writes bench/results/faults.json
"""

import argparse
import json
import os
from pathlib import Path
import shutil
import signal
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import (command_line, device_name, git_commit, RESULTS,  # noqa: E402
                          write_json)

QVLA = [sys.executable, '-m', 'qvla_ros.cli.qvla']
QVLA_ROS = [sys.executable, '-m', 'qvla_ros.cli.qvla_ros']


def _alive(pid: int) -> bool:
    try:
        stat = Path(f'/proc/{pid}/stat').read_text()
    except FileNotFoundError:
        return False
    return stat.rpartition(')')[2].split()[0] != 'Z'


def _children(pid: int):
    return [int(c) for t in Path(f'/proc/{pid}/task').iterdir()
            for c in (t / 'children').read_text().split()]


class Probe:
    """Camera, instruction and enable on one side; every twist seen, with its time."""

    def __init__(self):
        import rclpy
        from geometry_msgs.msg import TwistStamped
        from lifecycle_msgs.srv import ChangeState
        from rclpy.executors import SingleThreadedExecutor
        from sensor_msgs.msg import Image
        from std_msgs.msg import String
        from std_srvs.srv import SetBool
        import numpy as np
        from qvla_ros.ros import qos
        from qvla_ros.data.images import rgb_to_image_fields
        self.node = rclpy.create_node('fault_probe')
        self.executor = SingleThreadedExecutor()
        self.executor.add_node(self.node)
        self.image = self.node.create_publisher(Image, '/policy_node/image', qos.sensor())
        self.text = self.node.create_publisher(String, '/policy_node/instruction',
                                               qos.latched())
        self.enable = self.node.create_client(SetBool, '/policy_node/enable')
        self.change = self.node.create_client(ChangeState, '/policy_node/change_state')
        self.twists = []
        self.node.create_subscription(TwistStamped, '/policy_node/delta_twist_cmds',
                                      lambda m: self.twists.append((time.monotonic(), m)),
                                      qos.commands())
        self.frame = Image()
        self.frame.height, self.frame.width, self.frame.encoding, self.frame.step, \
            self.frame.data = rgb_to_image_fields(np.full((48, 64, 3), 90, np.uint8))
        self.String, self.SetBool, self.ChangeState = String, SetBool, ChangeState

    def spin(self, seconds: float, camera: bool = True) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            if camera:
                self.image.publish(self.frame)
            self.executor.spin_once(timeout_sec=1 / 30)

    def call(self, client, request):
        if not client.wait_for_service(timeout_sec=30):
            raise RuntimeError(f'{client.srv_name} never appeared')
        future = client.call_async(request)
        self.executor.spin_until_future_complete(future, timeout_sec=10)
        return future.result()

    def drive(self) -> bool:
        """Enable and spin until a non-zero twist arrives; return whether one did."""
        self.twists.clear()
        self.text.publish(self.String(data='push the red block to the left'))
        if not self.call(self.enable, self.SetBool.Request(data=True)).success:
            return False
        end = time.monotonic() + 30
        while time.monotonic() < end:
            self.spin(0.3)
            if any(not _zero(m) for _, m in self.twists[-3:]):
                return True
        return False

    def last_is_zero(self, since: float) -> bool:
        late = [m for t, m in self.twists if t > since]
        return bool(late) and _zero(late[-1])


def _zero(msg) -> bool:
    t = msg.twist
    return all(v == 0.0 for v in (t.linear.x, t.linear.y, t.linear.z,
                                  t.angular.x, t.angular.y, t.angular.z))


def _node_stop(probe, kind: str, domain_id: int, log) -> dict:
    """Start policy_node, drive, stop it one way; return what the subscriber saw."""
    from lifecycle_msgs.msg import Transition
    from qvla_ros.ros.launcher import Launch
    launch = Launch('policy', domain_id=domain_id, overrides=['image_timeout:=0.3'])
    launch.start()
    try:
        if not probe.drive():
            return {'drove': False}
        since = time.monotonic()
        proc = launch.procs[0]
        if kind == 'enable false':
            probe.call(probe.enable, probe.SetBool.Request(data=False))
        elif kind in ('node SIGINT', 'node SIGTERM', 'node SIGHUP'):
            proc.send_signal(getattr(signal, kind.split()[1]))
            proc.wait(10)
        elif kind in ('deactivate', 'shutdown'):
            request = probe.ChangeState.Request()
            request.transition.id = (Transition.TRANSITION_DEACTIVATE if kind == 'deactivate'
                                     else Transition.TRANSITION_ACTIVE_SHUTDOWN)
            probe.call(probe.change, request)
        probe.spin(1.5, camera=kind != 'watchdog')
        return {'drove': True, 'zero_last': probe.last_is_zero(since)}
    finally:
        launch.stop()


def _runner_stop(probe, kind: str, domain_id: int, log) -> dict:
    """Start ``qvla-ros launch policy``, drive, signal the runner; count what is left."""
    runner = subprocess.Popen(QVLA_ROS + ['launch', 'policy', '--domain-id', str(domain_id)],
                              stderr=log)
    nodes = []
    try:
        if not probe.drive():
            return {'drove': False}
        nodes = _children(runner.pid)
        since = time.monotonic()
        if kind == 'runner SIGINT x2':
            runner.send_signal(signal.SIGINT)
            time.sleep(0.1)
            runner.send_signal(signal.SIGINT)
        else:
            runner.send_signal(getattr(signal, kind.split()[1]))
        while any(_alive(p) for p in nodes) and time.monotonic() < since + 2.0:
            probe.spin(0.05)
        orphans = sum(_alive(p) for p in nodes)
        probe.spin(0.3)
        return {'drove': True, 'zero_last': probe.last_is_zero(since), 'orphans': orphans,
                'nodes': len(nodes)}
    finally:
        for pid in [runner.pid] + nodes:
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)
        runner.wait()


NODE_STOPS = ('enable false', 'node SIGINT', 'node SIGTERM', 'node SIGHUP', 'deactivate',
              'shutdown', 'watchdog')
RUNNER_STOPS = ('runner SIGTERM', 'runner SIGKILL', 'runner SIGHUP', 'runner SIGINT x2')


def stops(repeats: int, domain_id: int, work: Path) -> dict:
    """Run every stop path ``repeats`` times; return counts per path."""
    from qvla_ros.ros.env import apply_loopback_env
    apply_loopback_env(domain_id)
    import rclpy
    rclpy.init()
    probe = Probe()
    out = {}
    try:
        for kind in NODE_STOPS + RUNNER_STOPS:
            tally = {'tried': 0, 'zero_twist_last': 0, 'orphans': 0, 'tracebacks': 0}
            for r in range(repeats):
                log_path = work / f'stderr-{kind.replace(" ", "_")}-{r}.txt'
                with log_path.open('w') as log:
                    run = (_node_stop if kind in NODE_STOPS else _runner_stop)(
                        probe, kind, domain_id, log)
                tally['tried'] += 1
                tally['zero_twist_last'] += int(run.get('zero_last', False))
                tally['orphans'] += run.get('orphans', 0)
                tally['tracebacks'] += int('Traceback' in log_path.read_text())
                if not run['drove']:
                    tally.setdefault('never_drove', 0)
                    tally['never_drove'] += 1
            out[kind] = tally
            print(f'stop {kind}: {tally}')
    finally:
        probe.node.destroy_node()
        rclpy.try_shutdown()
    return out


def _one_line(cmd) -> dict:
    run = subprocess.run(cmd, capture_output=True, text=True)
    lines = run.stderr.strip().splitlines()
    ok = run.returncode == 2 and len(lines) == 1 and 'Traceback' not in run.stderr
    return {'one_line': ok, 'traceback': 'Traceback' in run.stderr,
            'line': lines[-1] if lines else ''}


def _artifact_cases(work: Path) -> dict:
    """Return {case: qvla argv} over damaged copies of artifacts made here."""
    def qvla(args):  # in a fresh process: bench/ on sys.path would shadow packages
        subprocess.run(QVLA + args, check=True, capture_output=True)
    good = work / 'fp'
    qvla(['export', 'ref-tiny:1', '--dtype', 'fp32', '--out', str(good)])
    qvla(['sensitivity', '--model', 'toy', '--synthetic', '4', '--method', 'proxy', '--out',
          str(work / 's.safetensors')])
    qvla(['allocate', '--sensitivity', str(work / 's.safetensors'), '--target-bits', '4',
          '--out', str(work / 'plan')])
    qvla(['quantize', '--model', 'toy', '--plan', str(work / 'plan'), '--out',
          str(work / 'q')])
    qvla(['sim', 'collect', '--episodes', '3', '--out', str(work / 'data')])

    def copy(src, name, damage):
        dst = work / name
        (shutil.copytree if src.is_dir() else shutil.copy)(src, dst)
        damage(dst)
        return dst

    def cut(path, n=100):
        path.write_bytes(path.read_bytes()[:-n])

    def edit(path, change):
        data = json.loads(path.read_text())
        change(data)
        path.write_text(json.dumps(data))

    def stats(f, q01, q99):
        edit(f / 'norm_stats.json', lambda d: d['default']['action'].update(
            q01=[q01] + d['default']['action']['q01'][1:],
            q99=[q99] + d['default']['action']['q99'][1:]))

    q_out = ['--method', 'rtn', '--bits', '4', '--out', str(work / 'never')]
    cases = {
        'truncated weights': copy(good, 'c1', lambda f: cut(f / 'model.safetensors')),
        'garbage weights': copy(good, 'c2', lambda f: (f / 'model.safetensors').write_bytes(
            os.urandom(256))),
        'config not JSON': copy(good, 'c3', lambda f: (f / 'config.json').write_text('{"fo')),
        'config value of the wrong type': copy(good, 'c4', lambda f: edit(
            f / 'config.json', lambda d: d['config'].update(hidden='64'))),
        'q01 above q99': copy(good, 'c5', lambda f: stats(f, 1.0, -1.0)),
        'NaN norm stats': copy(good, 'c6', lambda f: stats(f, float('nan'), 1.0)),
        'norm stats of another action size': copy(good, 'c7', lambda f: edit(
            f / 'norm_stats.json', lambda d: d['default']['action'].update(
                {k: v[:-1] for k, v in d['default']['action'].items()}))),
    }
    argv = {k: QVLA + ['quantize', '--model', str(v)] + q_out for k, v in cases.items()}
    argv['forged plan id'] = QVLA + ['inspect', str(copy(work / 'q', 'c8', lambda f: edit(
        f / 'config.json', lambda d: d['quantization_config'].update(plan_id='0' * 12))))]
    argv['plan.json contradicting the weights'] = QVLA + ['inspect', str(copy(
        work / 'q', 'c9', lambda f: edit(f / 'plan.json', lambda d: d['layers']['vision.0'][
            'histogram'].update({'2': d['layers']['vision.0']['histogram']['2'] + 1}))))]
    for name, damage in (('empty sensitivity file', lambda p: p.write_bytes(b'')),
                         ('truncated sensitivity file', cut)):
        path = copy(work / 's.safetensors', f'{name.replace(" ", "_")}.safetensors', damage)
        argv[name] = QVLA + ['allocate', '--sensitivity', str(path), '--target-bits', '4',
                             '--out', str(work / 'never')]
    data = copy(work / 'data', 'd1', lambda f: cut(f / 'episodes' / '000001.safetensors'))
    argv['truncated episode (sensitivity)'] = QVLA + [
        'sensitivity', '--model', 'toy', '--dataset', str(data), '--out', str(work / 'never')]
    argv['truncated episode (train)'] = QVLA + [
        'train', '--dataset', str(data), '--config', 'tiny', '--steps', '2', '--out',
        str(work / 'never')]
    argv['output equal to the model'] = QVLA + ['quantize', '--model', str(good), '--method',
                                                'rtn', '--bits', '4', '--out', str(good),
                                                '--overwrite']
    argv['existing output without --overwrite'] = QVLA + ['quantize', '--model', 'toy',
                                                          '--method', 'rtn', '--bits', '4',
                                                          '--out', str(work / 'q')]
    blocker = work / 'a-file'
    blocker.write_text('x')
    argv['unwritable output path'] = QVLA + ['allocate', '--sensitivity',
                                             str(work / 's.safetensors'), '--target-bits',
                                             '4', '--out', str(blocker / 'plan')]
    return argv


def artifacts(work: Path) -> dict:
    """Feed every damaged artifact to its command; return the outcome per case."""
    out = {}
    for case, cmd in _artifact_cases(work).items():
        out[case] = _one_line(cmd)
        print(f'artifact {case}: {out[case]}')
    return out


def _seeds(root: Path):
    from qvla_ros.data.rollouts import episodes, read_episode
    seeds, unreadable = [], 0
    for entry in episodes(root):
        try:
            read_episode(root, entry)
            seeds.append(entry.get('seed'))
        except ValueError:
            unreadable += 1
    return seeds, unreadable


def writers(trials: int, work: Path) -> dict:
    """Concurrent collections into one dataset, and killed-then-resumed collections."""
    concurrent = {'tried': 0, 'second_refused_one_line': 0, 'episodes_lost': 0,
                  'duplicates': 0, 'unreadable': 0}
    for t in range(trials):
        out = work / f'race{t}'
        argv = QVLA + ['sim', 'collect', '--episodes', '300', '--seed', '0', '--out', str(out)]
        first = subprocess.Popen(argv, stderr=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
        while not (out / 'dataset.json').exists() and first.poll() is None:
            time.sleep(0.02)
        second = _one_line(argv)
        code = first.wait()
        seeds, unreadable = _seeds(out)
        concurrent['tried'] += 1
        concurrent['second_refused_one_line'] += int(second['one_line']
                                                     and 'held by process' in second['line'])
        concurrent['episodes_lost'] += len(set(range(300)) - set(seeds)) if code == 0 else 300
        concurrent['duplicates'] += len(seeds) - len(set(seeds))
        concurrent['unreadable'] += unreadable
    killed = {'tried': 0, 'episodes_filed_before_the_kill': 0, 'episodes_lost': 0,
              'duplicates': 0, 'unreadable': 0}
    for t in range(trials):
        out = work / f'kill{t}'
        argv = QVLA + ['sim', 'collect', '--episodes', '200', '--seed', '100', '--workers',
                       '2', '--out', str(out)]
        proc = subprocess.Popen(argv, start_new_session=True, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        time.sleep(5.0 + t)
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        before = len(_seeds(out)[0]) if (out / 'dataset.json').exists() else 0
        subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
        seeds, unreadable = _seeds(out)
        killed['tried'] += 1
        killed['episodes_filed_before_the_kill'] += before
        killed['episodes_lost'] += len(set(range(100, 300)) - set(seeds))
        killed['duplicates'] += len(seeds) - len(set(seeds))
        killed['unreadable'] += unreadable
    print(f'concurrent collections: {concurrent}\nkilled collections: {killed}')
    return {'concurrent_collect': concurrent, 'killed_then_resumed_collect': killed}


def goals(result: dict) -> dict:
    """Return whether each goal of the campaign holds."""
    s, a, w = result['stops'], result['artifacts'], result['writers']
    return {
        'every_stop_ends_with_a_zero_twist': all(v['zero_twist_last'] == v['tried']
                                                 for v in s.values()),
        'no_orphans': sum(v['orphans'] for v in s.values()) == 0,
        'no_tracebacks': (sum(v['tracebacks'] for v in s.values()) == 0
                          and not any(v['traceback'] for v in a.values())),
        'every_bad_artifact_one_line': all(v['one_line'] for v in a.values()),
        'no_episode_lost': all(v['episodes_lost'] == 0 and v['duplicates'] == 0
                               and v['unreadable'] == 0 for v in w.values()),
    }


def main(argv=None) -> int:
    """Run the campaign and write its JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--repeats', type=int, default=3, help='tries of each stop path')
    parser.add_argument('--writer-trials', type=int, default=3)
    parser.add_argument('--domain-id', type=int, default=93)
    parser.add_argument('--out', default=str(RESULTS / 'faults.json'))
    args = parser.parse_args(argv)
    start = time.monotonic()
    with tempfile.TemporaryDirectory(prefix='qvla-faults-') as tmp:
        work = Path(tmp)
        result = {'stops': stops(args.repeats, args.domain_id, work),
                  'artifacts': artifacts(work),
                  'writers': writers(args.writer_trials, work)}
    result.update(goals=goals(result), device=device_name(), commit=git_commit(),
                  command='python ' + command_line(), seconds=time.monotonic() - start)
    write_json(Path(args.out), result)
    print(json.dumps(result['goals'], indent=1))
    return 0 if all(result['goals'].values()) else 1


if __name__ == '__main__':
    sys.exit(main())
