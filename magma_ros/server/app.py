"""The FastAPI application: routes, auth, body limits, error format, model worker wiring."""
from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import time
from typing import Any, AsyncIterator, Awaitable

import anyio
from fastapi import Depends, FastAPI, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from pydantic import BaseModel, ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect

from ..errors import one_line
from ..policy.base import PolicyConfigError, PolicyError
from .access_log import AccessLogMiddleware
from .auth import BearerAuth
from .chat import (ActionPromptMatcher, ChatLimits, ChatPreparer, ChatResult, ModelRunner, ResponseBuilder,
                   action_batch_runner, action_job, prepare_action, text_job)
from .decoding import ActionTokenService
from .errors import ApiError
from .images import ImageLoader, PixelBudget
from .robots import CLIENT_CLOSED, RobotMetrics, check_robot_id
from .schemas import ActionTokensRequest, ChatCompletionRequest, describe_validation_error
from .settings import ServerSettings
from .worker import Job, JobExpired, ModelWorker, QueueFullError

LOG = logging.getLogger("magma_ros.server")
DEFAULT_MAX_TOKENS = 256
INLINE_BODY_BYTES = 16 * 1024  # smaller bodies are parsed on the event loop (cheaper than a thread hop)
MAX_JSON_ITEMS = 1024  # items of one JSON array or keys of one object, checked before field validation
ACTION_TOKENS_MAX_BODY = 64 * 1024  # an action-tokens body is a short text and 21 numbers
_SURROGATE = re.compile("[\ud800-\udfff]")


class ClientGone(Exception):
    """The client disconnected before its answer was ready (answered, for the access log, with 499)."""


