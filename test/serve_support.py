"""Shared helpers for the ``magma-ros serve`` tests."""
from __future__ import annotations

import base64
import io
import json
import os
import signal
import socket
import subprocess
import threading
import time
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


class GatedRunner:
    """A real runner (shared by the test module: closing is left to its fixture) with a gate that
    holds the worker inside its next ``decode_actions``, so queue and batch states can be set up
    exactly. Records the size of every decoded batch; ``fail_with`` makes decoding raise;
    ``pace_text_s`` hands out free text one piece per that many seconds and sets
    ``text_closed_early`` when the generation is closed before its end."""

    def __init__(self, runner: Any) -> None:
        self._runner = runner
        self.vocab_size = runner.vocab_size
        self.model_name = runner.model_name
        self.max_context_tokens = runner.max_context_tokens
        self.gate = threading.Event()
        self.gate.set()
        self.entered = threading.Semaphore(0)
        self.sizes: list[int] = []
        self.fail_with: Exception | None = None
        self.pace_text_s = 0.0
        self.text_closed_early = threading.Event()

    def prepare_action(self, image: Any, prompt: str, temperature: float = 0.0) -> Any:
        return self._runner.prepare_action(image, prompt, temperature)

    def decode_actions(self, prepared: list[Any]) -> list[Any]:
        self.sizes.append(len(prepared))
        self.entered.release()
        assert self.gate.wait(60), "test gate never opened"
        if self.fail_with is not None:
            raise self.fail_with
        return self._runner.decode_actions(prepared)

    def generate_text(self, *args: Any, **kwargs: Any) -> Any:
        inner = self._runner.generate_text(*args, **kwargs)
        return self._paced(inner) if self.pace_text_s else inner

    def _paced(self, inner: Any) -> Any:
        finished = False
        try:
            for piece in inner:
                yield piece
                time.sleep(self.pace_text_s)
            finished = True
        finally:
            inner.close()
            if not finished:
                self.text_closed_early.set()

    def count_tokens(self, text: str) -> int:
        return self._runner.count_tokens(text)

    def close(self) -> None:
        """The module fixture closes the real runner."""
