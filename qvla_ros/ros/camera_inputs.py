# Copyright 2026 qvla_ros authors. Apache-2.0.
"""The camera inputs of a node: raw and compressed image topics into one synchronizer.

Each camera is subscribed on ``<base>`` (sensor_msgs/Image) and ``<base>/compressed``
(sensor_msgs/CompressedImage, JPEG or PNG, the topic name ``image_transport``'s compressed
plugin publishes), so a driver can send either. ``<base>`` is ``~/image`` for a node with one
unnamed camera and ``~/image/<name>`` otherwise. Callbacks only convert and store.
"""

import time
from typing import Callable, Dict, List, Optional, Sequence, Tuple

from sensor_msgs.msg import CompressedImage, Image

from qvla_ros.data.images import compressed_to_rgb, ConversionError, image_to_rgb
from qvla_ros.ros import qos
from qvla_ros.runtime.sync import CameraSync


def resolve_cameras(requested: Sequence[str], meta: dict) -> Tuple[List[str], bool]:
    """Return (camera names in the order the model takes them, one unnamed ``~/image``).

    A model with named cameras (qvla-ref) takes exactly those, by name; ``requested`` may
    only list the same names. A model without names (upstream OpenVLA / OFT, single-camera
    checkpoints) takes ``num_images`` images in the order of ``requested``.
    """
    requested = [c for c in requested if c]
    named = list(meta['cameras'])
    count = int(meta.get('num_images', 1))
    if named:
        if requested and sorted(requested) != sorted(named):
            raise ValueError(f'the model reads cameras {named}; the cameras parameter lists '
                             f'{requested}')
        return named, False
    if requested:
        if len(requested) != count:
            raise ValueError(f'the model takes {count} camera image(s); the cameras '
                             f'parameter lists {len(requested)}: {requested}')
        return requested, False
    if count != 1:
        raise ValueError(f'the model takes {count} camera images; list them in the cameras '
                         'parameter, in the order the model takes them (third-person first)')
    return ['image'], True


class CameraInputs:
    """Subscriptions of ``cameras`` feeding a :class:`CameraSync`."""

    def __init__(self, node, cameras: Sequence[str], unnamed: bool, max_skew_s: float,
                 max_pixels: Callable[[], int], on_reject: Callable[[str], None]):
        self.sync = CameraSync(cameras, max_skew_s)
        self._node, self._max_pixels, self._reject = node, max_pixels, on_reject
        self._subs = []
        self.topics: Dict[str, str] = {}
        for camera in cameras:
            base = '~/image' if unnamed else f'~/image/{camera}'
            self.topics[camera] = base
            self._subs.append(node.create_subscription(
                Image, base, lambda m, c=camera: self._on_raw(c, m), qos.sensor()))
            self._subs.append(node.create_subscription(
                CompressedImage, f'{base}/compressed',
                lambda m, c=camera: self._on_compressed(c, m), qos.sensor()))

    def _stamp(self, msg) -> int:
        stamp = msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec
        return stamp or self._node.get_clock().now().nanoseconds  # unstamped drivers exist

    def _on_raw(self, camera: str, msg: Image) -> None:
        try:
            rgb = image_to_rgb(msg.height, msg.width, msg.encoding, msg.step, msg.data,
                               self._max_pixels())
        except ConversionError as err:
            self._reject(f'image rejected ({camera}): {err}')
            return
        self.sync.add(camera, rgb, self._stamp(msg), time.monotonic())

    def _on_compressed(self, camera: str, msg: CompressedImage) -> None:
        try:
            rgb = compressed_to_rgb(msg.format, msg.data, self._max_pixels())
        except ConversionError as err:
            self._reject(f'image rejected ({camera}): {err}')
            return
        self.sync.add(camera, rgb, self._stamp(msg), time.monotonic())

    def close(self) -> None:
        """Destroy the subscriptions."""
        for sub in self._subs:
            self._node.destroy_subscription(sub)
        self._subs = []

    def describe(self) -> Optional[str]:
        """Return 'camera: topic' pairs for the log."""
        return ', '.join(f'{c}: {t}' for c, t in self.topics.items())
