"""Write a model's weights back in the official Magma layout, as the base checkpoint has them: the
same tensor names (the reverse of what ``weights`` maps on load: LayerScale under the name the
base uses, the unused tensors the base carries copied as they are), the same shard files and
index, each tensor in the base's dtype. Every non-weight file of the base is copied beside them.
A quantized model is written through ``replacements`` (full-precision values of its quantized
weights); a quantized tensor is never written as it is."""
from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Mapping

import torch
from torch import nn

from ..base import PolicyConfigError
from .weights import _LAYERSCALE_WEIGHT, _UNUSED, INDEX_FILE, SINGLE_FILE, _open, checkpoint_files

WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".ckpt", ".h5", ".msgpack")


def copy_non_weight_files(base: Path, out: Path) -> list[str]:
    """Copy every file of ``base`` that is not a weight file or index (config, tokenizer, chat
    template, preprocessor config, remote-code files, ...) to ``out``; returns their names."""
    copied = []
    for path in sorted(Path(base).rglob("*")):
        rel = path.relative_to(base)
        if path.is_dir() or rel.parts[0].startswith(".") or _is_weight_file(path.name):
            continue
        target = out / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, target)  # follows symlinks (a Hugging Face cache snapshot holds links)
        copied.append(str(rel))
    return copied


def save_like_base(model: nn.Module, base: Path, out: Path,
                   replacements: Mapping[str, torch.Tensor] | None = None) -> dict[str, str]:
    """Write ``model``'s tensors to ``out`` under the base checkpoint's names, shards and dtypes
    (``replacements``: tensors to write instead of the parameters of those model names); returns
    the weight map (tensor name -> shard file)."""
    from safetensors.torch import save_file

    base = Path(base)
    files = checkpoint_files(base)
    params = dict(model.named_parameters())
    replacements = replacements or {}
    shards: dict[Path, list[str]] = {}
    for name, path in files.items():
        shards.setdefault(path, []).append(name)
    weight_map, total = {}, 0
    for shard, names in sorted(shards.items()):
        tensors = {}
        with _open(shard) as handle:
            for name in names:
                dtype = handle.get_slice(name).get_dtype()
                target = _LAYERSCALE_WEIGHT.sub(r"\1.gamma", name)
                if target in replacements:
                    tensor = replacements[target]
                elif target in params:
                    tensor = params[target].detach()
                elif _UNUSED.fullmatch(name):
                    tensor = handle.get_tensor(name)
                else:
                    raise PolicyConfigError(f"{shard}: tensor {name} has no counterpart in the model")
                if not tensor.is_floating_point() and _torch_dtype(dtype).is_floating_point:
                    raise PolicyConfigError(f"{target}: quantized ({tensor.dtype}) in the model: give its "
                                            "full-precision value in replacements")
                tensor = tensor.to(device="cpu", dtype=_torch_dtype(dtype)).contiguous()
                tensors[name] = tensor
                total += tensor.numel() * tensor.element_size()
        save_file(tensors, str(out / shard.name), metadata={"format": "pt"})
        weight_map.update({name: shard.name for name in names})
    if (base / INDEX_FILE).exists():
        (out / INDEX_FILE).write_text(json.dumps({"metadata": {"total_size": total}, "weight_map": weight_map},
                                                 indent=2), encoding="utf-8")
    return weight_map


def _is_weight_file(name: str) -> bool:
    return name == INDEX_FILE or name == SINGLE_FILE or name.endswith(WEIGHT_SUFFIXES) or name.endswith(".index.json")


def _torch_dtype(safetensors_dtype: str) -> torch.dtype:
    names = {"F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16, "F64": torch.float64,
             "I64": torch.int64, "I32": torch.int32}
    if safetensors_dtype not in names:
        raise PolicyConfigError(f"cannot write tensors of safetensors dtype {safetensors_dtype}")
    return names[safetensors_dtype]
