# Copyright 2026 qvla_ros authors. Apache-2.0.
"""calibration_node: record rollouts into the dataset QVLA measures sensitivity on.

It subscribes to the cameras (``cameras``: one camera on ``~/image``, several on
``~/image/<name>``, each raw or as ``.../compressed``), the instruction, proprio and the
executed action.

Episodes start and end by service (``~/start_episode``, ``~/end_episode``, std_srvs/Trigger;
``~/set_success``, std_srvs/SetBool, flags the current episode), or automatically when the
instruction changes (``auto_split``). Samples are aligned at ``control_hz`` by
:mod:`qvla_ros.data.align`, the same code the bag importer uses, and each episode is written
atomically when it ends, so a kill loses at most the episode in progress. A disk-space guard
refuses to start below ``min_free_mb``. The node takes the dataset's writer lock when its first
episode starts and holds it until it exits, so another writer (a second node, ``qvla calibrate
from-bag``) is refused instead of losing episodes, and an episode cannot start while another
process writes there. Steps whose action or proprio is not finite are dropped and counted.
"""

from pathlib import Path
import shutil
from typing import Optional

from geometry_msgs.msg import PoseStamped, TwistStamped
import numpy as np
from rcl_interfaces.msg import ParameterDescriptor
from rclpy.node import Node
from sensor_msgs.msg import CompressedImage, Image, JointState
from std_msgs.msg import Float64, String
from std_srvs.srv import SetBool, Trigger

from qvla_ros.data.align import align, SplitRule, Stream, twist_to_action
from qvla_ros.data.images import (compressed_to_rgb, ConversionError, image_to_rgb,
                                  validate_instruction)
from qvla_ros.data.rollouts import DatasetInfo, RolloutWriter
from qvla_ros.ros import qos
from qvla_ros.ros.node_main import run_node

PROPRIO_TYPES = ('none', 'joint_state', 'pose')


def _stamp(msg) -> int:
    return msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec


