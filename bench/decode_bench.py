"""Decode benchmark: 100,000 actions (7 ids each) -> robot units with bridge_orig statistics.

Target: well under 50 ms per 100,000 actions. Prints the median and spread over repeats.
"""
from __future__ import annotations

import statistics
import time

import numpy as np

from magma_ros.actions import ActionDecoder, load_profile

N_ACTIONS = 100_000
REPEATS = 21


def main() -> None:
    decoder = ActionDecoder(load_profile("bridge_orig").stats)
    ids = np.random.default_rng(0).integers(127744, 128000, size=(N_ACTIONS, 7))
    decoder.decode_ids(ids)  # warm-up
    times_ms = []
    for _ in range(REPEATS):
        start = time.perf_counter()
        actions = decoder.decode_ids(ids)
        times_ms.append((time.perf_counter() - start) * 1e3)
    assert actions.shape == (N_ACTIONS, 7)
    print(f"decode {N_ACTIONS:,} actions (ids -> robot units), {REPEATS} runs: "
          f"median {statistics.median(times_ms):.2f} ms, min {min(times_ms):.2f} ms, max {max(times_ms):.2f} ms "
          f"({statistics.median(times_ms) * 1e6 / N_ACTIONS:.0f} ns per action; target < 50 ms)")


if __name__ == "__main__":
    main()
