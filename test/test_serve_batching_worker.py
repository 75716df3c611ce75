"""The model worker's dynamic batching without a model: batches form from waiting action jobs,
cancelled and expired members are dropped without hurting the others, errors reach the right
requests, and the queue still counts requests (503 at capacity + max_batch_size)."""
from __future__ import annotations

import threading
import time

import pytest

from magma_ros.server.worker import JobExpired, ModelWorker, QueueFullError


class BatchRecorder:
    """A ``run_batch`` that records each batch's items and answers ``item * 10`` (or raises for items
    that are exceptions, per member)."""

    def __init__(self) -> None:
        self.batches: list[list] = []

    def __call__(self, jobs):
        items = [job.batch_item for job in jobs]
        self.batches.append(items)
        return [item if isinstance(item, Exception) else item * 10 for item in items]


def hold(worker: ModelWorker):
    """Submit an unbatched job that blocks the worker until the returned gate is set."""
    gate, entered = threading.Event(), threading.Event()

    def fn(job):
        entered.set()
        assert gate.wait(30), "test gate never opened"
        return "held"

    job = worker.submit(fn)
    assert entered.wait(30)
    return gate, job


@pytest.fixture
def recorder():
    return BatchRecorder()


@pytest.fixture
def worker(recorder):
    w = ModelWorker(capacity=4, name="batch-worker", max_batch_size=3, batch_window_s=0.0, run_batch=recorder)
    yield w
    w.close(10)


def _batched(worker, item, **kw):
    return worker.submit(lambda job: ("alone", job.batch_item), batch_item=item, **kw)


def test_waiting_action_jobs_run_together_up_to_the_batch_size(worker, recorder):
    gate, held = hold(worker)
    jobs = [_batched(worker, i) for i in range(1, 6)]
    gate.set()
    assert held.future.result(30) == "held"
    assert [j.future.result(30) for j in jobs] == [10, 20, 30, 40, 50]
    assert recorder.batches == [[1, 2, 3], [4, 5]]


def test_a_lone_job_runs_its_own_function(worker, recorder):
    assert _batched(worker, 7).future.result(30) == ("alone", 7)
    assert recorder.batches == []


def test_the_window_waits_for_requests_being_prepared(recorder):
    w = ModelWorker(capacity=4, max_batch_size=2, batch_window_s=60.0, run_batch=recorder)
    try:
        preparing = w.reserve()  # another request holds a slot while it decodes its image
        first = _batched(w, 1)
        second = w.submit(lambda job: "alone", preparing, batch_item=2)  # the batch is full: it runs at once
        assert (first.future.result(30), second.future.result(30)) == (10, 20)
        assert recorder.batches == [[1, 2]]
    finally:
        w.close(10)


def test_a_lone_request_does_not_wait_for_the_window(recorder):
    w = ModelWorker(capacity=4, max_batch_size=8, batch_window_s=3600.0, run_batch=recorder)
    try:
        assert _batched(w, 1).future.result(30) == ("alone", 1)  # would take an hour if it waited
    finally:
        w.close(10)


def test_robots_answered_by_a_batch_are_awaited_but_not_the_window(recorder):
    """After a batch of 2, the next batch waits for 2 (its robots come back), not for
    max_batch_size: the hour-long window is never waited out."""
    w = ModelWorker(capacity=8, max_batch_size=8, batch_window_s=3600.0, run_batch=recorder)
    try:
        gate, held = hold(w)  # an unbatched job: nobody is expected back from it
        first = [_batched(w, 1), _batched(w, 2)]
        gate.set()
        assert [j.future.result(30) for j in first] == [10, 20]
        again = _batched(w, 3)  # waits for its companion from the last batch
        assert not again.future.done()
        other = _batched(w, 4)
        assert (again.future.result(30), other.future.result(30)) == (30, 40)
        assert recorder.batches == [[1, 2], [3, 4]]
    finally:
        w.close(10)