class CalibrationNode(Node):
    """Record aligned rollouts into a dataset folder."""

    def __init__(self, **kwargs):
        super().__init__('calibration_node', **kwargs)
        ro = ParameterDescriptor(read_only=True)
        self.declare_parameter('out_dir', 'calibration_data', ro)
        self.declare_parameter('cameras', ['front'], ParameterDescriptor(
            read_only=True, description='camera names: one on ~/image, several on '
            '~/image/<name> (each also as .../compressed), in the order a model takes them'))
        self.declare_parameter('control_hz', 10.0, ro)
        self.declare_parameter('proprio_type', 'joint_state', ParameterDescriptor(
            read_only=True, description=f'one of {PROPRIO_TYPES}'))
        self.declare_parameter('proprio_dim', 7, ro)
        self.declare_parameter('auto_split', False, ro)
        self.declare_parameter('min_free_mb', 500, ro)
        self.declare_parameter('policy', 'expert', ro)
        self._hz = float(self.get_parameter('control_hz').value)
        ptype = self.get_parameter('proprio_type').value
        if ptype not in PROPRIO_TYPES:
            raise ValueError(f'proprio_type must be one of {PROPRIO_TYPES}, got {ptype!r}')
        self._out = Path(self.get_parameter('out_dir').value)
        self._cameras = list(self.get_parameter('cameras').value)
        if not self._cameras or len(set(self._cameras)) != len(self._cameras):
            raise ValueError(f'cameras must be distinct names, got {self._cameras}')
        self._pdim = int(self.get_parameter('proprio_dim').value) if ptype != 'none' else 0
        self._writer: Optional[RolloutWriter] = None
        self._recording = False
        self._episode_start_ns = 0
        self._success: Optional[bool] = None
        self._instruction = Stream('instruction')
        self._reset_streams()
        for camera in self._cameras:
            base = '~/image' if len(self._cameras) == 1 else f'~/image/{camera}'
            self.create_subscription(Image, base, lambda m, c=camera: self._on_image(c, m),
                                     qos.sensor())
            self.create_subscription(CompressedImage, f'{base}/compressed',
                                     lambda m, c=camera: self._on_image(c, m), qos.sensor())
        self.create_subscription(String, '~/instruction', self._on_instruction, qos.latched())
        self.create_subscription(TwistStamped, '~/action', self._on_action, qos.commands())
        self.create_subscription(Float64, '~/gripper', self._on_gripper, qos.commands())
        if ptype == 'joint_state':
            self.create_subscription(JointState, '~/proprio', self._on_joints, qos.commands())
        elif ptype == 'pose':
            self.create_subscription(PoseStamped, '~/proprio', self._on_pose, qos.commands())
        self.create_service(Trigger, '~/start_episode', self._on_start)
        self.create_service(Trigger, '~/end_episode', self._on_end)
        self.create_service(SetBool, '~/set_success', self._on_success)
        self.episodes_written = 0

    def _reset_streams(self):
        self._images = {c: Stream(f'image {c}') for c in self._cameras}
        self._actions = Stream('action')
        self._gripper, self._proprio = Stream('gripper'), Stream('proprio')

    # -- subscriptions (convert and store only) ----------------------------------------------
    def _on_image(self, camera: str, msg):
        if not self._recording:
            return
        try:
            if isinstance(msg, CompressedImage):
                rgb = compressed_to_rgb(msg.format, msg.data)
            else:
                rgb = image_to_rgb(msg.height, msg.width, msg.encoding, msg.step, msg.data)
            self._images[camera].add(_stamp(msg), rgb)
        except (ConversionError, ValueError) as err:  # undecodable, or stamps going back
            self.get_logger().warning(f'image rejected ({camera}): {err}',
                                      throttle_duration_sec=5.0)

    def _on_instruction(self, msg: String):
        try:
            text = validate_instruction(msg.data)
        except ConversionError as err:
            self.get_logger().warning(f'instruction rejected: {err}')
            return
        now = self.get_clock().now().nanoseconds
        previous = self._instruction.values[-1] if self._instruction.values else None
        if self.get_parameter('auto_split').value and text != previous:
            # A new instruction ends the episode in progress and starts the next one.
            message = self._end() if self._recording else ''
            problem = self._begin()
            for line in (message, problem):
                if line:
                    self.get_logger().info(line)
        self._instruction.add(max(now, self._instruction.stamps[-1]
                                  if self._instruction.stamps else 0), text)

    def _on_action(self, msg: TwistStamped):
        # Actions stamped before the episode started belong to the previous instruction,
        # whose episode is already closed; keeping them would mislabel this one.
        if self._recording and _stamp(msg) >= self._episode_start_ns:
            t = msg.twist
            self._actions.add(_stamp(msg), twist_to_action(
                (t.linear.x, t.linear.y, t.linear.z), (t.angular.x, t.angular.y, t.angular.z),
                1.0 / self._hz))

    def _on_gripper(self, msg: Float64):
        if self._recording:
            self._gripper.add(self.get_clock().now().nanoseconds, float(msg.data))

    def _on_joints(self, msg: JointState):
        if self._recording:
            self._proprio.add(_stamp(msg), np.asarray(msg.position, np.float32))

    def _on_pose(self, msg: PoseStamped):
        if self._recording:
            p, q = msg.pose.position, msg.pose.orientation
            self._proprio.add(_stamp(msg), np.array([p.x, p.y, p.z, q.x, q.y, q.z, q.w],
                                                    np.float32))

    # -- episodes ----------------------------------------------------------------------------
    def _begin(self) -> str:
        free_mb = shutil.disk_usage(self._out.parent if not self._out.exists()
                                    else self._out).free / 2**20
        if free_mb < self.get_parameter('min_free_mb').value:
            return (f'refusing to record: {free_mb:.0f} MB free, need '
                    f'{self.get_parameter("min_free_mb").value} MB')
        if self._writer is None:
            try:
                self._writer = RolloutWriter(self._out, DatasetInfo(7, self._pdim, self._hz,
                                                                    tuple(self._cameras)))
            except (ValueError, OSError) as err:
                return f'refusing to record: {err}'
        self._reset_streams()
        self._success = None
        self._recording = True
        self._episode_start_ns = self.get_clock().now().nanoseconds
        return ''

    def _finish(self) -> int:
        """Align and write what was recorded; return the number of episodes written."""
        self._recording = False
        if not self._actions.stamps:
            return 0
        rule = SplitRule(on_instruction_change=True, max_gap_s=None)
        episodes, dropped = align(self._actions, self._images, self._instruction, self._hz,
                                  rule, proprio=self._proprio if self._pdim else None,
                                  gripper=self._gripper if self._gripper.stamps else None,
                                  proprio_dim=self._pdim)
        if dropped:
            self.get_logger().warning(f'dropped {dropped} steps whose action or proprio was '
                                      'not finite')
        for ep in episodes:
            self._writer.add_episode({c: np.stack(ep.images[c]) for c in self._cameras},
                                     np.stack(ep.proprio),
                                     np.stack(ep.actions), np.array(ep.stamps, np.int64),
                                     ep.instruction, self._success, 'ros',
                                     self.get_parameter('policy').value)
        self.episodes_written += len(episodes)
        self._reset_streams()
        return len(episodes)

    def _on_start(self, request, response):
        if self._recording:
            response.success, response.message = False, 'an episode is already recording'
            return response
        problem = self._begin()
        response.success, response.message = not problem, problem or 'recording'
        return response

    def _end(self) -> str:
        """Finish the episode in progress; return what happened, never raise."""
        try:
            n = self._finish()
        except (ValueError, OSError) as err:
            return f'episode not written: {err}'
        return (f'wrote {n} episode(s) to {self._out}' if n else
                'nothing to write: no action had an image and an instruction')

    def _on_end(self, request, response):
        if not self._recording:
            response.success, response.message = False, 'no episode is recording'
            return response
        response.message = self._end()
        response.success = response.message.startswith('wrote')
        return response

    def _on_success(self, request, response):
        self._success = bool(request.data)
        response.success, response.message = True, f'success = {self._success}'
        return response


def main(args=None):
    """Run the calibration node until shutdown."""
    run_node(CalibrationNode, args)
