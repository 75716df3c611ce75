"""The publish loop's own thread: a callback at a fixed rate against absolute monotonic deadlines.

An rclpy timer in a multi-threaded executor fires only after the executor thread has woken up,
rebuilt its wait set in Python and handed the callback to a pool thread, queued behind image takes
and callbacks; bench/node_latency.py measured a median jitter of ~0.3 ms and longer stalls that way.
This thread sleeps straight to the next deadline instead (median ~0.05 ms). What remains of the
tail is the GIL held by the image path (taking a 900 kB Image holds it ~0.5-2 ms).
"""
from __future__ import annotations

import math
import threading
import time
from typing import Callable

MAX_SLEEP_S = 0.05  # longest single sleep, so that stop() never waits a whole long period


class PeriodicThread:
    """Calls ``tick`` every ``period_s`` seconds on the deadlines start + k * period_s of the
    monotonic clock (no drift; ticks missed by a stall are skipped, never made up in a burst).
    An exception from ``tick`` goes to ``on_error``, which returns False to end the loop."""

    def __init__(self, period_s: float, tick: Callable[[], None], on_error: Callable[[BaseException], bool],
                 name: str = "magma_publish") -> None:
        if not (math.isfinite(period_s) and period_s > 0):
            raise ValueError(f"period must be a positive number of seconds, got {period_s!r}")
        self.period_s = period_s
        self._tick = tick
        self._on_error = on_error
        self._stopping = False
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)

    def start(self) -> None:
        """Start the thread; the first tick is one period from now."""
        self._thread.start()

    def stop(self, timeout: float = 2.0) -> bool:
        """Ask the thread to finish (after a tick in progress); True when it has."""
        self._stopping = True
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout)
        return not self._thread.is_alive()

    def _loop(self) -> None:
        period = self.period_s
        deadline = time.monotonic() + period
        while not self._stopping:
            remaining = deadline - time.monotonic()
            if remaining > 0:
                # relative sleeps (clock_nanosleep on the monotonic clock since Python 3.11):
                # immune to wall-clock steps
                time.sleep(min(remaining, MAX_SLEEP_S))
                continue
            try:
                self._tick()
            except Exception as exc:  # noqa: BLE001 - reported; the loop decides whether to go on
                if not self._on_error(exc):
                    return
            deadline += period
            late = time.monotonic() - deadline
            if late >= 0:  # stalled past the next deadline: skip to the next one ahead, on the grid
                deadline += period * (math.floor(late / period) + 1)
