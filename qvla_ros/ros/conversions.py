# Copyright 2026 qvla_ros authors. Apache-2.0.
"""Message <-> numpy conversions: pure functions, our own code (no cv_bridge)."""

from typing import Tuple

import numpy as np

# encoding -> (channels, channel order as indices into the output RGB image or None)
_ENCODINGS = {
    'rgb8': (3, (0, 1, 2)),
    'bgr8': (3, (2, 1, 0)),
    'rgba8': (4, (0, 1, 2)),
    'bgra8': (4, (2, 1, 0)),
    'mono8': (1, None),
}
MAX_PIXELS = 2048 * 2048


class ConversionError(ValueError):
    """A message could not be converted; the text says what was expected."""


def image_to_rgb(height: int, width: int, encoding: str, step: int, data,
                 max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """Return an RGB uint8 array (H, W, 3) from the fields of a sensor_msgs/Image.

    Honours ``step`` (row stride in bytes). Raises ConversionError on any inconsistency.
    """
    if encoding not in _ENCODINGS:
        raise ConversionError(f'unsupported image encoding {encoding!r}; expected one of '
                              f'{sorted(_ENCODINGS)}')
    if height <= 0 or width <= 0:
        raise ConversionError(f'image size must be positive, got {width}x{height}')
    if height * width > max_pixels:
        raise ConversionError(f'image {width}x{height} exceeds the limit of {max_pixels} '
                              'pixels; publish a downscaled stream')
    channels, order = _ENCODINGS[encoding]
    if step < width * channels:
        raise ConversionError(f'step {step} is smaller than width*channels = '
                              f'{width * channels} for {encoding}')
    buf = np.frombuffer(data, dtype=np.uint8)
    if buf.size != step * height:
        raise ConversionError(f'image data has {buf.size} bytes, expected step*height = '
                              f'{step * height}')
    rows = buf.reshape(height, step)[:, :width * channels]
    pixels = rows.reshape(height, width, channels)  # (H, W, C)
    if order is None:
        return np.repeat(pixels, 3, axis=2)
    return np.ascontiguousarray(pixels[:, :, list(order)])


def rgb_to_image_fields(rgb: np.ndarray) -> Tuple[int, int, str, int, bytes]:
    """Return (height, width, 'rgb8', step, data) for an RGB uint8 (H, W, 3) array."""
    if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ConversionError(f'expected uint8 (H, W, 3) RGB, got {rgb.dtype} '
                              f'{tuple(rgb.shape)}')
    h, w, _ = rgb.shape
    return h, w, 'rgb8', 3 * w, np.ascontiguousarray(rgb).tobytes()


def validate_instruction(raw) -> str:
    """Return a cleaned instruction, or raise ConversionError if it is unusable."""
    if isinstance(raw, bytes):
        try:
            raw = raw.decode('utf-8')
        except UnicodeDecodeError as err:
            raise ConversionError(f'instruction is not valid UTF-8: {err}') from err
    if not isinstance(raw, str):
        raise ConversionError(f'instruction must be text, got {type(raw).__name__}')
    text = ' '.join(raw.split())
    if not text:
        raise ConversionError('instruction is empty; expected a non-empty sentence')
    if any(not ch.isprintable() for ch in text):
        raise ConversionError('instruction contains control characters; expected plain text')
    return text
