"""A 7-DoF end-effector delta -> a twist in speed units for one control period."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike

from .errors import ActionContractError
from .rotation import euler_xyz_to_rotvec
from .tokenizer import ACTION_DIM


@dataclass(frozen=True)
class Twist:
    """Linear (m/s) and angular (rad/s) velocity in the robot base frame."""

    linear: np.ndarray
    angular: np.ndarray

    @classmethod
    def zero(cls) -> "Twist":
        """The explicit stop command."""
        return cls(np.zeros(3), np.zeros(3))

    def is_zero(self) -> bool:
        """True when every component is exactly zero."""
        return not (np.any(self.linear) or np.any(self.angular))


def delta_to_twist(action: ArrayLike, dt: float) -> Twist:
    """``linear = d / dt``, ``angular = rotvec(euler(droll, dpitch, dyaw)) / dt``."""
    a = np.asarray(action, dtype=np.float64).reshape(-1)
    if a.size != ACTION_DIM:
        raise ActionContractError(f"expected a {ACTION_DIM}-vector, got {a.size} values")
    if not dt > 0:
        raise ActionContractError(f"control period must be positive, got {dt!r}")
    return Twist(linear=a[:3] / dt, angular=euler_xyz_to_rotvec(a[3:6]) / dt)
