# Copyright 2026 qvla_ros authors. Apache-2.0.
"""Image and instruction conversions: encodings, strides and clear rejections."""

import numpy as np
import pytest

from qvla_ros.data.images import (ConversionError, image_to_rgb, rgb_to_image_fields,
                                  validate_instruction)


def _rgb(h=4, w=5):
    return np.arange(h * w * 3, dtype=np.uint8).reshape(h, w, 3)


@pytest.mark.parametrize('encoding,order,channels', [
    ('rgb8', [0, 1, 2], 3), ('bgr8', [2, 1, 0], 3), ('rgba8', [0, 1, 2, 3], 4),
    ('bgra8', [2, 1, 0, 3], 4)])
def test_color_encodings_with_padding(encoding, order, channels):
    rgb = _rgb()
    pix = np.concatenate([rgb, np.full((4, 5, 1), 255, np.uint8)], axis=2)[:, :, :channels]
    src = pix[:, :, order[:channels]] if channels == 3 else pix[:, :, order]
    step = 5 * channels + 3  # padded rows
    rows = np.zeros((4, step), np.uint8)
    rows[:, :5 * channels] = src.reshape(4, -1)
    out = image_to_rgb(4, 5, encoding, step, rows.tobytes())
    np.testing.assert_array_equal(out, rgb)


def test_mono8_and_roundtrip():
    gray = np.arange(20, dtype=np.uint8).reshape(4, 5)
    out = image_to_rgb(4, 5, 'mono8', 5, gray.tobytes())
    assert out.shape == (4, 5, 3) and (out[:, :, 1] == gray).all()
    h, w, enc, step, data = rgb_to_image_fields(_rgb())
    np.testing.assert_array_equal(image_to_rgb(h, w, enc, step, data), _rgb())


@pytest.mark.parametrize('args,match', [
    ((4, 5, '16UC1', 10, b'\0' * 40), 'unsupported image encoding'),
    ((4, 5, 'rgb8', 14, b'\0' * 56), 'step 14 is smaller'),
    ((4, 5, 'rgb8', 15, b'\0' * 59), 'expected step\\*height = 60'),
    ((4, 5, 'rgb8', 15, b''), 'has 0 bytes'),
    ((0, 5, 'rgb8', 15, b''), 'must be positive'),
    ((2160, 3840, 'rgb8', 11520, b''), 'exceeds the limit'),
])
def test_bad_images_rejected(args, match):
    with pytest.raises(ConversionError, match=match):
        image_to_rgb(*args)


def test_instruction_validation():
    assert validate_instruction('  push   the red\tblock ') == 'push the red block'
    assert validate_instruction('pick up the cube'.encode()) == 'pick up the cube'
    for bad, match in (('   ', 'empty'), (b'\xff\xfe', 'UTF-8'), ('a\x00b', 'control'),
                       (3, 'must be text')):
        with pytest.raises(ConversionError, match=match):
            validate_instruction(bad)
