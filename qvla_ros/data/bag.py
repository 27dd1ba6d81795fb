# Copyright 2026 qvla_ros authors. Apache-2.0.
"""``qvla calibrate from-bag``: rosbag2 (sqlite3 or mcap) -> rollout dataset, via rosbags.

Message types come from the bag itself (no ROS install needed). Supported topics: camera
``sensor_msgs/msg/Image``; instruction and markers ``std_msgs/msg/String``; executed action
``geometry_msgs/msg/TwistStamped`` (velocities, turned into deltas over 1 / control_hz);
gripper ``std_msgs/msg/Float64``/``Float32``; proprio ``sensor_msgs/msg/JointState``
(positions) or ``geometry_msgs/msg/PoseStamped`` (position + quaternion). Stamps are header
stamps where the message has a header, else the bag's receive time.
"""

from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Optional

import numpy as np

from qvla_ros.data.align import align, SplitRule, Stream, twist_to_action
from qvla_ros.data.rollouts import DatasetInfo, RolloutWriter
from qvla_ros.ros.conversions import image_to_rgb

EXPECTED = {
    'image': ('sensor_msgs/msg/Image',),
    'instruction': ('std_msgs/msg/String',),
    'action': ('geometry_msgs/msg/TwistStamped',),
    'gripper': ('std_msgs/msg/Float64', 'std_msgs/msg/Float32'),
    'proprio': ('sensor_msgs/msg/JointState', 'geometry_msgs/msg/PoseStamped'),
    'marker': ('std_msgs/msg/String',),
}


@dataclass(frozen=True)
class BagTopics:
    """Which topic carries what; image, instruction and action are required."""

    image: str
    instruction: str
    action: str
    gripper: Optional[str] = None
    proprio: Optional[str] = None
    marker: Optional[str] = None

    def used(self) -> Dict[str, str]:
        """Return {role: topic} for the topics that are set."""
        return {k: v for k, v in self.__dict__.items() if v}


def _stamp(msg, bag_time: int) -> int:
    header = getattr(msg, 'header', None)
    if header is None:
        return int(bag_time)
    return int(header.stamp.sec) * 1_000_000_000 + int(header.stamp.nanosec)


def _value(role: str, msg, msgtype: str, dt: float):
    if role == 'image':
        return image_to_rgb(msg.height, msg.width, msg.encoding, msg.step, msg.data.tobytes())
    if role in ('instruction', 'marker'):
        return msg.data
    if role == 'gripper':
        return float(msg.data)
    if role == 'action':
        t = msg.twist
        return twist_to_action((t.linear.x, t.linear.y, t.linear.z),
                               (t.angular.x, t.angular.y, t.angular.z), dt)
    if msgtype.endswith('JointState'):
        return np.asarray(msg.position, np.float32)
    p, q = msg.pose.position, msg.pose.orientation
    return np.array([p.x, p.y, p.z, q.x, q.y, q.z, q.w], np.float32)


def read_streams(bag: Path, topics: BagTopics, control_hz: float) -> Dict[str, Stream]:
    """Return one Stream per role, read from the bag at ``bag``."""
    from rosbags.highlevel import AnyReader
    from rosbags.typesys import get_typestore, Stores
    bag = Path(bag)
    if not bag.exists():
        raise FileNotFoundError(f'{bag} does not exist; expected a rosbag2 folder')
    with AnyReader([bag], default_typestore=get_typestore(Stores.EMPTY)) as reader:
        available = {c.topic: c.msgtype for c in reader.connections}
        if not available or reader.message_count == 0:
            raise ValueError(f'{bag} is empty: no messages to import')
        used = topics.used()
        for role, topic in used.items():
            if topic not in available:
                raise ValueError(f'{role} topic {topic!r} is not in {bag}; available topics: '
                                 f'{sorted(available)}')
            if available[topic] not in EXPECTED[role]:
                raise ValueError(f'{role} topic {topic!r} has type {available[topic]}; '
                                 f'expected one of {EXPECTED[role]}')
        role_of = {t: r for r, t in used.items()}
        streams = {r: Stream(t) for r, t in used.items()}
        conns = [c for c in reader.connections if c.topic in role_of]
        dt = 1.0 / control_hz
        for conn, bag_time, raw in reader.messages(connections=conns):
            msg = reader.deserialize(raw, conn.msgtype)
            role = role_of[conn.topic]
            streams[role].add(_stamp(msg, bag_time), _value(role, msg, conn.msgtype, dt))
    return streams


def import_bag(bag: Path, topics: BagTopics, out: Path, control_hz: float,
               rule: SplitRule = SplitRule(), camera: str = 'front',
               policy: str = 'expert') -> dict:
    """Import a bag into the rollout dataset at ``out``; return a summary."""
    if rule.markers and not topics.marker:
        raise ValueError('splitting on markers needs a marker topic (--marker-topic)')
    streams = read_streams(bag, topics, control_hz)
    proprio = streams.get('proprio')
    proprio_dim = len(proprio.values[0]) if proprio is not None and proprio.values else 0
    episodes = align(streams['action'], streams['image'], streams['instruction'], control_hz,
                     rule, proprio=proprio, gripper=streams.get('gripper'),
                     markers=streams.get('marker'), proprio_dim=proprio_dim)
    if not episodes:
        raise ValueError(f'{bag}: no action had both an image and an instruction before it; '
                         'check the topics and that the streams overlap in time')
    writer = RolloutWriter(out, DatasetInfo(7, proprio_dim, control_hz, (camera,)))
    for ep in episodes:
        writer.add_episode({camera: np.stack(ep.images)}, np.stack(ep.proprio),
                           np.stack(ep.actions), np.array(ep.stamps, np.int64),
                           ep.instruction, None, 'rosbag', policy)
    return {'episodes': len(episodes), 'steps': sum(len(e.actions) for e in episodes)}
