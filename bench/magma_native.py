"""Native Magma on a tiny random checkpoint (official layout), CPU: load time and peak host memory,
then constrained 7-token decoding with the KV-cached loop vs transformers' generate(). Prints figures."""
from __future__ import annotations

import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "test"))


def main() -> None:
    from tiny_magma import build_tiny_magma

    from magma_ros.policy import BackendConfig
    from magma_ros.policy.vlm import VLMRunner

    with tempfile.TemporaryDirectory() as tmp:
        directory = build_tiny_magma(Path(tmp) / "m", hidden=256, layers=4, shards=4)
        size = sum(p.stat().st_size for p in directory.glob("*.safetensors")) / 2**20
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        t0 = time.perf_counter()
        runner = VLMRunner.load(BackendConfig(backend="magma", model=str(directory), device="cpu", dtype="float32"))
        load_s = time.perf_counter() - t0
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(f"checkpoint {size:.1f} MiB in 4 shards: load + warm-up {load_s:.2f} s, "
              f"peak RSS {before:.0f} -> {peak:.0f} MiB (+{peak - before:.0f})")
        image = np.random.default_rng(0).integers(0, 256, (256, 256, 3), dtype=np.uint8)
        prompt = "What action should the robot take to pick up the red block?"
        for decoder in ("direct", "generate", "direct", "generate"):
            runner.decoder = decoder
            times = []
            for _ in range(10):
                t = time.perf_counter()
                runner.action_ids(image, prompt)
                times.append(time.perf_counter() - t)
            print(f"{decoder:8s} (KV cache{'' if decoder == 'direct' else ', generate()'}): "
                  f"median {1000 * statistics.median(times):.1f} ms per 7-token action")
        runner.close()


if __name__ == "__main__":
    main()
