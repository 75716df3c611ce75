"""Serving a fleet: throughput and latency of ``magma-ros serve`` for 1, 2, 4, 8 concurrent
simulated robots, with batching off (--max-batch-size 1) and on, in the same run.

Each simulated robot is a closed loop, as magma_node's openai backend: send an action request
(its own 128x96 JPEG camera frame, its own X-Robot-Id), wait for the 7 action tokens, send the next. The
server runs the tiny native Magma checkpoint (test/tiny_magma.py) on CPU in its own process.
Prints per robot count: throughput (actions/s), p50/p99 latency, the batched/unbatched ratio, and
the target check (batched at 8 robots >= 3x the single-robot throughput with p50 <= 2x); then, as
context for the same run, the model alone (no HTTP): actions/s of one batched decode of as many
prepared frames as robots.

Then the same table for Magma-8B on common GPUs, COMPUTED (not measured) from memory bandwidth
and peak bf16 throughput; see ``computed_gpu_table`` for the model.

  python bench/serve_fleet.py                       # both tables (about 3 minutes on 2 cores)
  python bench/serve_fleet.py --duration-s 20 --robots 1,8
  python bench/serve_fleet.py --computed-only
"""
from __future__ import annotations

import argparse
import base64
import io
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # this checkout's magma_ros, for the client side too
PROMPT = "What action should the robot take to pick up the red block?"

# Magma-8B in bfloat16: the Llama-3-8B language model is read once per decode step.
LLM_PARAMS = 8.03e9
BYTES_PER_PARAM = 2
KV_BYTES_PER_TOKEN = 32 * 8 * 128 * 2 * 2     # layers x KV heads x head dim x (K, V) x bf16
PROMPT_TOKENS = 320                            # ~272 image tokens (one crop) + ~48 text tokens
ACTION_TOKENS = 7
PREFILL_EFFICIENCY = 0.5                       # fraction of peak bf16 FLOP/s reached by the prefill
# name: (memory bandwidth GB/s, dense bf16 peak TFLOP/s), from the vendors' data sheets
GPUS = {"RTX 4090": (1008, 165), "L40S": (864, 362), "A100 80GB SXM": (2039, 312), "H100 SXM": (3350, 989)}


def camera_data_url(seed: int) -> str:
    """A smooth synthetic 128x96 camera frame, JPEG-encoded as magma_node's openai backend sends it."""
    from magma_ros.policy.openai_backend import jpeg_data_url

    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:96, 0:128]
    cx, cy, r = rng.uniform(20, 108), rng.uniform(20, 76), rng.uniform(8, 20)
    frame = np.stack([x * 2, y * 2 + seed * 10, np.full_like(x, 90)], axis=-1)
    frame[(x - cx) ** 2 + (y - cy) ** 2 < r * r] = rng.integers(0, 256, 3)
    return jpeg_data_url(np.clip(frame, 0, 255).astype(np.uint8), (128, 96))


