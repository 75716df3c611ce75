"""Per-robot normalization statistics (q01/q99 quantiles and mask) and (un)normalization.

A stats mapping holds ``mask``, ``q01`` and ``q99`` and may carry the other keys OpenVLA and Magma
publish (``mean``, ``std``, ``min``, ``max``, ``num_transitions``, ``num_trajectories``): they are
validated and kept, never used for decoding. Any other key is rejected, wherever the mapping comes
from (a profile, ``magma-ros decode --stats``, a server request).
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import yaml
from numpy.typing import ArrayLike

from ..errors import one_line
from ..finite import finite_float
from .errors import StatsError
from .tokenizer import ACTION_DIM

REQUIRED_KEYS = ("mask", "q01", "q99")
PER_AXIS_KEYS = ("mean", "std", "min", "max")  # optional, 7 finite floats each
COUNT_KEYS = ("num_transitions", "num_trajectories")  # optional, whole numbers >= 0
STATS_KEYS = REQUIRED_KEYS + PER_AXIS_KEYS + COUNT_KEYS


@dataclass(frozen=True)
class NormalizationStats:
    """q01/q99 per axis; ``mask`` marks axes that are unnormalized (the gripper usually is not).
    The published summary (mean, std, min, max per axis; transition and trajectory counts) is optional."""

    mask: tuple[bool, ...]
    q01: tuple[float, ...]
    q99: tuple[float, ...]
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    min: tuple[float, ...] | None = None
    max: tuple[float, ...] | None = None
    num_transitions: int | None = None
    num_trajectories: int | None = None

    @classmethod
    def from_mapping(cls, data: Any, where: str = "stats") -> "NormalizationStats":
        """Validate a stats mapping; errors name ``where`` and the key. The one rule for every
        source: ``mask``, ``q01``, ``q99`` required, the published keys optional, nothing else."""
        if not isinstance(data, Mapping):
            raise StatsError(f"{where}: expected a mapping with keys mask, q01, q99, got {type(data).__name__}")
        unknown = sorted((str(k) for k in data if k not in STATS_KEYS))
        if unknown:
            raise StatsError(f"{where}: unknown key {unknown[0][:60]!r} (known: {', '.join(STATS_KEYS)})")
        missing = [k for k in REQUIRED_KEYS if k not in data]
        if missing:
            raise StatsError(f"{where}: missing key(s) {', '.join(missing)}")
        mask = _bools(data["mask"], f"{where}.mask")
        q01 = _floats(data["q01"], f"{where}.q01")
        q99 = _floats(data["q99"], f"{where}.q99")
        for i, (lo, hi) in enumerate(zip(q01, q99)):
            if lo > hi:
                raise StatsError(f"{where}.q01[{i}]: {lo!r} is greater than q99[{i}] = {hi!r}")
            if not math.isfinite(hi - lo):
                raise StatsError(f"{where}.q99[{i}] - q01[{i}]: {hi!r} - {lo!r} overflows; quantiles this large "
                                 "cannot give finite actions")
        extras: dict[str, Any] = {k: _floats(data[k], f"{where}.{k}") for k in PER_AXIS_KEYS if k in data}
        extras.update({k: _count(data[k], f"{where}.{k}") for k in COUNT_KEYS if k in data})
        for i, s in enumerate(extras.get("std", ())):
            if s < 0:
                raise StatsError(f"{where}.std[{i}]: must be >= 0, got {s!r}")
        if "min" in extras and "max" in extras:
            for i, (lo, hi) in enumerate(zip(extras["min"], extras["max"])):
                if lo > hi:
                    raise StatsError(f"{where}.min[{i}]: {lo!r} is greater than max[{i}] = {hi!r}")
        return cls(mask=mask, q01=q01, q99=q99, **extras)

    @classmethod
    def from_file(cls, path: str | Path) -> "NormalizationStats":
        """Load stats from a YAML or JSON file (a top-level ``normalization`` key is accepted)."""
        path = Path(path)
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise StatsError(f"{path}: cannot read stats file: {exc.strerror or exc}") from None
        except UnicodeDecodeError as exc:
            raise StatsError(f"{path}: not UTF-8 text (byte {exc.start})") from None
        kind = "JSON" if path.suffix.lower() == ".json" else "YAML"
        try:
            data = json.loads(text) if kind == "JSON" else yaml.safe_load(text)
        except (json.JSONDecodeError, yaml.YAMLError) as exc:
            raise StatsError(f"{path}: not valid {kind}: {one_line(exc)[:300]}") from None
        except RecursionError:
            raise StatsError(f"{path}: {kind} nested too deeply to be a stats file") from None
        if isinstance(data, Mapping) and "normalization" in data and "q01" not in data:
            return cls.from_mapping(data["normalization"], f"{path}: normalization")
        return cls.from_mapping(data, str(path))

    def as_dict(self) -> dict[str, Any]:
        """Plain lists and numbers, as in the stats file format (optional keys only when present)."""
        out: dict[str, Any] = {"mask": list(self.mask), "q01": list(self.q01), "q99": list(self.q99)}
        for key in PER_AXIS_KEYS + COUNT_KEYS:
            value = getattr(self, key)
            if value is not None:
                out[key] = list(value) if isinstance(value, tuple) else value
        return out

    def unnormalize(self, normalized: ArrayLike) -> np.ndarray:
        """[-1, 1] -> robot units on masked axes; unmasked axes pass through. Any leading shape."""
        n = np.asarray(normalized, dtype=np.float64)
        q01, q99 = np.asarray(self.q01), np.asarray(self.q99)
        return np.where(np.asarray(self.mask), 0.5 * (n + 1.0) * (q99 - q01) + q01, n)

    def normalize(self, action: ArrayLike) -> np.ndarray:
        """Robot units -> [-1, 1] on masked axes (clipped); axes with q01 == q99 map to 0."""
        a = np.asarray(action, dtype=np.float64)
        q01, q99 = np.asarray(self.q01), np.asarray(self.q99)
        span = q99 - q01
        safe = np.where(span > 0, span, 1.0)
        with np.errstate(over="ignore"):  # a tiny span overflows to +-inf, which clips to +-1
            scaled = np.where(span > 0, 2.0 * (a - q01) / safe - 1.0, 0.0)
        return np.where(np.asarray(self.mask), np.clip(scaled, -1.0, 1.0), a)


def _sequence(value: Any, where: str) -> list:
    if isinstance(value, (str, bytes, Mapping)) or not hasattr(value, "__len__"):
        raise StatsError(f"{where}: expected a list of {ACTION_DIM} values, got {type(value).__name__}")
    items = list(value)
    if len(items) != ACTION_DIM:
        raise StatsError(f"{where}: expected exactly {ACTION_DIM} values, got {len(items)}")
    return items


def _floats(value: Any, where: str) -> tuple[float, ...]:
    return tuple(finite_float(item, f"{where}[{i}]", StatsError) for i, item in enumerate(_sequence(value, where)))


def _count(value: Any, where: str) -> int:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)) or value < 0:
        raise StatsError(f"{where}: expected a whole number >= 0, got {value!r:.60}")
    return int(value)


def _bools(value: Any, where: str) -> tuple[bool, ...]:
    out = []
    for i, item in enumerate(_sequence(value, where)):
        if not isinstance(item, (bool, np.bool_)):
            raise StatsError(f"{where}[{i}]: expected true or false, got {item!r:.60}")
        out.append(bool(item))
    return tuple(out)
