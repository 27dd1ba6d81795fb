# Copyright 2026 qvla_ros authors. Apache-2.0.
"""Camera synchronization: one frame per camera, stamps within the allowed skew."""

import numpy as np
import pytest

from qvla_ros.runtime.sync import CameraSync

MS = 1_000_000


def _img(v):
    return np.full((2, 2, 3), v % 256, np.uint8)


def test_one_camera_is_its_newest_frame():
    s = CameraSync(['front'], 0.0)
    assert s.assemble()[0] is None and 'front' in s.assemble()[1]
    s.add('front', _img(1), 100 * MS, 0.1)
    s.add('front', _img(2), 133 * MS, 0.133)
    images, why = s.assemble()
    assert why == '' and images['front'][0, 0, 0] == 2 and not s.fresh()


@pytest.mark.parametrize('offset_ms', [0, 7, 20])
def test_cameras_at_30_and_15_hz_pair_up_every_tick(offset_ms):
    s = CameraSync(['agentview', 'wrist'], max_skew_s=0.02)
    events = sorted([(round(k * 1000 / 30) * MS, 'agentview', k) for k in range(60)] +
                    [(round(k * 1000 / 15) * MS + offset_ms * MS, 'wrist', k)
                     for k in range(30)])
    paired, ticks, next_tick = 0, 0, 100 * MS
    for stamp, cam, k in events:
        while stamp >= next_tick:  # a 10 Hz control tick between frames
            images, why = s.assemble()
            ticks += 1
            paired += images is not None
            next_tick += 100 * MS
        s.add(cam, _img(k), stamp, stamp / 1e9)
    assert ticks >= 18 and paired == ticks


def test_frames_too_far_apart_are_not_used_together():
    s = CameraSync(['a', 'b'], max_skew_s=0.01)
    s.add('a', _img(1), 0, 0.0)
    s.add('b', _img(2), 50 * MS, 0.05)
    images, why = s.assemble()
    assert images is None and '50.0 ms apart' in why and 'max_sync_skew 10.0 ms' in why


def test_a_silent_camera_is_named_and_late_frames_are_ignored():
    s = CameraSync(['a', 'b'], max_skew_s=0.05)
    s.add('a', _img(1), 0, 0.0)
    assert s.stale(0.1, 0.5) == "waiting for a frame from camera 'b'"
    s.add('b', _img(2), 0, 0.0)
    assert s.stale(0.4, 0.5) is None
    s.add('a', _img(3), 600 * MS, 0.6)
    assert "camera 'b' frame is 0.70 s old" in s.stale(0.7, 0.5)
    s.add('a', _img(9), 300 * MS, 0.75)  # an older stamp arriving late
    assert s.frames['a'][-1].stamp_ns == 600 * MS
    with pytest.raises(ValueError, match='at least one camera'):
        CameraSync([], 0.0)
