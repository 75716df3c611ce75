"""Structured access logs: one JSON line per request with status, latency and the robot's id;
the same figures feed the per-robot metrics of the model endpoints."""
from __future__ import annotations

import json
import logging
import time
import uuid
from datetime import datetime, timezone
from typing import Any

from .errors import ApiError
from .robots import ROBOT_ID_HEADER, RobotMetrics, check_robot_id

LOG = logging.getLogger("magma_ros.server.access")
METERED_PATHS = ("/v1/chat/completions", "/v1/action-tokens")


class AccessLogMiddleware:
    """Pure ASGI middleware (it does not buffer streamed responses). The robot id comes from the
    ``X-Robot-Id`` header (an invalid one is a 400) or from what the route put in
    ``scope["state"]["robot_id"]`` (a chat request's ``user`` field)."""

    def __init__(self, app: Any, metrics: RobotMetrics | None = None) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.monotonic()
        request_id = uuid.uuid4().hex[:16]
        state = {"status": 500, "bytes": 0}
        robot_id = _header(scope, ROBOT_ID_HEADER.encode())
        request_state = scope.setdefault("state", {})
        request_state["robot_id"] = robot_id

        async def send_logged(message: dict) -> None:
            if message["type"] == "http.response.start":
                state["status"] = message["status"]
                message = dict(message, headers=[*message.get("headers", []), (b"x-request-id", request_id.encode())])
            elif message["type"] == "http.response.body":
                state["bytes"] += len(message.get("body", b""))
            await send(message)

        try:
            problem = None if robot_id is None else check_robot_id(robot_id, "X-Robot-Id header")
            if problem is not None:
                request_state["robot_id"] = None
                await ApiError(400, problem, param="X-Robot-Id").response()(scope, receive, send_logged)
            else:
                await self.app(scope, receive, send_logged)
        finally:
            latency_s = time.monotonic() - start
            robot = request_state.get("robot_id")
            if self.metrics is not None and scope["path"] in METERED_PATHS:
                self.metrics.record(robot, state["status"], latency_s)
            if LOG.isEnabledFor(logging.INFO):
                self._log(scope, state, request_id, latency_s, robot)

    @staticmethod
    def _log(scope: dict, state: dict, request_id: str, latency_s: float, robot: str | None) -> None:
        client = scope.get("client")
        LOG.info(json.dumps({
            "event": "access", "time": datetime.now(timezone.utc).isoformat(timespec="milliseconds"),
            "request_id": request_id, "method": scope["method"], "path": scope["path"],
            "status": state["status"], "latency_ms": round(latency_s * 1000.0, 2),
            "bytes_out": state["bytes"], "client": f"{client[0]}:{client[1]}" if client else None,
            "robot_id": robot,
        }))


def _header(scope: dict, name: bytes) -> str | None:
    for key, value in scope.get("headers", []):
        if key.lower() == name:
            return value.decode("latin-1")
    return None
