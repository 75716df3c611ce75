"""Build a tiny random Magma checkpoint in the official layout for tests and benchmarks:
config.json (model_type magma, text_config, vision_config), sharded safetensors + index (the key
names Magma's modeling code writes, LayerScale stored as ``gamma`` or ``weight``, the tower's
unused pooling head included), tokenizer files with Magma's Llama-3 chat template and an
``<image>`` token, and preprocessor_config.json. Small crops (64 px) keep it fast on a CPU.
"""
from __future__ import annotations

import json
import tempfile
from pathlib import Path

from tiny_vlm import BASE_VOCAB, CHAT_TEMPLATE, N_ACTION_BINS, SPECIAL_TOKENS, _build_tokenizer, action_token

CROP = 64
MAX_CROPS = 4
__all__ = ["BASE_VOCAB", "N_ACTION_BINS", "CROP", "action_token", "build_tiny_magma", "magma_config"]


def magma_config(vocab: int, ids: dict[str, int], hidden: int = 64, layers: int = 2,
                 projector: str = "mlp2x_gelu", strategy: str = "crop") -> dict:
    """config.json of a tiny Magma (ConvNeXt, 4 stages of 8-32 channels, Llama of ``hidden`` width)."""
    text = {
        "model_type": "llama", "architectures": ["LlamaForCausalLM"], "vocab_size": vocab, "hidden_size": hidden,
        "intermediate_size": 2 * hidden, "num_hidden_layers": layers, "num_attention_heads": 4,
        "num_key_value_heads": 2, "max_position_embeddings": 2048, "rms_norm_eps": 1e-5, "rope_theta": 500000.0,
        "hidden_act": "silu", "tie_word_embeddings": False, "bos_token_id": ids["<|begin_of_text|>"],
        "eos_token_id": ids["<|eot_id|>"], "pad_token_id": ids["<pad>"], "torch_dtype": "float32",
    }
    vision = {
        "vision_backbone": "convnextxxlarge", "convnext_depths": [1, 1, 2, 1], "convnext_dims": [8, 16, 24, 32],
        "convnext_norm_eps": 1e-5, "mm_hidden_size": 32, "hidden_size": hidden, "mm_projector_type": projector,
        "img_anyres_strategy": strategy, "vision_feature_layer": "clip_vis_dense", "img_size": CROP,
        "max_num_crops": MAX_CROPS, "mm_use_im_start_end": False,
    }
    return {"model_type": "magma", "architectures": ["MagmaForCausalLM"], "text_config": text,
            "vision_config": vision, "image_token_index": ids["<image>"], "mm_use_image_start_end": False,
            "tie_word_embeddings": False, "torch_dtype": "float32"}


def write_tokenizer(directory: Path) -> dict[str, int]:
    """tokenizer.json + tokenizer_config.json (chat template); returns the special token ids."""
    from transformers import PreTrainedTokenizerFast

    tokenizer = PreTrainedTokenizerFast(tokenizer_object=_build_tokenizer(), bos_token="<|begin_of_text|>",
                                        eos_token="<|eot_id|>", pad_token="<pad>", model_max_length=2048,
                                        model_input_names=["input_ids", "attention_mask"])
    tokenizer.chat_template = CHAT_TEMPLATE
    tokenizer.save_pretrained(directory)
    return {t: tokenizer.convert_tokens_to_ids(t) for t in SPECIAL_TOKENS}


def random_weights(config: dict, seed: int, std: float = 0.3) -> dict:
    """Random tensors for every parameter of the native model described by ``config``, by checkpoint name."""
    import torch

    from magma_ros.policy.magma_native.config import read_model_settings
    from magma_ros.policy.magma_native.model import MagmaForActions

    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "config.json").write_text(json.dumps(config))
        settings = read_model_settings(Path(tmp))
    with torch.device("meta"):
        shapes = {n: p.shape for n, p in MagmaForActions(settings, "eager").named_parameters()}
    gen = torch.Generator().manual_seed(seed)
    weights = {}
    for name, shape in shapes.items():
        scale = std if len(shape) >= 2 else 0.1
        tensor = torch.randn(shape, generator=gen) * scale
        if name.endswith((".norm.weight", "stem.1.weight", "downsample.0.weight", "layernorm.weight")):
            tensor = 1.0 + tensor
        weights[name] = tensor.contiguous()
    return weights


def write_weights(directory: Path, weights: dict, shards: int = 2, layerscale: str = "gamma") -> None:
    """Sharded safetensors + model.safetensors.index.json (LayerScale named ``layerscale``), plus the
    tower's unused pooling-head tensors that Magma's checkpoint carries."""
    import torch
    from safetensors.torch import save_file

    named = {}
    for name, tensor in weights.items():
        if name.endswith(".gamma") and layerscale != "gamma":
            name = name[: -len("gamma")] + layerscale
        named[name] = tensor
    dim = next(t.shape[0] for n, t in named.items() if n.endswith("stages.3.blocks.0.conv_dw.bias"))
    named["vision_tower.clip_vision_model.trunk.head.norm.weight"] = torch.ones(dim)
    named["vision_tower.clip_vision_model.trunk.head.norm.bias"] = torch.zeros(dim)
    names = sorted(named)
    per = -(-len(names) // shards)
    weight_map = {}
    for i in range(shards):
        file = f"model-{i + 1:05d}-of-{shards:05d}.safetensors"
        part = {n: named[n] for n in names[i * per:(i + 1) * per]}
        save_file(part, str(directory / file), metadata={"format": "pt"})
        weight_map.update({n: file for n in part})
    total = sum(t.numel() * t.element_size() for t in named.values())
    (directory / "model.safetensors.index.json").write_text(
        json.dumps({"metadata": {"total_size": total}, "weight_map": weight_map}, indent=1))


def build_tiny_magma(directory: Path, seed: int = 0, *, hidden: int = 64, layers: int = 2, shards: int = 2,
                     layerscale: str = "gamma", projector: str = "mlp2x_gelu", strategy: str = "crop") -> Path:
    """Write the whole tiny checkpoint to ``directory`` and return it."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    ids = write_tokenizer(directory)
    from transformers import PreTrainedTokenizerFast

    vocab = len(PreTrainedTokenizerFast.from_pretrained(str(directory)))
    config = magma_config(vocab, ids, hidden, layers, projector, strategy)
    (directory / "config.json").write_text(json.dumps(config, indent=1))
    (directory / "preprocessor_config.json").write_text(json.dumps({
        "image_processor_type": "MagmaImageProcessor", "anyres_strategy": "crop", "base_img_size": CROP,
        "num_crops": MAX_CROPS, "do_convert_rgb": True,
        "image_mean": [0.48145466, 0.4578275, 0.40821073], "image_std": [0.26862954, 0.26130258, 0.27577711],
    }, indent=1))
    (directory / "generation_config.json").write_text(json.dumps({
        "bos_token_id": ids["<|begin_of_text|>"], "eos_token_id": ids["<|eot_id|>"], "pad_token_id": ids["<pad>"]}))
    write_weights(directory, random_weights(config, seed), shards, layerscale)
    return directory
