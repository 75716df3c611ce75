"""The endpoints: small functions on one router over the app's ``ServerState``."""
from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any, Callable

import anyio
from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse

from ..policy.base import PolicyError
from .bodies import INLINE_BODY_BYTES, parse_body, read_body
from .chat import PreparedChat, ResponseBuilder, action_job, prepare_action, text_job
from .errors import ApiError, ClientGone
from .replies import JobEvents, ignore_piece, job_result, model_error, sse, until
from .robots import CLIENT_CLOSED, check_robot_id
from .schemas import ActionTokensRequest, ChatCompletionRequest
from .state import ServerState
from .worker import Job, QueueFullError

ACTION_TOKENS_MAX_BODY = 64 * 1024  # an action-tokens body is a short text and 21 numbers


def state_of(request: Request) -> ServerState:
    """The state of the app serving ``request`` (read directly: a dependency would cost a step per request)."""
    return request.app.state.server


async def require_auth(request: Request) -> None:  # async: runs on the loop, not in the thread pool
    """401 unless the request carries the configured bearer token (if any)."""
    state_of(request).auth.check(request.headers.get("authorization"))


router = APIRouter()
authorized = [Depends(require_auth)]


@router.get("/health")
async def health(request: Request) -> dict[str, Any]:
    """Liveness and queue figures (never behind auth: load balancers probe it)."""
    state = state_of(request)
    settings, worker = state.settings, state.worker
    return {"status": "ok", "model_loaded": state.runner is not None,
            "model": settings.served_model_name if state.runner is not None else None,
            "queue_depth": worker.depth if worker else 0, "queue_capacity": settings.queue_depth,
            "busy": worker.busy if worker else False, "running": worker.running if worker else 0,
            "max_batch_size": worker.max_batch_size if worker else 1,
            "decoded_pixels": state.pixels.held, "decoded_pixels_capacity": settings.max_decoded_pixels}


@router.get("/v1/stats", dependencies=authorized)
async def stats(request: Request) -> dict[str, Any]:
    """Per-robot request counts and latencies."""
    return {"object": "stats", "robots": state_of(request).metrics.snapshot()}


@router.get("/v1/models", dependencies=authorized)
async def models(request: Request) -> dict[str, Any]:
    """The served model (none with --no-model)."""
    state = state_of(request)
    data = [] if state.runner is None else [{"id": state.settings.served_model_name, "object": "model",
                                             "created": 0, "owned_by": "magma-ros"}]
    return {"object": "list", "data": data}


@router.post("/v1/action-tokens", dependencies=authorized)
async def action_tokens(request: Request) -> dict[str, float]:
    """Action token text -> a 7-DoF delta in robot units."""
    state = state_of(request)
    settings = state.settings
    raw = await read_body(request, min(settings.max_body_bytes, ACTION_TOKENS_MAX_BODY))
    if len(raw) <= INLINE_BODY_BYTES:  # bounded work: the text is limited to a few hundred characters
        return state.actions.decode(parse_body(raw, ActionTokensRequest, settings.max_json_depth))
    async with state.parse_slot:
        return await anyio.to_thread.run_sync(
            lambda: state.actions.decode(parse_body(raw, ActionTokensRequest, settings.max_json_depth)))


@router.post("/v1/chat/completions", dependencies=authorized)
async def chat_completions(request: Request) -> Response:
    """OpenAI chat completions: robot prompts with an image answer action tokens, anything else text."""
    state = state_of(request)
    deadline = time.monotonic() + state.settings.timeout_s
    state.model()  # 404 before the body is read when there is no model
    body = await _chat_request(request, state)
    events = JobEvents(asyncio.get_running_loop())
    job = await _submit(state, body, events.piece if body.stream else ignore_piece, deadline)
    job.future.add_done_callback(events.done)
    return await _reply(request, state, body, job, events, deadline)


async def _chat_request(request: Request, state: ServerState) -> ChatCompletionRequest:
    """The validated body; its ``user`` names the robot unless the X-Robot-Id header did."""
    settings = state.settings
    raw = await read_body(request, settings.max_body_bytes)
    async with state.parse_slot if len(raw) > INLINE_BODY_BYTES else contextlib.nullcontext():
        body = await anyio.to_thread.run_sync(parse_body, raw, ChatCompletionRequest, settings.max_json_depth)
    if body.user is not None and getattr(request.state, "robot_id", None) is None:
        problem = check_robot_id(body.user, "user")
        if problem is not None:
            raise ApiError(422, problem, param="user")
        request.state.robot_id = body.user
    return body


async def _submit(state: ServerState, body: ChatCompletionRequest, emit: Callable[[str], None],
                  deadline: float) -> Job:
    """The request's job in the model worker's queue: a queue slot is reserved before the image is
    decoded (memory is bounded by the queue, not the clients) and the image's pixels are held until
    the model is done with it; 503 with Retry-After when the queue is full."""
    _, worker = state.model()
    try:
        slot = worker.reserve()
    except QueueFullError as exc:
        raise ApiError(503, f"the model is busy ({state.settings.queue_depth} requests waiting); retry later",
                       headers={"Retry-After": str(exc.retry_after_s)}) from None
    hold, job = state.pixels.hold(), None
    try:
        chat = await state.preparer.prepare(body, hold)
        job = await _model_job(state, chat, emit, slot, deadline)
        job.future.add_done_callback(hold.release)
    finally:
        worker.release(slot)  # a no-op once submit used it
        if job is None:
            hold.release()
    return job


async def _model_job(state: ServerState, chat: PreparedChat, emit: Callable[[str], None], slot: Any,
                     deadline: float) -> Job:
    """Free text runs whole on the model thread; an action request's tokens and image crops are made
    here, in parallel with other requests, and only its decode is queued (batched if allowed)."""
    runner, worker = state.model()
    if chat.action_prompt is None:
        return worker.submit(text_job(chat, runner, emit), slot, deadline)
    try:
        item = await anyio.to_thread.run_sync(prepare_action, chat, runner, emit)
    except (PolicyError, ValueError) as exc:
        raise model_error(exc) from None
    return worker.submit(action_job(item, runner, state.actions), slot, deadline, batch_item=item)


async def _reply(request: Request, state: ServerState, body: ChatCompletionRequest, job: Job, events: JobEvents,
                 deadline: float) -> Response:
    """The whole completion, or a stream once the first piece (or the end) is there, so that an early
    failure still gets its status code; 499 (logged only) when the client went away."""
    _, worker = state.model()
    builder = ResponseBuilder(state.settings.served_model_name)
    try:
        if not body.stream:
            await until(request, events.finished(), deadline, worker, job)
            return JSONResponse(builder.completion(job_result(job)))
        first = await until(request, events.queue.get(), deadline, worker, job)
        if first[0] == "done":
            job_result(job)  # raises the job's error while a status code can still be sent
    except ClientGone:
        return Response(status_code=CLIENT_CLOSED)
    include_usage = bool(body.stream_options and body.stream_options.include_usage)
    return StreamingResponse(sse(builder, first, events.queue, deadline, worker, job, include_usage),
                             media_type="text/event-stream", headers={"Cache-Control": "no-cache"})
