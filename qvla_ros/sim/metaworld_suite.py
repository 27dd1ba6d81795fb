# Copyright 2026 qvla_ros authors. Apache-2.0.
"""``metaworld``: Meta-World v3 MT10 behind the same interface as the tabletop suite.

Each task is a gymnasium ``Meta-World/MT1`` environment, created on first use. Observations
are two 128 px cameras, ``agentview`` (Meta-World's ``corner`` flipped upright: that camera
renders upside down) and ``wrist`` (``gripperPOV``, on the hand), and seven state values: hand
xyz, gripper opening, and the goal's xyz, which MT10's own state observation carries
(``obs[36:39]``). The goal is a dot a few pixels wide in the corner image, and where it hangs
in 3-D one corner view leaves ambiguous; the wrist view sees the object close up. A model
with ``proprio_dim`` 4 reads the first four values only (``models.inputs.proprio_tensor``).
Shadows are turned off before the first render. Actions are 7-D ee_delta vectors
(dx, dy, dz, -, -, -, gripper) in Meta-World's normalized units; the rotation slots are
ignored. Instructions are templated from task names.
The built-in scripted policies are the experts.

An episode is a function of its seed alone: the seed draws the task and one of the task's
``LAYOUT_SEED``-fixed MT1 goal/object layouts. (Meta-World's own wrapper draws the layout
from an RNG it reseeds only after drawing, from a layout list made with an unseeded RNG, so
the same seed gave different episodes in different processes.)
"""

from typing import Optional, Tuple

import numpy as np

from qvla_ros.sim.gl import prepare_gl

MT10 = ('reach-v3', 'push-v3', 'pick-place-v3', 'door-open-v3', 'drawer-open-v3',
        'drawer-close-v3', 'button-press-topdown-v3', 'peg-insert-side-v3', 'window-open-v3',
        'window-close-v3')
INSTRUCTIONS = {
    'reach-v3': 'reach the goal position', 'push-v3': 'push the puck to the goal',
    'pick-place-v3': 'pick up the puck and place it at the goal',
    'door-open-v3': 'open the door', 'drawer-open-v3': 'open the drawer',
    'drawer-close-v3': 'close the drawer', 'button-press-topdown-v3': 'press the button down',
    'peg-insert-side-v3': 'insert the peg into the hole',
    'window-open-v3': 'slide the window open', 'window-close-v3': 'slide the window closed'}
IMAGE_SIZE = 128
WRIST_CAMERA = 'gripperPOV'
LAYOUT_SEED = 0  # seeds MT1's list of goal/object layouts per task
GOAL_SLICE = slice(36, 39)  # the goal's xyz in Meta-World's 39-D state observation


def check_tasks(tasks) -> Tuple[str, ...]:
    """Return ``tasks`` as a tuple of MT10 names; raise ValueError on none or an unknown one."""
    tasks = tuple(tasks)
    if not tasks:
        raise ValueError(f'tasks must name at least one MT10 task; expected some of {MT10}')
    unknown = [t for t in tasks if t not in INSTRUCTIONS]
    if unknown:
        raise ValueError(f'unknown Meta-World tasks {unknown}; expected MT10 names {MT10}')
    return tasks


