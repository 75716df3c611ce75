"""Token ids or token text -> end-effector deltas in robot units (the whole action contract)."""
from __future__ import annotations

from typing import Iterable

import numpy as np
from numpy.typing import ArrayLike

from .errors import ActionTokenError
from .sequence import extract_action_ids
from .stats import NormalizationStats
from .text import REPLACEMENT_CHAR, TextTokenizer, preview
from .tokenizer import ACTION_DIM, AXIS_NAMES, ActionTokenizer

HINT_MAX_CHARS = 1024  # longer texts are not re-tokenized just to word an error message


class ActionDecoder:
    """Decodes 7 action token ids (any leading batch shape) with one robot's statistics."""

    def __init__(self, stats: NormalizationStats, tokenizer: ActionTokenizer | None = None) -> None:
        self.stats = stats
        self.tokenizer = tokenizer or ActionTokenizer()

    def decode_ids(self, ids: ArrayLike) -> np.ndarray:
        """(..., 7) action ids -> (..., 7) robot-unit actions."""
        arr = np.asarray(ids)
        if arr.ndim == 0 or arr.shape[-1] != ACTION_DIM:
            raise ActionTokenError(f"expected {ACTION_DIM} action ids per action, got shape {arr.shape}")
        return self.stats.unnormalize(self.tokenizer.ids_to_normalized(arr))

    def decode_sequence(self, generated: ArrayLike, eos_ids: Iterable[int] = ()) -> np.ndarray:
        """Generated ids (up to EOS) -> one robot-unit action."""
        return self.decode_ids(extract_action_ids(generated, self.tokenizer, eos_ids))

    def decode_text(self, text: str, text_tokenizer: TextTokenizer) -> np.ndarray:
        """Action token text (as the model or an endpoint returns it) -> one robot-unit action."""
        return self.decode_ids(text_ids_to_action_ids(text, text_tokenizer, self.tokenizer))

    def encode(self, action: ArrayLike) -> np.ndarray:
        """(..., 7) robot-unit actions -> (..., 7) action ids: ``decode_ids`` gives back each action to
        within half a bin (clipped to q01..q99), and ``encode(decode_ids(ids)) == ids`` for every id
        but the edge id ``vocab_size - 256``, which decodes like ``vocab_size - 255``."""
        return self.tokenizer.normalized_to_ids(self.stats.normalize(action))


def text_ids_to_action_ids(text: str, text_tokenizer: TextTokenizer, tokenizer: ActionTokenizer) -> np.ndarray:
    """The seven action ids that ``text`` was decoded from.

    The text's bytes are split into action tokens rather than re-tokenized: byte-level BPE
    re-tokenizes about a quarter of Magma's action sequences into other tokens.
    """
    try:
        return text_tokenizer.split_action_text(text, tokenizer.min_action_id, tokenizer.max_action_id, ACTION_DIM)
    except ActionTokenError as split_error:
        if REPLACEMENT_CHAR not in text and len(text) <= HINT_MAX_CHARS and _encodable(text):
            try:  # say what the text holds, in tokens
                extract_action_ids(text_tokenizer.encode(text), tokenizer)
            except ActionTokenError as exc:
                raise ActionTokenError(f"text {preview(text)}: {exc}") from None
        raise split_error from None


def _encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # lone surrogates
        return False
    return True


def action_to_dict(action: ArrayLike) -> dict[str, float]:
    """A 7-vector as ``{"x", "y", "z", "roll", "pitch", "yaw", "gripper"}`` floats."""
    values = np.asarray(action, dtype=np.float64).reshape(-1)
    if values.size != ACTION_DIM:
        raise ActionTokenError(f"expected {ACTION_DIM} values, got {values.size}")
    return {name: float(v) for name, v in zip(AXIS_NAMES, values)}
