"""The inference thread: newest frame only, dropped frames counted, pacing, errors reported."""
from __future__ import annotations

import threading

import numpy as np
from node_support import wait_until

from magma_ros.safety.inference import Frame, InferenceWorker


def frame(i: int) -> Frame:
    return Frame(image=np.full((2, 2, 3), i, np.uint8), arrived=float(i))


def test_runs_the_newest_frame_and_counts_the_dropped():
    seen, errors = [], []
    gate = threading.Event()

    def run(f: Frame) -> None:
        seen.append(int(f.image[0, 0, 0]))
        gate.wait(10)

    worker = InferenceWorker(run, lambda: 0.0, errors.append)
    worker.start()
    try:
        worker.submit(frame(1))
        wait_until(lambda: seen == [1], 10)
        for i in range(2, 6):  # arrive while frame 1 is being processed
            worker.submit(frame(i))
        gate.set()
        wait_until(lambda: seen == [1, 5], 10)
        assert worker.dropped == 3
    finally:
        assert worker.stop()
    assert not errors


def paced_on_a_fake_clock(t0: float) -> tuple[list[float], list[float], InferenceWorker]:
    """(clock ``now[0]`` starting at ``t0``, the clock at each inference start, a started worker
    with a 0.2 s minimum period on that clock)."""
    now: list[float] = [t0]
    starts: list[float] = []
    worker = InferenceWorker(lambda f: starts.append(now[0]), lambda: 0.2, lambda e: None, clock=lambda: now[0])
    worker.start()
    return now, starts, worker


def test_paces_inference_to_the_minimum_period():
    """On an injected clock: a frame waits until 0.2 s (of that clock) after the last start."""
    now, starts, worker = paced_on_a_fake_clock(0.0)
    try:
        worker.submit(frame(0))
        wait_until(lambda: starts == [0.0], 10)
        worker.submit(frame(1))
        now[0] = 0.25
        wait_until(lambda: len(starts) == 2, 10)
    finally:
        assert worker.stop()
    assert starts == [0.0, 0.25]


def test_a_clock_going_back_does_not_delay_the_next_inference():
    """A simulator reset takes the clock from 100 s back to 80 s: the next frame runs at once, not
    at 100.2 s on the new timeline (20 s later)."""
    now, starts, worker = paced_on_a_fake_clock(100.0)
    try:
        worker.submit(frame(0))
        wait_until(lambda: starts == [100.0], 10)
        now[0] = 80.0
        worker.submit(frame(1))
        wait_until(lambda: len(starts) == 2, 10, what=f"an inference after the clock went back: {starts}")
    finally:
        assert worker.stop()
    assert starts == [100.0, 80.0]


def test_errors_are_reported_and_the_thread_carries_on():
    errors, seen = [], []

    def run(f: Frame) -> None:
        seen.append(f.arrived)
        if f.arrived == 1.0:
            raise TypeError("bug")

    worker = InferenceWorker(run, lambda: 0.0, errors.append)
    worker.start()
    try:
        worker.submit(frame(1))
        wait_until(lambda: errors, 10)
        worker.submit(frame(2))
        wait_until(lambda: seen == [1.0, 2.0], 10)
    finally:
        assert worker.stop()
    assert isinstance(errors[0], TypeError)
