"""Counters, rates and latency samples of one magma_node (no ROS: ``ros.diagnostics`` publishes them)."""
from __future__ import annotations

import threading
import time
from collections import deque
from typing import Callable, Iterator

from .frames import RULES as FRAME_RULES

COUNTERS = ("images_received", "images_rejected", *FRAME_RULES, "instructions_received", "instructions_rejected",
            "predictions", "policy_errors", "actions_rejected", "actions_executed", "commands_published",
            "ee_poses_rejected", "internal_errors")
class RateMeter:
    """Events per second over a sliding window; thread-safe. Marks from before a backward clock
    jump are forgotten (they would count as recent forever)."""

    def __init__(self, clock: Callable[[], float], window_s: float = 2.0) -> None:
        self._clock, self._window = clock, window_s
        self._lock = threading.Lock()
        self._times: deque[float] = deque(maxlen=2000)

    def mark(self) -> None:
        with self._lock:
            now = self._clock()
            if self._times and now < self._times[-1]:
                self._times.clear()
            self._times.append(now)

    def rate(self) -> float:
        with self._lock:
            now = self._clock()
            recent = [t for t in self._times if 0.0 <= now - t <= self._window]
        return 0.0 if len(recent) < 2 else (len(recent) - 1) / max(recent[-1] - recent[0], 1e-9)


class Samples:
    """The newest ``size`` values of one measurement (seconds); thread-safe."""

    def __init__(self, size: int) -> None:
        self._lock = threading.Lock()
        self._values: deque[float] = deque(maxlen=size)

    def append(self, value: float) -> None:
        with self._lock:
            self._values.append(value)

    def values(self) -> list[float]:
        """A copy, oldest first."""
        with self._lock:
            return list(self._values)

    def clear(self) -> None:
        with self._lock:
            self._values.clear()

    def __len__(self) -> int:
        with self._lock:
            return len(self._values)

    def __getitem__(self, index: int) -> float:
        with self._lock:
            return self._values[index]

    def __iter__(self) -> Iterator[float]:
        return iter(self.values())


class NodeStats:
    """Thread-safe counters, rates and latency samples (seconds) of one node."""

    def __init__(self, clock: Callable[[], float] = time.monotonic, samples: int = 2000) -> None:
        self._lock = threading.Lock()
        self._counters = {name: 0 for name in COUNTERS}
        self.image_rate = RateMeter(clock)
        self.action_rate = RateMeter(clock)
        self.publish_rate = RateMeter(clock)
        self.inference_s = Samples(samples)  # policy.predict durations
        self.overhead_s = Samples(samples)  # image arrival -> command publish, minus predict
        self.tick_times = Samples(samples)  # publish timer callback times

    def count(self, name: str, n: int = 1) -> None:
        with self._lock:
            self._counters[name] += n

    @property
    def counters(self) -> dict[str, int]:
        """A consistent copy of every counter."""
        with self._lock:
            return dict(self._counters)
