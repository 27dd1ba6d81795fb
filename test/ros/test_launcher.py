# Copyright 2026 qvla_ros authors. Apache-2.0.
"""The pip launch runner mirrors launch/*.launch.py and fails loudly."""

import ast
import os
from pathlib import Path

import pytest

from qvla_ros.ros import launcher

ROOT = Path(__file__).resolve().parents[2]


def _launch_file_nodes(path):
    tree = ast.parse(path.read_text())
    nodes, config = [], None
    for call in ast.walk(tree):
        if not isinstance(call, ast.Call):
            continue
        kwargs = {k.arg: k.value for k in call.keywords}
        if getattr(call.func, 'id', '') == 'Node':
            remaps = kwargs.get('remappings')
            pairs = tuple(tuple(e.value for e in t.elts) for t in remaps.elts) if remaps else ()
            nodes.append((kwargs['executable'].value, kwargs['name'].value, pairs))
        if getattr(call.func, 'id', '') == 'PathJoinSubstitution':
            config = call.args[0].elts[-1].value
    return nodes, config


@pytest.mark.parametrize('name', sorted(launcher.LAUNCHES))
def test_runner_matches_launch_file(name):
    nodes, config = _launch_file_nodes(ROOT / 'launch' / f'{name}.launch.py')
    specs = launcher.LAUNCHES[name]
    assert nodes == [(s.executable, s.name, s.remappings) for s in specs]
    assert {s.params_file for s in specs} == {config}
    assert (ROOT / 'config' / config).is_file()


def test_every_launch_file_has_a_runner_entry():
    files = {p.name[:-len('.launch.py')] for p in (ROOT / 'launch').glob('*.launch.py')}
    assert files == set(launcher.LAUNCHES)


def test_overrides_and_errors(tmp_path):
    assert launcher.parse_overrides(['control_hz:=5.0']) == [('control_hz', '5.0')]
    with pytest.raises(launcher.LaunchError, match='name:=value'):
        launcher.parse_overrides(['control_hz=5'])
    with pytest.raises(launcher.LaunchError, match='unknown launch'):
        launcher.Launch('nope')
    with pytest.raises(launcher.LaunchError, match='does not exist'):
        launcher.Launch('policy', params=str(tmp_path / 'missing.yaml'))


def test_a_users_remapping_comes_before_the_launchs_own():
    spec = launcher.LAUNCHES['sim_demo'][1]
    user = launcher.parse_remaps(['/policy_node/image/wrist:=/cam/wrist'])
    cmd = launcher.node_command(spec, ROOT / 'config' / 'sim_demo.yaml', [], user)
    rules = [cmd[i + 1] for i, a in enumerate(cmd) if a == '-r'][1:]  # after __node
    assert rules[0] == '/policy_node/image/wrist:=/cam/wrist'
    assert '/policy_node/image/wrist:=/sim_node/image/wrist' in rules[1:]
    for bad in ('/a', '/a:=', ':=/b'):
        with pytest.raises(launcher.LaunchError, match='FROM:=TO'):
            launcher.parse_remaps([bad])


def test_the_command_takes_overrides_before_and_after_remappings(monkeypatch):
    from qvla_ros.cli import qvla_ros as cli
    seen = {}
    monkeypatch.setattr(cli, 'cmd_launch', lambda args: seen.update(vars(args)) or 0)
    monkeypatch.setattr(cli, 'build_parser', _with_launch(cli.build_parser, cli.cmd_launch))
    assert cli.main(['launch', 'policy', 'model:=/m', '-r', '/a:=/b', 'seed:=3',
                     '-r', '/c:=/d']) == 0
    assert seen['overrides'] == ['model:=/m', 'seed:=3']
    assert seen['remap'] == ['/a:=/b', '/c:=/d']
    with pytest.raises(SystemExit):
        cli.main(['launch', 'policy', '-r', '/a:=/b', '--nope'])


def _with_launch(build, func):
    def parser():
        p = build()
        p._subparsers._group_actions[0].choices['launch'].set_defaults(func=func)
        return p
    return parser


@pytest.mark.ros
def test_runner_exits_nonzero_when_a_node_dies(tmp_path, domain_id):
    params = tmp_path / 'bad.yaml'
    # A parameter of the wrong type makes the node exit at start (a bad model does not: the
    # lifecycle node then stays up, unconfigured; see test_policy_node).
    params.write_text('policy_node:\n  ros__parameters:\n    control_hz: fast\n')
    code = launcher.Launch('policy', params=str(params), domain_id=domain_id).run()
    assert code != 0


def _children(pid):
    """Return the pids of the direct children of ``pid``."""
    out = []
    for task in Path(f'/proc/{pid}/task').iterdir():
        out += [int(p) for p in (task / 'children').read_text().split()]
    return out


def _alive(pid):
    """Return True while ``pid`` runs (a zombie has ended)."""
    try:
        stat = Path(f'/proc/{pid}/stat').read_text()
    except FileNotFoundError:
        return False
    return stat.rpartition(')')[2].split()[0] != 'Z'


@pytest.mark.ros
@pytest.mark.parametrize('sig', ['SIGTERM', 'SIGKILL', 'SIGHUP', 'SIGINT twice'])
def test_a_stopped_runner_leaves_no_node_and_a_zero_twist(probe, domain_id, tmp_path, sig):
    import signal
    import subprocess
    import time
    log = (tmp_path / 'stderr.txt').open('w')
    runner = subprocess.Popen([launcher.find_executable('qvla-ros'), 'launch', 'policy',
                               '--domain-id', str(domain_id)], stderr=log)
    nodes = []
    try:
        probe.drive()
        nodes = _children(runner.pid)
        assert len(nodes) == 1
        since = time.monotonic()
        if sig == 'SIGINT twice':
            runner.send_signal(signal.SIGINT)
            time.sleep(0.1)
            runner.send_signal(signal.SIGINT)
        else:
            runner.send_signal(getattr(signal, sig))
        deadline = since + 2.0
        while any(_alive(p) for p in nodes) and time.monotonic() < deadline:
            probe.spin(0.05)
        assert not any(_alive(p) for p in nodes), f'a node outlived the runner ({sig})'
        probe.spin(0.3)
        late = [m for t, m in probe.twists if t > since]
        assert late and probe.is_zero(late[-1]), 'the last command is not a zero twist'
        code = runner.wait(5)
        if sig != 'SIGKILL':
            assert code == 0
            assert 'Traceback' not in (tmp_path / 'stderr.txt').read_text()
    finally:
        for pid in [runner.pid] + nodes:
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)
        runner.wait()
        log.close()
