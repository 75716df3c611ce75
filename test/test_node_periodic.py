"""The publish loop's thread: fixed-rate ticks, no burst after a stall, errors, stop."""
from __future__ import annotations

import threading
import time

import pytest
from node_support import wait_until

from magma_ros.ros.periodic import PeriodicThread

PERIOD = 0.02


def run_until(thread: PeriodicThread, done) -> float:
    """Start ``thread``, wait (generous deadline) until ``done()``, stop it; returns the start time."""
    started = time.monotonic()
    thread.start()
    try:
        wait_until(done, 30, what="ticks")
    finally:
        assert thread.stop(timeout=10.0)
    return started


def test_ticks_follow_the_period():
    """No tick before its deadline on the grid (a loaded machine can only make ticks later)."""
    stamps: list[float] = []
    started = run_until(PeriodicThread(PERIOD, lambda: stamps.append(time.monotonic()), lambda exc: True),
                        lambda: len(stamps) >= 10)
    assert all(t >= started + (k + 1) * PERIOD for k, t in enumerate(stamps)), stamps


def test_a_stall_skips_ticks_instead_of_bursting():
    """After a stall of five periods, the ticks continue on the grid ahead: the k-th tick after
    the stall is no earlier than k - 1 periods after it ended (a burst would make up the missed ones)."""
    stamps: list[float] = []
    stall_end: list[float] = []

    def tick() -> None:
        stamps.append(time.monotonic())
        if len(stamps) == 3:
            time.sleep(5 * PERIOD)
            stall_end.append(time.monotonic())

    run_until(PeriodicThread(PERIOD, tick, lambda exc: True), lambda: len(stamps) >= 10)
    after = stamps[3:]
    assert all(t >= stall_end[0] + (k - 1) * PERIOD for k, t in enumerate(after)), (stall_end, after)


def test_errors_are_reported_and_the_handler_decides():
    errors: list[BaseException] = []
    calls = []

    def failing() -> None:
        calls.append(1)
        raise RuntimeError("publisher gone")

    keep_going = PeriodicThread(0.01, failing, lambda exc: errors.append(exc) or True)
    run_until(keep_going, lambda: len(calls) > 2)
    assert all(isinstance(e, RuntimeError) for e in errors)

    calls.clear()
    done = threading.Event()
    stop_on_error = PeriodicThread(0.01, failing, lambda exc: done.set() or False)
    stop_on_error.start()
    assert done.wait(30)
    assert stop_on_error.stop(timeout=10.0)  # the loop ended by itself after the first error
    assert len(calls) == 1


def test_stop_is_prompt_with_a_long_period():
    """stop() does not wait for the next tick: with a one-hour period it returns (generous deadline)."""
    thread = PeriodicThread(3600.0, lambda: None, lambda exc: True)
    thread.start()
    assert thread.stop(timeout=30.0)


@pytest.mark.parametrize("period", [0.0, -1.0, float("nan"), float("inf")])
def test_invalid_periods(period):
    with pytest.raises(ValueError, match="positive number of seconds"):
        PeriodicThread(period, lambda: None, lambda exc: True)
