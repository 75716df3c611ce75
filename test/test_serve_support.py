"""Shared helpers for the ``magma-ros serve`` tests (this module holds no tests)."""
from __future__ import annotations

import base64
import io
import os
import socket
import subprocess
import threading
import time
from pathlib import Path
from typing import Any, Callable

import httpx


def png_bytes(width: int = 32, height: int = 32, color: tuple[int, int, int] = (200, 30, 30)) -> bytes:
    """A small solid-colour PNG."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (width, height), color).save(buffer, "PNG")
    return buffer.getvalue()


def png_data_url(width: int = 32, height: int = 32) -> str:
    """A ``data:`` URL of a small PNG."""
    return "data:image/png;base64," + base64.b64encode(png_bytes(width, height)).decode()


def bound_socket() -> socket.socket:
    """A listening-ready TCP socket on a free loopback port (no race between choosing and binding)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    return sock


def free_port() -> int:
    """A loopback port that was free a moment ago (for servers started as subprocesses)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class ServerThread:
    """Runs an ASGI app under uvicorn in a background thread on 127.0.0.1."""

    def __init__(self, app: Any) -> None:
        import uvicorn

        self._sock = bound_socket()
        self.url = f"http://127.0.0.1:{self._sock.getsockname()[1]}"
        self._server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False, lifespan="on"))
        self._thread = threading.Thread(target=self._server.run, kwargs={"sockets": [self._sock]}, daemon=True)

    def __enter__(self) -> "ServerThread":
        self._thread.start()
        wait_until(lambda: self._server.started, 30, "uvicorn did not start")
        return self

    def __exit__(self, *exc: Any) -> None:
        self._server.should_exit = True
        self._thread.join(30)
        self._sock.close()


def wait_until(condition: Callable[[], Any], timeout_s: float, message: str) -> Any:
    """Poll ``condition`` until truthy; fail with ``message`` after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"{message} (after {timeout_s} s)")


def start_cli_server(console: str, args: list[str], env: dict[str, str] | None = None,
                     timeout_s: float = 120.0) -> tuple[subprocess.Popen, str]:
    """Start ``magma-ros serve ARGS --port P`` and wait until /health answers; returns (process, base URL)."""
    port = free_port()
    proc = subprocess.Popen([console, "serve", *args, "--port", str(port)], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, env={**os.environ, **(env or {})})
    url = f"http://127.0.0.1:{port}"

    def healthy() -> bool:
        if proc.poll() is not None:
            raise AssertionError(f"magma-ros serve exited with {proc.returncode}:\n{proc.stdout.read()}")
        try:
            return httpx.get(url + "/health", timeout=2).status_code == 200
        except httpx.TransportError:
            return False

    wait_until(healthy, timeout_s, "magma-ros serve did not become healthy")
    return proc, url


def stop_process(proc: subprocess.Popen) -> str:
    """Interrupt a server started by ``start_cli_server`` and return its output."""
    if proc.poll() is None:
        proc.send_signal(2)  # SIGINT: uvicorn shuts down gracefully
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
    return proc.stdout.read()


def tiny_model_dir(root: Path) -> Path:
    """Build the tiny test VLM under ``root`` (see test/tiny_vlm.py)."""
    from tiny_vlm import build_tiny_vlm

    return build_tiny_vlm(root / "tiny_vlm")
