"""Rotation conventions: roll/pitch/yaw deltas (extrinsic xyz) <-> rotation vectors."""
from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike


def euler_xyz_to_matrix(rpy: ArrayLike) -> np.ndarray:
    """(..., 3) extrinsic x-y-z angles -> (..., 3, 3) rotation matrices, R = Rz @ Ry @ Rx."""
    a = np.asarray(rpy, dtype=np.float64)
    cr, sr = np.cos(a[..., 0]), np.sin(a[..., 0])
    cp, sp = np.cos(a[..., 1]), np.sin(a[..., 1])
    cy, sy = np.cos(a[..., 2]), np.sin(a[..., 2])
    return np.stack(
        [
            np.stack([cy * cp, cy * sp * sr - sy * cr, cy * sp * cr + sy * sr], axis=-1),
            np.stack([sy * cp, sy * sp * sr + cy * cr, sy * sp * cr - cy * sr], axis=-1),
            np.stack([-sp, cp * sr, cp * cr], axis=-1),
        ],
        axis=-2,
    )


def matrix_to_rotvec(matrix: ArrayLike) -> np.ndarray:
    """(..., 3, 3) rotation matrices -> (..., 3) rotation vectors (axis * angle, angle in [0, pi])."""
    m = np.asarray(matrix, dtype=np.float64)
    trace = np.trace(m, axis1=-2, axis2=-1)
    angle = np.arccos(np.clip((trace - 1.0) / 2.0, -1.0, 1.0))
    skew = np.stack([m[..., 2, 1] - m[..., 1, 2], m[..., 0, 2] - m[..., 2, 0], m[..., 1, 0] - m[..., 0, 1]], axis=-1)
    sin = np.sin(angle)
    small = sin < 1e-6
    scale = np.where(small, 0.5 + angle**2 / 12.0, angle / (2.0 * np.where(small, 1.0, sin)))
    rotvec = skew * scale[..., None]
    near_pi = small & (angle > np.pi / 2)
    if np.any(near_pi):
        rotvec = np.where(near_pi[..., None], _rotvec_near_pi(m, angle), rotvec)
    return rotvec


def _rotvec_near_pi(m: np.ndarray, angle: np.ndarray) -> np.ndarray:
    """Axis from the symmetric part when the angle is close to pi (skew part vanishes)."""
    diag = np.diagonal(m, axis1=-2, axis2=-1)
    axis_sq = np.clip((diag + 1.0) / 2.0, 0.0, None)
    axis = np.sqrt(axis_sq)
    k = np.argmax(axis_sq, axis=-1)
    ref = np.take_along_axis(m, k[..., None, None].repeat(3, axis=-1), axis=-2)[..., 0, :]
    sign = np.where(ref >= 0, 1.0, -1.0)
    axis = axis * sign
    return axis * angle[..., None]


def euler_xyz_to_rotvec(rpy: ArrayLike) -> np.ndarray:
    """(..., 3) roll/pitch/yaw deltas -> (..., 3) rotation vectors."""
    return matrix_to_rotvec(euler_xyz_to_matrix(rpy))
