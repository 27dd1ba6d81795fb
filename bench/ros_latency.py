# Copyright 2026 qvla_ros authors. Apache-2.0.
"""policy_node overhead per frame and per step, excluding the model, at 224 x 224.

Runs the real node in-process and calls its callbacks with real messages: one frame of every
camera (conversion of raw rgb8, or JPEG decoding, into the synchronizer), one inference step
with the model call stubbed to return a fixed chunk (frame set assembly, observation,
scheduling, ActionChunk message and publish), and one control tick (schedule lookup, clamps,
TwistStamped + gripper publish); with one camera, and with two (a random qvla-ref that reads
``agentview`` and ``wrist``).

    python bench/ros_latency.py     # writes bench/results/ros_latency.json
"""

import argparse
from pathlib import Path
import sys
import time

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import (command_line, device_name, git_commit, RESULTS,  # noqa: E402
                          write_json)


def _stats(samples):
    ms = np.array(samples) * 1e3
    return {'p50_ms': float(np.percentile(ms, 50)), 'p99_ms': float(np.percentile(ms, 99)),
            'max_ms': float(ms.max()), 'n': len(samples)}


def _two_camera_checkpoint(folder: Path) -> str:
    """Write a random tiny qvla-ref that reads two named cameras; return its folder."""
    from dataclasses import replace
    from qvla_ros.models.checkpoint import save_policy
    from qvla_ros.models.reference import build_reference, CONFIGS
    save_policy(build_reference(replace(CONFIGS['tiny'], cameras=CAMERAS)), folder)
    return str(folder)


CAMERAS = ('agentview', 'wrist')


def measure(model: str, cameras, size: int, reps: int, compressed: bool) -> dict:
    """Time the node's callbacks for one frame per camera, one plan and one control tick."""
    from rclpy.parameter import Parameter
    from sensor_msgs.msg import CompressedImage, Image
    from std_msgs.msg import String
    from qvla_ros.data.images import rgb_to_compressed, rgb_to_image_fields
    from qvla_ros.ros.policy_node import PolicyNode
    name = f'latency_{len(cameras)}_{"jpeg" if compressed else "raw"}'  # one name each
    node = PolicyNode(parameter_overrides=[Parameter('model', value=model),
                                           Parameter('autostart', value=False)],
                      cli_args=['--ros-args', '-r', f'__node:={name}'])
    node.trigger_configure()
    node.trigger_activate()
    node._enabled = True
    rgb = np.random.default_rng(0).integers(0, 256, (size, size, 3), dtype=np.uint8)
    if compressed:
        msg = CompressedImage(format='jpeg', data=rgb_to_compressed(rgb, 'jpeg'))
        feed = node._inputs._on_compressed
    else:
        msg = Image()
        msg.height, msg.width, msg.encoding, msg.step, msg.data = rgb_to_image_fields(rgb)
        feed = node._inputs._on_raw
    node._on_instruction(String(data='push the red block to the left'))
    for camera in node._inputs.sync.cameras:
        feed(camera, msg)
    images, _ = node._inputs.sync.assemble()
    from qvla_ros.core.types import Observation
    chunk = node._policy.predict(Observation(images, 'x', np.zeros(8, np.float32)))
    node._policy.predict = lambda obs: chunk  # the model is not what this measures
    image_t, infer_t, control_t = [], [], []
    for k in range(reps):
        msg.header.stamp.sec = k + 1  # a new capture each time, as a camera sends it
        t0 = time.perf_counter()
        for camera in node._inputs.sync.cameras:
            feed(camera, msg)
        t1 = time.perf_counter()
        node._schedule.clear()
        node._on_infer()
        t2 = time.perf_counter()
        node._on_control()
        t3 = time.perf_counter()
        image_t.append(t1 - t0)
        infer_t.append(t2 - t1)
        control_t.append(t3 - t2)
    node.destroy_node()
    total = [a + b + c for a, b, c in zip(image_t, infer_t, control_t)]
    return {'cameras': len(node._inputs.sync.cameras) if node._inputs else len(cameras),
            'transport': 'jpeg' if compressed else 'raw rgb8',
            'image_callbacks': _stats(image_t),
            'inference_step_without_model': _stats(infer_t), 'control_tick': _stats(control_t),
            'frame_to_publish_overhead': _stats(total)}


def main(argv=None) -> int:
    """Run the benchmark and write its JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--size', type=int, default=224)
    parser.add_argument('--reps', type=int, default=2000)
    parser.add_argument('--out', default=str(RESULTS / 'ros_latency.json'))
    args = parser.parse_args(argv)
    from qvla_ros.ros.env import apply_loopback_env
    apply_loopback_env(93)
    import rclpy
    import tempfile
    rclpy.init()
    with tempfile.TemporaryDirectory() as tmp:
        two = _two_camera_checkpoint(Path(tmp) / 'two-cameras')
        cases = {'one camera, raw': measure('toy', (), args.size, args.reps, False),
                 'two cameras, raw': measure(two, CAMERAS, args.size, args.reps, False),
                 'two cameras, jpeg': measure(two, CAMERAS, args.size, args.reps, True)}
    rclpy.try_shutdown()
    result = {'device': device_name(), 'commit': git_commit(),
              'command': 'python ' + command_line(), 'image_size': args.size,
              'cases': cases, 'goal_p99_ms': 2.0}
    write_json(Path(args.out), result)
    for name, case in cases.items():
        keys = ('image_callbacks', 'inference_step_without_model', 'control_tick',
                'frame_to_publish_overhead')
        print(f'{name}: ' + ', '.join(f'{k} p50 {case[k]["p50_ms"]:.3f} / p99 '
                                      f'{case[k]["p99_ms"]:.3f} ms' for k in keys))
    return 0


if __name__ == '__main__':
    sys.exit(main())