def test_cancelled_and_expired_members_are_dropped_from_the_batch(worker, recorder):
    gate, held = hold(worker)
    keep = _batched(worker, 1)
    cancelled = _batched(worker, 2)
    deadline = time.monotonic() + 0.05
    expired = _batched(worker, 3, deadline=deadline)
    other = _batched(worker, 4)
    worker.cancel(cancelled)
    while time.monotonic() <= deadline:  # wait for the deadline itself, not for a duration
        time.sleep(0.01)
    gate.set()
    assert keep.future.result(30) == 10 and other.future.result(30) == 40
    assert cancelled.future.cancelled()
    with pytest.raises(JobExpired):
        expired.future.result(30)
    assert recorder.batches == [[1, 4]]


def test_a_member_cancelled_while_its_batch_runs_does_not_stop_the_others():
    inside, release = threading.Event(), threading.Event()

    def run_batch(jobs):
        inside.set()
        assert release.wait(30)
        return [job.batch_item for job in jobs]

    w = ModelWorker(capacity=4, max_batch_size=4, batch_window_s=0.0, run_batch=run_batch)
    try:
        gate, held = hold(w)
        a, b = _batched(w, "a"), _batched(w, "b")
        gate.set()
        assert inside.wait(30)
        w.cancel(a)
        assert a.stopped and not b.stopped
        release.set()
        assert b.future.result(30) == "b"
    finally:
        w.close(10)


def test_per_member_errors_and_a_failed_batch(recorder):
    w = ModelWorker(capacity=4, max_batch_size=4, batch_window_s=0.0, run_batch=recorder)
    try:
        gate, held = hold(w)
        good, bad = _batched(w, 1), _batched(w, ValueError("member 2: bad image"))
        gate.set()
        assert good.future.result(30) == 10
        with pytest.raises(ValueError, match="member 2"):
            bad.future.result(30)
    finally:
        w.close(10)

    def broken(jobs):
        raise RuntimeError("model failed")

    w = ModelWorker(capacity=4, max_batch_size=4, batch_window_s=0.0, run_batch=broken)
    try:
        gate, held = hold(w)
        jobs = [_batched(w, i) for i in range(2)]
        gate.set()
        for job in jobs:
            with pytest.raises(RuntimeError, match="model failed"):
                job.future.result(30)
        assert w.submit(lambda job: "still serving").future.result(30) == "still serving"
    finally:
        w.close(10)


def test_unbatched_jobs_keep_their_turn(worker, recorder):
    gate, held = hold(worker)
    text = worker.submit(lambda job: "text")
    action = _batched(worker, 1)
    gate.set()
    assert text.future.result(30) == "text" and action.future.result(30) == ("alone", 1)


def test_queue_counts_requests_capacity_plus_batch_size(worker):
    gate, held = hold(worker)  # 1 running
    jobs = [_batched(worker, i) for i in range(6)]  # capacity 4 + max_batch_size 3 = 7 in the server
    with pytest.raises(QueueFullError):
        _batched(worker, 99)
    with pytest.raises(QueueFullError):
        worker.reserve()
    gate.set()
    assert sorted(j.future.result(30) for j in jobs) == [0, 10, 20, 30, 40, 50]


def test_without_run_batch_the_queue_is_as_before():
    w = ModelWorker(capacity=1, max_batch_size=8, batch_window_s=0.0, run_batch=None)
    try:
        assert w.max_batch_size == 1
        gate, held = hold(w)
        queued = _batched(w, 1)
        with pytest.raises(QueueFullError):
            _batched(w, 2)
        gate.set()
        assert queued.future.result(30) == ("alone", 1)
    finally:
        w.close(10)


@pytest.mark.parametrize("size, window", [(0, 0.0), (2, -1.0), (2, float("nan"))])
def test_invalid_batch_options(size, window):
    with pytest.raises(ValueError, match="max_batch_size"):
        ModelWorker(capacity=1, max_batch_size=size, batch_window_s=window)
