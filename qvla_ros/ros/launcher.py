# Copyright 2026 qvla_ros authors. Apache-2.0.
"""``qvla-ros launch``: start the executables of ``launch/*.launch.py`` without launch_ros.

pip installs have no ``ros2 launch``. This runner starts the same console scripts with the same
YAML parameter files, applies the loopback-only DDS environment to every child, and exits
non-zero as soon as a node dies. SIGINT, SIGTERM and SIGHUP all stop the launch the same way:
each node gets one SIGINT (and publishes its last zero command), then SIGKILL after a timeout.
Nodes run in their own process group, so a terminal's Ctrl-C reaches them once, through the
runner, and on Linux each one gets SIGTERM from the kernel if the runner itself dies, even by
SIGKILL, so no node outlives its launch. No rclpy import here.
"""

import ctypes

from dataclasses import dataclass
import os
from pathlib import Path
import shutil
import signal
import subprocess
import sys
import threading
import time
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

from qvla_ros.ros.env import loopback_env, share_directory


@dataclass(frozen=True)
class NodeSpec:
    """One node of a launch: executable, node name, params file and remappings.

    ``ends_launch``: when this node exits, the launch stops and returns its exit code (the
    launch file's ``on_exit=Shutdown()``).
    """

    executable: str
    name: str
    params_file: str
    remappings: Tuple[Tuple[str, str], ...] = ()
    ends_launch: bool = False


# Mirrors launch/*.launch.py; test/ros/test_launcher.py checks that the two agree.
LAUNCHES: Dict[str, Tuple[NodeSpec, ...]] = {
    'policy': (NodeSpec('policy_node', 'policy_node', 'policy.yaml'),),
    'calibration': (NodeSpec('calibration_node', 'calibration_node', 'calibration.yaml'),),
    'demo': (
        NodeSpec('synthetic_camera', 'synthetic_camera', 'demo.yaml'),
        NodeSpec('policy_node', 'policy_node', 'demo.yaml', (
            ('/policy_node/image', '/synthetic_camera/image'),
            ('/policy_node/instruction', '/synthetic_camera/instruction'))),
    ),
    'sim_demo': (
        NodeSpec('sim_node', 'sim_node', 'sim_demo.yaml', (
            ('/sim_node/delta_twist_cmds', '/policy_node/delta_twist_cmds'),
            ('/sim_node/gripper_cmd', '/policy_node/gripper_cmd'))),
        NodeSpec('policy_node', 'policy_node', 'sim_demo.yaml', (
            ('/policy_node/image', '/sim_node/image'),
            ('/policy_node/image/agentview', '/sim_node/image/agentview'),
            ('/policy_node/image/wrist', '/sim_node/image/wrist'),
            ('/policy_node/instruction', '/sim_node/instruction'),
            ('/policy_node/proprio', '/sim_node/proprio'))),
        NodeSpec('sim_supervisor', 'sim_supervisor', 'sim_demo.yaml', ends_launch=True),
    ),
}


STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
PR_SET_PDEATHSIG = 1  # linux/prctl.h


class LaunchError(RuntimeError):
    """The launch could not be started; the text says what was expected."""


def _child_setup():
    """Return a Popen ``preexec_fn``: own process group, SIGTERM when the runner dies (Linux)."""
    linux = sys.platform.startswith('linux')
    prctl = ctypes.CDLL(None, use_errno=True).prctl if linux else None  # resolved before fork
    parent = os.getpid()

    def setup():
        os.setpgid(0, 0)
        if prctl is not None:
            prctl(PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0)
            if os.getppid() != parent:  # the runner died before prctl took effect
                os.kill(os.getpid(), signal.SIGTERM)
    return setup


def _pairs(items: Sequence[str], what: str, need_value: bool) -> List[Tuple[str, str]]:
    out = []
    for item in items:
        name, sep, value = item.partition(':=')
        if not sep or not name or (need_value and not value):
            raise LaunchError(f'expected {what}, got {item!r}')
        out.append((name, value))
    return out


def parse_overrides(items: Sequence[str]) -> List[Tuple[str, str]]:
    """Parse ``name:=value`` parameter overrides; raise LaunchError on anything else."""
    return _pairs(items, 'a parameter override of the form name:=value', False)


