"""The ``fixed`` backend: a constant action in robot units, for bring-up and axis checks."""
from __future__ import annotations

import numpy as np

from ..actions.profiles import RobotProfile
from ..actions.tokenizer import ACTION_DIM, LLAMA3_BASE_VOCAB
from .base import PolicyConfigError, Prediction, check_image
from .config import BackendConfig


class FixedPolicy:
    """Returns the same 7-DoF action (robot units, before safety) for every image."""

    vocab_size = LLAMA3_BASE_VOCAB

    def __init__(self, action: tuple[float, ...] | list[float] | np.ndarray) -> None:
        arr = np.asarray(action, dtype=np.float64)
        if arr.shape != (ACTION_DIM,):
            raise PolicyConfigError(f"fixed_action: expected {ACTION_DIM} values (x y z roll pitch yaw gripper), "
                                    f"got {arr.size}")
        if not np.all(np.isfinite(arr)):
            raise PolicyConfigError(f"fixed_action: values must be finite, got {arr.tolist()}")
        self._action = arr

    def predict(self, image: np.ndarray, instruction: str) -> Prediction:
        """The configured action; the image is checked but not used."""
        check_image(image)
        return Prediction(action=self._action.copy(), text="fixed", timings={"inference": 0.0})

    def close(self) -> None:
        """Nothing to release."""


def create(config: BackendConfig, profile: RobotProfile) -> FixedPolicy:
    """Factory for ``backend: fixed``."""
    return FixedPolicy(config.fixed_action)
