"""Gripper conventions: the model's gripper value -> a command in [0, 1] (1 open, 0 closed)."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal, Mapping

from ..finite import finite_float
from .errors import ProfileError

GripperMode = Literal["binary", "continuous", "relative"]
OPEN, CLOSED = 1.0, 0.0


@dataclass(frozen=True)
class GripperConfig:
    """How a robot's model output drives its gripper.

    - ``binary``: open (1.0) when the value is above ``threshold``, else closed (0.0).
    - ``continuous``: the value is an opening in [``closed_value``, ``open_value``], rescaled to [0, 1].
    - ``relative`` (RT-1 / Google robot): the change of the model's absolute opening between steps
      (previous - current) above ``threshold`` closes, below ``-threshold`` opens; a triggered change is
      repeated for ``sticky_repeats`` steps before a new one is accepted.
    """

    mode: GripperMode = "binary"
    threshold: float = 0.5
    open_value: float = 1.0
    closed_value: float = 0.0
    sticky_repeats: int = 0
    initial: float = OPEN

    @classmethod
    def from_mapping(cls, data: Any, where: str) -> "GripperConfig":
        """Validate a profile's ``gripper`` section; errors name ``where`` and the key."""
        if not isinstance(data, Mapping):
            raise ProfileError(f"{where}: expected a mapping, got {type(data).__name__}")
        known = {"mode", "threshold", "open_value", "closed_value", "sticky_repeats", "initial"}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ProfileError(f"{where}.{unknown[0]}: unknown key (known: {', '.join(sorted(known))})")
        mode = data.get("mode")
        if mode not in ("binary", "continuous", "relative"):
            raise ProfileError(f"{where}.mode: must be binary, continuous or relative, got {mode!r}")
        values: dict[str, Any] = {"mode": mode}
        for key in ("threshold", "open_value", "closed_value", "initial"):
            if key in data:
                values[key] = finite_float(data[key], f"{where}.{key}", ProfileError)
        if "sticky_repeats" in data:
            value = data["sticky_repeats"]
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ProfileError(f"{where}.sticky_repeats: expected a whole number >= 0, got {value!r}")
            values["sticky_repeats"] = value
        config = cls(**values)
        if config.mode == "continuous" and config.open_value == config.closed_value:
            raise ProfileError(f"{where}: open_value and closed_value must differ")
        if not 0.0 <= config.initial <= 1.0:
            raise ProfileError(f"{where}.initial: must be in [0, 1], got {config.initial!r}")
        return config


class GripperConverter:
    """Stateful conversion of successive model gripper values to commands in [0, 1]."""

    def __init__(self, config: GripperConfig) -> None:
        self.config = config
        self.reset()

    def reset(self) -> None:
        """Forget history (new episode or after a stop)."""
        self.command = self.config.initial
        self._previous: float | None = None
        self._sticky_value = 0.0
        self._sticky_left = 0

    def __call__(self, value: float) -> float:
        """The command for the model's gripper ``value`` at this step."""
        if not math.isfinite(value):
            raise ValueError(f"gripper value must be finite, got {value!r}")
        cfg = self.config
        if cfg.mode == "binary":
            self.command = OPEN if value > cfg.threshold else CLOSED
        elif cfg.mode == "continuous":
            opening = (value - cfg.closed_value) / (cfg.open_value - cfg.closed_value)
            self.command = min(max(opening, 0.0), 1.0)
        else:
            self.command = self._relative(value)
        return self.command

    def _relative(self, value: float) -> float:
        cfg = self.config
        change = 0.0 if self._previous is None else self._previous - value
        self._previous = value
        if self._sticky_left > 0:
            change = self._sticky_value
            self._sticky_left -= 1
        elif abs(change) > cfg.threshold and cfg.sticky_repeats > 0:
            self._sticky_value = change
            self._sticky_left = cfg.sticky_repeats - 1
        if change > cfg.threshold:
            return CLOSED
        if change < -cfg.threshold:
            return OPEN
        return self.command
