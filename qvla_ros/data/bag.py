# Copyright 2026 qvla_ros authors. Apache-2.0.
"""``qvla calibrate from-bag``: rosbag2 (sqlite3 or mcap) -> rollout dataset, via rosbags.

Message types come from the bag itself (no ROS install needed). Supported topics: camera
``sensor_msgs/msg/Image``; instruction and markers ``std_msgs/msg/String``; executed action
``geometry_msgs/msg/TwistStamped`` (velocities, turned into deltas over 1 / control_hz);
gripper ``std_msgs/msg/Float64``/``Float32``; proprio ``sensor_msgs/msg/JointState``
(positions) or ``geometry_msgs/msg/PoseStamped`` (position + quaternion). Stamps are header
stamps where the message has a header, else the bag's receive time.

A bag that rosbags cannot open because a recorder crashed (an MCAP file cut short, no
metadata.yaml) is read record by record up to the damage (:mod:`.mcap_salvage`), with the
standard message types of ROS 2 Kilted; the summary says how much was dropped. Steps whose
action or proprio is not finite are dropped and counted.
"""

from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Optional, Tuple

import numpy as np

from qvla_ros.data.align import align, SplitRule, Stream, twist_to_action
from qvla_ros.data.images import compressed_to_rgb, image_to_rgb
from qvla_ros.data.mcap_salvage import salvage
from qvla_ros.data.rollouts import DatasetInfo, RolloutWriter
from qvla_ros.storage.errors import ArtifactError

EXPECTED = {
    'image': ('sensor_msgs/msg/Image', 'sensor_msgs/msg/CompressedImage'),
    'instruction': ('std_msgs/msg/String',),
    'action': ('geometry_msgs/msg/TwistStamped',),
    'gripper': ('std_msgs/msg/Float64', 'std_msgs/msg/Float32'),
    'proprio': ('sensor_msgs/msg/JointState', 'geometry_msgs/msg/PoseStamped'),
    'marker': ('std_msgs/msg/String',),
}


@dataclass(frozen=True)
class BagTopics:
    """Which topic carries what; cameras, instruction and action are required.

    ``cameras`` maps each camera name to its topic, raw (Image) or compressed.
    """

    cameras: Tuple[Tuple[str, str], ...]
    instruction: str
    action: str
    gripper: Optional[str] = None
    proprio: Optional[str] = None
    marker: Optional[str] = None

    def __post_init__(self):
        names = [c for c, _ in self.cameras]
        if not names or len(set(names)) != len(names):
            raise ValueError(f'expected one or more cameras with distinct names, got {names}')

    def used(self) -> Dict[str, str]:
        """Return {role: topic} for the topics that are set (cameras as 'image:<name>')."""
        roles = {f'image:{c}': t for c, t in self.cameras}
        roles.update({k: v for k, v in self.__dict__.items() if v and k != 'cameras'})
        return roles


def _stamp(msg, bag_time: int) -> int:
    header = getattr(msg, 'header', None)
    if header is None:
        return int(bag_time)
    return int(header.stamp.sec) * 1_000_000_000 + int(header.stamp.nanosec)


def _value(role: str, msg, msgtype: str, dt: float):
    if role.startswith('image:'):
        if msgtype.endswith('CompressedImage'):
            return compressed_to_rgb(msg.format, msg.data.tobytes())
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


def _check_topics(bag: Path, topics: BagTopics, available: Dict[str, str]) -> None:
    if not available:
        raise ValueError(f'{bag} is empty: no messages to import')
    for role, topic in topics.used().items():
        label = f'camera {role[6:]!r}' if role.startswith('image:') else role
        if topic not in available:
            raise ValueError(f'{label} topic {topic!r} is not in {bag}; available topics: '
                             f'{sorted(available)}')
        expected = EXPECTED[role.split(':')[0]]
        if available[topic] not in expected:
            raise ValueError(f'{label} topic {topic!r} has type {available[topic]}; '
                             f'expected one of {expected}')


class _Streams:
    """Collects the deserialized messages of the used topics into one Stream per role."""

    def __init__(self, topics: BagTopics, control_hz: float):
        used = topics.used()
        self.role_of = {t: r for r, t in used.items()}
        self.streams = {r: Stream(t) for r, t in used.items()}
        self.dt = 1.0 / control_hz

    def add(self, topic: str, msgtype: str, msg, bag_time: int) -> None:
        role = self.role_of[topic]
        self.streams[role].add(_stamp(msg, bag_time), _value(role, msg, msgtype, self.dt))


