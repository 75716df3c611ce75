"""Frames per second of ``magma-ros eval`` on a generated 1,000-frame 256x256 bag with the fastest
backend (``fixed``), so the figure is the evaluator's own cost: reading, deserializing, image
conversion, pairing, metrics, CSV. Run for MCAP and sqlite3, with and without the PNG plot;
prints the median of the repeats and the share spent inside the backend.

    python bench/eval_throughput.py [--frames 1000] [--size 256] [--repeats 3]
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from magma_ros.actions import load_profile
from magma_ros.eval.runner import EvalOptions, Evaluator
from magma_ros.eval.sample_bag import ACTION_TOPIC, IMAGE_TOPIC, INSTRUCTION_TOPIC, SampleSpec, write_sample_bag
from magma_ros.eval.stream import ActionSource
from magma_ros.policy import BackendConfig, create_policy


def run_once(bag: Path, out: Path, plots: bool) -> tuple[float, float, int]:
    """(wall seconds, seconds inside the backend, frames evaluated) of one evaluation."""
    profile = load_profile("bridge_orig")
    policy = create_policy(BackendConfig(backend="fixed", fixed_action=(0.0,) * 6 + (1.0,)), profile)
    options = EvalOptions(bag=bag, out_dir=out, profile=profile, image_topic=IMAGE_TOPIC,
                          instruction_topic=INSTRUCTION_TOPIC, instruction=None, truth=ActionSource(ACTION_TOPIC),
                          plots=plots, progress=False)
    evaluator = Evaluator(options, policy, "fixed")
    start = time.perf_counter()
    report = evaluator.run()
    wall = time.perf_counter() - start
    model = float(sum(evaluator.overall.latencies))
    return wall, model, report["frames"]["evaluated"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=1000)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    print(f"eval throughput: {args.frames} frames of {args.size}x{args.size} rgb8, backend fixed, "
          f"median of {args.repeats}")
    with tempfile.TemporaryDirectory() as tmp:
        for storage in ("mcap", "sqlite3"):
            bag = Path(tmp) / f"bag_{storage}"
            start = time.perf_counter()
            write_sample_bag(bag, SampleSpec(frames=args.frames, episodes=4, width=args.size, height=args.size,
                                             storage=storage, twist=False))
            size_mb = sum(p.stat().st_size for p in bag.iterdir()) / 1e6
            print(f"  {storage:7s} bag: {size_mb:.0f} MB written in {time.perf_counter() - start:.1f} s")
            for plots in (False, True):
                runs = [run_once(bag, Path(tmp) / f"out_{storage}_{plots}_{i}", plots) for i in range(args.repeats)]
                wall = statistics.median(r[0] for r in runs)
                model = statistics.median(r[1] for r in runs)
                frames = runs[0][2]
                print(f"  {storage:7s} plots={'yes' if plots else 'no ':3s} {frames / wall:8.1f} frames/s "
                      f"({wall:.2f} s; backend {model / wall * 100:.1f}% of it; "
                      f"{frames / (wall - model):.1f} frames/s excluding model time)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
