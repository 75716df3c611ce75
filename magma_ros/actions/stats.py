"""Per-robot normalization statistics (q01/q99 quantiles and mask) and (un)normalization."""
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


@dataclass(frozen=True)
class NormalizationStats:
    """q01/q99 per axis; ``mask`` marks axes that are unnormalized (the gripper usually is not)."""

    mask: tuple[bool, ...]
    q01: tuple[float, ...]
    q99: tuple[float, ...]

    @classmethod
    def from_mapping(cls, data: Any, where: str = "stats") -> "NormalizationStats":
        """Validate a mapping with ``mask``, ``q01`` and ``q99``; errors name ``where`` and the key."""
        if not isinstance(data, Mapping):
            raise StatsError(f"{where}: expected a mapping with keys mask, q01, q99, got {type(data).__name__}")
        missing = [k for k in ("mask", "q01", "q99") if k not in data]
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
        return cls(mask=mask, q01=q01, q99=q99)

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

    def as_dict(self) -> dict[str, list]:
        """Plain lists, as in the stats file format."""
        return {"mask": list(self.mask), "q01": list(self.q01), "q99": list(self.q99)}

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


def _bools(value: Any, where: str) -> tuple[bool, ...]:
    out = []
    for i, item in enumerate(_sequence(value, where)):
        if not isinstance(item, (bool, np.bool_)):
            raise StatsError(f"{where}[{i}]: expected true or false, got {item!r:.60}")
        out.append(bool(item))
    return tuple(out)
