"""Per-architecture calling conventions for the vision-language runtime (``vlm.VLMRunner``).

An adapter knows how one model family wants its prompt and its inputs: Magma's remote code
(``MagmaForCausalLM`` + ``MagmaProcessor``, opt-in with ``trust_remote_code``) and
transformers-native LLaVA-style models (used for the tiny test model and any Llama-based LLaVA
fine-tune) are here; the native Magma implementation's adapter (the default for Magma
checkpoints) is ``magma_native.adapter.MagmaNativeAdapter``, built on ``ModelAdapter``. An adapter
also runs the KV-cached decoding steps (``prefill``/``step``), says which object ``generate`` runs
on, and splits an action request's input work into ``prepare`` (per request, on the requester's
thread) and ``collate`` (the batch, on the model thread).
Everything else (decoding, checks, streaming) is shared by ``vlm.VLMRunner``. torch is only
imported by the methods that need it.
"""
from __future__ import annotations

import inspect
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any

from .base import PolicyConfigError, PolicyError
from .kv_cache import cache_argument, position_ids

MAGMA_SYSTEM_PROMPT = "You are agent that can see, talk and act."
IMAGE_PLACEHOLDER = "<image>"
MAGMA_IMAGE_WITH_MARKERS = "<image_start><image><image_end>"


@dataclass
class CachedState:
    """KV cache, attention mask and each row's last position between decoding steps of a
    transformers model."""

    cache: Any
    attention_mask: Any
    last_position: Any


class ModelAdapter(ABC):
    """Common part: the loaded model and processor, the chat template, image placement."""

    default_system_prompt: str | None = None
    direct_decode = False  # True when prefill/step (the KV-cached loop) are verified for this model

    def __init__(self, model: Any, processor: Any, device: str, dtype: Any, tokenizer: Any = None) -> None:
        self.model = model
        self.processor = processor
        self.tokenizer = tokenizer if tokenizer is not None else processor.tokenizer
        self.device = device
        self.dtype = dtype

    def max_context_tokens(self) -> int:
        """The language model's maximum number of positions."""
        config = self.model.config
        return int(getattr(getattr(config, "text_config", None) or config, "max_position_embeddings"))

    def generate_call(self, inputs: dict[str, Any]) -> tuple[Any, dict[str, Any], int]:
        """(object whose ``generate`` to call, its keyword inputs, prompt tokens to skip in its output)."""
        return self.model, inputs, int(inputs["input_ids"].shape[-1])

    def prefill(self, inputs: dict[str, Any]) -> tuple[Any, Any]:
        """Run the prompt once: (last position's logits (B, vocab), state for ``step``)."""
        raise NotImplementedError(f"{type(self).__name__} has no KV-cached decoding path")

    def step(self, tokens: Any, state: Any) -> Any:
        """Feed one token per sample (B, 1): the next logits (B, vocab); updates ``state``."""
        raise NotImplementedError(f"{type(self).__name__} has no KV-cached decoding path")

    def image_marker(self) -> str:
        """The text the chat puts where the image goes."""
        return IMAGE_PLACEHOLDER

    def prompt(self, messages: list[dict], with_image: bool) -> str:
        """Chat-template ``messages`` (adding the default system message when there is none)
        and place the image marker at the start of the first user message when it has none."""
        msgs = [dict(m) for m in messages]
        if self.default_system_prompt and not any(m["role"] == "system" for m in msgs):
            msgs.insert(0, {"role": "system", "content": self.default_system_prompt})
        if with_image:
            users = [m for m in msgs if m["role"] == "user"]
            if not users:
                raise PolicyError("an image needs a user message to attach to")
            if not any(IMAGE_PLACEHOLDER in m["content"] for m in users):
                users[0]["content"] = IMAGE_PLACEHOLDER + "\n" + users[0]["content"]
        text = self.tokenizer.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)
        marker = self.image_marker()
        if with_image and marker != IMAGE_PLACEHOLDER and marker not in text:
            text = text.replace(IMAGE_PLACEHOLDER, marker)
        return text

    @abstractmethod
    def inputs(self, image: Any, prompt: str) -> dict[str, Any]:
        """Model keyword arguments (tensors on the model's device) for one PIL image (or None) + prompt."""

    def batch_inputs(self, samples: list[tuple[Any, str]]) -> dict[str, Any]:
        """Model keyword arguments for several (PIL image, prompt) samples, prompts left-padded."""
        raise NotImplementedError(f"{type(self).__name__} has no batched inputs")

    def prepare(self, image: Any, prompt: str) -> Any:
        """The per-request part of the inputs for an RGB array (or None) + prompt, done before the
        request reaches the model thread. Here only the image conversion; the processor runs in
        ``collate``."""
        return (None if image is None else to_pil(image), prompt)

    def collate(self, prepared: list[Any]) -> dict[str, Any]:
        """Model keyword arguments for prepared requests (several: left-padded, ``batch_inputs``)."""
        if len(prepared) == 1:
            return self.inputs(*prepared[0])
        return self.batch_inputs(prepared)

    def _to_device(self, batch: Any) -> dict[str, Any]:
        out = {}
        for key, value in dict(batch).items():
            if hasattr(value, "to"):
                value = value.to(self.device)
                if value.is_floating_point():
                    value = value.to(self.dtype)
            out[key] = value
        return out


