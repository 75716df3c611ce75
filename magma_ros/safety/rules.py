"""The individual safety rules as pure functions on twists (m/s, rad/s, robot base frame)."""
from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

from ..actions.tokenizer import ACTION_DIM, AXIS_NAMES
from ..actions.twist import Twist
from .limits import SafetyLimits


class UnsafeActionError(ValueError):
    """An action that must never reach the robot (wrong size, NaN or infinite values)."""


def check_action(action: ArrayLike) -> np.ndarray:
    """The action as a float 7-vector; raises ``UnsafeActionError`` naming the bad axes."""
    arr = np.asarray(action, dtype=np.float64)
    if arr.shape != (ACTION_DIM,):
        raise UnsafeActionError(f"expected a {ACTION_DIM}-vector action, got shape {arr.shape}")
    bad = [f"{AXIS_NAMES[i]}={arr[i]}" for i in np.flatnonzero(~np.isfinite(arr))]
    if bad:
        raise UnsafeActionError(f"non-finite action values: {', '.join(bad)}")
    return arr


def _clamp_vector(v: np.ndarray, axis_limit: float, norm_limit: float) -> np.ndarray:
    v = np.clip(v, -axis_limit, axis_limit)
    norm = float(np.linalg.norm(v))
    return v * (norm_limit / norm) if norm > norm_limit else v


def clamp_twist(twist: Twist, limits: SafetyLimits) -> Twist:
    """Clamp each axis to its limit, then scale the linear and angular parts to their norm limits."""
    return Twist(
        linear=_clamp_vector(np.asarray(twist.linear, dtype=np.float64), limits.max_linear_axis_speed,
                             limits.max_linear_speed),
        angular=_clamp_vector(np.asarray(twist.angular, dtype=np.float64), limits.max_angular_axis_speed,
                              limits.max_angular_speed),
    )


def _step_toward(previous: np.ndarray, target: np.ndarray, max_change: float) -> np.ndarray:
    delta = target - previous
    size = float(np.linalg.norm(delta))
    return target if size <= max_change else previous + delta * (max_change / size)


def limit_acceleration(previous: Twist, target: Twist, dt: float, limits: SafetyLimits) -> Twist:
    """Move from ``previous`` toward ``target`` by at most accel * ``dt`` (linear and angular).

    A zero target is a stop and is returned as is: stopping is never delayed.
    """
    if target.is_zero():
        return target
    dt = max(float(dt), 0.0)
    return Twist(
        linear=_step_toward(previous.linear, target.linear, limits.max_linear_accel * dt),
        angular=_step_toward(previous.angular, target.angular, limits.max_angular_accel * dt),
    )


def workspace_filter(twist: Twist, position: ArrayLike, limits: SafetyLimits, horizon_s: float) -> Twist:
    """Remove linear motion that would take the end effector at ``position`` out of the workspace
    box within ``horizon_s``; motion back toward the box is always allowed."""
    p = np.asarray(position, dtype=np.float64)
    lo = np.asarray(limits.workspace_min)
    hi = np.asarray(limits.workspace_max)
    upper = np.maximum((hi - p) / horizon_s, 0.0)
    lower = np.minimum((lo - p) / horizon_s, 0.0)
    return Twist(linear=np.clip(twist.linear, lower, upper), angular=twist.angular)
