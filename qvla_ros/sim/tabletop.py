# Copyright 2026 qvla_ros authors. Apache-2.0.
"""``tabletop``: an in-repo MuJoCo scene with three coloured blocks and a gripper.

No external assets. The gripper is a free body welded to a mocap target that end-effector deltas
move (x, y, z; the rotation deltas are accepted and ignored), so it pushes blocks through
contacts; a gripper command > 0 closes it. Closing next to
a block's top attaches it rigidly until the gripper opens. Control runs at 10 Hz with 50
physics substeps of 2 ms. The policy sees two 128 px cameras, without shadows or reflections:
``agentview`` (the MuJoCo camera ``top``, looking down, tilted 6 degrees) and ``wrist`` (on the
gripper, behind and above it, looking down and forward past the fingers: where a block is
relative to the fingers, and how high). A ``front`` camera exists for people: from the front
the blocks are 8 px and their depth is foreshortened (docs/history.md).

Tasks are language-conditioned, so one scene needs different actions per instruction:
``push the <color> block to the <left|right|front|back>`` (success: moved >= 8 cm that way)
and ``put the <color> block on the <color> block`` (success: resting on it, released).
Frame: x to the camera's right, y away from the camera, z up; metres.

Layouts: ``slots`` (the benchmark's) shuffles the three colours over three fixed slots and
jitters each by up to 1.5 cm, so a policy must see which colour is where and read the
instruction; ``uniform`` scatters the blocks anywhere in a 22 cm square (a harder, continuous
localization).
"""

from dataclasses import dataclass
from typing import Dict, List, Optional, Tuple

import numpy as np

from qvla_ros.sim.gl import prepare_gl

COLORS = {'red': (0.85, 0.15, 0.15), 'green': (0.15, 0.7, 0.2), 'blue': (0.15, 0.3, 0.85)}
DIRECTIONS = {'left': (-1.0, 0.0), 'right': (1.0, 0.0), 'front': (0.0, -1.0),
              'back': (0.0, 1.0)}
HALF = 0.02          # block half size
MAX_DELTA = 0.03     # metres per control step
CONTROL_HZ = 10.0
SUBSTEPS = 50
PUSH_SUCCESS = 0.08
IMAGE_SIZE = 128
ACTION_DIM, PROPRIO_DIM = 7, 4
CAMERAS = {'agentview': 'top', 'wrist': 'wrist'}  # policy camera -> MuJoCo camera
SLOTS = ((-0.09, -0.03), (0.0, 0.06), (0.09, -0.03))
SLOT_JITTER = 0.015
LAYOUTS = ('slots', 'uniform')


@dataclass(frozen=True)
class Task:
    """One instruction: push ``color`` towards ``target`` (a direction) or stack on ``target``."""

    kind: str      # 'push' | 'stack'
    color: str
    target: str    # a direction for push, a colour for stack

    def __post_init__(self):
        if self.kind not in ('push', 'stack') or self.color not in COLORS:
            raise ValueError(f'invalid task {self}')
        if self.kind == 'push' and self.target not in DIRECTIONS:
            raise ValueError(f'push target must be one of {sorted(DIRECTIONS)}, got '
                             f'{self.target!r}')
        if self.kind == 'stack' and (self.target not in COLORS or self.target == self.color):
            raise ValueError(f'stack target must be another colour, got {self.target!r}')

    @property
    def instruction(self) -> str:
        """The natural-language instruction of the task."""
        if self.kind == 'push':
            return f'push the {self.color} block to the {self.target}'
        return f'put the {self.color} block on the {self.target} block'


def sample_task(rng: np.random.Generator) -> Task:
    """Return a random task: pushes and stacks with equal probability."""
    color = str(rng.choice(sorted(COLORS)))
    if rng.random() < 0.5:
        return Task('push', color, str(rng.choice(sorted(DIRECTIONS))))
    return Task('stack', color, str(rng.choice([c for c in sorted(COLORS) if c != color])))


