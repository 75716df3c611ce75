"""Load a Magma checkpoint (``model.safetensors`` or shards + ``model.safetensors.index.json``)
into ``MagmaForActions``: the model is built without memory (meta device), every tensor is
checked by name and shape before any is read, then each is read from its shard straight into
the target dtype and device, one at a time (host RAM peak ~ one tensor, not the whole model)."""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ...errors import one_line
from ..base import PolicyConfigError
from .config import MagmaSettings, read_json
from .model import MagmaForActions

INDEX_FILE = "model.safetensors.index.json"
SINGLE_FILE = "model.safetensors"
# LayerScale of a ConvNeXt block: saved as "gamma", or as "weight" by transformers versions that rename gamma on save
_LAYERSCALE_WEIGHT = re.compile(r"(vision_tower\.clip_vision_model\.trunk\.stages\.\d+\.blocks\.\d+)\.weight")
# Saved but not used by Magma's forward: the tower's pooling head (open_clip), and the rotary
# inverse frequencies some older transformers versions saved (recomputed from the config): skipped
_UNUSED = re.compile(r"vision_tower\.clip_vision_model\.(trunk\.head|head|trunk\.norm_pre)\..+"
                     r"|language_model\.model\.(layers\.\d+\.self_attn\.)?rotary_emb\.inv_freq")
_SHOWN = 3


def checkpoint_files(directory: Path) -> dict[str, Path]:
    """Tensor name -> shard file, from the index (or the single file)."""
    directory = Path(directory)
    index = directory / INDEX_FILE
    if index.exists():
        weight_map = read_json(index, "the safetensors index").get("weight_map")
        if not isinstance(weight_map, dict) or not weight_map:
            raise PolicyConfigError(f"{index}: 'weight_map' must be a non-empty object")
        files = {name: directory / str(shard) for name, shard in weight_map.items()}
        absent = sorted({p.name for p in files.values() if not p.is_file()})
        if absent:
            raise PolicyConfigError(f"{index}: shard file(s) missing: {', '.join(absent[:_SHOWN])}")
        return files
    single = directory / SINGLE_FILE
    if not single.is_file():
        raise PolicyConfigError(f"{directory}: no {INDEX_FILE} or {SINGLE_FILE} (the weights are missing)")
    return {name: single for name in _keys(single)}


def load_magma(directory: Path, settings: MagmaSettings, dtype: torch.dtype, device: str,
               attn_implementation: str = "sdpa", quantizer: Any = None) -> MagmaForActions:
    """Build the model and fill it from the checkpoint in ``directory`` (strict: nothing is left
    uninitialised, nothing in the checkpoint is ignored except the tower's unused pooling head).
    A ``quantization.Quantizer`` swaps its layers in first and quantizes their weights as they arrive."""
    from transformers.models.llama.modeling_llama import LlamaRotaryEmbedding

    files = checkpoint_files(directory)
    with torch.device("meta"):
        model = MagmaForActions(settings, attn_implementation)
    if quantizer is not None:
        quantizer.prepare(model)
    targets = dict(model.named_parameters())
    tie = bool(model.text_config.tie_word_embeddings)
    sources = _match(directory, files, targets, tie)
    tied = tie and "language_model.lm_head.weight" not in sources
    for shard in sorted(set(files.values())):
        names = [(target, source) for target, (source, path) in sources.items() if path == shard]
        with _open(shard) as handle:
            for target, source in names:
                tensor = handle.get_tensor(source)
                if quantizer is None or not quantizer.assign(target, tensor):
                    _assign(model, target, tensor.to(device=device, dtype=dtype))
                del tensor
    if tied:
        model.language_model.lm_head.weight = model.language_model.get_input_embeddings().weight
    model.language_model.model.rotary_emb = LlamaRotaryEmbedding(config=model.text_config).to(device)
    left = [n for n, t in list(model.named_parameters()) + list(model.named_buffers()) if t.is_meta]
    if left:  # a bug here, not in the checkpoint: never run with uninitialised tensors
        raise PolicyConfigError(f"{directory}: tensors left uninitialised after loading: {', '.join(left[:_SHOWN])}")
    return model.eval()


def _match(directory: Path, files: dict[str, Path], targets: dict[str, nn.Parameter],
           tie: bool) -> dict[str, tuple[str, Path]]:
    """Model parameter -> (checkpoint name, file); raises on missing, unexpected or mis-shaped tensors."""
    sources: dict[str, tuple[str, Path]] = {}
    unexpected = []
    for name, path in files.items():
        target = _LAYERSCALE_WEIGHT.sub(r"\1.gamma", name)
        if target in targets:
            sources[target] = (name, path)
        elif not _UNUSED.fullmatch(name):
            unexpected.append(name)
    missing = [n for n in targets if n not in sources]
    if tie and "language_model.lm_head.weight" in missing:
        missing.remove("language_model.lm_head.weight")  # tied to the input embeddings (config says so)
    problems = []
    if missing:
        problems.append(f"missing {len(missing)} tensor(s): {', '.join(missing[:_SHOWN])}")
    if unexpected:
        problems.append(f"unexpected {len(unexpected)} tensor(s): {', '.join(sorted(unexpected)[:_SHOWN])}")
    if not problems:
        shapes = _shapes({path for _, path in sources.values()})
        wrong = [f"{src} is {list(shapes[src])}, expected {list(targets[t].shape)}"
                 for t, (src, _) in sources.items() if tuple(shapes[src]) != tuple(targets[t].shape)]
        if wrong:
            problems.append(f"{len(wrong)} mis-shaped tensor(s): {'; '.join(wrong[:_SHOWN])}")
    if problems:
        raise PolicyConfigError(f"{directory}: the checkpoint does not match config.json: {'; '.join(problems)}")
    return sources


def _shapes(paths: set[Path]) -> dict[str, tuple[int, ...]]:
    shapes: dict[str, tuple[int, ...]] = {}
    for path in paths:
        with _open(path) as handle:
            for key in handle.keys():
                shapes[key] = tuple(handle.get_slice(key).get_shape())
    return shapes


def _keys(path: Path) -> list[str]:
    with _open(path) as handle:
        return list(handle.keys())


def _open(path: Path) -> Any:
    from safetensors import SafetensorError, safe_open

    try:
        return safe_open(str(path), framework="pt", device="cpu")
    except (SafetensorError, OSError) as exc:
        raise PolicyConfigError(f"{path}: not a readable safetensors file: {one_line(exc)}") from None


def _assign(model: nn.Module, name: str, tensor: torch.Tensor) -> None:
    owner, _, leaf = name.rpartition(".")
    module = model.get_submodule(owner)
    module._parameters[leaf] = nn.Parameter(tensor, requires_grad=False)
