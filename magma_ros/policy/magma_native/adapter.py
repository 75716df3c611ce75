"""``MagmaNativeAdapter``: the native Magma model behind the ``ModelAdapter`` interface that
``vlm.VLMRunner`` drives."""
from __future__ import annotations

import functools
from typing import Any

from ..base import PolicyConfigError
from ..hf_adapters import IMAGE_PLACEHOLDER, MAGMA_IMAGE_WITH_MARKERS, MAGMA_SYSTEM_PROMPT, ModelAdapter

TOKENIZED_PROMPTS = 64  # prompts whose token ids are kept (a robot repeats its instruction for every frame)


class MagmaNativeAdapter(ModelAdapter):
    """The native Magma implementation: Magma's chat convention (as ``MagmaAdapter``), its
    tokenizer called like ``MagmaProcessor`` does (special tokens added), Magma's crop
    processing, and the model's own KV-cached ``prefill``/``step``."""

    default_system_prompt = MAGMA_SYSTEM_PROMPT
    direct_decode = True

    def __init__(self, model: Any, tokenizer: Any, image_settings: Any, device: str, dtype: Any,
                 image_start_end: bool) -> None:
        super().__init__(model, None, device, dtype, tokenizer=tokenizer)
        self.image_settings = image_settings
        self.image_start_end = image_start_end
        self._prompt_tokens = functools.lru_cache(TOKENIZED_PROMPTS)(self._tokenize)

    def image_marker(self) -> str:
        return MAGMA_IMAGE_WITH_MARKERS if self.image_start_end else IMAGE_PLACEHOLDER

    def max_context_tokens(self) -> int:
        return int(self.model.text_config.max_position_embeddings)

    def inputs(self, image: Any, prompt: str) -> dict[str, Any]:
        """As the base class; ``image`` may also be an RGB array. The token tensors of a repeated
        prompt are shared between calls: read them, never write to them."""
        import numpy as np
        import torch

        from .processing import preprocess

        input_ids, attention_mask = self._prompt_tokens(prompt)
        out = {"input_ids": input_ids, "attention_mask": attention_mask}
        if image is not None:
            crops, grid = preprocess(np.asarray(image), self.image_settings)
            out["pixel_values"] = crops.unsqueeze(0).to(self.device, self.dtype)
            out["image_sizes"] = torch.tensor([[list(grid)]], device=self.device)
        return out

    def _tokenize(self, prompt: str) -> tuple[Any, Any]:
        batch = self.tokenizer(prompt, return_tensors="pt")
        return batch["input_ids"].to(self.device), batch["attention_mask"].to(self.device)

    def batch_inputs(self, samples: list[tuple[Any, str]]) -> dict[str, Any]:
        return self.collate([self.inputs(image, text) for image, text in samples])

    def prepare(self, image: Any, prompt: str) -> dict[str, Any]:
        """The whole of one request's inputs: tokenized prompt and image crops (no PIL detour)."""
        return self.inputs(image, prompt)

    def collate(self, prepared: list[dict[str, Any]]) -> dict[str, Any]:
        """One request's inputs as they are; several left-padded to one length, crops zero-padded."""
        import torch

        rows = prepared
        if len(rows) == 1:
            return rows[0]
        if any("pixel_values" not in row for row in rows):
            raise PolicyConfigError("batched inputs: every sample needs an image")
        length = max(row["input_ids"].shape[1] for row in rows)
        pad = self.tokenizer.pad_token_id or 0
        ids = torch.full((len(rows), length), pad, dtype=rows[0]["input_ids"].dtype, device=self.device)
        mask = torch.zeros((len(rows), length), dtype=rows[0]["attention_mask"].dtype, device=self.device)
        crops = max(row["pixel_values"].shape[1] for row in rows)
        pixels = rows[0]["pixel_values"].new_zeros((len(rows), crops, *rows[0]["pixel_values"].shape[2:]))
        for b, row in enumerate(rows):
            n = row["input_ids"].shape[1]
            ids[b, length - n:] = row["input_ids"][0]
            mask[b, length - n:] = row["attention_mask"][0]
            pixels[b, : row["pixel_values"].shape[1]] = row["pixel_values"][0]
        return {"input_ids": ids, "attention_mask": mask, "pixel_values": pixels,
                "image_sizes": torch.cat([row["image_sizes"] for row in rows])}

    def generate_call(self, inputs: dict[str, Any]) -> tuple[Any, dict[str, Any], int]:
        """``generate`` of the Llama part on the merged prompt embeddings (its output holds only new tokens)."""
        embeds, mask, _ = self.model.embed(**inputs)
        return self.model.language_model, {"inputs_embeds": embeds, "attention_mask": mask}, 0

    def prefill(self, inputs: dict[str, Any]) -> tuple[Any, Any]:
        return self.model.prefill(**inputs)

    def step(self, tokens: Any, state: Any) -> Any:
        return self.model.step(tokens, state)
