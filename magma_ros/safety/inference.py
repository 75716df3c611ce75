"""The inference thread: runs a callback on the newest frame, at most once per control period."""
from __future__ import annotations

import threading
import time
import traceback
from dataclasses import dataclass
from typing import Callable

import numpy as np


@dataclass(frozen=True)
class Frame:
    """A converted camera image, when it arrived (the node's clock, seconds) and the safety
    clock's epoch then (an action from a frame of an earlier epoch is stale: the clock jumped)."""

    image: np.ndarray
    arrived: float
    epoch: int = 0


class InferenceWorker:
    """Keeps only the newest frame; frames replaced before the thread took them are counted as
    dropped. An exception from ``run`` goes to ``on_error`` and the thread carries on. When the
    clock goes back, the pacing starts afresh (not a control period after a start in the future)."""

    def __init__(self, run: Callable[[Frame], None], min_period: Callable[[], float],
                 on_error: Callable[[BaseException], None], clock: Callable[[], float] = time.monotonic) -> None:
        self._run = run
        self._on_error = on_error
        self._min_period = min_period
        self._clock = clock
        self._cond = threading.Condition()
        self._frame: Frame | None = None
        self._stopping = False
        self._last_start = -float("inf")
        self.dropped = 0
        self._thread = threading.Thread(target=self._loop, name="magma_inference", daemon=True)

    def start(self) -> None:
        """Start the thread."""
        self._thread.start()

    def submit(self, frame: Frame) -> None:
        """Offer the newest frame (replacing, and counting, one not yet taken)."""
        with self._cond:
            if self._frame is not None:
                self.dropped += 1
            self._frame = frame
            self._cond.notify()

    def stop(self, timeout: float = 5.0) -> bool:
        """Ask the thread to finish after its current inference; True when it has."""
        with self._cond:
            self._stopping = True
            self._cond.notify()
        if self._thread.is_alive():
            self._thread.join(timeout)
        return not self._thread.is_alive()

    def _loop(self) -> None:
        while True:
            with self._cond:
                while True:
                    if self._stopping:
                        return
                    now = self._clock()
                    if now < self._last_start:  # the clock went back (a simulator reset): a new timeline
                        self._last_start = -float("inf")
                    wait = self._last_start + self._min_period() - now
                    if self._frame is not None and wait <= 0:
                        break
                    self._cond.wait(timeout=wait if self._frame is not None else None)
                frame, self._frame = self._frame, None
                self._last_start = self._clock()
            try:
                self._run(frame)
            except Exception as exc:  # noqa: BLE001 - reported (the robot stops), the thread keeps serving
                try:
                    self._on_error(exc)
                except Exception:  # noqa: BLE001 - a failing handler must not end the thread either
                    traceback.print_exc()
