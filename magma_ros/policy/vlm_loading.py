"""Bringing a vision-language model up on a device: device and dtype checks, the checkpoint's
model type, and the loaders (native Magma, Magma's remote code, transformers' LLaVA), each
turning load failures into one-line ``PolicyConfigError`` (options or checkpoint cannot work) or
``PolicyError`` (a valid configuration cannot be brought up here).

torch and transformers are imported by the functions that need them.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from ..actions.tokenizer import DEFAULT_N_BINS, LLAMA3_BASE_VOCAB
from ..errors import one_line
from .base import PolicyConfigError, PolicyError
from .config import BackendConfig
from .hf_adapters import ADAPTERS, ModelAdapter
from .vlm_checks import check_transformers_version

REMOTE_CODE_SETUP = ("Magma's remote code needs transformers>=4.49,<4.56, open_clip_torch, torchvision, wandb and "
                     "deepspeed, attn_implementation: eager, and still fails in generate() on some versions; "
                     "the default native implementation (trust_remote_code: false) needs none of that")
_DTYPES = ("bfloat16", "float16", "float32")


@dataclass
class LoadedAdapter:
    """A model on its device behind its adapter, with what the runner must check it against."""

    adapter: ModelAdapter
    min_base_vocab: int = DEFAULT_N_BINS + 1
    remote_code: bool = False  # Magma's own code: later check failures are setup problems (PolicyConfigError)


def load_adapter(config: BackendConfig) -> LoadedAdapter:
    """``config.model`` (local directory, or hub id in the local cache) on ``config.device``.
    Magma checkpoints load into the native implementation unless ``config.trust_remote_code``."""
    try:
        import torch
        import transformers  # noqa: F401 - imported to fail early when it is missing
    except ImportError as exc:
        raise PolicyConfigError(f"backend magma needs torch and transformers ({exc.name} is missing): "
                                "pip install 'magma_ros[magma]'") from None
    device = resolve_device(config.device, torch)
    dtype = resolve_dtype(config.dtype, torch)
    revision = config.revision or None
    model_type = _model_type(config.model, revision)
    if model_type not in ADAPTERS:
        raise PolicyConfigError(f"model {config.model}: model_type {model_type!r} is not supported "
                                f"(supported: {', '.join(ADAPTERS)})")
    if model_type == "magma" and config.trust_remote_code:
        return LoadedAdapter(_load_remote_magma(config, device, dtype, revision), LLAMA3_BASE_VOCAB, remote_code=True)
    if model_type == "magma":
        return LoadedAdapter(_load_native_magma(config, device, dtype, revision))
    if config.quantization != "none" or config.compile:
        raise PolicyConfigError(f"model {config.model}: quantization and compile apply to Magma checkpoints "
                                f"(native implementation), not to model_type {model_type!r}")
    return LoadedAdapter(_load_llava(config, device, dtype, revision))


def remote_code_failure(model: str, cause: str) -> str:
    """The message of a failure of Magma's remote code, with the setup that code needs."""
    return f"model {model}: Magma's remote code (trust_remote_code: true) failed: {cause} ({REMOTE_CODE_SETUP})"


def resolve_device(device: str, torch: Any) -> str:
    """Check ``device`` (cpu, cuda, cuda:N) against this machine."""
    if device == "cpu":
        return device
    match = re.fullmatch(r"cuda(?::(\d+))?", device)
    if not match:
        raise PolicyConfigError(f"device: expected cpu, cuda or cuda:N, got {device!r}")
    if not torch.cuda.is_available():
        raise PolicyError(f"device: {device} requested but CUDA is not available "
                          "(no GPU, no driver, or a CPU-only torch build); set device: cpu to run on the CPU")
    index = int(match.group(1) or 0)
    if index >= torch.cuda.device_count():
        raise PolicyError(f"device: {device} requested but only {torch.cuda.device_count()} CUDA device(s) exist")
    return device


def resolve_dtype(name: str, torch: Any) -> Any:
    """The torch dtype named ``name``."""
    if name not in _DTYPES:
        raise PolicyConfigError(f"dtype: must be one of {', '.join(_DTYPES)}, got {name!r}")
    return getattr(torch, name)


def _load_native_magma(config: BackendConfig, device: str, dtype: Any, revision: str | None) -> ModelAdapter:
    """The native implementation on a Magma checkpoint (no downloaded code)."""
    from .magma_native.loading import load_native, resolve_directory

    directory = resolve_directory(config.model, revision)
    try:
        return load_native(directory, device, dtype, config.attn_implementation, config.quantization,
                           config.quantize_vision, config.compile)
    except (ImportError, ValueError) as exc:  # e.g. flash_attention_2 requested but not installed
        if isinstance(exc, PolicyConfigError):
            raise
        raise PolicyConfigError(f"model {config.model}: cannot load: {one_line(exc)}") from None
    except RuntimeError as exc:  # e.g. CUDA out of memory while placing the weights
        raise PolicyError(f"model {config.model}: cannot load onto {device}: {one_line(exc)}") from None


def _load_llava(config: BackendConfig, device: str, dtype: Any, revision: str | None) -> ModelAdapter:
    """A transformers-native LLaVA model."""
    import transformers

    try:
        model = transformers.LlavaForConditionalGeneration.from_pretrained(
            config.model, revision=revision, torch_dtype=dtype, attn_implementation=config.attn_implementation)
        processor = transformers.AutoProcessor.from_pretrained(config.model, revision=revision, use_fast=False)
    except (ImportError, ValueError) as exc:  # e.g. flash_attention_2 requested but not installed
        raise PolicyConfigError(f"model {config.model}: cannot load: {one_line(exc)}") from None
    except OSError as exc:
        raise PolicyError(f"model {config.model}: cannot load: {one_line(exc)}") from None
    _move(model, config.model, device)
    return ADAPTERS["llava"](model, processor, device, dtype)


def _load_remote_magma(config: BackendConfig, device: str, dtype: Any, revision: str | None) -> ModelAdapter:
    """Magma's own model code from the checkpoint (``trust_remote_code: true``). Any failure of
    that code or its checkpoint is a PolicyConfigError naming the cause and the setup it needs;
    only moving to the device stays a PolicyError."""
    import transformers

    check_transformers_version(transformers.__version__)
    try:
        model = transformers.AutoModelForCausalLM.from_pretrained(
            config.model, trust_remote_code=True, revision=revision, torch_dtype=dtype,
            attn_implementation=config.attn_implementation)
        processor = transformers.AutoProcessor.from_pretrained(config.model, trust_remote_code=True, revision=revision)
    except Exception as exc:  # noqa: BLE001 - the remote code fails in many ways (AttributeError, ImportError, ...)
        raise PolicyConfigError(remote_code_failure(config.model, f"{type(exc).__name__}: {one_line(exc)}")) from None
    _move(model, config.model, device)
    return ADAPTERS["magma"](model, processor, device, dtype)


def _move(model: Any, name: str, device: str) -> None:
    try:
        model.to(device).eval()
    except RuntimeError as exc:  # e.g. CUDA out of memory
        raise PolicyError(f"model {name}: cannot move to {device}: {one_line(exc)}") from None


def _model_type(model: str, revision: str | None) -> str:
    from transformers import PretrainedConfig

    try:
        config_dict, _ = PretrainedConfig.get_config_dict(model, revision=revision)
    except (OSError, ValueError) as exc:
        raise PolicyConfigError(f"model: cannot find {model!r} (a local model directory, or a hub id reachable "
                                f"from here or in the local cache): {one_line(exc)}") from None
    return str(config_dict.get("model_type", ""))
