# Copyright 2026 qvla_ros authors. Apache-2.0.
"""policy_node: camera + instruction in, end-effector commands out, dry run until enabled.

Callbacks only convert and store; the control timer runs the runtime. Outputs:
``~/delta_twist_cmds`` (TwistStamped, delta / dt), ``~/gripper_cmd`` (Float64),
``~/action_chunk`` (qvla_ros_interfaces/ActionChunk) and ``~/status`` (DiagnosticArray plus
PolicyStatus on ``~/policy_status``).
"""

import time
from typing import Optional

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from geometry_msgs.msg import TwistStamped
import numpy as np
from qvla_ros_interfaces.msg import ActionChunk as ActionChunkMsg, PolicyStatus
from rcl_interfaces.msg import FloatingPointRange, ParameterDescriptor
import rclpy
from rclpy.node import Node
from sensor_msgs.msg import Image
from std_msgs.msg import Float64, String
from std_srvs.srv import SetBool

from qvla_ros.ros import qos
from qvla_ros.ros.conversions import ConversionError, image_to_rgb, validate_instruction
from qvla_ros.ros.env import apply_loopback_env
from qvla_ros.runtime.runner import ChunkRunner, ScheduleConfig
from qvla_ros.runtime.types import ActionChunk, Observation


def _load_policy(model: str, seed: int):
    """Return (policy, model id, plan id): 'toy' is random-init with ``seed``, else a folder."""
    from qvla_ros.models.checkpoint import load_policy, plan_id_of
    if model == 'toy':
        return load_policy(f'toy:{seed}'), f'toy:{seed}', ''
    return load_policy(model), model, plan_id_of(model)


