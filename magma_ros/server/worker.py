"""One model worker thread fed by a bounded queue.

All inference runs in the worker's thread (one worker per GPU, one model per worker). When
``capacity`` jobs are already waiting or reserved besides the running one, ``reserve`` refuses with ``QueueFullError`` so
clients get a 503 with Retry-After instead of unbounded latency. A request reserves its slot before
any costly preparation (image decoding), so memory is bounded by the queue, not by the clients.
A cancelled job (client gone) leaves the queue at once; a job whose deadline passed while it waited
is dropped without running (``JobExpired``); a running job sees ``Job.stopped`` and stops early.
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
    """A unit of work for the worker: ``fn(job)`` runs in the worker thread, by ``deadline`` (monotonic s)."""

    def __init__(self, fn: Callable[["Job"], Any], deadline: float = math.inf) -> None:
        self.fn = fn
        self.deadline = deadline
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


class ModelWorker:
    """Runs submitted jobs one at a time in a single thread, with at most ``capacity`` waiting
    (``capacity + 1`` while none runs)."""

    def __init__(self, capacity: int, name: str = "magma-model-worker") -> None:
        self.capacity = capacity
        self._queue: collections.deque[Job] = collections.deque()
        self._cond = threading.Condition()
        self._running: Job | None = None
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
            return self._running is not None

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
               deadline: float = math.inf) -> Job:
        """Queue ``fn`` in the reserved slot (or a free one); ``QueueFullError`` when there is none."""
        job = Job(fn, deadline)
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
        # Counting the running job too: between one job's end and the next one's start the queue
        # still holds ``capacity`` jobs, yet a client whose answer just came back must get a slot.
        in_system = len(self._queue) + self._reserved + (self._running is not None)
        if in_system >= self.capacity + 1:
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
                job = self._queue.popleft()
                if not job.future.set_running_or_notify_cancel():
                    continue
                if time.monotonic() >= job.deadline:
                    job.future.set_exception(JobExpired("the request's deadline passed while it waited"))
                    continue
                self._running = job
            start = time.monotonic()
            result: Any = None
            error: BaseException | None = None
            try:
                result = job.fn(job)
            except BaseException as exc:  # delivered to the waiting request, which answers 500
                error = exc
            with self._cond:  # the slot is free before the requester hears of the result
                self._running = None
                self._service_time_s = 0.8 * self._service_time_s + 0.2 * (time.monotonic() - start)
            if error is None:
                job.future.set_result(result)
            else:
                job.future.set_exception(error)
