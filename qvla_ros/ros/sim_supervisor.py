# Copyright 2026 qvla_ros authors. Apache-2.0.
"""sim_supervisor: run N closed-loop episodes of sim_node driven by policy_node, over ROS 2.

For each episode it calls ``<sim>/reset`` (new scene and instruction), enables actuation with
``<policy>/enable``, waits for ``<sim>/episode`` to report done, and disables actuation again.
It records success, steps and wall time per episode, the policy's latency and control rate
from ``<policy>/policy_status``, and the camera frames of the first episode. At the end it
writes ``summary.json`` and ``episode0.png`` (a strip of frames) into ``out_dir`` atomically
and exits: 0 when every episode ran to its end, 1 otherwise. The launch ends with it.
"""

import json
from pathlib import Path
import time
from typing import List, Optional

import numpy as np
from qvla_ros_interfaces.msg import PolicyStatus
import rclpy
from rclpy.node import Node
from sensor_msgs.msg import Image
from std_msgs.msg import String
from std_srvs.srv import SetBool, Trigger

from qvla_ros.data.images import image_to_rgb
from qvla_ros.ros import qos
from qvla_ros.ros.env import apply_loopback_env
from qvla_ros.sim.evaluate import wilson
from qvla_ros.storage.atomic import write_file, write_json


class Supervisor(Node):
    """Drive episodes through services; collect what the topics report."""

    def __init__(self, **kwargs):
        super().__init__('sim_supervisor', **kwargs)
        for name, default in (('episodes', 3), ('sim', '/sim_node'), ('policy', '/policy_node'),
                              ('out_dir', ''), ('episode_timeout', 60.0),
                              ('startup_timeout', 120.0), ('strip_frames', 8)):
            self.declare_parameter(name, default)
        sim, policy = self.get_parameter('sim').value, self.get_parameter('policy').value
        self.reset_client = self.create_client(Trigger, f'{sim}/reset')
        self.enable_client = self.create_client(SetBool, f'{policy}/enable')
        self.episode_state: Optional[dict] = None
        self.status: List[PolicyStatus] = []
        self.frames: List[np.ndarray] = []
        self.record = False
        self.create_subscription(String, f'{sim}/episode', self._on_episode, qos.latched())
        self.create_subscription(PolicyStatus, f'{policy}/policy_status', self.status.append,
                                 qos.commands())
        self.create_subscription(Image, f'{sim}/image', self._on_image, qos.sensor())

    def _on_episode(self, msg: String):
        self.episode_state = json.loads(msg.data)

    def _on_image(self, msg: Image):
        if self.record:
            self.frames.append(image_to_rgb(msg.height, msg.width, msg.encoding, msg.step,
                                            msg.data, 1 << 24))

    def spin_until(self, done, timeout: float) -> bool:
        """Spin until ``done()`` is true; return False after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while not done():
            if time.monotonic() > deadline:
                return False
            rclpy.spin_once(self, timeout_sec=0.05)
        return True

    def call(self, client, request, timeout: float = 10.0):
        """Call a service and return its response; raise RuntimeError on timeout."""
        future = client.call_async(request)
        if not self.spin_until(future.done, timeout):
            raise RuntimeError(f'service {client.srv_name} did not answer in {timeout} s')
        return future.result()

    def wait_ready(self) -> None:
        """Wait until the sim and a configured policy node answer; raise RuntimeError if not."""
        timeout = self.get_parameter('startup_timeout').value
        for client in (self.reset_client, self.enable_client):
            if not client.wait_for_service(timeout_sec=timeout):
                raise RuntimeError(f'service {client.srv_name} not available after {timeout} s')
        ready = lambda: any(s.state in (PolicyStatus.DRY_RUN, PolicyStatus.WARN)  # noqa: E731
                            for s in self.status[-3:])
        if not self.spin_until(ready, timeout):
            last = self.status[-1].last_error if self.status else 'no status received'
            raise RuntimeError(f'policy node not active after {timeout} s: {last}')

    def run_episode(self, index: int) -> dict:
        """Run one episode; return its record."""
        self.record = index == 0
        self.episode_state = None
        reset = json.loads(self.call(self.reset_client, Trigger.Request()).message)
        fresh = lambda: (self.episode_state is not None  # noqa: E731
                         and self.episode_state['episode'] == reset['episode'])
        self.spin_until(fresh, 5.0)
        self.spin_until(lambda: False, 0.3)  # let the policy see the new instruction and frame
        start = time.monotonic()
        self.call(self.enable_client, SetBool.Request(data=True))
        finished = self.spin_until(lambda: fresh() and self.episode_state['done'],
                                   self.get_parameter('episode_timeout').value)
        self.call(self.enable_client, SetBool.Request(data=False))
        self.record = False
        state = self.episode_state or {}
        return {**reset, 'success': bool(state.get('success', False)),
                'steps': int(state.get('step', 0)), 'finished': finished,
                'wall_s': time.monotonic() - start}


def summarize(records: List[dict], status: List[PolicyStatus]) -> dict:
    """Return the demo summary: success with a Wilson interval, latency and control rate."""
    wins = sum(r['success'] for r in records)
    low, high = wilson(wins, len(records))
    active = [s for s in status if s.state == PolicyStatus.ACTIVE]
    mean = (lambda xs: float(np.mean(xs)) if xs else None)  # noqa: E731
    return {'episodes': len(records), 'successes': wins,
            'success_rate': wins / max(1, len(records)), 'wilson95': [low, high],
            'latency_p50_ms': mean([s.latency_p50_ms for s in active]),
            'latency_p99_ms': mean([s.latency_p99_ms for s in active]),
            'control_rate_hz': mean([s.control_rate_hz for s in active if s.control_rate_hz]),
            'model_id': status[-1].model_id if status else '',
            'plan_id': status[-1].plan_id if status else '', 'per_episode': records}


def write_outputs(out_dir: Path, summary: dict, frames: List[np.ndarray], count: int) -> None:
    """Write summary.json and episode0.png (``count`` evenly spaced frames) atomically."""
    write_json(out_dir / 'summary.json', summary)
    if frames:
        import matplotlib
        matplotlib.use('Agg')
        from matplotlib import pyplot as plt
        pick = np.linspace(0, len(frames) - 1, min(count, len(frames))).round().astype(int)
        strip = np.concatenate([frames[i] for i in pick], axis=1)
        write_file(out_dir / 'episode0.png', lambda tmp: plt.imsave(tmp, strip, format='png'))


def main(args=None) -> None:
    """Run the episodes, write the outputs, exit 0 if all episodes finished."""
    apply_loopback_env()
    rclpy.init(args=args)
    node = Supervisor()
    code = 1
    try:
        node.wait_ready()
        records = []
        for i in range(node.get_parameter('episodes').value):
            records.append(node.run_episode(i))
            r = records[-1]
            node.get_logger().info(
                f'episode {i}: seed {r["seed"]} "{r["instruction"]}" -> '
                f'{"success" if r["success"] else "failure"} in {r["steps"]} steps')
        summary = summarize(records, node.status)
        out = node.get_parameter('out_dir').value
        if out:
            write_outputs(Path(out), summary, node.frames,
                          node.get_parameter('strip_frames').value)
        node.get_logger().info(f'{summary["successes"]}/{summary["episodes"]} episodes '
                               'succeeded')
        code = 0 if all(r['finished'] for r in records) else 1
    except RuntimeError as err:
        node.get_logger().error(str(err))
    except KeyboardInterrupt:
        pass
    finally:
        node.destroy_node()
        rclpy.try_shutdown()
    raise SystemExit(code)
