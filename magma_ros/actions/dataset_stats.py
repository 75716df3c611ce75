"""Normalization statistics of recorded actions, in the form OpenVLA and Magma publish them, and the
profile values that follow from them (control rate, gripper mode, step limits). Pure numpy.

``q01``/``q99`` are numpy's default-method (linear) 1st and 99th percentiles over every action,
``std`` is the population standard deviation (``np.std``), as OpenVLA's dataset statistics are.
"""
from __future__ import annotations

import math
from typing import Any, Iterable, Mapping

import numpy as np
from numpy.typing import ArrayLike

from .errors import StatsError
from .stats import NormalizationStats
from .tokenizer import ACTION_DIM

DEFAULT_MASK = (True,) * (ACTION_DIM - 1) + (False,)  # the gripper axis is not normalized
LIMIT_MARGIN = 1.25  # step limits cover every decodable action (q01..q99) with this margin
MIN_STEP_LIMIT = 1e-3  # a step limit is never below this (m or rad), even for an axis that never moved


def action_statistics(actions: ArrayLike, num_trajectories: int,
                      mask: tuple[bool, ...] = DEFAULT_MASK) -> NormalizationStats:
    """Statistics of an (N, 7) array of finite actions recorded in ``num_trajectories`` episodes."""
    a = np.asarray(actions, dtype=np.float64)
    if a.ndim != 2 or a.shape[1] != ACTION_DIM:
        raise StatsError(f"actions: expected an (N, {ACTION_DIM}) array, got shape {a.shape}")
    if a.shape[0] == 0:
        raise StatsError("actions: none to compute statistics from")
    if not np.all(np.isfinite(a)):
        raise StatsError("actions: every value must be finite (drop NaN and infinite actions first)")

    def floats(values: np.ndarray) -> tuple[float, ...]:
        return tuple(float(v) for v in values)

    return NormalizationStats(
        mask=tuple(bool(m) for m in mask), q01=floats(np.percentile(a, 1, axis=0)),
        q99=floats(np.percentile(a, 99, axis=0)), mean=floats(a.mean(axis=0)), std=floats(a.std(axis=0)),
        min=floats(a.min(axis=0)), max=floats(a.max(axis=0)), num_transitions=int(a.shape[0]),
        num_trajectories=int(num_trajectories),
    )


def estimate_control_rate(times_ns: Iterable[ArrayLike]) -> tuple[float, float]:
    """(rate in Hz, median interval in s) from the timestamps of consecutive recorded actions, one
    sequence per recording; the median ignores pauses between episodes."""
    intervals = [np.diff(np.asarray(t, dtype=np.int64)) for t in times_ns]
    steps = np.concatenate(intervals) if intervals else np.empty(0, dtype=np.int64)
    steps = steps[steps > 0]
    if steps.size == 0:
        raise StatsError("control rate: cannot be estimated from fewer than two actions with distinct times")
    median_s = float(np.median(steps)) / 1e9
    return float(f"{1.0 / median_s:.3g}"), median_s


def propose_gripper(values: ArrayLike) -> dict[str, Any]:
    """A profile ``gripper`` section for these recorded gripper values: ``binary`` when they are
    only 0 and 1, else ``continuous`` over a range holding every value and [0, 1]."""
    v = np.asarray(values, dtype=np.float64).reshape(-1)
    if v.size and np.all((v == 0.0) | (v == 1.0)):
        return {"mode": "binary", "threshold": 0.5, "initial": 1.0}
    low = min(float(v.min()), 0.0) if v.size else 0.0
    high = max(float(v.max()), 1.0) if v.size else 1.0
    return {"mode": "continuous", "open_value": high, "closed_value": low, "initial": 1.0}


def propose_gripper_from_summary(stats: NormalizationStats) -> dict[str, Any]:
    """The gripper section for published statistics (no raw values): ``binary`` when q01, q99, min
    and max of the gripper axis are all 0 or 1."""
    seen = [s[-1] for s in (stats.q01, stats.q99, stats.min, stats.max) if s is not None]
    return propose_gripper(seen)


def propose_limits(stats: NormalizationStats) -> dict[str, float]:
    """Per-step limits covering every action the model can decode with ``stats`` (q01..q99 on
    normalized axes, [-1, 1] on the others) with a margin, rounded up to two significant digits."""
    reach = [max(abs(lo), abs(hi)) if m else 1.0 for m, lo, hi in zip(stats.mask, stats.q01, stats.q99)]
    return {"max_linear_step": _round_up(max(reach[0:3]) * LIMIT_MARGIN),
            "max_angular_step": _round_up(max(reach[3:6]) * LIMIT_MARGIN)}


def _round_up(value: float) -> float:
    value = max(value, MIN_STEP_LIMIT)
    scale = 10.0 ** (math.floor(math.log10(value)) - 1)
    return float(f"{math.ceil(value / scale - 1e-9) * scale:.2g}")


def published_statistics(data: Any, key: str, where: str) -> NormalizationStats:
    """The action statistics of dataset ``key`` in a published ``dataset_statistics.json`` mapping
    (``{key: {"action": {...}, "num_transitions": N, "num_trajectories": M}}``, or a model config
    holding it under ``norm_stats``). Other sections (``proprio``) are ignored."""
    if isinstance(data, Mapping) and key not in data and isinstance(data.get("norm_stats"), Mapping):
        data = data["norm_stats"]
    if not isinstance(data, Mapping):
        raise StatsError(f"{where}: expected a mapping of dataset names to statistics, got {type(data).__name__}")
    if key not in data:
        keys = ", ".join(sorted(str(k) for k in data)) or "none"
        raise StatsError(f"{where}: no dataset {key!r} (keys present: {keys})")
    entry = data[key]
    if not isinstance(entry, Mapping) or "action" not in entry:
        raise StatsError(f"{where}: {key}: expected a mapping with an 'action' section")
    action = entry["action"]
    if not isinstance(action, Mapping):
        raise StatsError(f"{where}: {key}.action: expected a mapping, got {type(action).__name__}")
    merged = dict(action)
    for count in ("num_transitions", "num_trajectories"):
        if count in entry and count not in merged:
            merged[count] = entry[count]
    return NormalizationStats.from_mapping(merged, f"{where}: {key}.action")
