"""The scripted expert: proportional control on the true cube position (privileged state)."""
from __future__ import annotations

import numpy as np

from .tasks import CUBE_HALF_SIZE, Task

EXPERT_GAIN = 0.6  # fraction of the remaining error corrected per control step
EXPERT_MAX_STEP = 0.03  # metres per control step, per axis
OPEN_GRIPPER, CLOSED_GRIPPER = 1.0, 0.0
HOVER = 0.06  # pick: line up this far above the cube before descending (m)
ALIGNED = 0.01  # pick: horizontal error below which the gripper descends (m)
GRASP_DEPTH = 0.02  # pick: descend toward this far below the cube centre (the workspace floor stops it)
AT_GRASP = 0.022  # pick: close when the grasp point is within this of the cube centre, horizontally
# and vertically (m)
FINGERS_CLOSED = 0.03  # pick: mean finger opening (m, 0.04 = open) below which the cube is held
CARRY_HEIGHT = 0.16  # pick: where a held cube is lifted to (m)


def check_perturbation(probability: float) -> float:
    """``probability`` of a random expert step (``ExpertController``, ``--expert-perturbation``)
    if it is in [0, 1); ValueError otherwise (NaN included)."""
    if not 0.0 <= probability < 1.0:
        raise ValueError(f"perturbation must be in [0, 1), got {probability:g}")
    return probability


def expert_action(task: Task, ee_position: np.ndarray, cube_position: np.ndarray,
                  finger_opening: float = 0.04) -> np.ndarray:
    """The 7-DoF delta (m per step; rotation zero; gripper 1 open, 0 closed) for the task."""
    ee = np.asarray(ee_position, dtype=np.float64)
    cube = np.asarray(cube_position, dtype=np.float64)
    if task.kind == "reach":
        return _step(task.target(cube) - ee, OPEN_GRIPPER)
    lifted = cube[2] > CUBE_HALF_SIZE + 0.015
    near = np.linalg.norm(ee[:2] - cube[:2]) < AT_GRASP and ee[2] - cube[2] < AT_GRASP
    if lifted or (near and finger_opening < FINGERS_CLOSED):
        return _step(np.array([0.0, 0.0, CARRY_HEIGHT - ee[2]]), CLOSED_GRIPPER)
    if near:
        return _step(np.zeros(3), CLOSED_GRIPPER)
    if np.linalg.norm(ee[:2] - cube[:2]) > ALIGNED:
        return _step(cube + np.array([0.0, 0.0, HOVER]) - ee, OPEN_GRIPPER)
    return _step(cube - np.array([0.0, 0.0, GRASP_DEPTH]) - ee, OPEN_GRIPPER)


def _step(error: np.ndarray, gripper: float) -> np.ndarray:
    step = np.clip(EXPERT_GAIN * error, -EXPERT_MAX_STEP, EXPERT_MAX_STEP)
    return np.concatenate([step, np.zeros(3), [gripper]])