class MetaWorldEnv:
    """Meta-World MT10 with the suite interface (reset, step, observation, expert, close)."""

    suite = 'metaworld'
    action_dim, proprio_dim = 7, 7
    control_hz = 80.0  # frame_skip 5 x 2.5 ms
    cameras = ('agentview', 'wrist')

    def __init__(self, tasks=MT10, max_steps: int = 200, render: bool = True):
        prepare_gl()
        self.tasks, self.max_steps, self._render = check_tasks(tasks), max_steps, render
        self._envs = {}
        self.task: Optional[str] = None
        self._obs = None
        self._steps = 0

    def _env(self, task: str):
        if task not in self._envs:
            import gymnasium as gym
            import metaworld  # noqa: F401 - registers the Meta-World environments
            env = gym.make('Meta-World/MT1', env_name=task, seed=LAYOUT_SEED,
                           render_mode='rgb_array', width=IMAGE_SIZE, height=IMAGE_SIZE,
                           camera_name='corner', max_episode_steps=self.max_steps)
            env.get_wrapper_attr('toggle_sample_tasks_on_reset')(False)  # reset() picks
            env.unwrapped.model.vis.quality.shadowsize = 0
            self._envs[task] = env
        return self._envs[task]

    def reset(self, seed: int, task: Optional[str] = None) -> Tuple[dict, str]:
        """Reset ``task`` (or one drawn from ``seed``); return (observation, instruction)."""
        self.task = task or self.tasks[np.random.default_rng(seed).integers(len(self.tasks))]
        if self.task not in self.tasks:
            raise ValueError(f'task {self.task!r} is not one of {self.tasks}')
        env = self._env(self.task)
        layouts = env.get_wrapper_attr('tasks')
        env.unwrapped.set_task(layouts[np.random.default_rng((seed, 1)).integers(len(layouts))])
        self._obs, _ = env.reset(seed=seed)
        self._steps, self._success = 0, False
        return self.observation(), INSTRUCTIONS[self.task]

    def step(self, action: np.ndarray) -> Tuple[dict, bool, bool]:
        """Apply one action (7,); return (observation, success, done)."""
        action = np.asarray(action, dtype=np.float64).reshape(-1)
        if action.shape != (7,) or not np.all(np.isfinite(action)):
            raise ValueError(f'action must be 7 finite numbers (dx, dy, dz, droll, dpitch, '
                             f'dyaw, gripper), got {action}')
        mw = np.clip(np.array([action[0], action[1], action[2], action[6]]), -1.0, 1.0)
        self._obs, _, terminated, truncated, info = self._env(self.task).step(mw)
        self._steps += 1
        self._success = bool(info.get('success', 0.0) > 0)
        done = self._success or terminated or truncated or self._steps >= self.max_steps
        return self.observation(), self._success, done

    def observation(self) -> dict:
        """Return {'images': {camera: uint8 (128, 128, 3)} or None, 'proprio': float32 (7,)}."""
        images = None
        if self._render:
            env = self._env(self.task)
            self._make_current(env)
            images = {'agentview': env.render()[::-1].copy(), 'wrist': self._wrist_image(env)}
        state = np.concatenate([self._obs[:4], self._obs[GOAL_SLICE]])  # hand, grip, goal
        return {'images': images, 'proprio': state.astype(np.float32)}

    @staticmethod
    def _make_current(env) -> None:
        """Make the GL context of ``env``'s renderer current before it draws.

        Each task's environment renders in its own offscreen context, and gymnasium makes a
        context current only when it creates it: drawing one task after another task's
        environment was created used the other's GL objects and drew garbage.
        """
        viewer = env.unwrapped.mujoco_renderer.viewer  # the rgb_array one, the only mode used
        if viewer is not None:  # the first render creates it, current
            viewer.make_context_current()

    @staticmethod
    def _wrist_image(env) -> np.ndarray:
        """Render the wrist camera with the environment's own renderer (one GL context).

        A second renderer's GL context crashed torch's lazy imports later in the process.
        """
        import mujoco
        renderer = env.unwrapped.mujoco_renderer
        corner = renderer.camera_id
        renderer.camera_id = mujoco.mj_name2id(env.unwrapped.model, mujoco.mjtObj.mjOBJ_CAMERA,
                                               WRIST_CAMERA)
        try:
            return renderer.render('rgb_array').copy()
        finally:
            renderer.camera_id = corner

    def task_family(self) -> str:
        """Return the current task's Meta-World name, for success by task."""
        return self.task

    def expert(self):
        """Return the task's built-in scripted policy behind the expert interface."""
        return MetaWorldExpert(self)

    def close(self) -> None:
        """Close every environment (avoids EGL teardown errors at exit)."""
        for env in self._envs.values():
            env.close()
        self._envs = {}


class MetaWorldExpert:
    """Meta-World's scripted policy for the current task, producing 7-D actions."""

    def __init__(self, env: MetaWorldEnv):
        import warnings
        from metaworld.policies import ENV_POLICY_MAP
        self.env = env
        with warnings.catch_warnings():
            warnings.simplefilter('ignore')
            self.policy = ENV_POLICY_MAP[env.task]()

    def act(self) -> np.ndarray:
        """Return the next action (7,)."""
        import warnings
        with warnings.catch_warnings():
            warnings.simplefilter('ignore')
            a = np.clip(self.policy.get_action(self.env._obs), -1.0, 1.0)
        return np.array([a[0], a[1], a[2], 0.0, 0.0, 0.0, a[3]], np.float32)
