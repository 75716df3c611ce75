"""Load test for ``magma-ros serve``: N concurrent clients for a fixed time.

By default it builds the tiny test model, starts ``magma-ros serve`` on it (CPU) and runs two
phases: at capacity (queue depth + 1 clients: nothing may fail) and overloaded (3x that: only
503 is allowed; a refused client waits Retry-After, at most 2 s, like the node's openai backend). Prints throughput, p50/p99 latency and the count of each status code; exits 1
when a phase breaks its rule. ``--url`` measures a running server instead.

  python bench/serve_load.py                        # tiny model, both phases
  python bench/serve_load.py --clients 32 --duration-s 30 --url http://gpu-box:8000 --kind text
"""
from __future__ import annotations

import argparse
import base64
import collections
import io
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import numpy as np

REPO = Path(__file__).resolve().parents[1]
MAX_RETRY_AFTER_S = 2.0  # a refused client waits Retry-After, at most this long (as the node's openai backend)


def image_data_url() -> str:
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray((np.arange(64 * 64 * 3) % 251).astype(np.uint8).reshape(64, 64, 3)).save(buffer, "PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def request_body(kind: str, model: str, max_tokens: int) -> dict:
    if kind == "action":
        content = [{"type": "image_url", "image_url": {"url": image_data_url()}},
                   {"type": "text", "text": "What action should the robot take to pick up the red block?"}]
        return {"model": model, "messages": [{"role": "user", "content": content}]}
    return {"model": model, "max_tokens": max_tokens, "messages": [{"role": "user", "content": "Describe the table."}]}


def run_phase(url: str, body: dict, clients: int, duration_s: float, headers: dict) -> dict:
    """``clients`` threads, each sending one request at a time until ``duration_s`` has passed."""
    statuses: collections.Counter = collections.Counter()
    latencies: list[float] = []
    lock = threading.Lock()
    end = time.monotonic() + duration_s

    def client() -> None:
        with httpx.Client(timeout=120, headers=headers) as http:
            while time.monotonic() < end:
                start = time.monotonic()
                retry_after = 0.0
                try:
                    response = http.post(url + "/v1/chat/completions", json=body)
                    status = response.status_code
                    retry_after = float(response.headers.get("retry-after", 0))
                except httpx.HTTPError as exc:
                    status = type(exc).__name__
                elapsed = time.monotonic() - start
                with lock:
                    statuses[status] += 1
                    if status == 200:
                        latencies.append(elapsed)
                if status == 503:
                    time.sleep(min(retry_after, MAX_RETRY_AFTER_S))

    started = time.monotonic()
    threads = [threading.Thread(target=client, daemon=True) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.monotonic() - started
    lat = np.asarray(latencies) * 1000.0
    return {"clients": clients, "wall_s": wall, "statuses": dict(statuses), "ok": len(latencies),
            "throughput": len(latencies) / wall,
            "p50_ms": float(np.percentile(lat, 50)) if lat.size else float("nan"),
            "p99_ms": float(np.percentile(lat, 99)) if lat.size else float("nan")}


def start_server(args: argparse.Namespace, workdir: Path) -> tuple[subprocess.Popen, str]:
    sys.path.insert(0, str(REPO / "test"))
    from tiny_vlm import build_tiny_vlm

    model = build_tiny_vlm(workdir / "tiny_vlm")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    script = Path(sys.executable).parent / "magma-ros"
    log = open(workdir / "serve.log", "w")
    proc = subprocess.Popen([str(script), "serve", "--model", str(model), "--device", "cpu", "--dtype", "float32",
                             "--served-model-name", "tiny", "--port", str(port), "--queue-depth",
                             str(args.queue_depth), "--log-level", "warning"], stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"magma-ros serve exited:\n{(workdir / 'serve.log').read_text()}")
        try:
            if httpx.get(url + "/health", timeout=2).status_code == 200:
                return proc, url
        except httpx.TransportError:
            time.sleep(0.2)
    proc.kill()
    raise SystemExit("magma-ros serve did not become healthy within 180 s")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", help="measure this running server instead of starting one on the tiny model")
    parser.add_argument("--model", default="tiny", help="model name sent in requests (default: tiny)")
    parser.add_argument("--token-env", default="", help="environment variable holding the server's bearer token")
    parser.add_argument("--kind", choices=("action", "text"), default="action",
                        help="robot action requests (constrained 7 tokens) or free text (default: action)")
    parser.add_argument("--max-tokens", type=int, default=16, help="max_tokens of text requests (default: 16)")
    parser.add_argument("--queue-depth", type=int, default=4,
                        help="queue depth of the server started here; sets the phases' client counts (default: 4)")
    parser.add_argument("--clients", type=int, default=0, help="run one phase with this many clients instead")
    parser.add_argument("--duration-s", type=float, default=10.0, help="seconds per phase (default: 10)")
    args = parser.parse_args()
    headers = {"Authorization": f"Bearer {os.environ[args.token_env]}"} if args.token_env else {}

    with tempfile.TemporaryDirectory(prefix="serve_load_") as tmp:
        proc, url = (None, args.url.rstrip("/")) if args.url else start_server(args, Path(tmp))
        try:
            body = request_body(args.kind, args.model, args.max_tokens)
            capacity = args.queue_depth + 1
            phases = [("custom", args.clients)] if args.clients else [("at capacity", capacity),
                                                                      ("overload", 3 * capacity)]
            print(f"serve_load: {url}, {args.kind} requests, {args.duration_s:g} s per phase, "
                  f"server capacity {capacity} (queue depth {args.queue_depth} + 1 running)")
            print(f"{'phase':12s} {'clients':>7s} {'ok':>6s} {'ok/s':>7s} {'p50 ms':>8s} {'p99 ms':>8s}  statuses")
            results, failed = {}, False
            for name, clients in phases:
                r = run_phase(url, body, clients, args.duration_s, headers)
                results[name] = r
                print(f"{name:12s} {clients:7d} {r['ok']:6d} {r['throughput']:7.2f} {r['p50_ms']:8.1f} "
                      f"{r['p99_ms']:8.1f}  {dict(sorted(r['statuses'].items(), key=str))}")
                others = {k: v for k, v in r["statuses"].items() if k not in (200, 503)}
                if others or (clients <= capacity and r["statuses"].get(503)) or not r["ok"]:
                    failed = True
                    print(f"  FAIL: {name}: unexpected outcomes {r['statuses']}")
            if len(results) == 2:
                below, over = results["at capacity"], results["overload"]
                print(f"overload/at-capacity: throughput x{over['throughput'] / below['throughput']:.2f}, "
                      f"p99 latency x{over['p99_ms'] / below['p99_ms']:.2f}")
            print("result:", "FAIL" if failed else "OK (no errors at capacity; only 503 under overload)")
            return 1 if failed else 0
        finally:
            if proc is not None:
                proc.send_signal(signal.SIGINT)
                try:
                    proc.wait(30)
                except subprocess.TimeoutExpired:
                    proc.kill()


if __name__ == "__main__":
    sys.exit(main())
