# Copyright 2026 qvla_ros authors. Apache-2.0.
"""Image message fields <-> RGB arrays: pure functions, our own code (no cv_bridge).

Shared by the nodes and the bag importer: ``sensor_msgs/Image`` fields (raw, any stride) and
``sensor_msgs/CompressedImage`` payloads (JPEG or PNG, as ``image_transport``'s compressed
plugin publishes them on ``<topic>/compressed``). Also instruction text checks.
"""

import io
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


def compressed_to_rgb(fmt: str, data, max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """Return an RGB uint8 array (H, W, 3) from a CompressedImage's ``format`` and ``data``.

    ``format`` is e.g. 'jpeg', 'png' or image_transport's 'rgb8; jpeg compressed bgr8'; the
    file itself says which colour order it holds, so decoding gives RGB either way. The size
    is checked before the pixels are decoded.
    """
    from PIL import Image, UnidentifiedImageError
    kind = fmt.lower()
    if not any(k in kind for k in ('jpeg', 'jpg', 'png')):
        raise ConversionError(f'unsupported compressed image format {fmt!r}; expected jpeg or '
                              'png')
    try:
        with Image.open(io.BytesIO(bytes(data))) as img:
            w, h = img.size
            if h * w > max_pixels:
                raise ConversionError(f'image {w}x{h} exceeds the limit of {max_pixels} '
                                      'pixels; publish a downscaled stream')
            return np.asarray(img.convert('RGB'), dtype=np.uint8).copy()
    except (UnidentifiedImageError, OSError, SyntaxError) as err:
        raise ConversionError(f'compressed image data cannot be decoded as {fmt!r}: {err}') \
            from None


def rgb_to_compressed(rgb: np.ndarray, fmt: str = 'png') -> bytes:
    """Return ``rgb`` (H, W, 3) encoded as PNG or JPEG bytes (what a camera driver sends)."""
    from PIL import Image
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format='JPEG' if fmt in ('jpeg', 'jpg') else 'PNG')
    return buf.getvalue()


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
