"""One model worker thread fed by a bounded queue.

All inference runs in the worker's thread (one worker per GPU, one model per worker). When
``capacity`` jobs are already waiting or reserved besides the running one, ``reserve`` refuses with
``QueueFullError`` so clients get a 503 with Retry-After instead of unbounded latency. A request
reserves its slot before any costly preparation (image decoding), so memory is bounded by the queue,
not by the clients.
A cancelled job (client gone) leaves the queue at once; a job whose deadline passed while it waited
is dropped without running (``JobExpired``); a running job sees ``Job.stopped`` and stops early.

Dynamic batching (``max_batch_size`` > 1 and a ``run_batch`` function): a job submitted with a
``batch_item`` waits up to ``batch_window_s`` for the company it can expect: the requests being
prepared (holding reservations), and as many as took part in the previous batch or queued behind
it (robots send their next request once answered). Then all such jobs that are waiting (at most
``max_batch_size``) run together in one ``run_batch`` call. The window opens at the job's arrival,
or when the previous batch ended if the job arrived while it ran: that batch's clients could not
join before they got their answers, so robots come back into one batch instead of splitting into
groups that take turns. A lone robot never waits. Members
cancelled or expired before the batch starts are dropped from it without touching the others; a
member cancelled while its batch runs has its result discarded. Up to ``max_batch_size`` requests
may run while ``capacity`` wait.
"""
from __future__ import annotations

import collections
import concurrent.futures
import math
import threading
import time
from typing import Any, Callable


class QueueFullError(RuntimeError):
    """The worker's queue is full; ``retry_after_s`` estimates when a slot frees up."""

    def __init__(self, retry_after_s: int) -> None:
        super().__init__(f"model queue is full, retry in {retry_after_s} s")
        self.retry_after_s = retry_after_s


class JobExpired(RuntimeError):
    """The job's deadline passed before the worker could start it."""


class Job:
    """A unit of work for the worker: ``fn(job)`` runs in the worker thread, by ``deadline`` (monotonic s);
    a job with a ``batch_item`` may instead run in a batch (``run_batch``)."""

    def __init__(self, fn: Callable[["Job"], Any], deadline: float = math.inf, batch_item: Any = None) -> None:
        self.fn = fn
        self.deadline = deadline
        self.batch_item = batch_item
        self.submitted = time.monotonic()
        self.future: concurrent.futures.Future = concurrent.futures.Future()
        self._cancelled = threading.Event()

    @property
    def stopped(self) -> bool:
        """True once the requester gave up or the deadline passed; long jobs check it between steps."""
        return self._cancelled.is_set() or time.monotonic() >= self.deadline


class Reservation:
    """A queue slot held by a request while it prepares its job; ``ModelWorker.submit`` consumes it."""

    def __init__(self) -> None:
        self.held = True


RunBatch = Callable[[list[Job]], list[Any]]  # one result (or exception instance) per job, in order