def scene_xml() -> str:
    """Return the MJCF of the scene."""
    blocks = '\n'.join(
        f'''    <body name="{c}" pos="0 0 {HALF}">
      <freejoint name="{c}_joint"/>
      <geom type="box" size="{HALF} {HALF} {HALF}" rgba="{r} {g} {b} 1" mass="0.05"
            friction="0.8 0.01 0.001"/>
    </body>''' for c, (r, g, b) in COLORS.items())
    return f'''<mujoco model="qvla_tabletop">
  <option timestep="0.002" gravity="0 0 -9.81"/>
  <visual><quality shadowsize="0"/><global offwidth="{IMAGE_SIZE}" offheight="{IMAGE_SIZE}"/>
  </visual>
  <asset><texture name="grid" type="2d" builtin="checker" width="64" height="64"
          rgb1="0.75 0.72 0.68" rgb2="0.7 0.67 0.63"/>
    <material name="table" texture="grid" texrepeat="4 4" reflectance="0"/></asset>
  <worldbody>
    <light pos="0 -0.3 1.2" dir="0 0.2 -1" castshadow="false"/>
    <geom name="table" type="plane" size="0.4 0.4 0.01" material="table"/>
    <camera name="front" pos="0 -0.42 0.42" xyaxes="1 0 0 0 0.72 0.69" fovy="55"/>
    <camera name="top" pos="0 -0.06 0.6" xyaxes="1 0 0 0 0.995 0.1" fovy="38"/>
    <body name="target" mocap="true" pos="0 0 0.15"/>
    <body name="hand" pos="0 0 0.15">
      <freejoint name="hand_joint"/>
      <camera name="wrist" pos="0 -0.09 0.07" xyaxes="1 0 0 0 0.64 0.77" fovy="70"/>
      <geom name="hand" type="box" size="0.012 0.012 0.03" rgba="0.25 0.25 0.25 1"
            mass="0.5" contype="1" conaffinity="1"/>
      <geom name="finger_l" type="box" size="0.004 0.012 0.012" pos="-0.016 0 -0.03"
            rgba="0.4 0.4 0.4 1" contype="0" conaffinity="0"/>
      <geom name="finger_r" type="box" size="0.004 0.012 0.012" pos="0.016 0 -0.03"
            rgba="0.4 0.4 0.4 1" contype="0" conaffinity="0"/>
    </body>
{blocks}
  </worldbody>
  <equality><weld body1="target" body2="hand" solref="0.01 1"/></equality>
</mujoco>'''


