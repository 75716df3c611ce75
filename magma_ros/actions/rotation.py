"""Rotation conventions: roll/pitch/yaw deltas (extrinsic xyz, R = Rz(yaw) @ Ry(pitch) @ Rx(roll))
<-> rotation vectors (axis * angle, angle in [0, pi]), computed by ``scipy.spatial.transform``.

scipy is imported on first use: ``scipy.spatial`` takes the better part of a second to import, a
cost every user of the action layer (``magma-ros --help``, ``decode``) would otherwise pay."""
from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import ArrayLike

if TYPE_CHECKING:
    from scipy.spatial.transform import Rotation

EXTRINSIC_XYZ = "xyz"  # scipy's lower-case axes are extrinsic (fixed frame) rotations


def _rotation() -> type[Rotation]:
    from scipy.spatial import transform

    return transform.Rotation


def load() -> None:
    """Import scipy now, so that a control loop's first conversion does not pay for it."""
    _rotation()


def _stacked(values: ArrayLike) -> tuple[np.ndarray, tuple[int, ...]]:
    """(..., 3) values as (N, 3) rows for scipy, and the leading shape to restore."""
    a = np.asarray(values, dtype=np.float64)
    return a.reshape(-1, 3), a.shape[:-1]


def euler_xyz_to_matrix(rpy: ArrayLike) -> np.ndarray:
    """(..., 3) extrinsic x-y-z angles -> (..., 3, 3) rotation matrices, R = Rz @ Ry @ Rx."""
    rows, lead = _stacked(rpy)
    return _rotation().from_euler(EXTRINSIC_XYZ, rows).as_matrix().reshape(*lead, 3, 3)


def euler_xyz_to_rotvec(rpy: ArrayLike) -> np.ndarray:
    """(..., 3) roll/pitch/yaw deltas -> (..., 3) rotation vectors."""
    rows, lead = _stacked(rpy)
    return _rotation().from_euler(EXTRINSIC_XYZ, rows).as_rotvec().reshape(*lead, 3)


def rotvec_to_matrix(rotvec: ArrayLike) -> np.ndarray:
    """(..., 3) rotation vectors -> (..., 3, 3) rotation matrices."""
    rows, lead = _stacked(rotvec)
    return _rotation().from_rotvec(rows).as_matrix().reshape(*lead, 3, 3)


def rotvec_to_euler_xyz(rotvec: ArrayLike) -> np.ndarray:
    """(..., 3) rotation vectors -> roll/pitch/yaw (extrinsic xyz, pitch in [-pi/2, pi/2]), the
    inverse of ``euler_xyz_to_rotvec``. At gimbal lock (pitch exactly +-pi/2) roll and yaw turn
    about one axis: scipy warns and puts the whole turn in roll."""
    rows, lead = _stacked(rotvec)
    return _rotation().from_rotvec(rows).as_euler(EXTRINSIC_XYZ).reshape(*lead, 3)
