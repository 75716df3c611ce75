"""Shared helpers for the ``magma-ros serve`` tests (this module holds no tests)."""
from __future__ import annotations

import base64
import io
import json
import os
import signal
import socket
import subprocess
import threading
from pathlib import Path
from typing import Any

import httpx
from waiting import wait_until


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


class CliServer:
    """``magma-ros serve ARGS --port P`` as a subprocess, its output in a log file."""

    def __init__(self, console: str, args: list[str], log_path: Path, env: dict[str, str] | None = None) -> None:
        port = free_port()
        self.url = f"http://127.0.0.1:{port}"
        self.log_path = log_path
        self._log = open(log_path, "w")
        self.proc = subprocess.Popen([console, "serve", *args, "--port", str(port)], stdout=self._log,
                                     stderr=subprocess.STDOUT, env={**os.environ, **(env or {})})

    def wait_healthy(self, timeout_s: float = 120.0) -> "CliServer":
        """Wait until /health answers (fails at once if the process exits)."""
        def healthy() -> bool:
            if self.proc.poll() is not None:
                raise AssertionError(f"magma-ros serve exited with {self.proc.returncode}:\n{self.output()}")
            try:
                return httpx.get(self.url + "/health", timeout=2).status_code == 200
            except httpx.TransportError:
                return False

        wait_until(healthy, timeout_s, "magma-ros serve did not become healthy")
        return self

    def output(self) -> str:
        """Everything the server printed so far."""
        return self.log_path.read_text()

    def access_log(self) -> list[dict]:
        """The JSON access-log entries printed so far."""
        return [json.loads(line) for line in self.output().splitlines() if line.startswith('{"event": "access"')]

    def stop(self) -> int:
        """Interrupt (SIGINT, as Ctrl-C) and wait; returns the exit status."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self._log.close()
        return self.proc.returncode


def tiny_model_dir(root: Path) -> Path:
    """Build the tiny test VLM under ``root`` (see test/tiny_vlm.py)."""
    from tiny_vlm import build_tiny_vlm

    return build_tiny_vlm(root / "tiny_vlm")