def create_app(settings: ServerSettings, actions: ActionTokenService, runner: ModelRunner | None) -> FastAPI:
    """The server. ``runner`` None serves only action-token decoding, models and health."""
    if runner is not None and not runner.max_context_tokens > 0:
        raise PolicyError(f"model {runner.model_name}: its context length is unknown (max_context_tokens "
                          f"{runner.max_context_tokens!r}), so prompts cannot be bounded")
    worker = _model_worker(settings, actions, runner) if runner is not None else None
    pixels = PixelBudget(settings.max_decoded_pixels, lambda: worker.retry_after_s if worker else 1)
    metrics = RobotMetrics()
    auth = BearerAuth(settings.auth_token)
    # One large body parsed at a time: json.loads holds the GIL, so parallel parses would add up
    # to a long pause of the event loop.
    parse_slot = asyncio.Semaphore(1)
    templates = settings.action_prompts or tuple(_builtin_prompt_templates())
    limits = ChatLimits(max_tokens=settings.max_tokens_limit, default_max_tokens=DEFAULT_MAX_TOKENS,
                        max_text_chars=settings.max_text_chars,
                        context_tokens=runner.max_context_tokens if runner is not None else 0)
    preparer = ChatPreparer(ImageLoader(settings), ActionPromptMatcher(templates), actions.text_tokenizer, limits)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        if worker is not None:
            await asyncio.to_thread(worker.close)
            runner.close()

    app = FastAPI(title="magma-ros serve", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)
    app.add_middleware(AccessLogMiddleware, metrics=metrics)

    @app.exception_handler(ApiError)
    async def api_error(request: Request, exc: ApiError) -> JSONResponse:
        return exc.response()

    @app.exception_handler(ClientGone)
    async def client_gone(request: Request, exc: ClientGone) -> Response:
        return Response(status_code=CLIENT_CLOSED)  # not sent: the access log shows the disconnect

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return ApiError(exc.status_code, f"{request.method} {request.url.path}: {exc.detail}").response()

    @app.exception_handler(Exception)
    async def server_fault(request: Request, exc: Exception) -> JSONResponse:
        LOG.error("%s %s failed: %s (traceback in the server log)", request.method, request.url.path,
                  type(exc).__name__)
        return ApiError(500, f"internal server error: {type(exc).__name__}").response()

    async def require_auth(request: Request) -> None:  # async: runs on the loop, not in the thread pool
        auth.check(request.headers.get("authorization"))

    @app.get("/health")
    async def health() -> dict[str, Any]:
        return {"status": "ok", "model_loaded": runner is not None,
                "model": settings.served_model_name if runner is not None else None,
                "queue_depth": worker.depth if worker else 0, "queue_capacity": settings.queue_depth,
                "busy": worker.busy if worker else False, "running": worker.running if worker else 0,
                "max_batch_size": worker.max_batch_size if worker else 1}

    @app.get("/v1/stats", dependencies=[Depends(require_auth)])
    async def stats() -> dict[str, Any]:
        return {"object": "stats", "robots": metrics.snapshot()}

    @app.get("/v1/models", dependencies=[Depends(require_auth)])
    async def models() -> dict[str, Any]:
        data = [] if runner is None else [{"id": settings.served_model_name, "object": "model",
                                           "created": 0, "owned_by": "magma-ros"}]
        return {"object": "list", "data": data}

    @app.post("/v1/action-tokens", dependencies=[Depends(require_auth)])
    async def action_tokens(request: Request) -> dict[str, float]:
        raw = await _read_body(request, min(settings.max_body_bytes, ACTION_TOKENS_MAX_BODY))
        if len(raw) <= INLINE_BODY_BYTES:  # bounded work: the text is limited to a few hundred characters
            return actions.decode(_validate(raw, ActionTokensRequest, settings.max_json_depth))
        async with parse_slot:
            return await anyio.to_thread.run_sync(
                lambda: actions.decode(_validate(raw, ActionTokensRequest, settings.max_json_depth)))

    @app.post("/v1/chat/completions", dependencies=[Depends(require_auth)])
    async def chat_completions(request: Request) -> Response:
        deadline = time.monotonic() + settings.timeout_s
        if runner is None or worker is None:
            raise ApiError(404, "chat completions are not served: this server runs with --no-model "
                                "(only /v1/action-tokens, /v1/models and /health)")
        raw = await _read_body(request, settings.max_body_bytes)
        async with parse_slot if len(raw) > INLINE_BODY_BYTES else contextlib.nullcontext():
            body = await anyio.to_thread.run_sync(_validate, raw, ChatCompletionRequest, settings.max_json_depth)
        if body.user is not None and getattr(request.state, "robot_id", None) is None:
            problem = check_robot_id(body.user, "user")
            if problem is not None:
                raise ApiError(422, problem, param="user")
            request.state.robot_id = body.user
        try:
            slot = worker.reserve()  # before decoding images: memory is bounded by the queue, not the clients
        except QueueFullError as exc:
            raise ApiError(503, f"the model is busy ({settings.queue_depth} requests waiting); retry later",
                           headers={"Retry-After": str(exc.retry_after_s)}) from None
        hold, job = pixels.hold(), None
        try:
            chat = await preparer.prepare(body, hold)
            events = _JobEvents(asyncio.get_running_loop())
            emit = events.piece if body.stream else _ignore
            if chat.action_prompt is None:
                job = worker.submit(text_job(chat, runner, emit), slot, deadline)
            else:  # tokens and image crops are made here, in parallel with other requests, not on the model thread
                try:
                    item = await anyio.to_thread.run_sync(prepare_action, chat, runner, emit)
                except (PolicyError, ValueError) as exc:
                    raise _model_error(exc) from None
                job = worker.submit(action_job(item, runner, actions), slot, deadline, batch_item=item)
            job.future.add_done_callback(hold.release)  # the image is held until the model is done with it
        finally:
            worker.release(slot)  # a no-op once submit used it
            if job is None:
                hold.release()
        builder = ResponseBuilder(settings.served_model_name)
        job.future.add_done_callback(events.done)
        try:
            if not body.stream:
                await _until(request, events.finished(), deadline, worker, job)
                return JSONResponse(builder.completion(_result(job)))
            first = await _until(request, events.queue.get(), deadline, worker, job)
            if first[0] == "done":
                _result(job)  # raises the job's error while a status code can still be sent
        except ClientGone:
            return Response(status_code=CLIENT_CLOSED)
        include_usage = bool(body.stream_options and body.stream_options.include_usage)
        return StreamingResponse(_sse(builder, first, events.queue, deadline, worker, job, include_usage),
                                 media_type="text/event-stream", headers={"Cache-Control": "no-cache"})

    return app


def _model_worker(settings: ServerSettings, actions: ActionTokenService, runner: ModelRunner) -> ModelWorker:
    """The worker; it batches action requests when allowed (``--max-batch-size`` > 1)."""
    return ModelWorker(settings.queue_depth, max_batch_size=settings.max_batch_size,
                       batch_window_s=settings.batch_window_ms / 1000.0,
                       run_batch=action_batch_runner(runner, actions) if settings.max_batch_size > 1 else None)


