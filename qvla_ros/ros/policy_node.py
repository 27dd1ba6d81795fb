# Copyright 2026 qvla_ros authors. Apache-2.0.
"""policy_node: a lifecycle node that turns camera frames and an instruction into commands.

configure loads the checkpoint (FP or packed), checks it against the parameters and
subscribes to its cameras (``~/image`` for one unnamed camera, else ``~/image/<name>``, each
also as ``.../compressed``; see :mod:`.camera_inputs`); an observation takes one frame per
camera within ``max_sync_skew``. The chunk schedule is the one the checkpoint records
(``schedule`` and ``execute_steps`` override it). activate starts the control timer and an
inference thread (a timer kicks it), so a slow forward pass never delays a control tick; a
plan whose observation predates a schedule clear (new instruction, watchdog, enable) is
dropped. Subscriptions only convert and store.
It starts in dry run: the ActionChunk and status are published, nothing actuates until
``~/enable``. Clamps, a stale-input watchdog and NaN/exception handling publish zero twist
and hold the gripper instead of acting on garbage. Every way actuation ends (``~/enable``
false, deactivate, cleanup, shutdown, a stop signal) publishes a zero twist first, under the
lock that every command takes, so no motion command can follow it. The node refuses to
activate, and stops actuating, while another node of its fully qualified name is on the
graph. With ``autostart`` (pip installs have no lifecycle manager) it configures and
activates itself.
"""

import threading
import time
from typing import Optional

from diagnostic_msgs.msg import DiagnosticArray
from geometry_msgs.msg import TwistStamped
import numpy as np
from qvla_ros_interfaces.msg import ActionChunk as ActionChunkMsg, PolicyStatus
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
from rclpy.duration import Duration
from rclpy.executors import MultiThreadedExecutor, SingleThreadedExecutor
from rclpy.lifecycle import LifecycleNode, TransitionCallbackReturn
from sensor_msgs.msg import JointState
from std_msgs.msg import Float64, String
from std_srvs.srv import SetBool

from qvla_ros.core.types import ActionChunk, Observation
from qvla_ros.data.images import ConversionError, validate_instruction
from qvla_ros.kernels.linear import warm_up
from qvla_ros.models.checkpoint import load_policy, plan_id_of
from qvla_ros.ros import qos
from qvla_ros.ros.camera_inputs import CameraInputs, resolve_cameras
from qvla_ros.ros.env import share_directory
from qvla_ros.ros.node_main import run_node
from qvla_ros.ros.policy_params import declare, read_config
from qvla_ros.ros.status import control_rate, diagnostics, policy_status
from qvla_ros.runtime.action_map import EndEffectorMap
from qvla_ros.runtime.chunking import ActionSchedule, checkpoint_schedule
from qvla_ros.runtime.worker import Worker


def load_for_node(model: str, seed: int, upstream: str = ''):
    """Return (policy, model id, plan id): 'toy' is random-init with ``seed``, else a folder.

    ``upstream``: options for an upstream OpenVLA / OFT folder (see UpstreamOptions).
    """
    from pathlib import Path
    if model == 'toy':
        return load_policy(f'toy:{seed}'), f'toy:{seed}', ''
    path = Path(model)
    if not path.is_absolute() and not path.exists():
        shared = share_directory() / path  # checkpoints installed with the package
        model = str(shared) if shared.exists() else model
    policy = load_policy(model, upstream)
    return policy, model, plan_id_of(policy)