def action_body(seed: int) -> dict:
    return {"model": "tiny", "messages": [{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": camera_data_url(seed)}}, {"type": "text", "text": PROMPT}]}]}


class Server:
    """``magma-ros serve`` on the tiny checkpoint in a subprocess."""

    def __init__(self, model_dir: Path, port: int, max_batch_size: int, window_ms: float, log: Path,
                 threads: int) -> None:
        self.url = f"http://127.0.0.1:{port}"
        self._log = open(log, "w")
        env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""),
               "OMP_NUM_THREADS": str(threads)}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "magma_ros.cli", "serve", "--model", str(model_dir), "--device", "cpu",
             "--dtype", "float32", "--served-model-name", "tiny", "--port", str(port), "--log-level", "warning",
             "--max-batch-size", str(max_batch_size), "--batch-window-ms", str(window_ms), "--queue-depth", "16"],
            stdout=self._log, stderr=subprocess.STDOUT, env=env)
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}: {log.read_text()[-2000:]}")
            try:
                if httpx.get(self.url + "/health", timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        raise RuntimeError("server did not start")

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(30)
        self._log.close()


def run_robots(url: str, robots: int, duration_s: float, warmup_s: float) -> dict:
    """``robots`` closed-loop clients for ``duration_s`` (after ``warmup_s``): throughput and latencies."""
    bodies = [action_body(seed) for seed in range(robots)]
    start = time.monotonic()
    measure_from, stop_at = start + warmup_s, start + warmup_s + duration_s
    latencies: list[list[float]] = [[] for _ in range(robots)]
    failures: list[str] = []

    def robot(i: int) -> None:
        with httpx.Client(timeout=60, headers={"X-Robot-Id": f"robot-{i}"}) as client:
            while True:
                t0 = time.monotonic()
                if t0 >= stop_at:
                    return
                reply = client.post(url + "/v1/chat/completions", json=bodies[i])
                t1 = time.monotonic()
                if reply.status_code != 200:
                    failures.append(f"robot {i}: HTTP {reply.status_code} {reply.text[:200]}")
                    return
                if t0 >= measure_from and t1 <= stop_at:
                    latencies[i].append(t1 - t0)

    threads = [threading.Thread(target=robot, args=(i,)) for i in range(robots)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if failures:
        raise RuntimeError("; ".join(failures[:3]))
    flat = np.array([x for per in latencies for x in per]) * 1000.0
    return {"throughput": flat.size / duration_s, "p50": float(np.percentile(flat, 50)),
            "p99": float(np.percentile(flat, 99)), "n": int(flat.size)}


def model_only(model_dir: Path, counts: list[int], threads: int, duration_s: float) -> dict[int, float]:
    """Actions/s of the runner alone, in this process with the server's torch threads: the robots'
    frames prepared once, then ``decode_actions`` on batches of n of them for ``duration_s`` per n,
    the batch sizes taking turns in 5 rounds so a change in the machine's load hits them alike."""
    import torch
    from PIL import Image

    from magma_ros.policy.config import BackendConfig
    from magma_ros.policy.vlm import VLMRunner

    torch.set_num_threads(threads)
    runner = VLMRunner.load(BackendConfig(backend="magma", model=str(model_dir), device="cpu", dtype="float32"))
    try:
        frames = [np.asarray(Image.open(io.BytesIO(base64.b64decode(camera_data_url(seed).split(",", 1)[1])))
                             .convert("RGB")) for seed in range(max(counts))]
        prepared = [runner.prepare_action(frame, PROMPT) for frame in frames]
        done, spent = dict.fromkeys(counts, 0), dict.fromkeys(counts, 0.0)
        for n in counts:
            runner.decode_actions(prepared[:n])  # warm-up for this batch shape
        for _ in range(5):
            for n in counts:
                start = time.monotonic()
                while time.monotonic() - start < duration_s / 5:
                    runner.decode_actions(prepared[:n])
                    done[n] += n
                spent[n] += time.monotonic() - start
        return {n: done[n] / spent[n] for n in counts}
    finally:
        runner.close()


def measured_table(args: argparse.Namespace) -> None:
    sys.path.insert(0, str(REPO / "test"))
    from tiny_magma import build_tiny_magma

    counts = [int(x) for x in args.robots.split(",")]
    with tempfile.TemporaryDirectory() as tmp:
        model_dir = build_tiny_magma(Path(tmp) / "tiny_magma")
        results: dict[str, dict[int, dict]] = {}
        for mode, size in (("unbatched", 1), ("batched", args.max_batch_size)):
            server = Server(model_dir, args.port, size, args.batch_window_ms, Path(tmp) / f"{mode}.log", args.threads)
            try:
                run_robots(server.url, 1, 2.0, 0.0)  # warm-up
                results[mode] = {n: run_robots(server.url, n, args.duration_s, args.warmup_s) for n in counts}
            finally:
                server.stop()
        alone = model_only(model_dir, counts, args.threads, min(args.duration_s, 5.0))
    print(f"\nmeasured: tiny native Magma checkpoint on CPU ({os.cpu_count()} cores, server with {args.threads} torch "
          f"thread(s)), magma-ros serve, "
          f"{args.duration_s:g} s per row; batched = --max-batch-size {args.max_batch_size} "
          f"--batch-window-ms {args.batch_window_ms:g}")
    print(f"{'robots':>6} | {'unbatched act/s':>15} {'p50 ms':>7} {'p99 ms':>7} | {'batched act/s':>13} "
          f"{'p50 ms':>7} {'p99 ms':>7} | {'batched/unbatched':>17}")
    for n in counts:
        u, b = results["unbatched"][n], results["batched"][n]
        print(f"{n:>6} | {u['throughput']:>15.1f} {u['p50']:>7.1f} {u['p99']:>7.1f} | {b['throughput']:>13.1f} "
              f"{b['p50']:>7.1f} {b['p99']:>7.1f} | {b['throughput'] / u['throughput']:>16.2f}x")
    if 1 in counts and 8 in counts:
        single, eight = results["batched"][1], results["batched"][8]
        scale, slow = eight["throughput"] / single["throughput"], eight["p50"] / single["p50"]
        verdict = "met" if scale >= 3.0 and slow <= 2.0 else "NOT met"
        print(f"target (8 robots batched vs 1 robot: throughput >= 3x, p50 <= 2x): {scale:.2f}x throughput, "
              f"{slow:.2f}x p50 -> {verdict}")
    base = counts[0]
    print(f"model alone (no HTTP, same run), one batch of n frames, vs n={base}: "
          + ", ".join(f"n={n}: {alone[n]:.1f} act/s ({alone[n] / alone[base]:.2f}x throughput, "
                      f"{(n / alone[n]) / (base / alone[base]):.2f}x time per batch)" for n in counts))


def computed_gpu_table(counts: list[int]) -> None:
    """Magma-8B per GPU: an action = batched prefill (compute-bound: 2 x params x tokens FLOPs per
    robot at PREFILL_EFFICIENCY of peak) + 7 decode steps (bandwidth-bound: all weights plus every
    robot's KV cache read once per step). Vision tower, kernel launches and HTTP not counted."""
    weights = LLM_PARAMS * BYTES_PER_PARAM
    kv = KV_BYTES_PER_TOKEN * (PROMPT_TOKENS + ACTION_TOKENS)
    print(f"\nCOMPUTED (not measured): Magma-8B bf16, {PROMPT_TOKENS} prompt tokens, weights {weights / 1e9:.1f} GB "
          f"read per decode step, prefill at {PREFILL_EFFICIENCY:.0%} of peak; unbatched robots wait in turn")
    print(f"{'GPU':>14} {'robots':>6} | {'unbatched act/s':>15} {'p50 ms':>7} | {'batched act/s':>13} {'p50 ms':>7} | "
          f"{'ratio':>6}")
    for name, (bandwidth_gbs, tflops) in GPUS.items():
        bw, peak = bandwidth_gbs * 1e9, tflops * 1e12 * PREFILL_EFFICIENCY

        def action_time(batch: int) -> float:
            prefill = batch * 2 * LLM_PARAMS * PROMPT_TOKENS / peak
            step = max((weights + batch * kv) / bw, 2 * LLM_PARAMS * batch / peak)
            return prefill + ACTION_TOKENS * step

        one = action_time(1)
        for n in counts:
            batched = action_time(n)
            # unbatched: one action at a time; a robot waits for the others' actions, then its own
            print(f"{name:>14} {n:>6} | {1 / one:>15.1f} {n * one * 1000:>7.0f} | {n / batched:>13.1f} "
                  f"{batched * 1000:>7.0f} | {(n / batched) * one:>5.2f}x")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--robots", default="1,2,4,8", help="comma-separated robot counts (default: 1,2,4,8)")
    parser.add_argument("--duration-s", type=float, default=10.0, help="measured seconds per row (default: 10)")
    parser.add_argument("--warmup-s", type=float, default=1.0, help="unmeasured seconds before each row")
    parser.add_argument("--max-batch-size", type=int, default=8, help="batched server's --max-batch-size")
    parser.add_argument("--batch-window-ms", type=float, default=20.0,
                        help="batched server's --batch-window-ms (default: 20, longer than a robot's round trip "
                             "here, so robots answered by one batch make it into the next)")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch (OpenMP) threads of the server (default: 1; on a small shared machine more "
                             "threads make the figures erratic)")
    parser.add_argument("--port", type=int, default=18765, help="port of the servers (127.0.0.1)")
    parser.add_argument("--computed-only", action="store_true", help="print only the computed GPU table")
    args = parser.parse_args()
    if not args.computed_only:
        measured_table(args)
    computed_gpu_table([int(x) for x in args.robots.split(",")])
    return 0


if __name__ == "__main__":
    sys.exit(main())
