"""Streaming metrics of predicted vs recorded actions: per-axis MSE and NRMSE, exact-bin and
gripper agreement, latency percentiles. Constant memory per accumulator except latencies
(one float per frame)."""
from __future__ import annotations

from array import array
from typing import Any

import numpy as np

from ..actions.tokenizer import ACTION_DIM, AXIS_NAMES

OPEN_ABOVE = 0.5  # a gripper command above this is "open"


class MetricsAccumulator:
    """Sums for one episode or the whole bag."""

    def __init__(self, span: np.ndarray, bin_dims: int) -> None:
        self.span = np.asarray(span, dtype=np.float64)  # q99 - q01 per axis
        self.bin_dims = bin_dims  # axes compared for exact-bin agreement (7, or 6 without the gripper)
        self.frames = 0
        self.sq_err = np.zeros(ACTION_DIM)
        self.bin_equal = np.zeros(ACTION_DIM, dtype=np.int64)
        self.all_bins_equal = 0
        self.gripper_equal = 0
        self.latencies = array("d")

    def add(self, predicted: np.ndarray, truth: np.ndarray, pred_ids: np.ndarray, truth_ids: np.ndarray,
            pred_command: float, truth_command: float, latency_s: float) -> None:
        """One evaluated frame (actions in comparable units; ids of the 7 axes; gripper commands)."""
        self.frames += 1
        self.sq_err += (predicted - truth) ** 2
        equal = pred_ids[: self.bin_dims] == truth_ids[: self.bin_dims]
        self.bin_equal[: self.bin_dims] += equal
        self.all_bins_equal += bool(np.all(equal))
        self.gripper_equal += (pred_command > OPEN_ABOVE) == (truth_command > OPEN_ABOVE)
        self.latencies.append(latency_s)

    def summary(self) -> dict[str, Any]:
        """Metrics as plain JSON values (None where undefined)."""
        n = self.frames
        if n == 0:
            return {"frames": 0}
        mse = self.sq_err / n
        with np.errstate(divide="ignore", invalid="ignore"):
            nrmse = np.where(self.span > 0, np.sqrt(mse) / np.where(self.span > 0, self.span, 1.0), np.nan)
        lat = np.frombuffer(self.latencies, dtype=np.float64)
        exact = {name: float(self.bin_equal[i] / n) if i < self.bin_dims else None
                 for i, name in enumerate(AXIS_NAMES)}
        exact["all"] = float(self.all_bins_equal / n)
        return {
            "frames": n,
            "mse": _per_axis(mse),
            "nrmse": _per_axis(nrmse),
            "nrmse_mean_arm": _number(float(np.nanmean(nrmse[:6])) if np.any(np.isfinite(nrmse[:6])) else np.nan),
            "exact_bin": exact,
            "gripper_agreement": float(self.gripper_equal / n),
            "latency_s": {
                "p50": float(np.percentile(lat, 50)),
                "p99": float(np.percentile(lat, 99)),
                "mean": float(lat.mean()),
                "max": float(lat.max()),
            },
        }


def _number(value: float) -> float | None:
    return float(value) if np.isfinite(value) else None


def _per_axis(values: np.ndarray) -> dict[str, float | None]:
    return {name: _number(float(v)) for name, v in zip(AXIS_NAMES, values)}
