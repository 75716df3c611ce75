"""LoRA through ``peft`` on the language model's linear layers of the native Magma; the vision tower
and the projector frozen unless asked for (then trained fully and saved beside the adapter as
``non_lora_trainables.safetensors``, as LLaVA does). peft is imported lazily: a missing extra is
a one-line error naming it.

QLoRA (the base loaded with ``quantization: int8 | nf4``): the adapters train on bitsandbytes' layers
after peft's ``prepare_model_for_kbit_training``; the merge dequantizes the base weights and adds
the adapter's update in float32, so the merged checkpoint is full precision."""
from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from ..errors import UserError
from .settings import TrainSettings

ADAPTER_DIR = "adapter"
NON_LORA_FILE = "non_lora_trainables.safetensors"
PEFT_MISSING = "magma-ros finetune needs peft: pip install 'magma_ros[finetune]'"


def require_peft() -> Any:
    """The peft module, or a UserError naming the extra to install."""
    try:
        import peft
    except ImportError:
        raise UserError(PEFT_MISSING) from None
    return peft


def target_pattern(names: list[str]) -> str:
    """A regular expression (peft matches it against whole module names) for the named linear
    layers of the language model's decoder layers only (never the vision tower or the projector)."""
    alternatives = "|".join(re.escape(n) for n in names)
    return rf"language_model\.model\.layers\.\d+\.(?:self_attn|mlp)\.(?:{alternatives})"


def add_lora(model: Any, settings: TrainSettings) -> Any:
    """Wrap the native Magma ``model`` with LoRA adapters (injected in place: ``model`` itself runs
    with them); returns the peft model. Only the adapters (and the parts asked for) train."""
    peft = require_peft()
    config = peft.LoraConfig(r=settings.lora_rank, lora_alpha=settings.lora_alpha,
                             lora_dropout=settings.lora_dropout, bias="none",
                             target_modules=target_pattern(settings.target_modules()))
    try:
        wrapped = peft.get_peft_model(model, config)
    except ValueError:  # peft: no module matched the targets
        raise UserError(f"--lora-targets {settings.lora_targets}: no linear layer of the language model has that "
                        f"name (its linear layers: {', '.join(linear_layer_names(model))})") from None
    for part, wanted in (("vision_tower", settings.train_vision), ("multi_modal_projector", settings.train_projector)):
        for param in getattr(model, part).parameters():
            param.requires_grad_(wanted)
    return wrapped


def prepare_quantized(model: Any) -> None:
    """QLoRA: peft's preparation for training on k-bit weights, applied to the language model (the
    transformers part it is written for): its weights frozen, its non-quantized bf16/fp16 weights
    (embeddings, norms, output layer) in float32. The vision tower and projector stay in the
    training dtype; gradient checkpointing is the trainer's (CUDA only).

    On the CPU, bitsandbytes repacks a 4-bit layer for inference (AVX512-BF16) on its first forward
    in eval mode (the runner's warm-up): that path has no backward, so no gradient would flow
    through the layer. The layers are unpacked here (bitsandbytes' own inverse; the weights
    then differ from the first NF4 ones by about bfloat16 rounding) and kept from repacking."""
    peft = require_peft()
    peft.prepare_model_for_kbit_training(model.language_model, use_gradient_checkpointing=False)
    for module in model.modules():
        if hasattr(module, "support_avx512bf16_for_cpu"):
            module.support_avx512bf16_for_cpu = False
            state = module.weight.quant_state
            if getattr(state, "packing_format_for_cpu", False):
                from bitsandbytes.functional import _convert_weight_packed_for_cpu_inverse

                module.weight.data, state = _convert_weight_packed_for_cpu_inverse(module.weight.data, state)
                module.weight.quant_state = module.quant_state = state


