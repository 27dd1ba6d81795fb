# Copyright 2026 qvla_ros authors. Apache-2.0.
"""policy_node overhead per frame and per step, excluding the model, at 224 x 224.

Runs the real node in-process and calls its callbacks with real messages: image conversion
(``_on_image``), one inference step with the model call stubbed to return a fixed chunk
(observation assembly, scheduling, ActionChunk message and publish), and one control tick
(schedule lookup, clamps, TwistStamped + gripper publish).

    python bench/ros_latency.py     # writes bench/results/ros_latency.json
"""

import argparse
from pathlib import Path
import sys
import time

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import device_name, git_commit, RESULTS, write_json  # noqa: E402


def _stats(samples):
    ms = np.array(samples) * 1e3
    return {'p50_ms': float(np.percentile(ms, 50)), 'p99_ms': float(np.percentile(ms, 99)),
            'max_ms': float(ms.max()), 'n': len(samples)}


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
    from sensor_msgs.msg import Image
    from std_msgs.msg import String
    from qvla_ros.data.images import rgb_to_image_fields
    from qvla_ros.ros.policy_node import PolicyNode
    from qvla_ros.runtime.types import Observation
    rclpy.init()
    node = PolicyNode()
    node.trigger_configure()
    node.trigger_activate()
    node._enabled = True
    msg = Image()
    msg.height, msg.width, msg.encoding, msg.step, msg.data = rgb_to_image_fields(
        np.random.default_rng(0).integers(0, 256, (args.size, args.size, 3), dtype=np.uint8))
    node._on_instruction(String(data='push the red block to the left'))
    chunk = node._policy.predict(Observation({'c': np.zeros((8, 8, 3), np.uint8)}, 'x'))
    node._policy.predict = lambda obs: chunk  # the model is not what this measures
    image_t, infer_t, control_t = [], [], []
    for _ in range(args.reps):
        t0 = time.perf_counter()
        node._on_image(msg)
        t1 = time.perf_counter()
        node._schedule.clear()
        node._on_infer()
        t2 = time.perf_counter()
        node._on_control()
        t3 = time.perf_counter()
        image_t.append(t1 - t0)
        infer_t.append(t2 - t1)
        control_t.append(t3 - t2)
    total = [a + b + c for a, b, c in zip(image_t, infer_t, control_t)]
    result = {'device': device_name(), 'commit': git_commit(), 'command': ' '.join(sys.argv),
              'image_size': args.size, 'image_callback': _stats(image_t),
              'inference_step_without_model': _stats(infer_t),
              'control_tick': _stats(control_t), 'frame_to_publish_overhead': _stats(total),
              'goal_p99_ms': 2.0}
    write_json(Path(args.out), result)
    node.destroy_node()
    rclpy.try_shutdown()
    for key in ('image_callback', 'inference_step_without_model', 'control_tick',
                'frame_to_publish_overhead'):
        print(f'{key:32s} p50 {result[key]["p50_ms"]:.3f} ms  p99 {result[key]["p99_ms"]:.3f} ms')
    return 0


if __name__ == '__main__':
    sys.exit(main())
