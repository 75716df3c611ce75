"""The watchdog state machine: which command the robot gets at each tick, and why."""
from __future__ import annotations

import threading
from dataclasses import dataclass
from enum import Enum
from typing import Callable, Sequence

import numpy as np

from ..actions.twist import Twist
from .limits import SafetyLimits, WatchdogTiming
from .rules import clamp_twist, limit_acceleration, workspace_filter


class SafetyState(str, Enum):
    """Why the robot is (or is not) moving; in order of precedence."""

    ESTOP = "estop"  # latched until reset
    DISABLED = "disabled"  # ~/enable false
    FAULT = "fault"  # bad input or backend error; clears when good input of that kind returns
    NO_IMAGE = "no_image"  # none yet, or older than image_timeout_s
    NO_INSTRUCTION = "no_instruction"
    NO_EE_POSE = "no_ee_pose"  # workspace limits on, pose missing or stale
    ACTION_TIMEOUT = "action_timeout"  # no fresh action for action_timeout_s
    ACTIVE = "active"  # actions are executed (zero between them)


@dataclass(frozen=True)
class Command:
    """The outcome of one tick: the twist to publish now and the state behind it."""

    twist: Twist
    state: SafetyState
    reason: str
    changed: bool  # state or reason differs from the previous tick (log it once)


