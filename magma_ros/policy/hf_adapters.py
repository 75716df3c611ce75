"""Per-architecture calling conventions for the vision-language runtime (``vlm.VLMRunner``).

An adapter knows how one model family wants its prompt and its inputs: Magma's remote code
(``MagmaForCausalLM`` + ``MagmaProcessor``) and transformers-native LLaVA-style models (used for
the tiny test model and any Llama-based LLaVA fine-tune). Everything else (decoding, checks,
streaming) is shared in ``vlm.py``. torch is only imported by the methods that need it.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any

from .base import PolicyConfigError, PolicyError

MAGMA_SYSTEM_PROMPT = "You are agent that can see, talk and act."
IMAGE_PLACEHOLDER = "<image>"
MAGMA_IMAGE_WITH_MARKERS = "<image_start><image><image_end>"


class ModelAdapter(ABC):
    """Common part: the loaded model and processor, the chat template, image placement."""

    default_system_prompt: str | None = None
    direct_decode = False  # True when the model's forward takes (input_ids, attention_mask, past_key_values)

    def __init__(self, model: Any, processor: Any, device: str, dtype: Any) -> None:
        self.model = model
        self.processor = processor
        self.tokenizer = processor.tokenizer
        self.device = device
        self.dtype = dtype

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
        """Model keyword arguments (tensors on the model's device) for one image (or None) + prompt."""

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
    """Magma-8B's convention (model card): system message, ``<image>\\n{prompt}`` user turn,
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


ADAPTERS: dict[str, type[ModelAdapter]] = {"magma": MagmaAdapter, "llava": LlavaAdapter}
