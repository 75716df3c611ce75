"""Evaluation outputs: per-frame CSV (streamed), JSON report, PNG plot, and a text summary."""
from __future__ import annotations

import csv
import json
import math
from pathlib import Path
from typing import Any, TextIO

import numpy as np

from ..actions.tokenizer import AXIS_NAMES

CSV_FIELDS = (
    ["frame", "episode", "time_s", "stamp_ns", "instruction"]
    + [f"pred_{a}" for a in AXIS_NAMES] + [f"true_{a}" for a in AXIS_NAMES]
    + ["pred_gripper_command", "true_gripper_command", "exact_bins", "latency_s"]
)
MAX_PLOT_POINTS = 5000


class FrameCsv:
    """Writes one CSV row per evaluated frame as it is evaluated."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._file: TextIO = path.open("w", newline="", encoding="utf-8")
        self._writer = csv.writer(self._file)
        self._writer.writerow(CSV_FIELDS)

    def write(self, frame: int, episode: int, time_s: float, stamp_ns: int, instruction: str,
              predicted: np.ndarray, truth: np.ndarray, pred_command: float, true_command: float,
              exact_bins: bool, latency_s: float) -> None:
        """One row."""
        self._writer.writerow(
            [frame, episode, f"{time_s:.6f}", stamp_ns, instruction]
            + [repr(float(v)) for v in predicted] + [repr(float(v)) for v in truth]
            + [repr(float(pred_command)), repr(float(true_command)), int(exact_bins), f"{latency_s:.6f}"]
        )

    def close(self) -> None:
        """Flush and close the file."""
        self._file.close()


def write_json(report: dict[str, Any], path: Path) -> None:
    """The report as indented JSON."""
    path.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")


def plot_actions(csv_path: Path, png_path: Path, frames: int, title: str) -> None:
    """Predicted vs recorded value per axis over time, episode changes as vertical lines.

    Reads the CSV back with a stride so that at most ``MAX_PLOT_POINTS`` points are held.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    stride = max(1, math.ceil(frames / MAX_PLOT_POINTS))
    times, preds, trues, episode_starts = [], [], [], []
    last_episode = None
    with csv_path.open(newline="", encoding="utf-8") as f:
        for i, row in enumerate(csv.DictReader(f)):
            if row["episode"] != last_episode:
                episode_starts.append(float(row["time_s"]))
                last_episode = row["episode"]
            if i % stride:
                continue
            times.append(float(row["time_s"]))
            preds.append([float(row[f"pred_{a}"]) for a in AXIS_NAMES])
            trues.append([float(row[f"true_{a}"]) for a in AXIS_NAMES])
    pred, true = np.asarray(preds).reshape(-1, 7), np.asarray(trues).reshape(-1, 7)
    fig, axes = plt.subplots(len(AXIS_NAMES), 1, figsize=(10, 12), sharex=True)
    for k, (ax, name) in enumerate(zip(axes, AXIS_NAMES)):
        ax.plot(times, true[:, k], color="black", linewidth=1.2, label="recorded")
        ax.plot(times, pred[:, k], color="tab:orange", linewidth=1.0, linestyle="--", label="predicted")
        for start in episode_starts[1:]:
            ax.axvline(start, color="tab:blue", linewidth=1.0, linestyle=":", alpha=0.8)
        ax.set_ylabel(name)
        ax.grid(True, alpha=0.3)
    if len(episode_starts) > 1:
        axes[-1].plot([], [], color="tab:blue", linestyle=":", label="new episode (instruction)")
        axes[-1].legend(loc="upper right", fontsize="small")
    axes[0].legend(loc="upper right", fontsize="small")
    axes[0].set_title(title, fontsize="medium")
    axes[-1].set_xlabel("time since bag start (s)")
    fig.tight_layout()
    fig.savefig(png_path, dpi=80)
    plt.close(fig)


def summary_text(report: dict[str, Any]) -> str:
    """A short human-readable summary of the overall metrics and the skip counts."""
    lines = [f"bag {report['bag']}  robot {report['robot']}  predictions: {report['predictions']['source']}"]
    frames = report["frames"]
    skipped = ", ".join(f"{k} {v}" for k, v in frames["skipped"].items() if v) or "none"
    lines.append(f"frames: {frames['images']} images, {frames['evaluated']} evaluated; skipped: {skipped}")
    overall = report["overall"]
    if overall.get("frames"):
        lines.append("axis      " + " ".join(f"{a:>9s}" for a in AXIS_NAMES))
        for key in ("mse", "nrmse", "exact_bin"):
            cells = [overall[key][a] for a in AXIS_NAMES]
            lines.append(f"{key:9s} " + " ".join(f"{'-':>9s}" if v is None else f"{v:9.4g}" for v in cells))
        lat = overall["latency_s"]
        lines.append(f"all 7 bins equal {overall['exact_bin']['all']:.3f}  gripper agreement "
                     f"{overall['gripper_agreement']:.3f}  latency p50 {lat['p50'] * 1e3:.1f} ms "
                     f"p99 {lat['p99'] * 1e3:.1f} ms")
    lines.append(f"episodes: {len(report['episodes'])}")
    if report.get("read_error"):
        lines.append(f"READ ERROR: {report['read_error']}")
    return "\n".join(lines)
