"""Bring a Magma checkpoint directory up as a ``MagmaNativeAdapter``: settings, tokenizer,
image settings and streamed weights, each failure a one-line PolicyConfigError."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from ...errors import one_line
from ..base import PolicyConfigError
from ..hf_adapters import IMAGE_PLACEHOLDER
from .adapter import MagmaNativeAdapter
from .config import read_image_settings, read_json, read_model_settings
from .weights import load_magma


def resolve_directory(model: str, revision: str | None) -> Path:
    """``model`` as a local directory: itself, or its copy in the Hugging Face cache (no download)."""
    path = Path(model).expanduser()
    if path.is_dir():
        return path
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(model, revision=revision, local_files_only=True))
    except Exception as exc:  # noqa: BLE001 - not a repo id, or not in the local cache
        raise PolicyConfigError(f"model: {model!r} is neither a local directory nor in the local Hugging Face cache "
                                f"(download it once, e.g. 'hf download {model} --local-dir DIR', and set model: DIR): "
                                f"{type(exc).__name__}") from None


def load_native(directory: Path, device: str, dtype: Any, attn_implementation: str, quantization: str = "none",
                quantize_vision: bool = False, compile_step: bool = False) -> MagmaNativeAdapter:
    """Load everything the native model needs from ``directory`` (``quantization``: see ``quantization.py``;
    ``compile_step``: the static-cache, compiled decode step of ``static_decoding.py``)."""
    from transformers import PreTrainedTokenizerFast

    settings = read_model_settings(directory)
    image_settings = read_image_settings(directory)
    if not (directory / "tokenizer.json").is_file():
        raise PolicyConfigError(f"{directory}: tokenizer.json is missing")
    try:
        tokenizer = PreTrainedTokenizerFast.from_pretrained(str(directory))
    except Exception as exc:  # noqa: BLE001 - a broken tokenizer file or config
        raise PolicyConfigError(f"{directory}: cannot load the tokenizer: {one_line(exc)}") from None
    if tokenizer.chat_template is None:
        raise PolicyConfigError(f"{directory}: the tokenizer has no chat template "
                                "(tokenizer_config.json 'chat_template')")
    image_id = tokenizer.convert_tokens_to_ids(IMAGE_PLACEHOLDER)
    if image_id != settings.image_token_index:
        raise PolicyConfigError(f"{directory}: the tokenizer's {IMAGE_PLACEHOLDER} token is id {image_id}, but "
                                f"config.json says image_token_index {settings.image_token_index}")
    quantizer = None
    if quantization != "none":
        from .quantization import Quantizer

        quantizer = Quantizer(quantization, device, dtype, quantize_vision)
        quantizer.check_device()
    model = load_magma(directory, settings, dtype, device, attn_implementation, quantizer)
    model_config = read_json(directory / "config.json", "the model configuration")
    start_end = bool(model_config.get("mm_use_image_start_end", False))
    if compile_step:
        from .static_decoding import StaticMagmaAdapter

        return StaticMagmaAdapter(model, tokenizer, image_settings, device, dtype, start_end)
    return MagmaNativeAdapter(model, tokenizer, image_settings, device, dtype, start_end)