class PolicyNode(LifecycleNode):
    """Run a VLA policy at ``control_hz`` and publish its actions, safely."""

    def __init__(self, **kwargs):
        super().__init__('policy_node', **kwargs)
        declare(self)
        self._data_lock = threading.Lock()
        self._policy = None
        self._model_id = self._plan_id = ''
        self._inputs: Optional[CameraInputs] = None
        self._instruction: Optional[str] = None
        self._proprio: Optional[np.ndarray] = None
        self._proprio_time = 0.0
        self._enabled = False
        self._out_lock = threading.Lock()  # every command publish, and every stop, takes it
        self._health = PolicyStatus.UNCONFIGURED
        self._last_error, self._clashing = '', False
        self._latencies, self._ticks = [], []
        self._loop_timers, self._pubs = [], {}
        self._worker: Optional[Worker] = None
        self._status_pub = self.create_publisher(PolicyStatus, '~/policy_status',
                                                 qos.commands())
        self._diag_pub = self.create_publisher(DiagnosticArray, '~/status', qos.commands())
        self.create_subscription(String, '~/instruction', self._on_instruction, qos.latched())
        self.create_subscription(JointState, '~/proprio', self._on_proprio, qos.sensor())
        self.create_service(SetBool, '~/enable', self._on_enable)
        self.create_timer(1.0, self._publish_status)

    # -- lifecycle ---------------------------------------------------------------------------
    def on_configure(self, state) -> TransitionCallbackReturn:
        """Load the checkpoint and validate it against the parameters."""
        try:
            self.config = read_config(self)
            policy, self._model_id, self._plan_id = load_for_node(
                self.config.model, self.config.seed, self.get_parameter('upstream').value)
            meta = policy.metadata()
            c = self.config
            schedule = checkpoint_schedule(policy, c.schedule_mode or None,
                                           c.execute_steps or None, c.aggregator, c.decay)
            self.config.check_model(meta, schedule)
            cameras, unnamed = resolve_cameras(self.config.cameras, meta)
            ee = EndEffectorMap.from_names(meta.get('dimension_names', ()))
            self.get_logger().info(f'packed kernels: {warm_up(policy)}')
        except Exception as err:  # noqa: B902 - configure reports every failure, never dies
            self._last_error = f'configure failed: {err}'
            self.get_logger().error(self._last_error)
            return TransitionCallbackReturn.FAILURE
        self._policy, self._ee = policy, ee
        self._schedule = ActionSchedule(schedule)
        self._inputs = CameraInputs(
            self, cameras, unnamed, self.config.max_sync_skew,
            lambda: self.get_parameter('max_image_pixels').value, self._reject)
        self.get_logger().info(f'cameras {self._inputs.describe()}; schedule {schedule}')
        self._pubs = {
            'twist': self.create_publisher(TwistStamped, '~/delta_twist_cmds', qos.commands()),
            'gripper': self.create_publisher(Float64, '~/gripper_cmd', qos.commands()),
            'chunk': self.create_publisher(ActionChunkMsg, '~/action_chunk', qos.commands())}
        self._health, self._last_error = PolicyStatus.INACTIVE, ''
        return TransitionCallbackReturn.SUCCESS

    def on_activate(self, state) -> TransitionCallbackReturn:
        """Start the control timer, and the inference timer that kicks the model's thread."""
        clash = self._name_clash()
        if clash:
            self._health, self._last_error = PolicyStatus.INACTIVE, clash
            self.get_logger().error(f'refusing to activate: {clash}')
            return TransitionCallbackReturn.FAILURE
        period = 1.0 / self.config.control_hz
        self._worker = Worker(self._on_infer, self._on_worker_error, 'policy-inference')
        self._loop_timers = [
            self.create_timer(period, self._worker.kick, MutuallyExclusiveCallbackGroup()),
            self.create_timer(period, self._on_control, MutuallyExclusiveCallbackGroup())]
        self._health = PolicyStatus.DRY_RUN
        return super().on_activate(state)

    def on_deactivate(self, state) -> TransitionCallbackReturn:
        """Command zero motion, stop the timers and go back to dry run."""
        self.stop_actuation('deactivated')
        self._stop_timers()
        self._health = PolicyStatus.INACTIVE
        return super().on_deactivate(state)

    def on_cleanup(self, state) -> TransitionCallbackReturn:
        """Free the model and the output publishers."""
        self.stop_actuation('cleaned up')
        self._stop_timers()
        for pub in self._pubs.values():
            self.destroy_publisher(pub)
        if self._inputs is not None:
            self._inputs.close()
        self._pubs, self._policy, self._inputs = {}, None, None
        self._health = PolicyStatus.UNCONFIGURED
        return TransitionCallbackReturn.SUCCESS

    def on_shutdown(self, state) -> TransitionCallbackReturn:
        """Command zero motion if outputs exist, then stop everything."""
        self.stop_actuation('shut down')
        self._stop_timers()
        return TransitionCallbackReturn.SUCCESS

    def destroy_node(self):
        """Stop inference, then destroy the node and its lifecycle state machine.

        rclpy's LifecycleNode leaves its state machine holding the node handle, so a node
        destroyed in a process that goes on stays on the graph, and a restarted namesake
        would refuse to activate.
        """
        self._stop_timers()
        super().destroy_node()
        self._state_machine.destroy_when_not_in_use()

    def stop_actuation(self, reason: str, wait: bool = True) -> None:
        """Publish a zero twist (gripper held) if actuating, then disable actuation.

        Called on every way actuation ends, and by ``run_node`` before the context shuts
        down. ``wait``: block up to 0.5 s for reliable subscribers to acknowledge the zero,
        for stops after which the publisher may be destroyed; a node that goes on running
        (``~/enable`` false) does not wait, as its loop would stall meanwhile.
        """
        with self._out_lock:
            if not (self._enabled and self._pubs):
                self._enabled = False
                return
            self._publish_locked(np.zeros(3), np.zeros(3), None)
            self._enabled = False
        if wait:
            self._pubs['twist'].wait_for_all_acked(Duration(seconds=0.5))
        self.get_logger().info(f'actuation stopped ({reason}): published a zero twist')

    def _name_clash(self) -> str:
        """Return an error if another node of this fully qualified name is on the graph."""
        me = (self.get_name(), self.get_namespace())
        count = sum(1 for n in self.get_node_names_and_namespaces() if n == me)
        if count < 2:
            return ''
        return (f'another node named {self.get_fully_qualified_name()} is on the graph; two '
                'policies would both answer ~/enable and interleave their commands')

    def _stop_timers(self):
        for timer in self._loop_timers:
            self.destroy_timer(timer)
        self._loop_timers = []
        worker, self._worker = self._worker, None
        if worker is not None and not worker.stop(timeout=10.0):
            self.get_logger().error('inference still running 10 s after the stop')

    def _on_worker_error(self, err: BaseException):
        self._fail(f'inference error: {err!r}')

    # -- inputs (convert and store only) -----------------------------------------------------
    def _reject(self, message: str):
        self._last_error = message

    def _on_proprio(self, msg: JointState):
        values = np.asarray(msg.position, dtype=np.float32)
        if values.size == 0 or not np.all(np.isfinite(values)):
            self._last_error = 'proprio rejected: expected finite JointState.position values'
            return
        with self._data_lock:
            self._proprio, self._proprio_time = values, time.monotonic()

    def _on_instruction(self, msg: String):
        try:
            text = validate_instruction(msg.data)
        except ConversionError as err:
            self._last_error = f'instruction rejected: {err}'
            return
        with self._data_lock:
            if text != self._instruction and self._policy is not None:
                self._schedule.clear()
            self._instruction = text

    def _on_enable(self, request, response):
        if self._health == PolicyStatus.UNCONFIGURED or not self._pubs:
            response.success, response.message = False, 'not configured'
            return response
        clash = self._name_clash() if request.data else ''
        if clash:
            response.success, response.message = False, clash
            return response
        if not request.data:
            self.stop_actuation('~/enable false', wait=False)
        with self._data_lock:
            self._schedule.clear()
        with self._out_lock:
            self._enabled = bool(request.data)
        response.success = True
        response.message = 'actuation enabled' if self._enabled else 'dry run'
        return response

    # -- inference and control ---------------------------------------------------------------
    def _stale(self) -> Optional[str]:
        if self._instruction is None:
            return 'waiting for an instruction on ~/instruction'
        timeout = self.get_parameter('image_timeout').value
        reason = self._inputs.sync.stale(time.monotonic(), timeout)
        if reason is not None:
            return reason
        if self.get_parameter('require_proprio').value:
            if self._proprio is None:
                return 'waiting for proprio on ~/proprio (require_proprio is true)'
            age = time.monotonic() - self._proprio_time
            if age > timeout:
                return f'proprio is {age:.2f} s old (image_timeout {timeout} s)'
        return None

    def _on_infer(self):
        """Plan once if the schedule needs it (on the inference thread; the bench calls it)."""
        now = time.time_ns()
        with self._data_lock:
            if self._stale() is not None or not self._schedule.needs_plan(now):
                return
            images, why = self._inputs.sync.assemble()
            if images is None:
                self._last_error = why
                return
            proprio = self._proprio if self._proprio is not None else np.zeros(0, np.float32)
            obs = Observation(images, self._instruction, proprio, now)
            epoch = self._schedule.epoch
        start = time.perf_counter()
        try:
            chunk = self._policy.predict(obs)
        except Exception as err:  # noqa: B902 - a model failure must not kill the node
            self._fail(f'model error: {err!r}')
            return
        self._latencies = (self._latencies + [time.perf_counter() - start])[-500:]
        with self._data_lock:  # step 0 applies from the observation's time
            kept = self._schedule.add(chunk, now, epoch)
        if kept:  # not planned for an instruction or a stream that changed meanwhile
            self._pubs['chunk'].publish(self._chunk_msg(chunk))

    def _on_control(self):
        self._ticks = (self._ticks + [time.monotonic()])[-100:]
        with self._data_lock:
            reason = self._stale()
            if reason is not None:
                self._schedule.clear()
            action = None if reason else self._schedule.action_at(time.time_ns())
        if reason is not None:
            self._health, self._last_error = PolicyStatus.WARN, reason
            self._publish_hold()
            return
        if action is None:
            return  # waiting for the first chunk
        safe = self.config.limits.apply(action)
        if safe is None:
            self._fail('non-finite action from the model')
            return
        self._health = PolicyStatus.ACTIVE if self._enabled else PolicyStatus.DRY_RUN
        self._publish(safe, dt=1.0 / self.config.control_hz)

    def _fail(self, message: str):
        self._health, self._last_error = PolicyStatus.ERROR, message
        with self._data_lock:
            self._schedule.clear()
        self._publish_hold()

    def _publish(self, action: np.ndarray, dt: float):
        """Command ``action``, a delta held ``dt`` s, mapped by its dimension names."""
        lin, ang = self._ee.velocities(action, dt)
        with self._out_lock:
            self._publish_locked(lin, ang, self._ee.gripper_value(action))

    def _publish_locked(self, lin: np.ndarray, ang: np.ndarray, gripper: Optional[float]):
        if not self._enabled or not self._pubs:
            return
        twist = TwistStamped()
        twist.header.stamp = self.get_clock().now().to_msg()
        twist.header.frame_id = self.get_parameter('frame_id').value
        twist.twist.linear.x, twist.twist.linear.y, twist.twist.linear.z = map(float, lin)
        twist.twist.angular.x, twist.twist.angular.y, twist.twist.angular.z = map(float, ang)
        # the gripper goes first, so a consumer that steps on each twist sees both halves
        if gripper is not None:
            self._pubs['gripper'].publish(Float64(data=gripper))
        self._pubs['twist'].publish(twist)

    def _publish_hold(self):
        """Zero twist; the gripper keeps its last command (nothing is sent)."""
        with self._out_lock:
            self._publish_locked(np.zeros(3), np.zeros(3), None)

    def _dropped(self) -> int:
        return self._inputs.sync.dropped if self._inputs is not None else 0

    def _chunk_msg(self, chunk: ActionChunk) -> ActionChunkMsg:
        msg = ActionChunkMsg()
        msg.header.stamp = self.get_clock().now().to_msg()
        msg.header.frame_id = self.get_parameter('frame_id').value
        msg.action_space, msg.dt = chunk.action_space, float(chunk.dt)
        msg.dimension_names = list(chunk.dimension_names)
        msg.shape = [int(s) for s in chunk.actions.shape]
        msg.data = chunk.actions.astype(np.float32).ravel().tolist()
        msg.model_id, msg.plan_id = self._model_id, self._plan_id
        return msg

    # -- status ------------------------------------------------------------------------------
    def _publish_status(self):
        # An enabled node stops; every running one reports ERROR, as ~/enable now refuses.
        clash = self._name_clash()
        if clash and self._enabled:
            self.stop_actuation('name clash')
        if clash and not self._clashing:
            self.get_logger().error(clash)
        self._clashing = bool(clash)
        self._last_error = clash or self._last_error
        # a running node with a namesake reports ERROR until it leaves: ~/enable refuses
        health = PolicyStatus.ERROR if clash and self._loop_timers else self._health
        status = policy_status(health, self._model_id, self._plan_id, self._latencies,
                               control_rate(self._ticks[-50:]), self._dropped(),
                               self._last_error)
        status.header.stamp = self.get_clock().now().to_msg()
        self._status_pub.publish(status)
        self._diag_pub.publish(diagnostics(status))


