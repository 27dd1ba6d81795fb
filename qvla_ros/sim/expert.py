# Copyright 2026 qvla_ros authors. Apache-2.0.
"""Scripted expert for the tabletop suite: waypoints, tracked with clipped deltas."""

from typing import List, Tuple

import numpy as np

from qvla_ros.sim.tabletop import DIRECTIONS, HALF, MAX_DELTA, TabletopEnv

Waypoint = Tuple[np.ndarray, float]  # (hand target (3,), gripper command)


def plan(env: TabletopEnv) -> List[Waypoint]:
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
