"""What a fine-tuning run writes: the work directory (``OUT.partial``, renamed to ``OUT`` at the
end), ``metrics.jsonl``, ``training.png``, resumable checkpoints and the final directory (adapter,
merged checkpoint in the official Magma layout, ``robot.yaml``)."""
from __future__ import annotations

import json
import math
import shutil
from pathlib import Path
from typing import Any

from ..errors import UserError

CHECKPOINTS = "checkpoints"
STATE_FILE = "trainer_state.json"
OPTIMIZER_FILE = "optimizer.pt"
METRICS_FILE = "metrics.jsonl"
PLOT_FILE = "training.png"
PROFILE_FILE = "robot.yaml"
PARTIAL_SUFFIX = ".partial"


def work_directory(out: Path) -> Path:
    """Where a run writes until it is complete: ``OUT.partial`` beside ``OUT``."""
    return out.with_name(out.name + PARTIAL_SUFFIX)


def check_output(out: Path, overwrite: bool, resume: Path | None) -> None:
    """UserError when ``out`` exists (without ``overwrite``), or a previous run's work directory is
    in the way of a fresh run."""
    if out.exists() and not overwrite:
        raise UserError(f"--out {out}: exists; choose another directory or give --overwrite")
    work = work_directory(out)
    if work.exists() and resume is None and not overwrite:
        raise UserError(f"{work}: an unfinished run's work directory exists; continue it with --resume {work}, "
                        "or give --overwrite to start again")
    if resume is not None and work.resolve() not in (resume.resolve(), *resume.resolve().parents):
        raise UserError(f"--resume {resume}: not inside {work} (resume a run with the same --out)")


def newest_checkpoint(path: Path) -> Path:
    """``path`` itself if it is a checkpoint, else the newest checkpoint under ``path/checkpoints``."""
    if (path / STATE_FILE).is_file():
        return path
    found = sorted((path / CHECKPOINTS).glob("step-*")) if (path / CHECKPOINTS).is_dir() else []
    found = [p for p in found if (p / STATE_FILE).is_file()]
    if not found:
        raise UserError(f"--resume {path}: no checkpoint there (expected {STATE_FILE} or {CHECKPOINTS}/step-N)")
    return found[-1]


class MetricsLog:
    """Appends one JSON object per line to ``metrics.jsonl`` and keeps them for the plot."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.records: list[dict[str, Any]] = []
        if path.is_file():  # a resumed run continues its log
            self.records = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]

    def write(self, record: dict[str, Any]) -> None:
        self.records.append(record)
        with self.path.open("a", encoding="utf-8") as handle:
            handle.write(json.dumps(record) + "\n")

    def truncate_after(self, step: int) -> None:
        """Drop records after ``step`` (a resumed run repeats what came after its checkpoint)."""
        self.records = [r for r in self.records if r["step"] <= step]
        self.path.write_text("".join(json.dumps(r) + "\n" for r in self.records), encoding="utf-8")


def plot_training(records: list[dict[str, Any]], path: Path, title: str) -> None:
    """Training loss and validation all-7-bins-exact rate / gripper agreement against the step."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    train = [r for r in records if "loss" in r]
    val = [r for r in records if "val" in r and r["val"].get("frames")]
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(9, 7), sharex=True)
    top.plot([r["step"] for r in train], [r["loss"] for r in train], lw=1, label="training loss (answer tokens)")
    top.set_yscale("log" if train and min(r["loss"] for r in train) > 0 else "linear")
    top.set_ylabel("loss")
    top.legend(loc="upper right")
    top.set_title(title)
    if val:
        steps = [r["step"] for r in val]
        bottom.plot(steps, [r["val"]["exact_bin"]["all"] for r in val], marker="o", label="all 7 bins exact")
        bottom.plot(steps, [r["val"]["gripper_agreement"] for r in val], marker="s", label="gripper agreement")
        bottom.legend(loc="lower right")
    else:
        bottom.text(0.5, 0.5, "no validation frames", ha="center", va="center", transform=bottom.transAxes)
    bottom.set_ylim(-0.02, 1.02)
    bottom.set_xlabel("optimizer step")
    bottom.set_ylabel("validation rate")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def finite_or_none(value: float) -> float | None:
    """JSON-safe number."""
    return float(value) if math.isfinite(value) else None


def finish(work: Path, out: Path, overwrite: bool) -> None:
    """Move the complete work directory to ``out`` (replacing it only with ``overwrite``)."""
    if out.exists():
        if not overwrite:
            raise UserError(f"--out {out}: appeared during the run; the result stays in {work}")
        if out.is_dir() and not out.is_symlink():
            shutil.rmtree(out)
        else:
            out.unlink()
    work.rename(out)
