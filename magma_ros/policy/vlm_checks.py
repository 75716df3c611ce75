"""Checks a loaded vision-language model and its requests must pass: the transformers range of
Magma's remote code, room for the 256 action ids in the vocabulary, loaded LayerScale weights,
end-of-sequence ids, and the per-request generation options.

Pure Python: torch and transformers are never imported here.
"""
from __future__ import annotations

import math
import re
from typing import Any

from ..actions.tokenizer import DEFAULT_N_BINS
from .base import PolicyConfigError, PolicyError

MAGMA_TRANSFORMERS_RANGE = ("4.49", "4.56")  # >= first, < second: the only range Magma's remote code may run on
_LAYERSCALE_NAME = re.compile(r"gamma(_\d+)?")


def check_transformers_version(version: str) -> None:
    """Raise ``PolicyConfigError`` unless ``version`` is in the range Magma's remote code supports."""
    from packaging.version import Version

    low, high = MAGMA_TRANSFORMERS_RANGE
    if not (Version(low) <= Version(version) < Version(high)):
        raise PolicyConfigError(f"transformers {version} cannot run Magma's remote code (trust_remote_code: true): "
                                f"need >={low},<{high}; "
                                "or leave trust_remote_code false to use the native implementation")


def check_vocabulary(base_vocab: int, model_vocab: int, min_base_vocab: int) -> None:
    """The tokenizer must have room for the 256 action ids and the model must score them all."""
    if base_vocab < min_base_vocab:
        raise PolicyError(f"tokenizer base vocabulary is {base_vocab}, expected at least {min_base_vocab} "
                          f"(action ids are the last {DEFAULT_N_BINS} ids of the base vocabulary)")
    if model_vocab < base_vocab:
        raise PolicyError(f"model output vocabulary ({model_vocab}) is smaller than the tokenizer's base "
                          f"vocabulary ({base_vocab}): the action ids cannot all be generated")


def check_layerscale(model: Any) -> None:
    """Raise ``PolicyError`` when LayerScale ``gamma`` weights are all at one constant value.

    Trained LayerScale weights vary per channel; a constant vector means the checkpoint's
    ``gamma`` tensors were not loaded (some transformers versions rename ``gamma`` keys on load)
    and the vision tower would silently produce garbage.
    """
    stuck = []
    for name, param in model.named_parameters():
        if _LAYERSCALE_NAME.fullmatch(name.rsplit(".", 1)[-1]) and param.numel() > 1:
            flat = param.detach().reshape(-1)
            if bool((flat == flat[0]).all()):
                stuck.append(f"{name} (all {float(flat[0]):.3g})")
    if stuck:
        more = f" and {len(stuck) - 3} more" if len(stuck) > 3 else ""
        raise PolicyError("vision tower LayerScale weights are at their initial value, so the checkpoint's "
                          f"gamma weights were not loaded: {', '.join(stuck[:3])}{more}; use a transformers "
                          f"version in >={MAGMA_TRANSFORMERS_RANGE[0]},<{MAGMA_TRANSFORMERS_RANGE[1]} that loads them")


def output_vocab_size(model: Any) -> int:
    """Rows of the output layer, or the (text) config's vocab_size when the model does not expose it."""
    head = model.get_output_embeddings()
    if head is not None and hasattr(head, "out_features"):
        return int(head.out_features)
    config = getattr(model, "config", None)
    for source in (getattr(config, "text_config", None), config):
        size = getattr(source, "vocab_size", None)
        if isinstance(size, int):
            return size
    raise PolicyError(f"{type(model).__name__}: cannot tell the size of its output vocabulary "
                      "(no output embeddings and no vocab_size in its config)")


def eos_ids(model: Any, tokenizer: Any) -> set[int]:
    """End-of-sequence ids named by the model's generation config and by the tokenizer."""
    ids: set[int] = set()
    for source in (getattr(model, "generation_config", None), tokenizer):
        value = getattr(source, "eos_token_id", None)
        if value is None:
            continue
        ids.update(int(v) for v in (value if isinstance(value, (list, tuple)) else [value]))
    return ids


def check_temperature(temperature: float) -> None:
    """``PolicyConfigError`` unless ``temperature`` is a finite number >= 0 (0 = greedy)."""
    if not math.isfinite(temperature) or temperature < 0:
        raise PolicyConfigError(f"temperature: must be >= 0, got {temperature!r}")


def check_text_request(messages: list[dict], max_new_tokens: int, temperature: float, top_p: float) -> None:
    """``PolicyConfigError`` naming the first invalid option of a free-form generation request."""
    check_messages(messages)
    check_temperature(temperature)
    if not (0.0 < top_p <= 1.0):
        raise PolicyConfigError(f"top_p: must be in (0, 1], got {top_p!r}")
    if max_new_tokens < 1:
        raise PolicyConfigError(f"max_new_tokens: must be >= 1, got {max_new_tokens!r}")


def check_messages(messages: list[dict]) -> None:
    """``PolicyConfigError`` unless ``messages`` is a non-empty list of {role, content: str} dicts."""
    if not isinstance(messages, list) or not messages:
        raise PolicyConfigError("messages: expected a non-empty list of {'role', 'content'} dicts")
    for i, m in enumerate(messages):
        if (not isinstance(m, dict) or m.get("role") not in ("system", "user", "assistant")
                or not isinstance(m.get("content"), str)):
            raise PolicyConfigError(f"messages[{i}]: expected {{'role': system|user|assistant, 'content': str}}, "
                                    f"got {m!r:.200}")
