"""The simulator camera's projection in numpy: base-frame points -> pixel coordinates.

Matches PyBullet's computeViewMatrix (look-at, z up) and computeProjectionMatrixFOV (square image),
so reports can draw commanded motion onto recorded frames without a physics server.
"""
from __future__ import annotations

import numpy as np

from .world import SimConfig


def project(points: np.ndarray, config: SimConfig) -> np.ndarray:
    """(N, 3) base-frame points -> (N, 2) pixel (column, row) in the config's image."""
    pts = np.atleast_2d(np.asarray(points, dtype=np.float64))
    eye, target = np.asarray(config.camera_eye), np.asarray(config.camera_target)
    forward = (target - eye) / np.linalg.norm(target - eye)
    side = np.cross(forward, [0.0, 0.0, 1.0])
    side /= np.linalg.norm(side)
    up = np.cross(side, forward)
    rel = pts - eye
    x_cam, y_cam, depth = rel @ side, rel @ up, rel @ forward
    focal = 1.0 / np.tan(np.radians(config.camera_fov_deg) / 2.0)
    size = config.image_size
    col = (x_cam * focal / depth + 1.0) * 0.5 * size
    row = (1.0 - y_cam * focal / depth) * 0.5 * size
    return np.stack([col, row], axis=1)