class ModelWorker:
    """Runs submitted jobs (or batches of them) one at a time in a single thread, with at most
    ``capacity`` requests waiting (``capacity + max_batch_size`` in all, running ones included)."""

    def __init__(self, capacity: int, name: str = "magma-model-worker", max_batch_size: int = 1,
                 batch_window_s: float = 0.0, run_batch: RunBatch | None = None) -> None:
        if max_batch_size < 1 or not (math.isfinite(batch_window_s) and batch_window_s >= 0):
            raise ValueError(f"max_batch_size must be >= 1 and batch_window_s >= 0, got {max_batch_size}, "
                             f"{batch_window_s}")
        self.capacity = capacity
        self.max_batch_size = max_batch_size if run_batch is not None else 1
        self.batch_window_s = batch_window_s
        self._run_batch = run_batch
        self._queue: collections.deque[Job] = collections.deque()
        self._cond = threading.Condition()
        self._running: list[Job] = []
        self._expected = 0  # batch size to wait for: the last batch's members and those queued behind it
        self._free_since = 0.0  # monotonic time the last batch ended
        self._reserved = 0
        self._closed = False
        self._service_time_s = 1.0  # moving average, for Retry-After
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)
        self._thread.start()

    @property
    def depth(self) -> int:
        """Jobs waiting (not counting the one running)."""
        with self._cond:
            return len(self._queue)

    @property
    def busy(self) -> bool:
        """True while a job runs."""
        with self._cond:
            return bool(self._running)

    @property
    def running(self) -> int:
        """Jobs running now (the size of the running batch)."""
        with self._cond:
            return len(self._running)

    @property
    def retry_after_s(self) -> int:
        """Seconds a refused client should wait: one recent service time, at least 1."""
        with self._cond:
            return max(1, math.ceil(self._service_time_s))

    def reserve(self) -> Reservation:
        """A queue slot for a job still being prepared; ``QueueFullError`` when none is free."""
        with self._cond:
            self._check_room_locked()
            self._reserved += 1
        return Reservation()

    def release(self, reservation: Reservation) -> None:
        """Give back a slot that will not be used (the request failed while preparing)."""
        with self._cond:
            if reservation.held:
                reservation.held = False
                self._reserved -= 1

    def submit(self, fn: Callable[[Job], Any], reservation: Reservation | None = None,
               deadline: float = math.inf, batch_item: Any = None) -> Job:
        """Queue ``fn`` in the reserved slot (or a free one); ``QueueFullError`` when there is none.
        A ``batch_item`` lets the job run in a batch (see the module docstring)."""
        job = Job(fn, deadline, batch_item)
        with self._cond:
            if self._closed:
                raise RuntimeError("model worker is closed")
            if reservation is not None and reservation.held:
                reservation.held = False
                self._reserved -= 1
            else:
                self._check_room_locked()
            self._queue.append(job)
            self._cond.notify()
        return job

    def _check_room_locked(self) -> None:
        # Counting the running jobs too: between one job's end and the next one's start the queue
        # still holds ``capacity`` jobs, yet a client whose answer just came back must get a slot.
        in_system = len(self._queue) + self._reserved + len(self._running)
        if in_system >= self.capacity + self.max_batch_size:
            raise QueueFullError(max(1, math.ceil(self._service_time_s * in_system)))

    def cancel(self, job: Job) -> None:
        """Give up on ``job``: removed from the queue if waiting, flagged if running."""
        job._cancelled.set()
        with self._cond:
            try:
                self._queue.remove(job)
            except ValueError:
                return
        job.future.cancel()

    def close(self, timeout_s: float = 30.0) -> None:
        """Cancel waiting jobs, let the running one finish, stop the thread."""
        with self._cond:
            self._closed = True
            pending = list(self._queue)
            self._queue.clear()
            self._cond.notify_all()
        for job in pending:
            job._cancelled.set()
            job.future.cancel()
        self._thread.join(timeout_s)

    def _loop(self) -> None:
        while True:
            with self._cond:
                while not self._queue and not self._closed:
                    self._cond.wait()
                if self._closed and not self._queue:
                    return
                jobs = self._next_jobs_locked()
                self._running = jobs
            if not jobs:
                continue
            start = time.monotonic()
            outcomes = self._execute(jobs)
            with self._cond:  # the slots are free before the requesters hear of their results
                self._running = []
                self._free_since = time.monotonic()
                members = len(jobs) if jobs[0].batch_item is not None else 0
                self._expected = min(self.max_batch_size, members + self._batchable_locked())
                self._service_time_s = 0.8 * self._service_time_s + 0.2 * (time.monotonic() - start)
            for job, (result, error) in zip(jobs, outcomes):
                if error is None:
                    job.future.set_result(result)
                else:
                    job.future.set_exception(error)

    def _next_jobs_locked(self) -> list[Job]:
        """The next job, or the next batch once its window has passed; cancelled and expired
        jobs are settled here and left out."""
        first = self._queue[0]
        if first.batch_item is not None and self.max_batch_size > 1:
            while not self._closed and self._batchable_locked() < self._wanted_locked():
                left = max(first.submitted, self._free_since) + self.batch_window_s - time.monotonic()
                if left <= 0 or first not in self._queue:
                    break
                self._cond.wait(left)
            candidates = [job for job in self._queue if job.batch_item is not None][: self.max_batch_size]
        else:
            candidates = [first]
        jobs = []
        for job in candidates:
            self._queue.remove(job)
            if not job.future.set_running_or_notify_cancel():
                continue
            if time.monotonic() >= job.deadline:
                job.future.set_exception(JobExpired("the request's deadline passed while it waited"))
                continue
            jobs.append(job)
        return jobs

    def _wanted_locked(self) -> int:
        """The batch size worth waiting for: those waiting plus those being prepared, or the last
        batch's size with those that queued behind it, whichever is more (at most ``max_batch_size``)."""
        return min(self.max_batch_size, max(self._expected, self._batchable_locked() + self._reserved))

    def _batchable_locked(self) -> int:
        return sum(job.batch_item is not None for job in self._queue)

    def _execute(self, jobs: list[Job]) -> list[tuple[Any, BaseException | None]]:
        """(result, error) per job; an error of the whole batch goes to every member."""
        try:
            if len(jobs) == 1 or self._run_batch is None:
                return [(jobs[0].fn(jobs[0]), None)]
            results = self._run_batch(jobs)
        except BaseException as exc:  # noqa: BLE001 - delivered to the waiting requests, which answer 500
            return [(None, exc)] * len(jobs)
        if len(results) != len(jobs):
            error = RuntimeError(f"batch of {len(jobs)} jobs returned {len(results)} results")
            return [(None, error)] * len(jobs)
        return [(None, r) if isinstance(r, BaseException) else (r, None) for r in results]
