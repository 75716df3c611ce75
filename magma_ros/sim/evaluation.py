"""Seeded closed-loop evaluation over instructions and controllers; JSON and Markdown reports."""
from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence, TextIO

import numpy as np

from ..progress import Progress
from .episode import Controller, EpisodeResult, run_episode
from .world import SimWorld

ProgressFn = Callable[[int, int, str], None]
EpisodeSink = Callable[[EpisodeResult], None]


def evaluate(world: SimWorld, controllers: Mapping[str, Controller], instructions: Sequence[str], *,
             episodes: int, seed_start: int, max_steps: int, control_rate_hz: float,
             progress: ProgressFn | None = None, sinks: Mapping[str, EpisodeSink] | None = None) -> dict[str, Any]:
    """``episodes`` seeded episodes (seeds ``seed_start ...``) per instruction for each controller.

    Every controller sees the same seeds, so the scenes are identical across controllers. The
    episodes of a controller named in ``sinks`` are run with their camera frames recorded and handed
    to its sink as they end (the frames are not kept afterwards).
    """
    sinks = sinks or {}
    total = len(controllers) * len(instructions) * episodes
    done = 0
    results: dict[str, Any] = {}
    for name, controller in controllers.items():
        per_instruction = {}
        for instruction in instructions:
            runs: list[EpisodeResult] = []
            for seed in range(seed_start, seed_start + episodes):
                result = run_episode(world, instruction, seed, controller, control_rate_hz=control_rate_hz,
                                     max_steps=max_steps, record_images=name in sinks)
                if name in sinks:
                    sinks[name](result)
                runs.append(dataclasses.replace(result, records=[]))
                done += 1
                if progress:
                    progress(done, total, f"{name}: {instruction}")
            per_instruction[instruction] = summarize(runs)
        all_runs = [e for s in per_instruction.values() for e in s["episodes"]]
        results[name] = {
            "success_rate": float(np.mean([e["success"] for e in all_runs])),
            "instructions": per_instruction,
        }
    return {"episodes_per_instruction": episodes, "seeds": [seed_start, seed_start + episodes - 1],
            "max_steps": max_steps, "control_rate_hz": control_rate_hz, "controllers": results}


def summarize(runs: Sequence[EpisodeResult]) -> dict[str, Any]:
    """Success rate, mean steps (all episodes, and successful ones), mean final distance."""
    wins = [r for r in runs if r.success]
    return {
        "success_rate": len(wins) / len(runs),
        "mean_steps": float(np.mean([r.steps for r in runs])),
        "mean_steps_success": float(np.mean([r.steps for r in wins])) if wins else None,
        "mean_final_distance_m": float(np.mean([r.final_distance for r in runs])),
        "episodes": [{"seed": r.seed, "success": r.success, "steps": r.steps,
                      "final_distance_m": round(r.final_distance, 4)} for r in runs],
    }


def markdown_report(report: Mapping[str, Any], title: str) -> str:
    """A Markdown table per controller and instruction."""
    lines = [f"# {title}", "",
             f"{report['episodes_per_instruction']} seeded episodes per instruction (seeds "
             f"{report['seeds'][0]}-{report['seeds'][1]}), at most {report['max_steps']} steps at "
             f"{report['control_rate_hz']:g} Hz.", "",
             "| controller | instruction | success | mean steps | mean steps (successes) | mean final distance |",
             "|---|---|---:|---:|---:|---:|"]
    for name, result in report["controllers"].items():
        for instruction, s in result["instructions"].items():
            wins = "-" if s["mean_steps_success"] is None else f"{s['mean_steps_success']:.1f}"
            lines.append(f"| {name} | {instruction} | {100 * s['success_rate']:.0f}% | {s['mean_steps']:.1f} | "
                         f"{wins} | {100 * s['mean_final_distance_m']:.1f} cm |")
        lines.append(f"| **{name}** | all | **{100 * result['success_rate']:.0f}%** | | | |")
    return "\n".join(lines) + "\n"


def write_reports(report: Mapping[str, Any], out_dir: Path, title: str) -> tuple[Path, Path]:
    """``report.json`` and ``report.md`` under ``out_dir``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    json_path, md_path = out_dir / "report.json", out_dir / "report.md"
    json_path.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    md_path.write_text(markdown_report(report, title), encoding="utf-8")
    return json_path, md_path


def progress_bar(stream: TextIO = sys.stderr) -> ProgressFn:
    """The shared progress line (rate, ETA) over all episodes, labelled with the current run.
    Its clock starts now: create it just before ``evaluate``."""
    bar = Progress(0, "sim-eval", unit="episodes", stream=stream)

    def show(done: int, total: int, label: str) -> None:
        bar.total, bar.label = total, label
        bar.update(done)
        if done == total:
            bar.close()

    return show
