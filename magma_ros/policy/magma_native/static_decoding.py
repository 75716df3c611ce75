"""The native Magma's 7-token loop over a static KV cache, optionally with the decode step
compiled (``compile: true``; CUDA graphs on a GPU via ``mode="reduce-overhead"``).

A static cache has fixed shapes: its length is the prompt plus the 7 action tokens, rounded up to
``LENGTH_BUCKET`` so that prompts of similar length reuse one cache (and one compiled graph). The
attention mask spans the whole cache (unused slots masked out) and is updated in place. One cache
per (batch size, length) is kept and reset at each prefill. Needs transformers 5.x (its
``StaticCache`` tracks the write position itself).
"""
from __future__ import annotations

from typing import Any

import torch

from ...actions.tokenizer import ACTION_DIM
from ..base import PolicyConfigError
from .adapter import MagmaNativeAdapter
from .model import DecodeState, MagmaForActions

LENGTH_BUCKET = 128


class StaticDecoder:
    """``prefill``/``step`` like ``MagmaForActions``'s, on static caches, with an optional compiled step."""

    def __init__(self, model: MagmaForActions, compile_step: bool, device: str) -> None:
        try:
            from transformers import StaticCache
        except ImportError:  # pragma: no cover - every supported transformers has it
            raise PolicyConfigError("compile: needs transformers' StaticCache (transformers>=5)") from None
        if model._cache_kwarg != "cache":
            raise PolicyConfigError("compile: the static KV cache needs transformers>=5 (this one is 4.x); "
                                    "set compile: false or upgrade transformers")
        self.model = model
        self._static_cache = StaticCache
        self._caches: dict[tuple[int, int], Any] = {}
        self._step = self._eager_step
        if compile_step:
            mode = "reduce-overhead" if str(device).startswith("cuda") else None
            self._step = torch.compile(self._eager_step, mode=mode, fullgraph=False, dynamic=False)

    def prefill(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, pixel_values: torch.Tensor | None = None,
                image_sizes: torch.Tensor | None = None) -> tuple[torch.Tensor, DecodeState]:
        embeds, mask, positions = self.model.embed(input_ids, attention_mask, pixel_values, image_sizes)
        batch, length = mask.shape
        cache = self._cache(batch, length + ACTION_DIM, embeds)
        full_mask = mask.new_zeros(batch, -(-(length + ACTION_DIM) // LENGTH_BUCKET) * LENGTH_BUCKET)
        full_mask[:, :length] = mask
        lm = self.model.language_model
        out = lm.model(inputs_embeds=embeds, attention_mask=full_mask, position_ids=positions, cache=cache,
                       use_cache=True)
        logits = lm.lm_head(out.last_hidden_state[:, -1]).float()
        state = DecodeState(cache, full_mask, positions[:, -1:].clone())
        state.filled = length  # type: ignore[attr-defined]
        return logits, state

    def step(self, tokens: torch.Tensor, state: DecodeState) -> torch.Tensor:
        state.attention_mask[:, state.filled] = 1  # type: ignore[attr-defined]
        state.filled += 1  # type: ignore[attr-defined]
        state.last_position = state.last_position + 1
        return self._step(tokens, state.attention_mask, state.last_position, state.cache)

    def _eager_step(self, tokens: torch.Tensor, mask: torch.Tensor, positions: torch.Tensor,
                    cache: Any) -> torch.Tensor:
        lm = self.model.language_model
        out = lm.model(inputs_embeds=lm.get_input_embeddings()(tokens), attention_mask=mask, position_ids=positions,
                       cache=cache, use_cache=True)
        return lm.lm_head(out.last_hidden_state[:, -1]).float()

    def _cache(self, batch: int, needed: int, like: torch.Tensor) -> Any:
        length = -(-needed // LENGTH_BUCKET) * LENGTH_BUCKET
        cache = self._caches.get((batch, length))
        if cache is None:
            cache = self._static_cache(config=self.model.text_config, max_cache_len=length)
            self._caches[(batch, length)] = cache
        else:
            cache.reset()
        return cache


class StaticMagmaAdapter(MagmaNativeAdapter):
    """``MagmaNativeAdapter`` whose KV-cached loop runs on ``StaticDecoder``."""

    def __init__(self, *args: Any, compile_step: bool = True, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.decoder = StaticDecoder(self.model, compile_step, self.device)

    def prefill(self, inputs: dict[str, Any]) -> tuple[Any, Any]:
        return self.decoder.prefill(**inputs)

    def step(self, tokens: Any, state: Any) -> Any:
        return self.decoder.step(tokens, state)
