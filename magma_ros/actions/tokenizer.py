"""Token ids <-> bins <-> normalized actions in [-1, 1] (the OpenVLA/Magma binning)."""
from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

from .errors import ActionTokenError

ACTION_DIM = 7
AXIS_NAMES = ("x", "y", "z", "roll", "pitch", "yaw", "gripper")
DEFAULT_N_BINS = 256
LLAMA3_BASE_VOCAB = 128000


class ActionTokenizer:
    """Maps action token ids to normalized values and back, vectorized over any leading shape.

    Action ids are the ``n_bins`` ids just below ``vocab_size`` (the tokenizer's base
    vocabulary, 128000 for Llama-3, not counting added special tokens).
    """

    def __init__(self, vocab_size: int = LLAMA3_BASE_VOCAB, n_bins: int = DEFAULT_N_BINS) -> None:
        if n_bins < 2 or vocab_size < n_bins:
            raise ValueError(f"need 2 <= n_bins <= vocab_size, got n_bins={n_bins}, vocab_size={vocab_size}")
        self.vocab_size = int(vocab_size)
        self.n_bins = int(n_bins)
        self.bins = np.linspace(-1.0, 1.0, self.n_bins)
        self.centers = (self.bins[:-1] + self.bins[1:]) / 2.0

    @property
    def min_action_id(self) -> int:
        """Smallest action token id."""
        return self.vocab_size - self.n_bins

    @property
    def max_action_id(self) -> int:
        """Largest action token id."""
        return self.vocab_size - 1

    def is_action_id(self, ids: ArrayLike) -> np.ndarray:
        """Boolean mask of which ids are action tokens."""
        arr = np.asarray(ids)
        return (arr >= self.min_action_id) & (arr <= self.max_action_id)

    def ids_to_bins(self, ids: ArrayLike) -> np.ndarray:
        """Bin-center index ``k`` in [0, n_bins - 2] for each action id."""
        arr = self._checked_ids(ids)
        return np.clip(self.vocab_size - arr - 1, 0, self.centers.shape[0] - 1)

    def ids_to_normalized(self, ids: ArrayLike) -> np.ndarray:
        """Normalized value in [-1, 1] (a bin center) for each action id."""
        return self.centers[self.ids_to_bins(ids)]

    def normalized_to_ids(self, values: ArrayLike) -> np.ndarray:
        """Action token id for each normalized value (clipped to [-1, 1] first)."""
        arr = np.asarray(values, dtype=np.float64)
        if not np.all(np.isfinite(arr)):
            raise ActionTokenError("cannot encode non-finite action values")
        return (self.vocab_size - np.digitize(np.clip(arr, -1.0, 1.0), self.bins)).astype(np.int64)

    def _checked_ids(self, ids: ArrayLike) -> np.ndarray:
        arr = np.asarray(ids)
        if arr.dtype.kind not in "iu":
            raise ActionTokenError(f"token ids must be integers, got dtype {arr.dtype}")
        bad = ~self.is_action_id(arr)
        if np.any(bad):
            flat = arr.reshape(-1)
            where = np.flatnonzero(bad.reshape(-1))
            shown = ", ".join(f"{int(flat[i])} at index {int(i)}" for i in where[:5])
            raise ActionTokenError(
                f"not action tokens (valid ids are {self.min_action_id}..{self.max_action_id}): {shown}"
            )
        return arr.astype(np.int64)
