"""The scripted expert: a proportional controller on the true target position (privileged state)."""
from __future__ import annotations

import numpy as np

from .tasks import Task

EXPERT_GAIN = 0.6  # fraction of the remaining error corrected per control step
EXPERT_MAX_STEP = 0.03  # metres per control step, per axis
OPEN_GRIPPER = 1.0


def expert_action(task: Task, ee_position: np.ndarray, cube_position: np.ndarray) -> np.ndarray:
    """The 7-DoF delta (m per step; rotation zero; gripper open) that moves toward the task's target."""
    error = task.target(cube_position) - np.asarray(ee_position, dtype=np.float64)
    step = np.clip(EXPERT_GAIN * error, -EXPERT_MAX_STEP, EXPERT_MAX_STEP)
    return np.concatenate([step, np.zeros(3), [OPEN_GRIPPER]])
