"""The model worker's queue without a model: reservations, deadlines and cancellation."""
from __future__ import annotations

import threading
import time

import pytest

from magma_ros.server.worker import JobExpired, ModelWorker, QueueFullError


@pytest.fixture
def worker():
    w = ModelWorker(capacity=2, name="test-worker")
    yield w
    w.close(10)


def _blocking(gate: threading.Event, entered: threading.Event):
    def fn(job):
        entered.set()
        assert gate.wait(30)
        return "done"
    return fn


def test_job_whose_deadline_passed_while_waiting_is_dropped_unrun(worker):
    gate, entered = threading.Event(), threading.Event()
    first = worker.submit(_blocking(gate, entered))
    assert entered.wait(30)
    ran = threading.Event()
    deadline = time.monotonic() + 0.05
    late = worker.submit(lambda job: ran.set(), deadline=deadline)
    while time.monotonic() <= deadline:  # wait for the deadline itself, not for a duration
        time.sleep(0.01)
    gate.set()
    assert first.future.result(30) == "done"
    with pytest.raises(JobExpired):
        late.future.result(30)
    assert not ran.is_set()
    assert worker.submit(lambda job: "next").future.result(30) == "next"


def test_running_job_sees_its_deadline(worker):
    seen = threading.Event()

    def fn(job):
        while not job.stopped:
            time.sleep(0.01)
        seen.set()
        return "stopped"

    job = worker.submit(fn, deadline=time.monotonic() + 0.1)
    assert job.future.result(30) == "stopped" and seen.is_set()


def test_reservations_count_against_the_capacity(worker):
    gate, entered = threading.Event(), threading.Event()
    running = worker.submit(_blocking(gate, entered))
    assert entered.wait(30)
    a, b = worker.reserve(), worker.reserve()
    with pytest.raises(QueueFullError):
        worker.reserve()
    with pytest.raises(QueueFullError):
        worker.submit(lambda job: None)
    worker.release(a)
    worker.release(a)  # releasing twice frees one slot only
    c = worker.reserve()
    with pytest.raises(QueueFullError):
        worker.reserve()
    queued = worker.submit(lambda job: "queued", reservation=b)
    worker.release(b)  # a no-op: submit used it
    assert worker.depth == 1
    with pytest.raises(QueueFullError):
        worker.reserve()
    worker.release(c)
    gate.set()
    assert running.future.result(30) == "done" and queued.future.result(30) == "queued"