async def _read_body(request: Request, limit: int) -> bytes:
    """At most ``limit`` bytes of body: 413 otherwise, 400 when empty."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise ApiError(413, f"request body is {declared} bytes, more than this server's limit of {limit}")
    raw = bytearray()
    try:
        async for chunk in request.stream():
            raw += chunk
            if len(raw) > limit:
                raise ApiError(413, f"request body is more than this server's limit of {limit} bytes")
    except ClientDisconnect:  # the client closed the connection before sending its whole body
        raise ClientGone() from None
    if not raw:
        raise ApiError(400, "request body is empty; expected a JSON object")
    return bytes(raw)


def _validate(raw: bytes, model: type[BaseModel], max_depth: int) -> Any:
    """The JSON body as ``model``: 400 for malformed JSON, too deep nesting or invalid text, 422 for
    invalid fields (CPU work: large bodies call this off the event loop)."""
    try:
        data = json.loads(raw)
    except UnicodeDecodeError:
        raise ApiError(400, "malformed JSON body: not UTF-8 text") from None
    except json.JSONDecodeError as exc:
        raise ApiError(400, f"malformed JSON body: {exc.msg} at line {exc.lineno} column {exc.colno}") from None
    except RecursionError:
        raise ApiError(400, f"malformed request: JSON nested more than {max_depth} levels deep") from None
    except ValueError as exc:  # e.g. an integer with more digits than Python converts
        raise ApiError(400, f"malformed JSON body: {one_line(exc)[:200]}") from None
    if not isinstance(data, dict):
        raise ApiError(400, f"malformed request: expected a JSON object, got {type(data).__name__}")
    _check_tree(data, max_depth)
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        message, param = describe_validation_error(exc)
        raise ApiError(422, message, param=param) from None


def _check_tree(data: dict, max_depth: int) -> None:
    """400 naming the place of the first value nested deeper than ``max_depth``, of an array or object
    with more than ``MAX_JSON_ITEMS`` entries, or of a string holding a lone surrogate (``"\\ud800"`` is
    valid JSON but not text). Bounds the cost of field validation; leaves cost no allocation."""
    stack: list[tuple[Any, str, int]] = [(data, "", 1)]
    while stack:
        value, where, depth = stack.pop()
        if depth > max_depth:
            raise ApiError(400, f"{where}: JSON nested more than {max_depth} levels deep", param=where)
        if len(value) > MAX_JSON_ITEMS:
            raise ApiError(400, f"{where or 'body'}: {len(value)} entries, more than this server's limit of "
                                f"{MAX_JSON_ITEMS}", param=where or None)
        for key, item in (value.items() if isinstance(value, dict) else enumerate(value)):
            if isinstance(key, str) and _bad_text(key):
                raise ApiError(400, f"{where or 'body'}: a key holds a lone surrogate (not valid Unicode text)",
                               param=where or None)
            if isinstance(item, str):
                if _bad_text(item):
                    path = _child(where, key)
                    raise ApiError(400, f"{path}: string holds a lone surrogate (not valid Unicode text)", param=path)
            elif isinstance(item, (dict, list)):
                stack.append((item, _child(where, key), depth + 1))


def _bad_text(text: str) -> bool:
    return not text.isascii() and _SURROGATE.search(text) is not None


def _child(where: str, key: str | int) -> str:
    if isinstance(key, int):
        return f"{where}[{key}]"
    return f"{where}.{key}" if where else key


class _JobEvents:
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


def _ignore(text: str) -> None:
    """Non-streamed requests take the whole answer from the job's result."""


async def _until(request: Request, awaitable: Awaitable, deadline: float, worker: ModelWorker, job: Job) -> Any:
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


def _result(job: Job) -> ChatResult:
    """The finished job's result; model failures become 500 ``ApiError``."""
    exc = job.future.exception()
    if exc is None:
        return job.future.result()
    if isinstance(exc, JobExpired):
        raise ApiError(504, "the model did not answer within this server's per-request timeout")
    if isinstance(exc, (PolicyError, ValueError)):
        raise _model_error(exc)
    LOG.error("model worker failed", exc_info=exc)
    raise ApiError(500, f"internal error in the model worker: {type(exc).__name__}")


def _model_error(exc: PolicyError | ValueError) -> ApiError:
    """The answer to a failure the runtime reported for this request."""
    if isinstance(exc, PolicyConfigError):  # the runtime refuses this request's options
        return ApiError(422, f"the model cannot serve this request: {exc}")
    return ApiError(500, f"model error: {exc}")


async def _sse(builder: ResponseBuilder, first: tuple[str, Any], events: asyncio.Queue, deadline: float,
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
            result = _result(job)
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


def _builtin_prompt_templates() -> list[str]:
    from ..actions import builtin_profile_names, load_profile

    return [load_profile(name).prompt_template for name in builtin_profile_names()]
