"""The small interface between the robot side and any model: ``Policy`` and ``Prediction``."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

import numpy as np

from ..actions.tokenizer import ACTION_DIM


class PolicyError(RuntimeError):
    """A backend failed to produce an action (unreachable endpoint, bad reply, model error).

    The node treats it as a fault: the robot is commanded to stop until a good action arrives.
    """


class PolicyConfigError(ValueError):
    """A backend was configured with invalid or missing options (a user error)."""


@dataclass(frozen=True)
class Prediction:
    """One model answer: either 7 action token ids or a 7-vector already in robot units."""

    token_ids: np.ndarray | None = None
    action: np.ndarray | None = None
    text: str = ""
    timings: dict[str, float] = field(default_factory=dict)  # seconds, e.g. {"inference": 0.12}

    def __post_init__(self) -> None:
        if (self.token_ids is None) == (self.action is None):
            raise ValueError("a Prediction holds exactly one of token_ids and action")
        if self.token_ids is not None:
            ids = np.asarray(self.token_ids)
            if ids.shape != (ACTION_DIM,) or ids.dtype.kind not in "iu":
                raise ValueError(f"token_ids must be {ACTION_DIM} integers, got shape {ids.shape} dtype {ids.dtype}")
            object.__setattr__(self, "token_ids", ids.astype(np.int64))
        else:
            act = np.asarray(self.action, dtype=np.float64)
            if act.shape != (ACTION_DIM,):
                raise ValueError(f"action must be a {ACTION_DIM}-vector, got shape {act.shape}")
            object.__setattr__(self, "action", act)


@runtime_checkable
class Policy(Protocol):
    """A model backend. ``predict`` may block; callers run it off the control loop."""

    vocab_size: int  # base vocabulary of its tokenizer (action ids are the 256 below it)

    def predict(self, image: np.ndarray, instruction: str) -> Prediction:
        """``image`` is H x W x 3 uint8 RGB. Raises ``PolicyError`` on failure."""
        ...

    def close(self) -> None:
        """Release connections, GPU memory and threads."""
        ...


def check_image(image: np.ndarray) -> None:
    """Raise ``ValueError`` unless ``image`` is a non-empty H x W x 3 uint8 array."""
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        desc = f"shape {getattr(image, 'shape', None)} dtype {getattr(image, 'dtype', type(image).__name__)}"
        raise ValueError(f"image must be H x W x 3 uint8 RGB, got {desc}")
    if image.shape[0] == 0 or image.shape[1] == 0:
        raise ValueError(f"image is empty: shape {image.shape}")
