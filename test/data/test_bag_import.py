# Copyright 2026 qvla_ros authors. Apache-2.0.
"""rosbag2 import (sqlite3 and mcap, written with rosbags) into the rollout dataset."""

import numpy as np
import pytest
from rosbags.rosbag2 import StoragePlugin, Writer
from rosbags.typesys import get_typestore, Stores

from qvla_ros.cli.qvla import main as qvla
from qvla_ros.data.rollouts import episodes, read_episode

TS = get_typestore(Stores.ROS2_KILTED)
T = TS.types
NS = 1_000_000_000


def _header(t):
    return T['std_msgs/msg/Header'](stamp=T['builtin_interfaces/msg/Time'](
        sec=t // NS, nanosec=t % NS), frame_id='base')


def _image(t, value, h=6, w=8):
    data = np.full((h, w, 3), value, np.uint8)
    return T['sensor_msgs/msg/Image'](header=_header(t), height=h, width=w, encoding='rgb8',
                                      is_bigendian=0, step=3 * w, data=data.reshape(-1))


def _twist(t, vx):
    v3 = T['geometry_msgs/msg/Vector3']
    twist = T['geometry_msgs/msg/Twist'](linear=v3(x=vx, y=0.0, z=0.0),
                                         angular=v3(x=0.0, y=0.0, z=0.0))
    return T['geometry_msgs/msg/TwistStamped'](header=_header(t), twist=twist)


def _png(t, value):
    from qvla_ros.data.images import rgb_to_compressed
    data = rgb_to_compressed(np.full((6, 8, 3), value, np.uint8), 'png')
    return T['sensor_msgs/msg/CompressedImage'](header=_header(t), format='png',
                                                data=np.frombuffer(data, np.uint8))


def _write(path, storage, unsorted=False, image_hw=(6, 8), nan_actions=(), wrist=False):
    """Two episodes (instruction change), 10 Hz actions, 30 Hz images, 20 Hz joints.

    ``nan_actions``: indices of episode 0's twists whose linear x is NaN (a broken driver).
    """
    with Writer(path, version=9, storage_plugin=storage) as w:
        c = {name: w.add_connection(topic, typ, typestore=TS) for name, topic, typ in (
            ('img', '/cam/image', 'sensor_msgs/msg/Image'),
            ('txt', '/instruction', 'std_msgs/msg/String'),
            ('act', '/policy/delta_twist_cmds', 'geometry_msgs/msg/TwistStamped'),
            ('grip', '/policy/gripper_cmd', 'std_msgs/msg/Float64'),
            ('joint', '/joint_states', 'sensor_msgs/msg/JointState'),
            ('wrist', '/wrist/image_raw/compressed', 'sensor_msgs/msg/CompressedImage'))}
        msgs = []
        for ep, text in enumerate(('push the red block', 'pick up the blue block')):
            t0 = NS + ep * 3 * NS
            msgs.append((t0 - 1, 'txt', T['std_msgs/msg/String'](data=text)))
            for i in range(30):
                msgs.append((t0 + i * NS // 30, 'img', _image(t0 + i * NS // 30, 10 * ep + i,
                                                              *image_hw)))
            if wrist:  # a second camera at 15 Hz, as PNG on image_transport's compressed topic
                for i in range(15):
                    t = t0 + i * NS // 15 + 2_000_000
                    msgs.append((t, 'wrist', _png(t, 100 + 10 * ep + i)))
            for i in range(20):
                t = t0 + i * NS // 20
                msgs.append((t, 'joint', T['sensor_msgs/msg/JointState'](
                    header=_header(t), name=['a', 'b'], position=np.array([ep, i / 20.0]),
                    velocity=np.zeros(0), effort=np.zeros(0))))
            for i in range(10):
                t = t0 + i * NS // 10 + 5_000_000
                stamp = t0 if unsorted and i == 5 else t
                vx = float('nan') if ep == 0 and i in nan_actions else 0.1 * (i + 1)
                msgs.append((t, 'act', _twist(stamp, vx)))
                msgs.append((t, 'grip', T['std_msgs/msg/Float64'](data=float(ep))))
        for t, name, msg in sorted(msgs, key=lambda m: m[0]):
            w.write(c[name], t, TS.serialize_cdr(msg, msg.__msgtype__))


ARGS = ['--image-topic', '/cam/image', '--instruction-topic', '/instruction',
        '--action-topic', '/policy/delta_twist_cmds', '--gripper-topic', '/policy/gripper_cmd',
        '--proprio-topic', '/joint_states', '--control-hz', '10']


@pytest.mark.parametrize('storage', [StoragePlugin.SQLITE3, StoragePlugin.MCAP],
                         ids=['sqlite3', 'mcap'])
def test_import_aligns_and_splits(tmp_path, storage):
    _write(tmp_path / 'bag', storage)
    out = tmp_path / 'data'
    assert qvla(['calibrate', 'from-bag', str(tmp_path / 'bag'), *ARGS, '--out', str(out)]) == 0
    entries = episodes(out)
    assert [e['instruction'] for e in entries] == ['push the red block',
                                                   'pick up the blue block']
    assert [e['num_steps'] for e in entries] == [10, 10]
    assert all(e['source'] == 'rosbag' for e in entries)
    data = read_episode(out, entries[1])
    np.testing.assert_allclose(data['action'][:, 0], 0.01 * np.arange(1, 11), rtol=1e-5)
    assert (data['action'][:, 6] == 1.0).all()  # gripper of episode 1
    # Step i is stamped 5 ms after image 3i: that image, the last one before it, is used.
    assert [int(data['image.front'][i, 0, 0, 0]) for i in range(3)] == [10, 13, 16]
    assert (data['proprio'][:, 0] == 1.0).all() and data['proprio'].shape == (10, 2)


def test_clear_errors(tmp_path, capsys):
    _write(tmp_path / 'bag', StoragePlugin.SQLITE3)
    bad = list(ARGS)
    bad[1] = '/nope'
    assert qvla(['calibrate', 'from-bag', str(tmp_path / 'bag'), *bad, '--out',
                 str(tmp_path / 'd')]) == 2
    err = capsys.readouterr().err
    assert "camera 'front' topic '/nope' is not in" in err and '/cam/image' in err
    wrong = list(ARGS)
    wrong[5] = '/instruction'  # a String where a TwistStamped is expected
    assert qvla(['calibrate', 'from-bag', str(tmp_path / 'bag'), *wrong, '--out',
                 str(tmp_path / 'd')]) == 2
    assert 'expected one of' in capsys.readouterr().err
    _write(tmp_path / 'unsorted', StoragePlugin.MCAP, unsorted=True)
    assert qvla(['calibrate', 'from-bag', str(tmp_path / 'unsorted'), *ARGS, '--out',
                 str(tmp_path / 'd')]) == 2
    assert 'not sorted' in capsys.readouterr().err
    with Writer(tmp_path / 'empty', version=9) as w:
        w.add_connection('/cam/image', 'sensor_msgs/msg/Image', typestore=TS)
    assert qvla(['calibrate', 'from-bag', str(tmp_path / 'empty'), *ARGS, '--out',
                 str(tmp_path / 'd')]) == 2
    assert 'is empty' in capsys.readouterr().err
    assert qvla(['calibrate', 'from-bag', str(tmp_path / 'missing'), *ARGS, '--out',
                 str(tmp_path / 'd')]) == 2
    assert 'does not exist' in capsys.readouterr().err


def test_non_finite_steps_are_dropped_and_counted(tmp_path, capsys):
    _write(tmp_path / 'bag', StoragePlugin.MCAP, nan_actions=(3, 7))
    out = tmp_path / 'data'
    assert qvla(['calibrate', 'from-bag', str(tmp_path / 'bag'), *ARGS, '--out', str(out)]) == 0
    assert 'dropped 2 steps whose action or proprio was not finite' in capsys.readouterr().out
    entries = episodes(out)
    assert [e['num_steps'] for e in entries] == [8, 10]
    assert all(np.isfinite(read_episode(out, e)['action']).all() for e in entries)


@pytest.mark.parametrize('metadata', [True, False], ids=['with-metadata', 'no-metadata'])
def test_a_truncated_mcap_imports_what_is_whole(tmp_path, capsys, metadata):
    bag = tmp_path / 'bag'
    _write(bag, StoragePlugin.MCAP, image_hw=(96, 128))  # 36 KB frames: several 1 MiB chunks
    (mcap,) = bag.glob('*.mcap')
    whole = mcap.read_bytes()
    mcap.write_bytes(whole[:int(len(whole) * 0.6)])  # what a recorder killed mid-write leaves
    if not metadata:
        (bag / 'metadata.yaml').unlink()
    out = tmp_path / 'data'
    assert qvla(['calibrate', 'from-bag', str(bag), *ARGS, '--out', str(out)]) == 0
    printed = capsys.readouterr().out
    assert 'the bag is damaged' in printed and 'imported what is whole' in printed
    read = int(printed.split(' read ')[1].split(' of ')[0])
    assert 0 < read < int(len(whole) * 0.6)
    entries = episodes(out)
    assert entries and entries[0]['instruction'] == 'push the red block'
    full = tmp_path / 'full'
    _write(full, StoragePlugin.MCAP, image_hw=(96, 128))
    assert qvla(['calibrate', 'from-bag', str(full), *ARGS, '--out', str(tmp_path / 'f')]) == 0
    reference = read_episode(tmp_path / 'f', episodes(tmp_path / 'f')[0])
    got = read_episode(out, entries[0])
    n = entries[0]['num_steps']
    assert 0 < n <= 10
    np.testing.assert_array_equal(got['action'], reference['action'][:n])
    np.testing.assert_array_equal(got['image.front'], reference['image.front'][:n])


def test_two_cameras_raw_and_compressed_are_aligned(tmp_path):
    _write(tmp_path / 'bag', StoragePlugin.MCAP, wrist=True)
    args = list(ARGS)
    args[1] = 'agentview=/cam/image'
    out = tmp_path / 'data'
    assert qvla(['calibrate', 'from-bag', str(tmp_path / 'bag'), *args, '--image-topic',
                 'wrist=/wrist/image_raw/compressed', '--out', str(out)]) == 0
    from qvla_ros.data.rollouts import read_info
    assert read_info(out).cameras == ('agentview', 'wrist')
    data = read_episode(out, episodes(out)[1])
    # step i comes 5 ms after action time 0.1 i: the last wrist frame is (0.1 i - 2 ms) * 15
    expected = [100 + 10 + int((i * 0.1 + 0.005 - 0.002) * 15) for i in range(10)]
    assert [int(v) for v in data['image.wrist'][:, 0, 0, 0]] == expected
    assert data['image.agentview'].shape == data['image.wrist'].shape == (10, 6, 8, 3)