def merged_weights(model: Any) -> "MergedWeights":
    """Full-precision weights, by model name, of the layers LoRA or bitsandbytes changed: each LoRA
    layer's base weight (dequantized if quantized) plus its active adapters' updates, and each
    quantized layer without LoRA dequantized. With these, ``unload()`` and the remaining
    parameters give the full-precision merged model."""
    from peft.tuners.lora import LoraLayer

    from ..policy.magma_native.quantization import is_quantized

    layers = {}
    for name, module in model.named_modules():
        if isinstance(module, LoraLayer) or (is_quantized(module) and not name.endswith(".base_layer")):
            layers[f"{name}.weight"] = module
    return MergedWeights(layers)


class MergedWeights(Mapping):
    """Computed one at a time when read (in float32 on the layer's device, returned on the CPU), so
    merging an 8B model never holds all its weights in float32 at once."""

    def __init__(self, layers: dict[str, Any]) -> None:
        self.layers = layers

    def __getitem__(self, name: str) -> Any:
        import torch
        from peft.tuners.lora import LoraLayer
        from peft.utils.integrations import dequantize_module_weight

        module = self.layers[name]
        with torch.no_grad():
            if not isinstance(module, LoraLayer):
                return dequantize_module_weight(module).detach().float().cpu()
            weight = dequantize_module_weight(module.get_base_layer()).detach().float()
            for adapter in module.active_adapters:
                weight = weight + module.get_delta_weight(adapter).float()
            return weight.cpu()

    def __iter__(self) -> Iterator[str]:
        return iter(self.layers)

    def __len__(self) -> int:
        return len(self.layers)


def linear_layer_names(model: Any) -> list[str]:
    """Names (the last part) of the linear layers in the language model's decoder layers."""
    from torch import nn

    layers = model.language_model.model.layers
    return sorted({name.rpartition(".")[2] for name, m in layers.named_modules() if isinstance(m, nn.Linear)})


def non_lora_trainables(model: Any) -> dict[str, Any]:
    """Trainable tensors that are not LoRA adapters (vision tower, projector), by model name."""
    return {name: p.detach().cpu().contiguous() for name, p in model.named_parameters()
            if p.requires_grad and "lora_" not in name}


def save_adapter(peft_model: Any, model: Any, directory: Path) -> None:
    """peft's adapter format in ``directory`` (+ the fully trained parts, if any)."""
    from safetensors.torch import save_file

    peft_model.save_pretrained(str(directory))
    extra = non_lora_trainables(model)
    if extra:
        save_file(extra, str(directory / NON_LORA_FILE), metadata={"format": "pt"})


def load_adapter_weights(peft_model: Any, model: Any, directory: Path) -> None:
    """Put the adapter (and trained parts) saved in ``directory`` into an identically set-up model."""
    import torch
    from safetensors.torch import load_file

    peft = require_peft()
    state = load_file(str(directory / "adapter_model.safetensors"))
    result = peft.set_peft_model_state_dict(peft_model, state)
    if getattr(result, "unexpected_keys", None):
        raise UserError(f"{directory}: adapter does not match the model ({result.unexpected_keys[0]} ...)")
    extra = directory / NON_LORA_FILE
    if extra.is_file():
        params = dict(model.named_parameters())
        with torch.no_grad():
            for name, tensor in load_file(str(extra)).items():
                if name not in params:
                    raise UserError(f"{extra}: tensor {name} is not in the model")
                params[name].copy_(tensor)


def apply_adapter(model: Any, directory: Path) -> Any:
    """The native Magma ``model`` with the adapter saved in ``directory`` (peft's format) applied,
    not merged: what base + adapter predict. Returns the peft model."""
    peft = require_peft()
    wrapped = peft.PeftModel.from_pretrained(model, str(directory))
    extra = Path(directory) / NON_LORA_FILE
    if extra.is_file():
        import torch
        from safetensors.torch import load_file

        params = dict(model.named_parameters())
        with torch.no_grad():
            for name, tensor in load_file(str(extra)).items():
                params[name].copy_(tensor)
    return wrapped.eval()
