"""Structured access logs: one JSON line per request with status and latency."""
from __future__ import annotations

import json
import logging
import time
import uuid
from datetime import datetime, timezone
from typing import Any

LOG = logging.getLogger("magma_ros.server.access")


class AccessLogMiddleware:
    """Pure ASGI middleware (it does not buffer streamed responses)."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.monotonic()
        request_id = uuid.uuid4().hex[:16]
        state = {"status": 500, "bytes": 0}

        async def send_logged(message: dict) -> None:
            if message["type"] == "http.response.start":
                state["status"] = message["status"]
                message = dict(message, headers=[*message.get("headers", []), (b"x-request-id", request_id.encode())])
            elif message["type"] == "http.response.body":
                state["bytes"] += len(message.get("body", b""))
            await send(message)

        try:
            await self.app(scope, receive, send_logged)
        finally:
            if LOG.isEnabledFor(logging.INFO):
                self._log(scope, state, request_id, start)

    @staticmethod
    def _log(scope: dict, state: dict, request_id: str, start: float) -> None:
        client = scope.get("client")
        LOG.info(json.dumps({
            "event": "access", "time": datetime.now(timezone.utc).isoformat(timespec="milliseconds"),
            "request_id": request_id, "method": scope["method"], "path": scope["path"],
            "status": state["status"], "latency_ms": round((time.monotonic() - start) * 1000.0, 2),
            "bytes_out": state["bytes"], "client": f"{client[0]}:{client[1]}" if client else None,
        }))