def parse_remaps(items: Sequence[str]) -> List[Tuple[str, str]]:
    """Parse ``FROM:=TO`` topic remappings; raise LaunchError on anything else."""
    return _pairs(items, 'a topic remapping of the form FROM:=TO', True)


def find_executable(name: str) -> str:
    """Return the path of console script ``name``, next to this interpreter first."""
    local = Path(sys.executable).parent / name
    if local.is_file():
        return str(local)
    found = shutil.which(name)
    if found is None:
        raise LaunchError(f'executable {name!r} not found next to {sys.executable} or on PATH; '
                          'is qvla_ros installed in this environment?')
    return found


def node_command(spec: NodeSpec, params_file: Path, overrides: Sequence[Tuple[str, str]],
                 remaps: Sequence[Tuple[str, str]] = ()) -> List[str]:
    """Return the argv that starts ``spec`` with its parameters and remappings.

    ``remaps`` come before the launch's own, so a user's rule wins (ROS applies the first rule
    that matches a name).
    """
    cmd = [find_executable(spec.executable), '--ros-args', '-r', f'__node:={spec.name}',
           '--params-file', str(params_file)]
    for src, dst in (*remaps, *spec.remappings):
        cmd += ['-r', f'{src}:={dst}']
    for name, value in overrides:
        cmd += ['-p', f'{name}:={value}']
    return cmd


def resolve_params(spec: NodeSpec, params: Optional[str]) -> Path:
    """Return the params file: ``params`` if given, else the package's config default."""
    path = Path(params) if params else share_directory() / 'config' / spec.params_file
    if not path.is_file():
        raise LaunchError(f'parameter file {path} does not exist; expected a ROS 2 YAML file '
                          '(node -> ros__parameters)')
    return path


class Launch:
    """A running group of node processes."""

    def __init__(self, name: str, params: Optional[str] = None,
                 overrides: Sequence[str] = (), domain_id: Optional[int] = None,
                 base_env: Optional[Mapping[str, str]] = None, remaps: Sequence[str] = ()):
        if name not in LAUNCHES:
            raise LaunchError(f'unknown launch {name!r}; expected one of {sorted(LAUNCHES)}')
        self.name = name
        self._env = loopback_env(os.environ if base_env is None else base_env, domain_id)
        pairs = parse_overrides(overrides)
        rules = parse_remaps(remaps)
        self._commands = [node_command(s, resolve_params(s, params), pairs, rules)
                          for s in LAUNCHES[name]]
        self.procs: List[subprocess.Popen] = []

    def start(self) -> 'Launch':
        """Start every node process."""
        setup = _child_setup()
        for cmd in self._commands:
            self.procs.append(subprocess.Popen(cmd, env=self._env, preexec_fn=setup))
        return self

    def poll(self) -> Optional[int]:
        """Return the exit code of the first node that ended, or None while all run."""
        for proc in self.procs:
            code = proc.poll()
            if code is not None:
                return code
        return None

    def finished(self) -> Optional[int]:
        """Return the launch's result once it is over, else None.

        The launch is over when a node that ``ends_launch`` exits (its code) or when any other
        node dies (its code, or 1 if it exited 0).
        """
        for spec, proc in zip(LAUNCHES[self.name], self.procs):
            code = proc.poll()
            if code is None:
                continue
            return code if spec.ends_launch or code != 0 else 1
        return None

    def stop(self, timeout: float = 10.0) -> None:
        """Send SIGINT to every node, then SIGKILL any still alive after ``timeout``."""
        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGINT)
        deadline = time.monotonic() + timeout
        for proc in self.procs:
            try:
                proc.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    def run(self) -> int:
        """Supervise until a stop signal (exit 0) or the launch is over (see ``finished``).

        Signals that arrive while the nodes stop are absorbed: stopping is bounded by
        ``stop``'s timeout, so a second Ctrl-C needs no traceback to be safe.
        """
        requested = threading.Event()
        previous = {sig: signal.signal(sig, lambda signum, frame: requested.set())
                    for sig in STOP_SIGNALS}
        try:
            self.start()
            while not requested.is_set():
                code = self.finished()
                if code is not None:
                    return code
                requested.wait(0.2)
            return 0
        finally:
            self.stop()
            for sig, handler in previous.items():
                signal.signal(sig, handler)
