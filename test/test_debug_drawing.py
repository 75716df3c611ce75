"""magma_ros.ros.debug_drawing (no ROS): the planar motion arrow points the way the twist goes, seen
from above (+x up, +y left), the z bar fills towards the sign of z, small frames are enlarged."""
from __future__ import annotations

import math

import numpy as np
import pytest

from magma_ros.ros.debug_drawing import ARROW_RGB, BAR_RGB, MIN_WIDTH, Overlay, draw_overlay


def overlay(linear=(0.0, 0.0, 0.0), angular=(0.0, 0.0, 0.0)) -> Overlay:
    return Overlay(instruction="pick up the cup", state="active", latency_s=0.123, gripper=1.0, linear=linear,
                   angular=angular, max_linear_speed=0.25, max_angular_speed=1.0)


def grey(height: int = 240, width: int = 320) -> np.ndarray:
    return np.full((height, width, 3), 90, np.uint8)


def arrow_direction(image: np.ndarray) -> tuple[float, float] | None:
    """The image direction (right, down) from the centre to the arrow pixels' centroid, unit length."""
    ys, xs = np.nonzero(np.all(image == ARROW_RGB, axis=2))
    if len(xs) == 0:
        return None
    dx, dy = xs.mean() - image.shape[1] / 2, ys.mean() - image.shape[0] / 2
    norm = math.hypot(dx, dy)
    return dx / norm, dy / norm


@pytest.mark.parametrize("vx, vy, expected", [
    (0.1, 0.0, (0.0, -1.0)),  # forward: up
    (-0.1, 0.0, (0.0, 1.0)),  # back: down
    (0.0, 0.1, (-1.0, 0.0)),  # left: left
    (0.05, -0.1, (2 / math.sqrt(5), -1 / math.sqrt(5))),  # forward and right
])
def test_arrow_points_along_the_planar_motion(vx, vy, expected):
    drawn = draw_overlay(grey(), overlay(linear=(vx, vy, 0.0)))
    direction = arrow_direction(drawn)
    assert direction is not None
    assert np.dot(direction, expected) > math.cos(math.radians(8)), (direction, expected)


def test_arrow_length_follows_the_speed_and_no_arrow_without_planar_motion():
    def extent(v: float) -> float:
        ys, xs = np.nonzero(np.all(draw_overlay(grey(), overlay(linear=(v, 0.0, 0.0))) == ARROW_RGB, axis=2))
        return 120 - ys.min()  # how far up from the centre row the arrow reaches

    assert extent(0.2) > 1.5 * extent(0.1)
    assert arrow_direction(draw_overlay(grey(), overlay(linear=(0.0, 0.0, 0.2)))) is None


def test_z_bar_fills_towards_the_sign_of_z():
    def bar_rows(z: float) -> np.ndarray:
        drawn = draw_overlay(grey(), overlay(linear=(0.0, 0.0, z)))
        ys, _ = np.nonzero(np.all(drawn[:, -14:] == BAR_RGB, axis=2))
        return ys

    assert bar_rows(0.1).mean() < 120 < bar_rows(-0.1).mean()


def test_small_frames_are_enlarged_and_the_input_is_untouched():
    frame = grey(48, 64)
    before = frame.copy()
    drawn = draw_overlay(frame, overlay(linear=(0.1, 0.0, 0.0), angular=(0.0, 0.0, 0.5)))
    assert drawn.dtype == np.uint8 and drawn.shape[1] >= MIN_WIDTH and drawn.shape[1] * 48 == drawn.shape[0] * 64
    assert np.array_equal(frame, before)
