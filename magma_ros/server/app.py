"""The FastAPI application: the router's endpoints over one ``ServerState``, the access log, and
errors in one format that keep their headers."""
from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import AsyncIterator

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from .access_log import AccessLogMiddleware
from .chat import ModelRunner
from .decoding import ActionTokenService
from .errors import ApiError, ClientGone
from .robots import CLIENT_CLOSED
from .routes import router
from .settings import ServerSettings
from .state import ServerState

LOG = logging.getLogger("magma_ros.server")


def create_app(settings: ServerSettings, actions: ActionTokenService, runner: ModelRunner | None) -> FastAPI:
    """The server. ``runner`` None serves only action-token decoding, models and health."""
    state = ServerState.build(settings, actions, runner)
    app = FastAPI(title="magma-ros serve", lifespan=_lifespan, docs_url=None, redoc_url=None, openapi_url=None)
    app.state.server = state
    app.add_middleware(AccessLogMiddleware, metrics=state.metrics)
    app.add_exception_handler(ApiError, _api_error)
    app.add_exception_handler(ClientGone, _client_gone)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(Exception, _server_fault)
    app.include_router(router)
    return app


@contextlib.asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    """At shutdown the worker finishes or drops its jobs, then the model is released."""
    yield
    state: ServerState = app.state.server
    if state.worker is not None and state.runner is not None:
        await asyncio.to_thread(state.worker.close)
        state.runner.close()


async def _api_error(request: Request, exc: ApiError) -> JSONResponse:
    return exc.response()


async def _client_gone(request: Request, exc: ClientGone) -> Response:
    return Response(status_code=CLIENT_CLOSED)  # not sent: the access log shows the disconnect


async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
    """Routing errors (404, 405) in the API's format, with their headers (a 405 names ``Allow``)."""
    return ApiError(exc.status_code, f"{request.method} {request.url.path}: {exc.detail}",
                    headers=dict(exc.headers or {})).response()


async def _server_fault(request: Request, exc: Exception) -> JSONResponse:
    LOG.error("%s %s failed: %s (traceback in the server log)", request.method, request.url.path,
              type(exc).__name__)
    return ApiError(500, f"internal server error: {type(exc).__name__}").response()
