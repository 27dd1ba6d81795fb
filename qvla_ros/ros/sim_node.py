# Copyright 2026 qvla_ros authors. Apache-2.0.
"""sim_node: a simulated robot (tabletop or Meta-World) behind the same topics as a real one.

It publishes every camera of the suite (``~/image/<name>``, rgb8, one capture stamp for all,
and the first camera also on ``~/image`` for single-camera consumers), proprioception
(``~/proprio``, JointState) and the task instruction (``~/instruction``, latched), and
applies the end-effector commands it receives: each ``~/delta_twist_cmds`` TwistStamped is
one control step (delta = velocity / ``control_hz``), with the latest ``~/gripper_cmd``.
``~/reset`` (Trigger) starts the next episode (seed ``seed_start`` + episode index);
``~/episode`` (String, JSON) reports the episode, step, success and done after every step.
While no commands arrive (between episodes, policy in dry run) the current frames are
re-published at ``control_hz`` so watchdogs stay fed.
"""

import json
import time

from geometry_msgs.msg import TwistStamped
import numpy as np
from rcl_interfaces.msg import ParameterDescriptor
from rclpy.node import Node
from sensor_msgs.msg import Image, JointState
from std_msgs.msg import Float64, String
from std_srvs.srv import Trigger

from qvla_ros.data.images import rgb_to_image_fields
from qvla_ros.ros import qos
from qvla_ros.ros.node_main import run_node
from qvla_ros.sim.suites import make_env

PROPRIO_NAMES = {'tabletop': ('x', 'y', 'z', 'gripper_closed'),
                 'metaworld': ('x', 'y', 'z', 'gripper', 'goal_x', 'goal_y', 'goal_z')}


class SimNode(Node):
    """Step a simulated suite on received commands; publish what a robot's sensors would."""

    def __init__(self, **kwargs):
        super().__init__('sim_node', **kwargs)
        ro = ParameterDescriptor(read_only=True)
        self.declare_parameter('suite', 'tabletop', ro)
        self.declare_parameter('seed_start', 200000, ro)
        self.declare_parameter('max_steps', 80, ro)
        self.declare_parameter('frame_id', 'camera', ro)
        self.env = make_env(self.get_parameter('suite').value)
        self.env.max_steps = self.get_parameter('max_steps').value
        self.dt = 1.0 / self.env.control_hz
        self.episode, self.seed, self.steps = -1, None, 0
        self.done, self.success = True, False
        self.gripper = -1.0
        self._obs, self._last_publish = None, 0.0
        self._cameras = {c: self.create_publisher(Image, f'~/image/{c}', qos.sensor())
                         for c in self.env.cameras}
        self._pubs = {'image': self.create_publisher(Image, '~/image', qos.sensor()),
                      'proprio': self.create_publisher(JointState, '~/proprio', qos.sensor()),
                      'instruction': self.create_publisher(String, '~/instruction',
                                                           qos.latched()),
                      'episode': self.create_publisher(String, '~/episode', qos.latched())}
        self.create_subscription(TwistStamped, '~/delta_twist_cmds', self._on_twist,
                                 qos.commands())
        self.create_subscription(Float64, '~/gripper_cmd', self._on_gripper, qos.commands())
        self.create_service(Trigger, '~/reset', self._on_reset)
        self.create_timer(self.dt, self._on_idle)

    def _on_reset(self, request, response):
        self.episode += 1
        self.seed = self.get_parameter('seed_start').value + self.episode
        self._obs, text = self.env.reset(self.seed)
        self.steps, self.done, self.success, self.gripper = 0, False, False, -1.0
        self._pubs['instruction'].publish(String(data=text))
        self._publish_obs()
        self._publish_episode()
        response.success = True
        response.message = json.dumps({'episode': self.episode, 'seed': self.seed,
                                       'instruction': text})
        return response

    def _on_gripper(self, msg: Float64):
        if np.isfinite(msg.data):
            self.gripper = float(msg.data)

    def _on_twist(self, msg: TwistStamped):
        if self.done:
            return
        lin, ang = msg.twist.linear, msg.twist.angular
        action = np.array([lin.x, lin.y, lin.z, ang.x, ang.y, ang.z], np.float64) * self.dt
        action = np.append(action, self.gripper)[:self.env.action_dim]
        if not np.all(np.isfinite(action)):
            self.get_logger().warn('ignored a non-finite command')
            return
        self._obs, self.success, self.done = self.env.step(action)
        self.steps += 1
        self._publish_obs()
        self._publish_episode()

    def _on_idle(self):
        if self._obs is not None and time.monotonic() - self._last_publish > self.dt:
            self._publish_obs()

    def _publish_obs(self):
        stamp = self.get_clock().now().to_msg()
        frames = {}
        for camera, rgb in self._obs['images'].items():
            image = Image()
            image.header.stamp = stamp
            image.header.frame_id = f'{self.get_parameter("frame_id").value}_{camera}'
            image.height, image.width, image.encoding, image.step, image.data = \
                rgb_to_image_fields(rgb)
            frames[camera] = image
        joints = JointState()
        joints.header.stamp = stamp
        proprio = self._obs['proprio'].astype(np.float64)
        joints.name = list(PROPRIO_NAMES.get(self.env.suite, [f'p{i}' for i in range(
            proprio.size)]))
        joints.position = proprio.tolist()
        self._pubs['proprio'].publish(joints)
        for camera, image in frames.items():
            self._cameras[camera].publish(image)
        self._pubs['image'].publish(frames[self.env.cameras[0]])
        self._last_publish = time.monotonic()

    def _publish_episode(self):
        self._pubs['episode'].publish(String(data=json.dumps({
            'episode': self.episode, 'seed': self.seed, 'step': self.steps,
            'success': bool(self.success), 'done': bool(self.done)})))

    def destroy_node(self):
        """Release the renderer, then the node."""
        self.env.close()
        return super().destroy_node()


def main(args=None):
    """Run the simulated robot until shutdown."""
    run_node(SimNode, args)
