"""From a submitted model job to the client's answer: waiting for it (bounded by the request's
deadline and the client staying connected), its result or error, and server-sent events."""
from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from typing import Any, AsyncIterator, Awaitable

from fastapi import Request

from ..policy.base import PolicyConfigError, PolicyError
from .chat import ChatResult, ResponseBuilder
from .errors import ApiError, ClientGone
from .worker import Job, JobExpired, ModelWorker

LOG = logging.getLogger("magma_ros.server")


class JobEvents:
    """Pieces of text and the end of a job, passed from the worker thread to the request's loop."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self.queue: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()

    def piece(self, text: str) -> None:
        """Called in the worker thread for each streamed piece."""
        self._post(("piece", text))

    def done(self, future: Any) -> None:
        """Future callback: the job finished, failed or was cancelled."""
        self._post(("done", future))

    async def finished(self) -> None:
        """Wait for the end of the job (pieces are skipped)."""
        while (await self.queue.get())[0] != "done":
            pass

    def _post(self, event: tuple[str, Any]) -> None:
        with contextlib.suppress(RuntimeError):  # the loop is closed at shutdown
            self._loop.call_soon_threadsafe(self.queue.put_nowait, event)


def ignore_piece(text: str) -> None:
    """Non-streamed requests take the whole answer from the job's result."""


async def until(request: Request, awaitable: Awaitable, deadline: float, worker: ModelWorker, job: Job) -> Any:
    """Await ``awaitable`` unless the client disconnects (``ClientGone``) or the deadline passes (504);
    either way the job is cancelled and its queue slot freed."""
    task = asyncio.ensure_future(awaitable)
    gone = asyncio.ensure_future(_disconnected(request))
    try:
        done, _ = await asyncio.wait({task, gone}, timeout=max(0.0, deadline - time.monotonic()),
                                     return_when=asyncio.FIRST_COMPLETED)
    finally:
        gone.cancel()
        if not task.done():
            task.cancel()
    if task in done:
        return task.result()
    worker.cancel(job)
    if gone in done:
        raise ClientGone()
    raise ApiError(504, "the model did not answer within this server's per-request timeout")


async def _disconnected(request: Request) -> None:
    while (await request.receive())["type"] != "http.disconnect":
        pass


def job_result(job: Job) -> ChatResult:
    """The finished job's result; model failures become 500 ``ApiError``."""
    exc = job.future.exception()
    if exc is None:
        return job.future.result()
    if isinstance(exc, JobExpired):
        raise ApiError(504, "the model did not answer within this server's per-request timeout")
    if isinstance(exc, (PolicyError, ValueError)):
        raise model_error(exc)
    LOG.error("model worker failed", exc_info=exc)
    raise ApiError(500, f"internal error in the model worker: {type(exc).__name__}")


def model_error(exc: PolicyError | ValueError) -> ApiError:
    """The answer to a failure the runtime reported for this request."""
    if isinstance(exc, PolicyConfigError):  # the runtime refuses this request's options
        return ApiError(422, f"the model cannot serve this request: {exc}")
    return ApiError(500, f"model error: {exc}")


async def sse(builder: ResponseBuilder, first: tuple[str, Any], events: asyncio.Queue, deadline: float,
              worker: ModelWorker, job: Job, include_usage: bool) -> AsyncIterator[str]:
    """Server-sent events: role, content deltas, finish (and usage), then ``[DONE]``."""
    try:
        yield _event(builder.chunk({"role": "assistant", "content": ""}))
        event = first
        while event[0] == "piece":
            yield _event(builder.chunk({"content": event[1]}))
            try:
                event = await asyncio.wait_for(events.get(), max(0.0, deadline - time.monotonic()))
            except asyncio.TimeoutError:
                yield _event(ApiError(504, "the model did not finish within this server's per-request "
                                           "timeout").body())
                return
        try:
            result = job_result(job)
        except ApiError as exc:
            yield _event(exc.body())
            return
        yield _event(builder.chunk({}, result.finish_reason))
        if include_usage:
            yield _event(builder.usage_chunk(result))
        yield "data: [DONE]\n\n"
    finally:
        worker.cancel(job)


def _event(obj: dict[str, Any]) -> str:
    return f"data: {json.dumps(obj, ensure_ascii=False)}\n\n"
