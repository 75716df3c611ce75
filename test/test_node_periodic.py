"""The publish loop's thread: fixed-rate ticks, no burst after a stall, errors, stop."""
from __future__ import annotations

import threading
import time

import pytest

from magma_ros.ros.periodic import PeriodicThread


def run_for(thread: PeriodicThread, seconds: float) -> None:
    thread.start()
    time.sleep(seconds)
    assert thread.stop(timeout=2.0)


def test_ticks_follow_the_period():
    stamps: list[float] = []
    run_for(PeriodicThread(0.02, lambda: stamps.append(time.monotonic()), lambda exc: True), 0.6)
    assert 10 <= len(stamps) <= 31  # ~30 on an idle machine; loose for a loaded one
    gaps = [b - a for a, b in zip(stamps, stamps[1:])]
    assert min(gaps) > 0.005  # never two ticks back to back


def test_a_stall_skips_ticks_instead_of_bursting():
    stamps: list[float] = []

    def tick() -> None:
        stamps.append(time.monotonic())
        if len(stamps) == 3:
            time.sleep(0.1)  # five periods lost

    run_for(PeriodicThread(0.02, tick, lambda exc: True), 0.5)
    after_stall = [b - a for a, b in zip(stamps[3:], stamps[4:])]
    assert after_stall and min(after_stall) > 0.005, after_stall


def test_errors_are_reported_and_the_handler_decides():
    errors: list[BaseException] = []
    calls = []

    def failing() -> None:
        calls.append(1)
        raise RuntimeError("publisher gone")

    keep_going = PeriodicThread(0.01, failing, lambda exc: errors.append(exc) or True)
    run_for(keep_going, 0.2)
    assert len(calls) > 2 and all(isinstance(e, RuntimeError) for e in errors)

    calls.clear()
    done = threading.Event()
    stop_on_error = PeriodicThread(0.01, failing, lambda exc: done.set() or False)
    stop_on_error.start()
    assert done.wait(2.0)
    time.sleep(0.1)
    assert len(calls) == 1 and stop_on_error.stop(timeout=1.0)


def test_stop_is_prompt_with_a_long_period():
    thread = PeriodicThread(10.0, lambda: None, lambda exc: True)
    thread.start()
    started = time.monotonic()
    assert thread.stop(timeout=2.0)
    assert time.monotonic() - started < 1.0


@pytest.mark.parametrize("period", [0.0, -1.0, float("nan"), float("inf")])
def test_invalid_periods(period):
    with pytest.raises(ValueError, match="positive number of seconds"):
        PeriodicThread(period, lambda: None, lambda exc: True)
