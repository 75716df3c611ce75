"""Constrained decoding of the 7 action tokens: every step may only pick one of the 256 action
ids. Two paths give the same greedy ids: a plain KV-cached loop over the adapter's
``prefill``/``step`` (batched, one temperature per row) and transformers' ``generate`` with a
logits processor (runtimes without a verified KV-cached loop).

torch and transformers are imported by the functions that need them.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from ..actions.tokenizer import ACTION_DIM
from ..errors import one_line
from .base import PolicyError
from .hf_adapters import ModelAdapter


@dataclass
class PreparedAction:
    """One action request made ready off the model thread: the adapter's inputs for it (see
    ``ModelAdapter.prepare``), its temperature and the seconds that preparation took."""

    inputs: Any
    temperature: float
    preprocess_s: float


class ActionOnlyLogits:
    """Logits processor: every id outside ``[lo, hi)`` (the 256 action ids) gets -inf."""

    def __init__(self, lo: int, hi: int) -> None:
        self.lo, self.hi = lo, hi

    def __call__(self, input_ids: Any, scores: Any) -> Any:
        scores[:, : self.lo] = -math.inf
        scores[:, self.hi:] = -math.inf
        return scores


def decode_direct(adapter: ModelAdapter, inputs: dict[str, Any], temperatures: Sequence[float],
                  action_only: ActionOnlyLogits) -> np.ndarray:
    """The 7 constrained steps as a KV-cached loop: one prefill (last position's logits only),
    then one step per token, picking within the action ids' logits slice. Works per row (one
    temperature per row; 0 = greedy), so a left-padded batch decodes each row as it would alone.
    Returns (rows, 7) ids."""
    import torch

    lo, hi = action_only.lo, action_only.hi
    logits, state = adapter.prefill(inputs)
    temps = torch.tensor(temperatures, dtype=torch.float32, device=logits.device).unsqueeze(1)
    sampled = temps[:, 0] > 0
    ids = []
    for step in range(ACTION_DIM):
        scores = logits[:, lo:hi].float()
        pick = scores.argmax(dim=-1, keepdim=True)
        if bool(sampled.any()):
            probs = torch.softmax(scores[sampled] / temps[sampled], dim=-1)
            pick[sampled] = torch.multinomial(probs, 1)
        token = pick + lo
        ids.append(token)
        if step + 1 < ACTION_DIM:
            logits = adapter.step(token, state)
    return torch.cat(ids, dim=1).cpu().numpy().astype(np.int64)


def decode_generate(adapter: ModelAdapter, inputs: dict[str, Any], temperature: float,
                    action_only: ActionOnlyLogits, pad_id: int | None) -> np.ndarray:
    """``generate`` for exactly 7 tokens with the action-only logits processor: (7,) ids."""
    from transformers import LogitsProcessorList

    target, kwargs, skip = adapter.generate_call(inputs)
    out = target.generate(**kwargs, max_new_tokens=ACTION_DIM, num_beams=1, use_cache=True,
                          logits_processor=LogitsProcessorList([action_only]),
                          pad_token_id=pad_id, **sampling_kwargs(temperature, 1.0))
    return out[0, skip:].detach().cpu().numpy().astype(np.int64)


def check_action_ids(ids: np.ndarray, action_only: ActionOnlyLogits, model_name: str) -> None:
    """``PolicyError`` unless ``ids`` are 7 action ids."""
    lo, hi = action_only.lo, action_only.hi
    if ids.shape != (ACTION_DIM,) or not np.all((ids >= lo) & (ids < hi)):
        raise PolicyError(f"model {model_name}: constrained decoding returned {ids.tolist()}, "
                          f"expected {ACTION_DIM} ids in {lo}..{hi - 1}")


def sampling_kwargs(temperature: float, top_p: float) -> dict[str, Any]:
    """``generate`` keyword arguments: greedy at temperature 0, else plain sampling with ``top_p``."""
    if temperature == 0.0:
        return {"do_sample": False}
    return {"do_sample": True, "temperature": float(temperature), "top_p": float(top_p), "top_k": 0}


def generation_failed(model_name: str, exc: BaseException) -> PolicyError:
    """The backend error for a model failure during generation."""
    return PolicyError(f"model {model_name}: generation failed: {type(exc).__name__}: {one_line(exc)}")
