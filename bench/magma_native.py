"""Native Magma on tiny random checkpoints (official layout), CPU. Prints:
1. load time and peak host memory (a fresh process per load, so the peak is the load's own) for a
   ~290 MB float32 checkpoint loaded as float32 and as bfloat16: streaming keeps the peak near one
   copy of the weights, not two;
2. constrained 7-token decoding with the KV-cached loop vs transformers' ``generate()`` (same ids)."""
from __future__ import annotations

import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "test"))
PROMPT = "What action should the robot take to pick up the red block?"


def load_once(directory: str, dtype: str) -> None:
    """Child process: import, load, report seconds and peak RSS as JSON."""
    # everything imported before the baseline, so the peak difference is the load's own
    import safetensors.torch  # noqa: F401 - imported before the baseline
    import torch  # noqa: F401 - imported before the baseline
    import transformers.models.llama.modeling_llama  # noqa: F401 - imported before the baseline

    import magma_ros.policy.magma_native.loading  # noqa: F401 - imported before the baseline
    from magma_ros.policy import BackendConfig
    from magma_ros.policy.vlm import VLMRunner

    base = _peak_rss_mib()
    t0 = time.perf_counter()
    runner = VLMRunner.load(BackendConfig(backend="magma", model=directory, device="cpu", dtype=dtype))
    seconds = time.perf_counter() - t0
    peak = _peak_rss_mib()
    params = sum(p.numel() * p.element_size() for p in runner.adapter.model.parameters()) / 2**20
    print(json.dumps({"seconds": seconds, "base": base, "peak": peak, "weights": params}))


def _peak_rss_mib() -> float:
    """This process's peak resident memory (VmHWM; unlike ru_maxrss it does not carry over from the parent)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def load_figures(directory: Path) -> None:
    size = sum(p.stat().st_size for p in directory.glob("*.safetensors")) / 2**20
    shards = len(list(directory.glob("model-*.safetensors")))
    print(f"checkpoint: {size:.0f} MiB float32 in {shards} shards")
    for dtype in ("float32", "bfloat16"):
        out = subprocess.run([sys.executable, __file__, "--load", str(directory), dtype],
                             capture_output=True, text=True, check=True).stdout.strip().splitlines()[-1]
        r = json.loads(out)
        print(f"  load as {dtype:8s}: {r['seconds']:.2f} s (incl. warm-up), weights in memory {r['weights']:.0f} MiB, "
              f"peak RSS {r['base']:.0f} -> {r['peak']:.0f} MiB (+{r['peak'] - r['base']:.0f} MiB)")


def decode_figures(directory: Path, rounds: int = 15) -> None:
    from magma_ros.policy import BackendConfig
    from magma_ros.policy.vlm import VLMRunner

    runner = VLMRunner.load(BackendConfig(backend="magma", model=str(directory), device="cpu", dtype="float32"))
    image = np.random.default_rng(0).integers(0, 256, (256, 256, 3), dtype=np.uint8)
    times: dict[str, list[float]] = {"direct": [], "generate": []}
    ids: dict[str, list] = {"direct": [], "generate": []}
    for _ in range(rounds):  # interleaved, so machine load hits both paths alike
        for decoder in times:
            runner.decoder = decoder
            t = time.perf_counter()
            ids[decoder].append(runner.action_ids(image, PROMPT).tolist())
            times[decoder].append(time.perf_counter() - t)
    runner.close()
    print(f"constrained 7-token action, {rounds} interleaved calls per path (256x256 image, CPU):")
    for decoder, label in (("direct", "KV-cached loop (prefill + 6 steps)"),
                           ("generate", "generate() + logits processor")):
        print(f"  {label:36s} median {1000 * statistics.median(times[decoder]):7.1f} ms")
    print(f"  same ids on both paths: {ids['direct'] == ids['generate']}")


def main() -> None:
    from tiny_magma import build_tiny_magma

    with tempfile.TemporaryDirectory() as tmp:
        load_figures(build_tiny_magma(Path(tmp) / "big", hidden=1024, layers=8, shards=4))
        decode_figures(build_tiny_magma(Path(tmp) / "small", hidden=256, layers=4))


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--load":
        load_once(sys.argv[2], sys.argv[3])
    else:
        main()