class SafetySupervisor:
    """Thread-safe; every decision uses the injected monotonic ``clock`` (seconds)."""

    def __init__(self, limits: SafetyLimits, timing: WatchdogTiming, clock: Callable[[], float],
                 enabled: bool = False) -> None:
        self._lock = threading.RLock()
        self._clock = clock
        self.limits = limits
        self.timing = timing
        self._enabled = enabled
        self._estop_latched = False
        self._estop_asserted = False
        self._faults: dict[str, str] = {}
        self.last_fault = ""
        self._last_image: float | None = None
        self._has_instruction = False
        self._ee_position: np.ndarray | None = None
        self._last_ee_pose: float | None = None
        self._last_action: float | None = None
        self._ready_since: float | None = None
        self._held: Twist | None = None
        self._held_until = 0.0
        self._output = Twist.zero()
        self._last_tick: float | None = None
        self._state: tuple[SafetyState, str] | None = None

    # --- configuration -------------------------------------------------------------------------
    def configure(self, limits: SafetyLimits, timing: WatchdogTiming) -> None:
        """Apply new (already validated) limits and timeouts."""
        with self._lock:
            self.limits, self.timing = limits, timing

    # --- operator inputs -----------------------------------------------------------------------
    @property
    def enabled(self) -> bool:
        return self._enabled

    @property
    def estop_latched(self) -> bool:
        return self._estop_latched

    def set_enabled(self, enabled: bool) -> None:
        """Enable or disable motion; only actions accepted while enabled ever move the robot."""
        with self._lock:
            self._enabled = bool(enabled)
            self._held = None

    def estop(self, asserted: bool) -> None:
        """An e-stop message: true latches a stop; false alone does not release it."""
        with self._lock:
            self._estop_asserted = bool(asserted)
            if asserted:
                self._estop_latched = True
                self._held = None

    def reset(self) -> tuple[bool, str]:
        """Clear a latched e-stop and all faults, unless the e-stop is still asserted."""
        with self._lock:
            if self._estop_asserted:
                return False, "e-stop is still asserted (last e-stop message was true): release it first"
            cleared = []
            if self._estop_latched:
                cleared.append("e-stop")
            if self._faults:
                cleared.append("faults: " + "; ".join(self._faults.values()))
            self._estop_latched = False
            self._faults.clear()
            return True, ("cleared " + ", ".join(cleared)) if cleared else "nothing to clear"

    # --- inputs --------------------------------------------------------------------------------
    def image_ok(self) -> None:
        """A valid image arrived now."""
        with self._lock:
            self._last_image = self._clock()
            self._faults.pop("image", None)

    def instruction_ok(self) -> None:
        """A valid instruction is in force."""
        with self._lock:
            self._has_instruction = True
            self._faults.pop("instruction", None)

    def ee_pose(self, position: Sequence[float]) -> None:
        """A valid end-effector position (m, robot base frame) arrived now."""
        with self._lock:
            self._ee_position = np.asarray(position, dtype=np.float64)
            self._last_ee_pose = self._clock()
            self._faults.pop("ee_pose", None)

    def reject(self, source: str, message: str) -> None:
        """Bad input from ``source`` (image, instruction, ee_pose, policy): stop until it is good again.
        A rejected instruction also drops the instruction in force."""
        with self._lock:
            self._faults[source] = message
            self.last_fault = f"{source}: {message}"
            self._held = None
            if source == "instruction":
                self._has_instruction = False

    def action_ok(self, twist: Twist) -> bool:
        """A fresh action's twist (already converted); returns whether it will be executed
        (held for one control period) or only counted as fresh because motion is not allowed now."""
        with self._lock:
            now = self._clock()
            self._last_action = now
            self._faults.pop("policy", None)
            state, _ = self._evaluate(now)
            if state is not SafetyState.ACTIVE or not (np.all(np.isfinite(twist.linear))
                                                        and np.all(np.isfinite(twist.angular))):
                self._held = None
                return False
            self._held = clamp_twist(twist, self.limits)
            self._held_until = now + self.timing.control_period_s
            return True

    # --- output --------------------------------------------------------------------------------
    def tick(self) -> Command:
        """The command to publish now: the held action's twist within its control period (after
        workspace and acceleration limits), otherwise an explicit zero twist."""
        with self._lock:
            now = self._clock()
            state, reason = self._evaluate(now)
            target = Twist.zero()
            if state is not SafetyState.ACTIVE:
                self._held = None
            elif self._held is not None and now < self._held_until:
                target = self._held
                if self.timing.use_ee_pose and self._ee_position is not None:
                    target = workspace_filter(target, self._ee_position, self.limits,
                                              self.timing.control_period_s)
            elif self._held is not None:
                self._held = None
            dt = self.timing.publish_period_s if self._last_tick is None else now - self._last_tick
            output = limit_acceleration(self._output, target, min(dt, self.timing.publish_period_s), self.limits)
            self._output, self._last_tick = output, now
            changed = self._state != (state, reason)
            self._state = (state, reason)
            return Command(twist=output, state=state, reason=reason, changed=changed)

    @property
    def state(self) -> SafetyState:
        """The state as of the last tick (``no_image`` before the first)."""
        with self._lock:
            return self._state[0] if self._state else SafetyState.NO_IMAGE

    @property
    def faults(self) -> dict[str, str]:
        """Active faults by source."""
        with self._lock:
            return dict(self._faults)

    def _evaluate(self, now: float) -> tuple[SafetyState, str]:
        t = self.timing
        if self._estop_latched:
            return SafetyState.ESTOP, "e-stop latched: call ~/reset after releasing it"
        if not self._enabled:
            self._ready_since = None
            return SafetyState.DISABLED, "disabled: call ~/enable"
        state, reason = self._input_state(now)
        if state is not None:
            self._ready_since = None
            return state, reason
        if self._ready_since is None:
            self._ready_since = now
        fresh_from = max(self._ready_since, self._last_action if self._last_action is not None else -np.inf)
        if now - fresh_from > t.action_timeout_s:
            return SafetyState.ACTION_TIMEOUT, f"no action from the policy for more than {t.action_timeout_s:g} s"
        return SafetyState.ACTIVE, "running"

    def _input_state(self, now: float) -> tuple[SafetyState | None, str]:
        t = self.timing
        if self._faults:
            return SafetyState.FAULT, "; ".join(f"{k}: {v}" for k, v in sorted(self._faults.items()))
        if self._last_image is None:
            return SafetyState.NO_IMAGE, "no image received yet"
        if now - self._last_image > t.image_timeout_s:
            return SafetyState.NO_IMAGE, f"no image for more than {t.image_timeout_s:g} s"
        if not self._has_instruction:
            return SafetyState.NO_INSTRUCTION, "no instruction"
        if t.use_ee_pose:
            if self._last_ee_pose is None:
                return SafetyState.NO_EE_POSE, "no end-effector pose received yet"
            if now - self._last_ee_pose > t.ee_pose_timeout_s:
                return SafetyState.NO_EE_POSE, f"no end-effector pose for more than {t.ee_pose_timeout_s:g} s"
        return None, ""