class TabletopEnv:
    """The tabletop suite behind the interface the sim node and the evaluator use."""

    suite = 'tabletop'
    action_dim, proprio_dim, control_hz = ACTION_DIM, PROPRIO_DIM, CONTROL_HZ
    cameras = tuple(CAMERAS)

    def __init__(self, max_steps: int = 80, render: bool = True, layout: str = 'slots'):
        if layout not in LAYOUTS:
            raise ValueError(f'layout must be one of {LAYOUTS}, got {layout!r}')
        self.layout = layout
        prepare_gl()
        import mujoco
        self._mj = mujoco
        self.model = mujoco.MjModel.from_xml_string(scene_xml())
        self.data = mujoco.MjData(self.model)
        self._renderer = mujoco.Renderer(self.model, IMAGE_SIZE, IMAGE_SIZE) if render else None
        self.max_steps = max_steps
        self.task: Optional[Task] = None
        self._qadr = {c: self.model.jnt_qposadr[self.model.joint(f'{c}_joint').id]
                      for c in COLORS}
        self._vadr = {c: self.model.jnt_dofadr[self.model.joint(f'{c}_joint').id]
                      for c in COLORS}
        self._hand_q = self.model.jnt_qposadr[self.model.joint('hand_joint').id]
        self._held: Optional[str] = None
        self._closed = False
        self._steps = 0
        self._start: Dict[str, np.ndarray] = {}

    # -- state -------------------------------------------------------------------------------
    def hand(self) -> np.ndarray:
        """Return the gripper position (3,)."""
        a = self._hand_q
        return self.data.qpos[a:a + 3].copy()

    def block(self, color: str) -> np.ndarray:
        """Return the centre of the block of ``color`` (3,)."""
        a = self._qadr[color]
        return self.data.qpos[a:a + 3].copy()

    def _set_block(self, color: str, pos: np.ndarray) -> None:
        a, v = self._qadr[color], self._vadr[color]
        self.data.qpos[a:a + 3] = pos
        self.data.qpos[a + 3:a + 7] = (1.0, 0.0, 0.0, 0.0)
        self.data.qvel[v:v + 6] = 0.0

    def reset(self, seed: int, task: Optional[Task] = None) -> Tuple[dict, str]:
        """Randomise the scene with ``seed``; return (observation, instruction)."""
        rng = np.random.default_rng(seed)
        self._mj.mj_resetData(self.model, self.data)
        self.task = task or sample_task(rng)
        for color, xy in zip(COLORS, self._layout(rng)):
            self._set_block(color, np.array([xy[0], xy[1], HALF]))
        start = (rng.uniform(-0.05, 0.05), rng.uniform(-0.05, 0.05), 0.15)
        self.data.mocap_pos[0] = start
        self.data.qpos[self._hand_q:self._hand_q + 7] = (*start, 1.0, 0.0, 0.0, 0.0)
        self._held, self._closed, self._steps = None, False, 0
        self._mj.mj_forward(self.model, self.data)
        self._start = {c: self.block(c) for c in COLORS}
        return self.observation(), self.task.instruction

    def _layout(self, rng: np.random.Generator):
        """Return one (2,) position per colour, in COLORS order."""
        if self.layout == 'slots':
            order = rng.permutation(len(SLOTS))
            return [np.array(SLOTS[i]) + rng.uniform(-SLOT_JITTER, SLOT_JITTER, 2)
                    for i in order]
        placed = []
        for _ in COLORS:
            while True:
                xy = rng.uniform(-0.11, 0.11, 2)
                if all(np.linalg.norm(xy - p) > 0.08 for p in placed):
                    break
            placed.append(xy)
        return placed

    # -- control -----------------------------------------------------------------------------
    def step(self, action: np.ndarray) -> Tuple[dict, bool, bool]:
        """Apply one 10 Hz action (7,); return (observation, success, done)."""
        action = np.asarray(action, dtype=np.float64).reshape(-1)
        if action.shape != (ACTION_DIM,) or not np.all(np.isfinite(action)):
            raise ValueError(f'action must be {ACTION_DIM} finite numbers (dx, dy, dz, droll, '
                             f'dpitch, dyaw, gripper), got {action}')
        delta = np.clip(action[:3], -MAX_DELTA, MAX_DELTA)
        start = self.data.mocap_pos[0].copy()
        goal = start + delta
        goal[2] = max(goal[2], 0.03)
        self._update_grip(action[6] > 0.0)
        for i in range(SUBSTEPS):
            self.data.mocap_pos[0] = start + (goal - start) * (i + 1) / SUBSTEPS
            if self._held:
                self._set_block(self._held, self.hand() - np.array([0, 0, 0.03 + HALF]))
            self._mj.mj_step(self.model, self.data)
        self._steps += 1
        success = self.success()
        return self.observation(), success, success or self._steps >= self.max_steps

    def _update_grip(self, close: bool) -> None:
        if close and not self._closed:
            tip = self.hand() - np.array([0, 0, 0.03])
            near = [c for c in COLORS if np.linalg.norm(self.block(c) + [0, 0, HALF] - tip)
                    < 0.025]
            self._held = near[0] if near else None
        if not close and self._held:
            self._held = None
        self._closed = close

    def task_family(self) -> str:
        """Return the current task's kind ('push' or 'stack'), for success by task."""
        return self.task.kind

    def success(self) -> bool:
        """Return True when the current task is done."""
        t = self.task
        if t.kind == 'push':
            moved = self.block(t.color)[:2] - self._start[t.color][:2]
            return float(moved @ np.array(DIRECTIONS[t.target])) >= PUSH_SUCCESS
        a, b = self.block(t.color), self.block(t.target)
        return (self._held is None and np.linalg.norm(a[:2] - b[:2]) < 0.02
                and abs(a[2] - b[2] - 2 * HALF) < 0.01)

    # -- observations ------------------------------------------------------------------------
    def proprio(self) -> np.ndarray:
        """Return (x, y, z, gripper closed) as float32 (4,)."""
        return np.concatenate([self.hand(), [1.0 if self._closed else 0.0]]).astype(np.float32)

    def observation(self) -> dict:
        """Return {'images': {camera: uint8 (128, 128, 3)} or None, 'proprio': float32 (4,)}."""
        images = None
        if self._renderer is not None:
            images = {}
            for name, mj_camera in CAMERAS.items():
                self._renderer.update_scene(self.data, camera=mj_camera)
                images[name] = self._renderer.render().copy()
        return {'images': images, 'proprio': self.proprio()}

    def expert(self) -> 'Expert':
        """Return the scripted expert for the current task."""
        return Expert(self)

    def close(self) -> None:
        """Release the renderer (avoids EGL teardown noise at exit)."""
        if self._renderer is not None:
            self._renderer.close()
            self._renderer = None