def _read_rosbags(bag: Path, topics: BagTopics, control_hz: float) -> Dict[str, Stream]:
    from rosbags.highlevel import AnyReader
    from rosbags.typesys import get_typestore, Stores
    with AnyReader([bag], default_typestore=get_typestore(Stores.EMPTY)) as reader:
        available = {c.topic: c.msgtype for c in reader.connections}
        _check_topics(bag, topics, available if reader.message_count else {})
        out = _Streams(topics, control_hz)
        conns = [c for c in reader.connections if c.topic in out.role_of]
        for conn, bag_time, raw in reader.messages(connections=conns):
            out.add(conn.topic, conn.msgtype, reader.deserialize(raw, conn.msgtype), bag_time)
    return out.streams


def _read_salvaged(bag: Path, topics: BagTopics, control_hz: float, why: str):
    """Return (streams, damage report) from the MCAP files of a bag rosbags refused."""
    from rosbags.typesys import get_typestore, Stores
    files = sorted(bag.glob('*.mcap')) if bag.is_dir() else [bag]
    parts = [salvage(f) for f in files if f.suffix == '.mcap']
    if not parts or not any(p.messages for p in parts):
        raise ArtifactError(f'{bag} cannot be read ({why}) and holds no whole MCAP message; '
                            'expected a rosbag2 folder (sqlite3 or mcap)')
    store = get_typestore(Stores.ROS2_KILTED)
    available = {t: m for p in parts for t, m in p.topics.values()}
    _check_topics(bag, topics, available)
    out = _Streams(topics, control_hz)
    for part in parts:
        for cid, log_time, raw in sorted(part.messages, key=lambda m: m[1]):
            topic, msgtype = part.topics.get(cid, ('', ''))
            if topic in out.role_of:
                out.add(topic, msgtype, store.deserialize_cdr(raw, msgtype), log_time)
    report = {'reason': why, 'files': [
        {'file': p.path.name, 'bytes_read': p.bytes_read, 'file_size': p.file_size,
         'messages': len(p.messages), 'damage': p.problem} for p in parts]}
    return out.streams, report


def read_streams(bag: Path, topics: BagTopics, control_hz: float):
    """Return (one Stream per role, damage report or None) read from the bag at ``bag``."""
    from rosbags.highlevel import AnyReaderError
    from rosbags.rosbag2 import ReaderError
    bag = Path(bag)
    if not bag.exists():
        raise FileNotFoundError(f'{bag} does not exist; expected a rosbag2 folder')
    if bag.is_dir() and not (bag / 'metadata.yaml').exists() and any(bag.glob('*.mcap')):
        return _read_salvaged(bag, topics, control_hz,
                              'no metadata.yaml: the recorder did not close the bag')
    try:
        return _read_rosbags(bag, topics, control_hz), None
    except (AnyReaderError, ReaderError) as err:
        return _read_salvaged(bag, topics, control_hz, str(err))


def import_bag(bag: Path, topics: BagTopics, out: Path, control_hz: float,
               rule: SplitRule = SplitRule(), policy: str = 'expert') -> dict:
    """Import a bag into the rollout dataset at ``out`` (one image stream per camera)."""
    if rule.markers and not topics.marker:
        raise ValueError('splitting on markers needs a marker topic (--marker-topic)')
    streams, damage = read_streams(bag, topics, control_hz)
    proprio = streams.get('proprio')
    proprio_dim = len(proprio.values[0]) if proprio is not None and proprio.values else 0
    cameras = [c for c, _ in topics.cameras]
    images = {c: streams[f'image:{c}'] for c in cameras}
    episodes, dropped = align(streams['action'], images, streams['instruction'],
                              control_hz, rule, proprio=proprio, gripper=streams.get('gripper'),
                              markers=streams.get('marker'), proprio_dim=proprio_dim)
    if not episodes:
        raise ValueError(f'{bag}: no action had both an image and an instruction before it; '
                         'check the topics and that the streams overlap in time')
    with RolloutWriter(out, DatasetInfo(7, proprio_dim, control_hz, cameras)) as writer:
        for ep in episodes:
            writer.add_episode({c: np.stack(ep.images[c]) for c in cameras}, np.stack(ep.proprio),
                               np.stack(ep.actions), np.array(ep.stamps, np.int64),
                               ep.instruction, None, 'rosbag', policy)
    return {'episodes': len(episodes), 'steps': sum(len(e.actions) for e in episodes),
            'dropped_nonfinite': dropped, 'damage': damage}
