# Copyright 2026 qvla_ros authors. Apache-2.0.
"""synthetic_camera: publishes a moving test pattern as sensor_msgs/Image, plus an instruction.

Stands in for a real camera in the demo and in tests.
"""

import numpy as np
from rcl_interfaces.msg import ParameterDescriptor
from rclpy.node import Node
from sensor_msgs.msg import Image
from std_msgs.msg import String

from qvla_ros.data.images import rgb_to_image_fields
from qvla_ros.ros import qos
from qvla_ros.ros.node_main import run_node


def test_pattern(height: int, width: int, t: int) -> np.ndarray:
    """Return a deterministic RGB uint8 (H, W, 3) frame that changes with ``t``."""
    ys, xs = np.mgrid[0:height, 0:width]
    r = (xs * 255 // max(width - 1, 1) + 3 * t) % 256
    g = (ys * 255 // max(height - 1, 1)) % 256
    b = np.full_like(xs, (7 * t) % 256)
    return np.stack([r, g, b], axis=-1).astype(np.uint8)


class SyntheticCamera(Node):
    """Publish ``~/image`` at ``rate_hz`` and latch ``~/instruction`` once."""

    def __init__(self, **kwargs):
        super().__init__('synthetic_camera', **kwargs)
        self.declare_parameter('rate_hz', 30.0, ParameterDescriptor(read_only=True))
        self.declare_parameter('height', 96, ParameterDescriptor(read_only=True))
        self.declare_parameter('width', 128, ParameterDescriptor(read_only=True))
        self.declare_parameter('frame_id', 'camera', ParameterDescriptor(read_only=True))
        self.declare_parameter('instruction', 'push the red block to the left',
                               ParameterDescriptor(read_only=True))
        self._t = 0
        self._image_pub = self.create_publisher(Image, '~/image', qos.sensor())
        self._text_pub = self.create_publisher(String, '~/instruction', qos.latched())
        text = self.get_parameter('instruction').value
        if text:
            self._text_pub.publish(String(data=text))
        self.create_timer(1.0 / self.get_parameter('rate_hz').value, self._on_timer)

    def _on_timer(self):
        h = self.get_parameter('height').value
        w = self.get_parameter('width').value
        msg = Image()
        msg.header.stamp = self.get_clock().now().to_msg()
        msg.header.frame_id = self.get_parameter('frame_id').value
        msg.height, msg.width, msg.encoding, msg.step, msg.data = rgb_to_image_fields(
            test_pattern(h, w, self._t))
        self._image_pub.publish(msg)
        self._t += 1


def main(args=None):
    """Run the synthetic camera until shutdown."""
    run_node(SyntheticCamera, args)
