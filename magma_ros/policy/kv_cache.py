"""The two KV-cached decoding details every model path shares (``hf_adapters.LlavaAdapter`` and
``magma_native.model``): position ids of a left-padded batch and the name of the cache argument."""
from __future__ import annotations

import inspect
from typing import Any


def position_ids(attention_mask: Any) -> Any:
    """Position ids (B, T) counting only attended tokens (padding gets position 1), so a left-padded
    row sees the positions it would have alone."""
    return (attention_mask.long().cumsum(-1) - 1).masked_fill(attention_mask == 0, 1)


def cache_argument(module: Any) -> str:
    """The name of ``module.forward``'s KV-cache argument: ``cache`` in transformers 5.x,
    ``past_key_values`` in 4.x."""
    return "cache" if "cache" in inspect.signature(module.forward).parameters else "past_key_values"
