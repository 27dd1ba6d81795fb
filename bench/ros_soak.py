# Copyright 2026 qvla_ros authors. Apache-2.0.
"""Soak and bad-input benchmark of policy_node over ROS 2 (loopback only).

A 30 Hz camera and an instruction drive policy_node (10 Hz control, actuation enabled) for
``--minutes``; every ``--bad-every`` frames a malformed frame or instruction is mixed in, up
to ``--bad-messages``. Measures RSS growth of the node process, missed control ticks
(commands received vs expected), ERROR/WARN status counts and whether the node stayed up.

    python bench/ros_soak.py --minutes 10     # writes bench/results/ros_soak.json
"""

import argparse
from pathlib import Path
import sys
import time

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import (command_line, device_name, git_commit, RESULTS,  # noqa: E402
                          write_json)


def _rss_kb(pid: int) -> int:
    for line in Path(f'/proc/{pid}/status').read_text().splitlines():
        if line.startswith('VmRSS:'):
            return int(line.split()[1])
    return 0


def _bad_frame(i, Image):
    m = Image()
    kind = i % 4
    if kind == 0:
        m.height, m.width, m.encoding, m.step, m.data = 48, 64, '16UC1', 128, bytes(48 * 128)
    elif kind == 1:
        m.height, m.width, m.encoding, m.step, m.data = 48, 64, 'rgb8', 192, bytes(7)
    elif kind == 2:
        m.height, m.width, m.encoding, m.step, m.data = 48, 64, 'rgb8', 10, bytes(480)
    else:
        m.height, m.width, m.encoding, m.step, m.data = 0, 0, 'rgb8', 0, b''
    return m


def main(argv=None) -> int:
    """Run the soak and write its JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--minutes', type=float, default=10.0)
    parser.add_argument('--bad-messages', type=int, default=1000)
    parser.add_argument('--bad-every', type=int, default=5, help='one bad frame per N frames')
    parser.add_argument('--domain-id', type=int, default=91)
    parser.add_argument('--out', default=str(RESULTS / 'ros_soak.json'))
    args = parser.parse_args(argv)
    from qvla_ros.ros.env import apply_loopback_env
    apply_loopback_env(args.domain_id)
    import rclpy
    from geometry_msgs.msg import TwistStamped
    from qvla_ros_interfaces.msg import PolicyStatus
    from rclpy.executors import SingleThreadedExecutor
    from sensor_msgs.msg import Image
    from std_msgs.msg import String
    from std_srvs.srv import SetBool
    from qvla_ros.ros import qos
    from qvla_ros.data.images import rgb_to_image_fields
    from qvla_ros.ros.launcher import Launch
    launch = Launch('policy', domain_id=args.domain_id).start()
    rclpy.init()
    node = rclpy.create_node('soak_driver')
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    img_pub = node.create_publisher(Image, '/policy_node/image', qos.sensor())
    txt_pub = node.create_publisher(String, '/policy_node/instruction', qos.latched())
    twists, states = [], {}
    node.create_subscription(TwistStamped, '/policy_node/delta_twist_cmds',
                             lambda m: twists.append(time.monotonic()), qos.commands())
    node.create_subscription(PolicyStatus, '/policy_node/policy_status',
                             lambda m: states.__setitem__(m.state_name,
                                                          states.get(m.state_name, 0) + 1),
                             qos.commands())
    client = node.create_client(SetBool, '/policy_node/enable')
    client.wait_for_service(timeout_sec=30)
    txt_pub.publish(String(data='push the red block to the left'))
    future = client.call_async(SetBool.Request(data=True))
    executor.spin_until_future_complete(future, timeout_sec=10)
    good = Image()
    good.height, good.width, good.encoding, good.step, good.data = rgb_to_image_fields(
        np.full((96, 128, 3), 80, np.uint8))
    pid = launch.procs[0].pid
    time.sleep(2.0)
    rss = [(0.0, _rss_kb(pid))]
    start = time.monotonic()
    frame, bad_sent, next_frame = 0, 0, start
    duration = args.minutes * 60
    warmup_end = start + min(30.0, duration / 10)
    twists_at_warmup = None
    while time.monotonic() - start < duration and launch.poll() is None:
        now = time.monotonic()
        if now >= next_frame:
            if bad_sent < args.bad_messages and frame % args.bad_every == args.bad_every - 1:
                if bad_sent % 10 == 9:
                    txt_pub.publish(String(data='   '))
                    txt_pub.publish(String(data='push the red block to the left'))
                else:
                    img_pub.publish(_bad_frame(bad_sent, Image))
                bad_sent += 1
            good.header.stamp = node.get_clock().now().to_msg()
            img_pub.publish(good)
            frame += 1
            next_frame += 1 / 30
        if twists_at_warmup is None and now >= warmup_end:
            twists_at_warmup = (len(twists), now)
            rss.append((now - start, _rss_kb(pid)))
        if int(now - start) % 30 == 0 and rss[-1][0] < now - start - 1:
            rss.append((now - start, _rss_kb(pid)))
        executor.spin_once(timeout_sec=0.002)
    alive = launch.poll() is None
    end = time.monotonic()
    rss.append((end - start, _rss_kb(pid) if alive else 0))
    launch.stop()
    node.destroy_node()
    rclpy.try_shutdown()
    n0, t0 = twists_at_warmup
    received = sum(1 for t in twists if t >= t0)
    expected = (end - t0) * 10.0
    base = rss[1][1]
    result = {'device': device_name(), 'commit': git_commit(), 'command': command_line(),
              'minutes': args.minutes, 'frames_sent': frame, 'bad_messages_sent': bad_sent,
              'node_alive_at_end': alive, 'commands_received_after_warmup': received,
              'commands_expected_after_warmup': expected,
              'missed_tick_fraction': max(0.0, 1 - received / expected),
              'rss_kb_after_warmup': base, 'rss_kb_end': rss[-1][1],
              'rss_growth_fraction': (rss[-1][1] - base) / base if base else None,
              'rss_samples': rss, 'status_counts': states}
    write_json(Path(args.out), result)
    print({k: v for k, v in result.items() if k != 'rss_samples'})
    return 0


if __name__ == '__main__':
    sys.exit(main())