# -- the scripted expert: waypoints, tracked with clipped deltas ----------------------------
Waypoint = Tuple[np.ndarray, float]  # (hand target (3,), gripper command)


def plan(env: 'TabletopEnv') -> List[Waypoint]:
    """Return the waypoints that solve the env's current task from its current state."""
    t = env.task
    src = env.block(t.color)
    if t.kind == 'push':
        d = np.array([*DIRECTIONS[t.target], 0.0])
        behind = src - 0.055 * d
        low = HALF + 0.005 + 0.03  # hand geom bottom just above the table
        return [(np.array([behind[0], behind[1], 0.12]), -1.0),
                (np.array([behind[0], behind[1], low]), -1.0),
                (np.array([*(src + 0.14 * d)[:2], low]), -1.0),
                (np.array([*(src + 0.14 * d)[:2], 0.12]), -1.0)]
    dst = env.block(t.target)
    grasp_z = src[2] + HALF + 0.03
    place_z = dst[2] + 3 * HALF + 0.03 + 0.004
    return [(np.array([src[0], src[1], 0.12]), -1.0),
            (np.array([src[0], src[1], grasp_z]), -1.0),
            (np.array([src[0], src[1], grasp_z]), 1.0),
            (np.array([src[0], src[1], 0.13]), 1.0),
            (np.array([dst[0], dst[1], 0.13]), 1.0),
            (np.array([dst[0], dst[1], place_z]), 1.0),
            (np.array([dst[0], dst[1], place_z]), -1.0),
            (np.array([dst[0], dst[1], 0.12]), -1.0)]


class Expert:
    """Follow the plan: move towards the current waypoint, advance when within 4 mm."""

    def __init__(self, env: TabletopEnv):
        self.env = env
        self.waypoints = plan(env)
        self.index = 0
        self._grip = -1.0

    def act(self) -> np.ndarray:
        """Return the next action (7,): clipped xyz delta, zero rotation, gripper command."""
        hand = self.env.hand()
        while self.index < len(self.waypoints):
            target, grip = self.waypoints[self.index]
            if np.linalg.norm(target - hand) > 0.004 or grip != self._grip:
                break
            self.index += 1
        if self.index >= len(self.waypoints):
            target, grip = self.waypoints[-1]
        else:
            target, grip = self.waypoints[self.index]
        delta = np.clip(target - hand, -MAX_DELTA, MAX_DELTA)
        if grip != self._grip and np.linalg.norm(target - hand) <= 0.004:
            self._grip = grip
        action = np.zeros(7, np.float32)
        action[:3] = delta
        action[6] = self._grip
        return action
