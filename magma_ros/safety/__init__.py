"""The safety layer, pure and clock-injected: validation, clamping, acceleration and workspace
limits, and the watchdog state machine that decides what the robot is commanded each tick."""
from .conversion import ActionConverter
from .limits import SafetyConfigError, SafetyLimits, WatchdogTiming
from .rules import UnsafeActionError, check_action, clamp_twist, limit_acceleration, workspace_filter
from .supervisor import Command, SafetyState, SafetySupervisor

__all__ = [
    "ActionConverter", "Command", "SafetyConfigError", "SafetyLimits", "SafetyState", "SafetySupervisor",
    "UnsafeActionError", "WatchdogTiming", "check_action", "clamp_twist", "limit_acceleration",
    "workspace_filter",
]