class MagmaAdapter(ModelAdapter):
    """Magma's remote code (opt-in, ``trust_remote_code: true``), called as its model card says:
    system message, ``<image>\\n{prompt}`` user turn,
    ``processor(images=[image], texts=prompt, return_tensors="pt")``, then ``pixel_values`` and
    ``image_sizes`` get a leading batch dimension before ``generate``."""

    default_system_prompt = MAGMA_SYSTEM_PROMPT
    direct_decode = False  # the model card documents generate(); the remote forward's cache handling is unverified

    def image_marker(self) -> str:
        """``<image_start><image><image_end>`` when the model config says so, else ``<image>``."""
        if getattr(self.model.config, "mm_use_image_start_end", False):
            return MAGMA_IMAGE_WITH_MARKERS
        return IMAGE_PLACEHOLDER

    def inputs(self, image: Any, prompt: str) -> dict[str, Any]:
        if image is None:  # the model card documents only the image + text call
            raise PolicyConfigError("Magma backend: text-only generation is not supported; send an image")
        batch = self.processor(images=[image], texts=prompt, return_tensors="pt")
        batch["pixel_values"] = batch["pixel_values"].unsqueeze(0)
        batch["image_sizes"] = batch["image_sizes"].unsqueeze(0)
        return self._to_device(batch)


class LlavaAdapter(ModelAdapter):
    """transformers-native LLaVA models: ``processor(images=image, text=prompt)``; the processor
    expands ``<image>`` to the vision tower's patch count."""

    direct_decode = True

    def inputs(self, image: Any, prompt: str) -> dict[str, Any]:
        batch = self.processor(images=image, text=prompt, return_tensors="pt")
        return self._to_device(batch)

    def batch_inputs(self, samples: list[tuple[Any, str]]) -> dict[str, Any]:
        tokenizer = self.processor.tokenizer
        side = tokenizer.padding_side
        tokenizer.padding_side = "left"
        try:
            batch = self.processor(images=[image for image, _ in samples], text=[text for _, text in samples],
                                   padding=True, return_tensors="pt")
        finally:
            tokenizer.padding_side = side
        return self._to_device(batch)

    def prefill(self, inputs: dict[str, Any]) -> tuple[Any, CachedState]:
        positions = position_ids(inputs["attention_mask"])
        out = self.model(**inputs, position_ids=positions, use_cache=True, return_dict=True,
                         **_keep_last_logits_kwarg(self.model))
        return out.logits[:, -1], CachedState(_output_cache(out), inputs["attention_mask"], positions[:, -1:])

    def step(self, tokens: Any, state: CachedState) -> Any:
        import torch

        state.attention_mask = torch.cat([state.attention_mask, state.attention_mask.new_ones(tokens.shape)], dim=1)
        state.last_position = state.last_position + 1
        out = self.model(input_ids=tokens, attention_mask=state.attention_mask, position_ids=state.last_position,
                         use_cache=True, return_dict=True, **{cache_argument(self.model): state.cache})
        state.cache = _output_cache(out)
        return out.logits[:, -1]


def to_pil(image: Any) -> Any:
    """An H x W x 3 uint8 RGB array as a PIL image (what transformers' processors take)."""
    import numpy as np
    from PIL import Image

    return Image.fromarray(np.ascontiguousarray(image), mode="RGB")


def _keep_last_logits_kwarg(model: Any) -> dict[str, int]:
    """``{"logits_to_keep": 1}`` when the model's forward can skip the prompt's other logits."""
    params = inspect.signature(model.forward).parameters
    for name in ("logits_to_keep", "num_logits_to_keep"):
        if name in params:
            return {name: 1}
    return {}


def _output_cache(out: Any) -> Any:
    cache = out.get("cache") if hasattr(out, "get") else None
    return cache if cache is not None else out.past_key_values


ADAPTERS: dict[str, type[ModelAdapter]] = {"magma": MagmaAdapter, "llava": LlavaAdapter}