def _executor(node: PolicyNode):
    # With rclpy 9.1 on 2 cores the MultiThreadedExecutor (3 threads) starved the camera
    # subscription (frames 0.5-2.5 s old, control 1-5 Hz) where one thread held 10.0 Hz
    # (measured with the demo), so one thread is the default.
    threads = node.get_parameter('executor_threads').value
    return MultiThreadedExecutor(num_threads=threads) if threads > 1 else \
        SingleThreadedExecutor()


def _autostart(node: PolicyNode):
    if not node.get_parameter('autostart').value:
        return
    node.trigger_configure()
    if node._health != PolicyStatus.INACTIVE:
        return
    # Discovery of a namesake takes a moment; look before activating (outside any callback).
    deadline = time.monotonic() + node.get_parameter('discovery_wait').value
    while time.monotonic() < deadline and not node._name_clash():
        time.sleep(0.05)
    node.trigger_activate()
    if node._health == PolicyStatus.INACTIVE:  # refused: a namesake, perhaps one that died
        # and whose graph entry has not expired yet; try again each second until it is gone
        retry = []

        def again():
            if node._health == PolicyStatus.INACTIVE and not node._name_clash():
                node.trigger_activate()
            if node._health != PolicyStatus.INACTIVE:
                node.destroy_timer(retry[0])
        retry.append(node.create_timer(1.0, again))


def main(args=None):
    """Run the policy node until shutdown (configured and activated with autostart)."""
    run_node(PolicyNode, args, make_executor=_executor, before_spin=_autostart)
