"""Validated numbers the safety layer works with: speed/acceleration limits, workspace, timeouts."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from ..actions.profiles import RobotProfile
from ..finite import finite_float, is_finite_number

Vector3 = tuple[float, float, float]


class SafetyConfigError(ValueError):
    """A safety limit or timeout that is missing, non-finite or out of range."""


@dataclass(frozen=True)
class SafetyLimits:
    """Speed limits (per axis and norm), acceleration limits and the workspace box, in SI units."""

    max_linear_speed: float  # m/s, norm of the linear velocity
    max_angular_speed: float  # rad/s, norm of the angular velocity
    max_linear_axis_speed: float  # m/s, each of x, y, z
    max_angular_axis_speed: float  # rad/s, each of wx, wy, wz
    max_linear_accel: float  # m/s^2
    max_angular_accel: float  # rad/s^2
    workspace_min: Vector3
    workspace_max: Vector3

    def __post_init__(self) -> None:
        _require_positive(self, ("max_linear_speed", "max_angular_speed", "max_linear_axis_speed",
                                 "max_angular_axis_speed", "max_linear_accel", "max_angular_accel"))
        lo = _vector3(self.workspace_min, "workspace_min")
        hi = _vector3(self.workspace_max, "workspace_max")
        for i, axis in enumerate("xyz"):
            if lo[i] >= hi[i]:
                raise SafetyConfigError(f"workspace_min[{i}] ({axis} = {lo[i]}) must be below workspace_max[{i}] "
                                        f"({axis} = {hi[i]})")
        object.__setattr__(self, "workspace_min", lo)
        object.__setattr__(self, "workspace_max", hi)

    @classmethod
    def from_profile(cls, profile: RobotProfile, control_rate_hz: float, *, max_linear_speed: float,
                     max_angular_speed: float, max_linear_accel: float, max_angular_accel: float,
                     workspace_min: Sequence[float] = (), workspace_max: Sequence[float] = ()) -> "SafetyLimits":
        """Per-axis limits from the profile's per-step limits at ``control_rate_hz``; an empty
        workspace corner means the profile's."""
        if not is_finite_number(control_rate_hz) or control_rate_hz <= 0:
            raise SafetyConfigError(f"control_rate_hz: must be > 0, got {control_rate_hz!r}")
        return cls(
            max_linear_speed=max_linear_speed,
            max_angular_speed=max_angular_speed,
            max_linear_axis_speed=profile.limits.max_linear_step * control_rate_hz,
            max_angular_axis_speed=profile.limits.max_angular_step * control_rate_hz,
            max_linear_accel=max_linear_accel,
            max_angular_accel=max_angular_accel,
            workspace_min=tuple(workspace_min) if len(workspace_min) else profile.workspace.min,
            workspace_max=tuple(workspace_max) if len(workspace_max) else profile.workspace.max,
        )


# magma_node's default speed and acceleration limits (its parameters of these names); the simulator's
# in-process controllers clamp with them too
DEFAULT_MOTION_LIMITS: dict[str, float] = {"max_linear_speed": 0.25, "max_angular_speed": 1.0,
                                           "max_linear_accel": 2.5, "max_angular_accel": 10.0}


@dataclass(frozen=True)
class WatchdogTiming:
    """Periods and timeouts (seconds) of the watchdog and of command holding."""

    control_period_s: float  # each action is held this long, then zero
    publish_period_s: float  # nominal time between published commands (acceleration limit step)
    image_timeout_s: float
    action_timeout_s: float
    ee_pose_timeout_s: float
    use_ee_pose: bool = False  # when true, motion needs a fresh end-effector pose
    disabled_zero_s: float = 1.0  # disabled: zero twists this long after the stop, then silence

    def __post_init__(self) -> None:
        _require_positive(self, ("control_period_s", "publish_period_s", "image_timeout_s", "action_timeout_s",
                                 "ee_pose_timeout_s", "disabled_zero_s"))

    @property
    def max_clock_step_s(self) -> float:
        """The longest forward step of the clock between two readings that is not a jump: the
        shortest input timeout (a longer step would let every input go stale unseen), but at
        least two publish periods (the publish ticks alone read the clock that often)."""
        timeouts = [self.image_timeout_s, self.action_timeout_s]
        if self.use_ee_pose:
            timeouts.append(self.ee_pose_timeout_s)
        return max(min(timeouts), 2.0 * self.publish_period_s)


def _require_positive(config: object, names: tuple[str, ...]) -> None:
    """Each named field of ``config`` must be a finite number > 0."""
    for name in names:
        value = getattr(config, name)
        if not is_finite_number(value) or value <= 0:
            raise SafetyConfigError(f"{name}: must be a finite number > 0, got {value!r}")


def _vector3(value: Sequence[float], name: str) -> Vector3:
    values = tuple(value)
    if len(values) != 3:
        raise SafetyConfigError(f"{name}: expected [x, y, z] (3 values), got {len(values)}")
    x, y, z = (finite_float(v, f"{name}[{i}]", SafetyConfigError) for i, v in enumerate(values))
    return (x, y, z)
