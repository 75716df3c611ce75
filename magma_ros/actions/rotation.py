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


def rotvec_to_matrix(rotvec: np.ndarray) -> np.ndarray:
    """A rotation vector (axis * angle) -> 3 x 3 rotation matrix (Rodrigues)."""
    v = np.asarray(rotvec, dtype=np.float64)
    angle = float(np.linalg.norm(v))
    if angle < 1e-12:
        return np.eye(3)
    k = v / angle
    kx = np.array([[0.0, -k[2], k[1]], [k[2], 0.0, -k[0]], [-k[1], k[0], 0.0]])
    return np.eye(3) + np.sin(angle) * kx + (1.0 - np.cos(angle)) * (kx @ kx)


def matrix_to_euler_xyz(m: np.ndarray) -> np.ndarray:
    """R = Rz(yaw) @ Ry(pitch) @ Rx(roll) -> (roll, pitch, yaw), pitch in [-pi/2, pi/2]."""
    pitch = np.arcsin(np.clip(-m[2, 0], -1.0, 1.0))
    if abs(m[2, 0]) < 1.0 - 1e-9:
        roll = np.arctan2(m[2, 1], m[2, 2])
        yaw = np.arctan2(m[1, 0], m[0, 0])
    else:  # gimbal lock: roll and yaw share one axis; put it all in yaw
        roll = 0.0
        yaw = np.arctan2(-m[0, 1], m[1, 1])
    return np.array([roll, pitch, yaw], dtype=np.float64)


def rotvec_to_euler_xyz(rotvec: np.ndarray) -> np.ndarray:
    """A rotation vector -> roll/pitch/yaw (extrinsic xyz), the inverse of ``euler_xyz_to_rotvec``."""
    return matrix_to_euler_xyz(rotvec_to_matrix(rotvec))
