"""Counters and rates the node reports, and their diagnostic_msgs form."""
from __future__ import annotations

import threading
import time
from collections import deque
from typing import Callable

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue

from ..safety.supervisor import SafetyState

COUNTERS = ("images_received", "images_rejected", "instructions_received", "instructions_rejected",
            "predictions", "policy_errors", "actions_rejected", "actions_executed", "commands_published",
            "ee_poses_rejected")
_LEVELS = {SafetyState.ACTIVE: DiagnosticStatus.OK, SafetyState.ESTOP: DiagnosticStatus.ERROR,
           SafetyState.FAULT: DiagnosticStatus.ERROR}


class RateMeter:
    """Events per second over a sliding window."""

    def __init__(self, clock: Callable[[], float], window_s: float = 2.0) -> None:
        self._clock, self._window = clock, window_s
        self._times: deque[float] = deque(maxlen=2000)

    def mark(self) -> None:
        self._times.append(self._clock())

    def rate(self) -> float:
        now = self._clock()
        recent = [t for t in self._times if now - t <= self._window]
        return 0.0 if len(recent) < 2 else (len(recent) - 1) / max(recent[-1] - recent[0], 1e-9)


class NodeStats:
    """Thread-safe counters, rates and latency samples (seconds) of one node."""

    def __init__(self, clock: Callable[[], float] = time.monotonic, samples: int = 2000) -> None:
        self._lock = threading.Lock()
        self.counters = {name: 0 for name in COUNTERS}
        self.image_rate = RateMeter(clock)
        self.action_rate = RateMeter(clock)
        self.publish_rate = RateMeter(clock)
        self.inference_s: deque[float] = deque(maxlen=samples)  # policy.predict durations
        self.overhead_s: deque[float] = deque(maxlen=samples)  # image arrival -> command publish, minus predict
        self.tick_times: deque[float] = deque(maxlen=samples)  # publish timer callback times

    def count(self, name: str, n: int = 1) -> None:
        with self._lock:
            self.counters[name] += n


def build_diagnostics(stamp, name: str, hardware_id: str, state: SafetyState, reason: str,
                      values: dict[str, object]) -> DiagnosticArray:
    """One DiagnosticStatus: level from the state (OK active, ERROR fault/e-stop, WARN otherwise)."""
    status = DiagnosticStatus(level=_LEVELS.get(state, DiagnosticStatus.WARN), name=name,
                              message=f"{state.value}: {reason}", hardware_id=hardware_id)
    status.values = [KeyValue(key="state", value=state.value)]
    status.values += [KeyValue(key=k, value=_text(v)) for k, v in values.items()]
    array = DiagnosticArray(status=[status])
    array.header.stamp = stamp
    return array


def _text(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.3f}"
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)
