"""Magma-8B as plain PyTorch: ConvNeXt tower -> MLP projector (+ a learned separator after each
feature row) -> image features merged in place of the ``<image>`` token -> Llama (transformers'
``LlamaForCausalLM``). Attribute names match the checkpoint: ``vision_tower``,
``multi_modal_projector``, ``language_model``.

Inputs follow Magma's processor layout and are batch-ready: ``input_ids``/``attention_mask``
(B, L), left padding allowed; ``pixel_values`` (B, N, 3, S, S) and ``image_sizes`` (B, 1, 2) =
(rows, columns) of each sample's crop grid (crops beyond rows*columns are padding).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from ..kv_cache import cache_argument, position_ids
from .config import MagmaSettings, VisionSettings
from .convnext import MagmaVisionTower


class MagmaProjector(nn.Module):
    """``proj``: Linear(mm_hidden, hidden) then (GELU, Linear(hidden, hidden)) x (depth - 1);
    ``row_seperator``: the embedding appended after every row of image features."""

    def __init__(self, vision: VisionSettings) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Linear(vision.mm_hidden_size, vision.hidden_size)]
        for _ in range(vision.projector_depth - 1):
            layers += [nn.GELU(), nn.Linear(vision.hidden_size, vision.hidden_size)]
        self.proj = nn.Sequential(*layers)
        self.row_seperator = nn.Parameter(torch.zeros(1, 1, vision.hidden_size))
        if vision.use_im_start_end:  # stored in such checkpoints; Magma's forward does not use them
            self.img_start_seperator = nn.Parameter(torch.zeros(1, vision.hidden_size))
            self.img_end_seperator = nn.Parameter(torch.zeros(1, vision.hidden_size))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.proj(features)


@dataclass
class DecodeState:
    """What one more decoding step needs: the KV cache, the attention mask so far (B, T) and the
    position of the last token of each sample (B, 1)."""

    cache: Any
    attention_mask: torch.Tensor
    last_position: torch.Tensor


class MagmaForActions(nn.Module):
    """The model. ``prefill`` + ``step`` are the KV-cached decoding path; ``forward`` returns the
    logits of the last ``logits_to_keep`` positions of a full (uncached) pass."""

    def __init__(self, settings: MagmaSettings, attn_implementation: str = "sdpa") -> None:
        super().__init__()
        from transformers import LlamaConfig, LlamaForCausalLM

        self.settings = settings
        vision = settings.vision
        self.vision_tower = MagmaVisionTower(vision.depths, vision.dims, vision.norm_eps)
        self.multi_modal_projector = MagmaProjector(vision)
        text = {k: v for k, v in settings.text_config.items() if k not in ("model_type", "architectures", "auto_map")}
        self.text_config = LlamaConfig(**text)
        self.text_config._attn_implementation = attn_implementation
        self.language_model = LlamaForCausalLM(self.text_config)
        self._cache_kwarg = cache_argument(self.language_model.model)

    def get_input_embeddings(self) -> nn.Module:
        return self.language_model.get_input_embeddings()

    def get_output_embeddings(self) -> nn.Module:
        return self.language_model.lm_head

    def set_output_embeddings(self, head: nn.Module) -> None:
        self.language_model.lm_head = head

    @property
    def generation_config(self) -> Any:
        """The language model's generation settings (end-of-sequence ids from text_config)."""
        return self.language_model.generation_config

    # -- images ---------------------------------------------------------------------------------
    def image_features(self, pixel_values: torch.Tensor, image_sizes: torch.Tensor) -> list[torch.Tensor]:
        """One (tokens, hidden) tensor per sample: rows of projected features, each row followed
        by the row separator."""
        grids = [(int(s[0, 0]), int(s[0, 1])) for s in image_sizes]
        dtype = self.multi_modal_projector.row_seperator.dtype
        if self.settings.vision.anyres_strategy == "global":
            return [self._global_features(pixel_values[b, : r * c].to(dtype), r, c) for b, (r, c) in enumerate(grids)]
        crops = torch.cat([pixel_values[b, : r * c] for b, (r, c) in enumerate(grids)]).to(dtype)
        features = self.multi_modal_projector(self.vision_tower(crops).permute(0, 2, 3, 1))  # (crops, h, w, D)
        out, start = [], 0
        for rows, cols in grids:
            f = features[start: start + rows * cols]
            start += rows * cols
            h, w, dim = f.shape[1:]
            f = f.view(rows, cols, h, w, dim).permute(0, 2, 1, 3, 4).reshape(rows * h, cols * w, dim)
            out.append(self._with_row_separators(f))
        return out

    def _global_features(self, crops: torch.Tensor, rows: int, cols: int) -> torch.Tensor:
        size = crops.shape[-1]
        image = crops.view(rows, cols, 3, size, size).permute(2, 0, 3, 1, 4).reshape(1, 3, rows * size, cols * size)
        features = self.multi_modal_projector(self.vision_tower(image)[0].permute(1, 2, 0))
        return self._with_row_separators(features)

    def _with_row_separators(self, grid: torch.Tensor) -> torch.Tensor:
        sep = self.multi_modal_projector.row_seperator.expand(grid.shape[0], 1, grid.shape[2])
        return torch.cat([grid, sep], dim=1).flatten(0, 1)

    # -- prompt embedding -----------------------------------------------------------------------
    def embed(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, pixel_values: torch.Tensor | None = None,
              image_sizes: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Token embeddings with each sample's image features in place of its ``<image>`` token,
        left-padded to one length: (embeds (B, T, D), attention_mask (B, T), position_ids (B, T))."""
        image_id = self.settings.image_token_index
        table = self.language_model.get_input_embeddings()
        images = self.image_features(pixel_values, image_sizes) if pixel_values is not None else None
        rows = []
        for b in range(input_ids.shape[0]):
            ids = input_ids[b][attention_mask[b].bool()]
            at = (ids == image_id).nonzero().flatten().tolist()
            if len(at) != (0 if images is None else 1):
                raise ValueError(f"sample {b}: {len(at)} <image> token(s) in the prompt for "
                                 f"{0 if images is None else 1} image(s)")
            embeds = table(ids.masked_fill(ids == image_id, 0))
            if images is not None:
                i = at[0]
                embeds = torch.cat([embeds[:i], images[b].to(embeds.dtype), embeds[i + 1:]])
            rows.append(embeds)
        length = max(r.shape[0] for r in rows)
        out = rows[0].new_zeros(len(rows), length, rows[0].shape[1])
        mask = attention_mask.new_zeros(len(rows), length)
        for b, r in enumerate(rows):
            out[b, length - r.shape[0]:] = r
            mask[b, length - r.shape[0]:] = 1
        return out, mask, position_ids(mask)

    # -- language model -------------------------------------------------------------------------
    def _run(self, embeds: torch.Tensor, mask: torch.Tensor, positions: torch.Tensor, cache: Any,
             keep: int) -> torch.Tensor:
        out = self.language_model.model(inputs_embeds=embeds, attention_mask=mask, position_ids=positions,
                                        use_cache=cache is not None, **{self._cache_kwarg: cache})
        hidden = out.last_hidden_state if keep <= 0 else out.last_hidden_state[:, -keep:]
        return self.language_model.lm_head(hidden).float()

    def new_cache(self) -> Any:
        """An empty KV cache for this model (transformers' DynamicCache)."""
        from transformers import DynamicCache

        try:
            return DynamicCache(config=self.text_config)
        except TypeError:  # transformers 4.x
            return DynamicCache()

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, pixel_values: torch.Tensor | None = None,
                image_sizes: torch.Tensor | None = None, logits_to_keep: int = 0) -> torch.Tensor:
        """Float32 logits (B, T or logits_to_keep, vocab) of one uncached pass."""
        embeds, mask, positions = self.embed(input_ids, attention_mask, pixel_values, image_sizes)
        return self._run(embeds, mask, positions, None, logits_to_keep)

    def prefill(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, pixel_values: torch.Tensor | None = None,
                image_sizes: torch.Tensor | None = None) -> tuple[torch.Tensor, DecodeState]:
        """Run the prompt once; returns the last position's logits (B, vocab) and the decode state."""
        embeds, mask, positions = self.embed(input_ids, attention_mask, pixel_values, image_sizes)
        cache = self.new_cache()
        logits = self._run(embeds, mask, positions, cache, 1)[:, -1]
        return logits, DecodeState(cache, mask, positions[:, -1:])

    def step(self, tokens: torch.Tensor, state: DecodeState) -> torch.Tensor:
        """Feed one token per sample (B, 1); returns the next logits (B, vocab); updates ``state``."""
        state.attention_mask = torch.cat([state.attention_mask, state.attention_mask.new_ones(tokens.shape)], dim=1)
        state.last_position = state.last_position + 1
        embeds = self.language_model.get_input_embeddings()(tokens)
        return self._run(embeds, state.attention_mask, state.last_position, state.cache, 1)[:, -1]

