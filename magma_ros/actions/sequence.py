"""Pull the seven action token ids out of a generated token sequence."""
from __future__ import annotations

from typing import Iterable

import numpy as np
from numpy.typing import ArrayLike

from .errors import ActionTokenError
from .tokenizer import ACTION_DIM, ActionTokenizer


def extract_action_ids(
    generated: ArrayLike, tokenizer: ActionTokenizer, eos_ids: Iterable[int] = ()
) -> np.ndarray:
    """Return the 7 action ids of ``generated`` (new tokens only), read up to the first EOS.

    Raises ``ActionTokenError`` naming what was found when the tokens before EOS are not
    exactly seven action tokens.
    """
    seq = np.asarray(generated).reshape(-1)
    if seq.size and seq.dtype.kind not in "iu":
        raise ActionTokenError(f"token ids must be integers, got dtype {seq.dtype}")
    seq = seq.astype(np.int64)
    eos = set(int(e) for e in eos_ids)
    stop = next((i for i, t in enumerate(seq.tolist()) if t in eos), seq.size)
    body = seq[:stop]
    is_action = tokenizer.is_action_id(body)
    others = [(i, int(t)) for i, t in enumerate(body.tolist()) if not is_action[i]]
    if others or body.size != ACTION_DIM:
        found = f"{int(is_action.sum())} action token(s)"
        if others:
            shown = ", ".join(f"id {t} at position {i}" for i, t in others[:5])
            found += f" and {len(others)} other token(s) ({shown})"
        ending = "before EOS" if stop < seq.size else "in a sequence without EOS"
        raise ActionTokenError(f"expected exactly {ACTION_DIM} action tokens {ending}, found {found}")
    return body
