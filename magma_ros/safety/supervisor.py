"""The watchdog state machine: which command the robot gets at each tick, and why."""
from __future__ import annotations

import math
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
    NO_CLOCK = "no_clock"  # the clock reads 0: simulated time has not started (no /clock yet)
    FAULT = "fault"  # bad input, backend error, clock jump or internal error (see ``faults``)
    NO_IMAGE = "no_image"  # none yet, or older than image_timeout_s
    NO_INSTRUCTION = "no_instruction"
    NO_EE_POSE = "no_ee_pose"  # workspace limits on, pose missing or stale
    ACTION_TIMEOUT = "action_timeout"  # no fresh action for action_timeout_s
    ACTIVE = "active"  # actions are executed (zero between them)


CLOCK = "clock"  # fault source of a clock jump: clears once image, pose and action are fresh again


@dataclass(frozen=True)
class Command:
    """The outcome of one tick: the twist to publish now and the state behind it."""

    twist: Twist
    state: SafetyState
    reason: str
    changed: bool  # state or reason differs from the previous tick (log it once)
    publish: bool = True  # False once a disabled node has published its stop for disabled_zero_s


class SafetySupervisor:
    """Thread-safe; every decision uses the injected ``clock`` (seconds, monotonic or simulated).
    A reading that goes back, or forward by more than the shortest input timeout, is a clock
    fault: zero at once, the held action and every input timestamp are dropped, and motion needs
    an image, pose and action that arrive after the jump. A reading that is negative or not a
    number (the node passes -inf for a negative ROS time, which rclpy cannot represent) is an
    invalid clock: the same fault, which lasts while the clock is invalid (meanwhile time stands
    still at the last valid reading, and inputs that arrive then are not fresh afterwards)."""

    def __init__(self, limits: SafetyLimits, timing: WatchdogTiming, clock: Callable[[], float],
                 enabled: bool = False) -> None:
        self._lock = threading.RLock()
        self._clock = clock
        self.limits = limits
        self.timing = timing
        self._enabled = enabled
        self._disabled_since: float | None = None
        self._estop_latched = False
        self._estop_asserted = False
        self._faults: dict[str, str] = {}
        self.last_fault = ""
        self._last_reading: float | None = None
        self._epoch = 0  # bumped by a clock jump or the start of simulated time: inputs from an earlier epoch are stale
        self._jumps = 0  # clock jumps detected
        self._clock_invalid = False  # the last reading was negative or not a number
        self._last_image: float | None = None
        self._has_instruction = False
        self._ee_position: np.ndarray | None = None
        self._last_ee_pose: float | None = None
        self._last_action: float | None = None
        self._ready_since: float | None = None
        self._held: Twist | None = None
        self._held_since = 0.0
        self._held_until = 0.0
        self._output = Twist.zero()
        self._last_tick: float | None = None
        self._state: tuple[SafetyState, str] | None = None

    # --- configuration -------------------------------------------------------------------------
    def configure(self, limits: SafetyLimits, timing: WatchdogTiming) -> None:
        """Apply new (already validated) limits and timeouts; the next tick obeys them, the held
        action included (re-clamped, and its hold cut to the new control period)."""
        with self._lock:
            self.limits, self.timing = limits, timing

    # --- operator inputs -----------------------------------------------------------------------
    @property
    def enabled(self) -> bool:
        return self._enabled

    @property
    def estop_latched(self) -> bool:
        return self._estop_latched

    @property
    def clock_jumps(self) -> int:
        """Clock jumps detected so far."""
        return self._jumps

    def set_enabled(self, enabled: bool) -> None:
        """Enable or disable motion; only actions accepted while enabled ever move the robot. A
        disable (re)starts the interval of zero twists before the node goes quiet."""
        with self._lock:
            now = self._read_clock()
            self._enabled = bool(enabled)
            self._disabled_since = None if enabled else now
            self._held = None

    def estop(self, asserted: bool) -> None:
        """An e-stop message: true latches a stop; false alone does not release it."""
        with self._lock:
            self._estop_asserted = bool(asserted)
            if asserted:
                self._estop_latched = True
                self._held = None

    def reset(self) -> tuple[bool, str]:
        """Clear a latched e-stop and all faults, unless the e-stop is still asserted (an invalid
        clock's fault stays while the clock is invalid)."""
        with self._lock:
            if self._estop_asserted:
                return False, "e-stop is still asserted (last e-stop message was true): release it first"
            kept = {CLOCK: self._faults[CLOCK]} if self._clock_invalid and CLOCK in self._faults else {}
            cleared = []
            if self._estop_latched:
                cleared.append("e-stop")
            faults = [message for source, message in self._faults.items() if source not in kept]
            if faults:
                cleared.append("faults: " + "; ".join(faults))
            self._estop_latched = False
            self._faults = kept
            return True, ("cleared " + ", ".join(cleared)) if cleared else "nothing to clear"

    # --- inputs --------------------------------------------------------------------------------
    def image_ok(self) -> int:
        """A valid image arrived now; returns the clock epoch to pass to ``action_ok`` with the
        action computed from it."""
        with self._lock:
            self._last_image = self._read_clock()
            self._faults.pop("image", None)
            return self._epoch

    def instruction_ok(self) -> None:
        """A valid instruction is in force (a new one: the held action is dropped)."""
        with self._lock:
            self._has_instruction = True
            self._faults.pop("instruction", None)
            self._held = None

    def ee_pose(self, position: Sequence[float]) -> None:
        """A valid end-effector position (m, robot base frame) arrived now."""
        with self._lock:
            self._ee_position = np.asarray(position, dtype=np.float64)
            self._last_ee_pose = self._read_clock()
            self._faults.pop("ee_pose", None)

    def reject(self, source: str, message: str) -> None:
        """Bad input from ``source`` (image, instruction, ee_pose, policy; or internal, cleared only
        by ``reset``): stop until it is good again. A rejected instruction also drops the
        instruction in force."""
        with self._lock:
            self._faults[source] = message
            self.last_fault = f"{source}: {message}"
            self._held = None
            if source == "instruction":
                self._has_instruction = False

    def action_ok(self, twist: Twist, epoch: int | None = None) -> bool:
        """A fresh action's twist (already converted), computed from an image of clock ``epoch``
        (from ``image_ok``; None: current). Returns whether it will be executed (held for one
        control period); a non-finite twist is a policy fault, an action from before a clock jump
        is ignored, and one that arrives while motion is not allowed only counts as fresh."""
        with self._lock:
            now = self._read_clock()
            if not (np.all(np.isfinite(twist.linear)) and np.all(np.isfinite(twist.angular))):
                self._faults["policy"] = "non-finite twist"
                self.last_fault = "policy: non-finite twist"
                self._held = None
                return False
            if epoch is not None and epoch != self._epoch:
                return False
            self._last_action = now
            self._faults.pop("policy", None)
            state, _ = self._evaluate(now)
            if state is not SafetyState.ACTIVE:
                self._held = None
                return False
            self._held = twist
            self._held_since, self._held_until = now, now + self.timing.control_period_s
            return True

    # --- output --------------------------------------------------------------------------------
    def tick(self) -> Command:
        """The command to publish now: the held action's twist within its control period (after
        speed, workspace and acceleration limits in force now), otherwise an explicit zero twist."""
        with self._lock:
            now = self._read_clock()
            state, reason = self._evaluate(now)
            limits, timing = self.limits, self.timing
            target = Twist.zero()
            hold_end = min(self._held_until, self._held_since + timing.control_period_s)
            if state is not SafetyState.ACTIVE:
                self._held = None
            elif self._held is not None and now < hold_end:
                target = clamp_twist(self._held, limits)
                if timing.use_ee_pose and self._ee_position is not None:
                    target = workspace_filter(target, self._ee_position, limits, timing.control_period_s)
            elif self._held is not None:
                self._held = None
            dt = timing.publish_period_s if self._last_tick is None else now - self._last_tick
            ramped = limit_acceleration(self._output, target, min(dt, timing.publish_period_s), limits)
            output = clamp_twist(ramped, limits)  # a lowered limit is not ramped down to
            self._output, self._last_tick = output, now
            changed = self._state != (state, reason)
            self._state = (state, reason)
            publish = True
            if state is SafetyState.DISABLED:
                if self._disabled_since is None:
                    self._disabled_since = now
                publish = now - self._disabled_since < timing.disabled_zero_s
            return Command(twist=output, state=state, reason=reason, changed=changed, publish=publish)

    @property
    def state(self) -> SafetyState:
        """The state as of the last tick (``no_image`` before the first)."""
        with self._lock:
            return self._state[0] if self._state else SafetyState.NO_IMAGE

    @property
    def ee_position(self) -> np.ndarray | None:
        """The last valid end-effector position (m, base frame), or None before the first."""
        with self._lock:
            return None if self._ee_position is None else self._ee_position.copy()

    @property
    def faults(self) -> dict[str, str]:
        """Active faults by source."""
        with self._lock:
            return dict(self._faults)

    # --- the clock -----------------------------------------------------------------------------
    def _read_clock(self) -> float:
        """The clock now; a jump (back, or forward by more than the shortest input timeout) is a
        fault. A first non-zero reading after zeros is a clock starting (ROS time before /clock).
        An invalid reading (negative, NaN, infinite) is a fault once, and returns the last valid one."""
        now = float(self._clock())
        if not (math.isfinite(now) and now >= 0.0):
            if not self._clock_invalid:
                self._clock_invalid = True
                inputs = "an image, a pose and an action" if self.timing.use_ee_pose else "an image and an action"
                self._clock_fault(f"reads a negative or non-finite time ({now:g} s): "
                                  f"held action dropped; waiting for a valid clock, then {inputs}", now)
            return self._last_reading if self._last_reading is not None else 0.0
        if self._clock_invalid:  # valid again: what arrived meanwhile has no valid time
            self._clock_invalid = False
            self._clock_started()
        last = self._last_reading
        self._last_reading = now
        if last is None or (last == 0.0 and now >= 0.0):
            if last == 0.0 and now > 0.0:
                self._clock_started()
            return now
        step = now - last
        if step < 0 or step > self.timing.max_clock_step_s:
            self._clock_jump(now, step)
        return now

    def _clock_started(self) -> None:
        """Simulated time began: inputs and actions stamped before it (at time 0) are not fresh."""
        self._epoch += 1
        self._held = None
        self._last_image = self._last_ee_pose = self._last_action = None
        self._ready_since = self._last_tick = None

    def _clock_jump(self, now: float, step: float) -> None:
        direction = (f"back by {-step:.3f} s" if step < 0 else
                     f"forward by {step:.3f} s (or the node was stalled that long)")
        inputs = "an image, a pose and an action" if self.timing.use_ee_pose else "an image and an action"
        self._clock_fault(f"jumped {direction} (to {now:.3f} s): held action dropped; waiting for {inputs} after "
                          "the jump", now)

    def _clock_fault(self, message: str, now: float) -> None:
        """Zero at once; drop the held action and every input time (motion needs fresh ones)."""
        self._faults[CLOCK] = message
        self.last_fault = f"{CLOCK}: {message}"
        self._jumps += 1
        self._epoch += 1
        self._held = None
        self._last_image = self._last_ee_pose = self._last_action = None
        self._ready_since = self._last_tick = None
        self._output = Twist.zero()
        if self._disabled_since is not None and math.isfinite(now) and now >= 0.0:
            self._disabled_since = now

    def _clock_fault_over(self) -> bool:
        """Fresh inputs after the jump, and the zero it commands has gone out (one tick since)."""
        return (self._last_tick is not None and self._last_image is not None and self._last_action is not None
                and (self._last_ee_pose is not None or not self.timing.use_ee_pose))

    def _evaluate(self, now: float) -> tuple[SafetyState, str]:
        t = self.timing
        if CLOCK in self._faults and not self._clock_invalid and self._clock_fault_over():
            del self._faults[CLOCK]
        if self._estop_latched:
            return SafetyState.ESTOP, "e-stop latched: call ~/reset after releasing it"
        if not self._enabled:
            self._ready_since = None
            return SafetyState.DISABLED, "disabled: call ~/enable"
        if now == 0.0 and not self._clock_invalid:
            self._ready_since = None
            return SafetyState.NO_CLOCK, "the clock reads 0: waiting for simulated time (/clock)"
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