class PolicyNode(Node):
    """Run a VLA policy at ``control_hz`` and publish its actions, safely."""

    def __init__(self, **kwargs):
        super().__init__('policy_node', **kwargs)
        self._declare()
        model = self.get_parameter('model').value
        self._policy, self._model_id, self._plan_id = _load_policy(
            model, self.get_parameter('seed').value)
        self._runner = ChunkRunner(
            self._policy, ScheduleConfig(self.get_parameter('execute_steps').value))
        self._image: Optional[np.ndarray] = None
        self._image_time = 0.0
        self._instruction: Optional[str] = None
        self._enabled = False
        self._last_error = ''
        self._latencies = []
        self._state = PolicyStatus.DRY_RUN
        self._twist_pub = self.create_publisher(TwistStamped, '~/delta_twist_cmds',
                                                qos.commands())
        self._grip_pub = self.create_publisher(Float64, '~/gripper_cmd', qos.commands())
        self._chunk_pub = self.create_publisher(ActionChunkMsg, '~/action_chunk',
                                                qos.commands())
        self._diag_pub = self.create_publisher(DiagnosticArray, '~/status', qos.commands())
        self._status_pub = self.create_publisher(PolicyStatus, '~/policy_status',
                                                 qos.commands())
        self.create_subscription(Image, '~/image', self._on_image, qos.sensor())
        self.create_subscription(String, '~/instruction', self._on_instruction, qos.latched())
        self.create_service(SetBool, '~/enable', self._on_enable)
        self.create_timer(1.0 / self.get_parameter('control_hz').value, self._on_tick)
        self.create_timer(1.0, self._publish_status)

    def _declare(self):
        self.declare_parameter('model', 'toy', ParameterDescriptor(
            description="'toy' (tiny random-init model) or a checkpoint folder, FP or quantized",
            read_only=True))
        self.declare_parameter('seed', 0, ParameterDescriptor(
            description='seed of the random-init toy model', read_only=True))
        self.declare_parameter('control_hz', 10.0, ParameterDescriptor(
            description='rate at which actions are published',
            floating_point_range=[FloatingPointRange(from_value=0.5, to_value=200.0)],
            read_only=True))
        self.declare_parameter('execute_steps', 4, ParameterDescriptor(
            description='actions executed from each chunk before replanning', read_only=True))
        self.declare_parameter('image_timeout', 0.5, ParameterDescriptor(
            description='seconds after which a silent camera stops actuation'))
        self.declare_parameter('frame_id', 'base_link', ParameterDescriptor(
            description='frame_id stamped on published commands'))

    def _on_image(self, msg: Image):
        try:
            self._image = image_to_rgb(msg.height, msg.width, msg.encoding, msg.step, msg.data)
            self._image_time = time.monotonic()
        except ConversionError as err:
            self._last_error = f'image rejected: {err}'

    def _on_instruction(self, msg: String):
        try:
            text = validate_instruction(msg.data)
        except ConversionError as err:
            self._last_error = f'instruction rejected: {err}'
            return
        if text != self._instruction:
            self._runner.reset()
        self._instruction = text

    def _on_enable(self, request, response):
        self._enabled = bool(request.data)
        self._runner.reset()
        response.success = True
        response.message = 'actuation enabled' if self._enabled else 'dry run'
        return response

    def _stale(self) -> Optional[str]:
        if self._instruction is None:
            return 'waiting for an instruction on ~/instruction'
        if self._image is None:
            return 'waiting for a frame on ~/image'
        age = time.monotonic() - self._image_time
        if age > self.get_parameter('image_timeout').value:
            return f'camera frame is {age:.2f} s old'
        return None

    def _on_tick(self):
        reason = self._stale()
        if reason is not None:
            self._state = PolicyStatus.WARN
            self._last_error = reason
            self._runner.reset()
            self._publish_action(np.zeros(7, np.float32), hold_gripper=True, dt=1.0)
            return
        try:
            if self._runner.needs_plan:
                obs = Observation({'camera': self._image}, self._instruction,
                                  stamp_ns=time.time_ns())
                chunk = self._runner.plan(obs)
                self._latencies = (self._latencies + [self._runner.last_latency_s])[-200:]
                self._chunk_pub.publish(self._chunk_msg(chunk))
            action = self._runner.next_action()
        except Exception as err:  # noqa: B902 - a model failure must not kill the node
            self._state = PolicyStatus.ERROR
            self._last_error = f'model error: {err!r}'
            self._runner.reset()
            self._publish_action(np.zeros(7, np.float32), hold_gripper=True, dt=1.0)
            return
        if not np.all(np.isfinite(action)):
            self._state = PolicyStatus.ERROR
            self._last_error = 'non-finite action from the model'
            self._runner.reset()
            self._publish_action(np.zeros(7, np.float32), hold_gripper=True, dt=1.0)
            return
        self._state = PolicyStatus.ACTIVE if self._enabled else PolicyStatus.DRY_RUN
        self._publish_action(action, hold_gripper=False, dt=self._runner.last_chunk.dt)

    def _publish_action(self, action: np.ndarray, hold_gripper: bool, dt: float):
        if not self._enabled:
            return
        twist = TwistStamped()
        twist.header.stamp = self.get_clock().now().to_msg()
        twist.header.frame_id = self.get_parameter('frame_id').value
        lin = action[:3] / dt
        ang = action[3:6] / dt if action.size >= 6 else np.zeros(3)
        twist.twist.linear.x, twist.twist.linear.y, twist.twist.linear.z = map(float, lin)
        twist.twist.angular.x, twist.twist.angular.y, twist.twist.angular.z = map(float, ang)
        self._twist_pub.publish(twist)
        if not hold_gripper and action.size >= 7:
            self._grip_pub.publish(Float64(data=float(action[6])))

    def _chunk_msg(self, chunk: ActionChunk) -> ActionChunkMsg:
        msg = ActionChunkMsg()
        msg.header.stamp = self.get_clock().now().to_msg()
        msg.header.frame_id = self.get_parameter('frame_id').value
        msg.action_space = chunk.action_space
        msg.dt = float(chunk.dt)
        msg.dimension_names = list(chunk.dimension_names)
        msg.shape = [int(s) for s in chunk.actions.shape]
        msg.data = chunk.actions.astype(np.float32).ravel().tolist()
        msg.model_id = self._model_id
        msg.plan_id = self._plan_id
        return msg

    def _publish_status(self):
        lat = np.array(self._latencies) * 1e3 if self._latencies else np.zeros(1)
        status = PolicyStatus()
        status.header.stamp = self.get_clock().now().to_msg()
        status.state = self._state
        status.state_name = {v: k for k, v in vars(PolicyStatus).items()
                             if k.isupper() and isinstance(v, int)}.get(self._state, '')
        status.model_id = self._model_id
        status.plan_id = self._plan_id
        status.latency_p50_ms = float(np.percentile(lat, 50))
        status.latency_p99_ms = float(np.percentile(lat, 99))
        status.control_rate_hz = float(self.get_parameter('control_hz').value)
        status.last_error = self._last_error
        self._status_pub.publish(status)
        level = {PolicyStatus.WARN: DiagnosticStatus.WARN,
                 PolicyStatus.ERROR: DiagnosticStatus.ERROR}.get(self._state,
                                                                 DiagnosticStatus.OK)
        diag = DiagnosticArray()
        diag.header.stamp = status.header.stamp
        diag.status = [DiagnosticStatus(
            level=level, name='qvla_ros/policy_node', message=status.state_name,
            hardware_id=self._model_id,
            values=[KeyValue(key='latency_p50_ms', value=f'{status.latency_p50_ms:.2f}'),
                    KeyValue(key='latency_p99_ms', value=f'{status.latency_p99_ms:.2f}'),
                    KeyValue(key='last_error', value=self._last_error)])]
        self._diag_pub.publish(diag)


def main(args=None):
    """Run the policy node until shutdown."""
    apply_loopback_env()
    rclpy.init(args=args)
    node = PolicyNode()
    try:
        rclpy.spin(node)
    except (KeyboardInterrupt, rclpy.executors.ExternalShutdownException):
        pass
    finally:
        node.destroy_node()
        rclpy.try_shutdown()
