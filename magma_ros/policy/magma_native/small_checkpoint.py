"""Write a small random Magma checkpoint in the official layout, built locally (no download).

config.json (model_type magma, text_config, vision_config), sharded safetensors + index under the
names Magma's modeling code writes (LayerScale as ``gamma`` or ``weight``, the vision trunk's unused
pooling head included), a byte-level BPE tokenizer trained here with ``tokenizers`` (Llama-3's
special tokens, Magma's chat template, an ``<image>`` token; the action tokens are the last 256 ids
of its base vocabulary) and preprocessor_config.json. Used by ``make demo-learn`` (a model that
full fine-tuning teaches on a CPU) and by the tests (a much smaller one).
"""
from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

BASE_VOCAB = 1024
N_ACTION_BINS = 256
SPECIAL_TOKENS = ("<|begin_of_text|>", "<|eot_id|>", "<|start_header_id|>", "<|end_header_id|>", "<image>", "<pad>")
CHAT_TEMPLATE = (
    "{{ '<|begin_of_text|>' }}{% for m in messages %}"
    "{{ '<|start_header_id|>' + m['role'] + '<|end_header_id|>\n\n' + m['content'] + '<|eot_id|>' }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}"
)
# Llama-3 has a token for each word of the simulator's instructions; so must this vocabulary, or the
# colour words split into pieces of different lengths (measured: "green" as 3 tokens, "red" as 1).
CORPUS = (
    "You are agent that can see, talk and act.",
    "What action should the robot take to pick up the red block?",
    "What action should the robot take to put the spoon in the pot?",
    "Move the arm to the left, open the gripper, close the drawer, push the cloth.",
    "system user assistant image robot arm camera table cup bowl towel carrot",
    "What action should the robot take to reach the red cube, reach the green cube or reach the blue cube? "
    "touch, go to, move to, pick up, lift the cube.",
)
IMAGE_MEAN = (0.48145466, 0.4578275, 0.40821073)
IMAGE_STD = (0.26862954, 0.26130258, 0.27577711)


@dataclass(frozen=True)
class SmallMagmaSpec:
    """Sizes of the checkpoint: a ConvNeXt tower (``depths`` blocks of ``dims`` channels per stage),
    an MLP projector, a Llama of ``hidden`` width and ``layers`` layers, and Magma's image processing
    (crops of ``crop`` pixels, at most ``max_crops``; ``strategy`` crop or global). Weights are drawn
    with standard deviation ``weight_std`` (matrices) from ``seed``; ``head_std`` (when set) for the
    output layer, whose scale bounds how confident the logits can get while it stays frozen
    (LoRA fine-tuning trains only the layers inside); ``vision_std`` (when set) for the vision
    tower's matrices: small random convolutions give features that say little about where a small
    object is in the image, larger ones say more."""

    hidden: int = 64
    layers: int = 2
    heads: int = 4
    kv_heads: int = 2
    depths: tuple[int, ...] = (1, 1, 2, 1)
    dims: tuple[int, ...] = (8, 16, 24, 32)
    crop: int = 64
    max_crops: int = 4
    projector: str = "mlp2x_gelu"
    strategy: str = "crop"
    weight_std: float = 0.3
    head_std: float | None = None
    vision_std: float | None = None
    shards: int = 2
    layerscale: str = "gamma"
    seed: int = 0


def action_token(k: int) -> str:
    """Text of the k-th action token (k = 0 is the lowest action id)."""
    return f"<act_{k}>"


def build_tokenizer() -> Any:
    """A ``tokenizers.Tokenizer``: byte-level BPE trained on a few sentences, filled to
    ``BASE_VOCAB`` base ids whose last 256 are the action tokens, plus the special tokens."""
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=BASE_VOCAB - N_ACTION_BINS, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(list(CORPUS) * 4, trainer=trainer)
    spec = json.loads(tok.to_str())
    vocab: dict[str, int] = spec["model"]["vocab"]
    filler = 0
    while len(vocab) < BASE_VOCAB - N_ACTION_BINS:
        vocab[f"<unused_{filler}>"] = len(vocab)
        filler += 1
    for k in range(N_ACTION_BINS):
        vocab[action_token(k)] = len(vocab)
    tok = Tokenizer.from_str(json.dumps(spec))
    if tok.get_vocab_size(with_added_tokens=False) != BASE_VOCAB:
        raise RuntimeError(f"tokenizer: base vocabulary {tok.get_vocab_size(with_added_tokens=False)} != {BASE_VOCAB}")
    tok.add_tokens([AddedToken(action_token(k), normalized=False) for k in range(N_ACTION_BINS)])
    tok.add_special_tokens([AddedToken(t, normalized=False, special=True) for t in SPECIAL_TOKENS])
    return tok


def magma_config(vocab: int, ids: dict[str, int], spec: SmallMagmaSpec) -> dict[str, Any]:
    """config.json for ``spec`` with a tokenizer of ``vocab`` ids and these special token ids."""
    text = {
        "model_type": "llama", "architectures": ["LlamaForCausalLM"], "vocab_size": vocab, "hidden_size": spec.hidden,
        "intermediate_size": 2 * spec.hidden, "num_hidden_layers": spec.layers, "num_attention_heads": spec.heads,
        "num_key_value_heads": spec.kv_heads, "max_position_embeddings": 2048, "rms_norm_eps": 1e-5,
        "rope_theta": 500000.0, "hidden_act": "silu", "tie_word_embeddings": False,
        "bos_token_id": ids["<|begin_of_text|>"], "eos_token_id": ids["<|eot_id|>"], "pad_token_id": ids["<pad>"],
        "torch_dtype": "float32",
    }
    vision = {
        "vision_backbone": "convnextxxlarge", "convnext_depths": list(spec.depths), "convnext_dims": list(spec.dims),
        "convnext_norm_eps": 1e-5, "mm_hidden_size": spec.dims[-1], "hidden_size": spec.hidden,
        "mm_projector_type": spec.projector, "img_anyres_strategy": spec.strategy,
        "vision_feature_layer": "clip_vis_dense", "img_size": spec.crop, "max_num_crops": spec.max_crops,
        "mm_use_im_start_end": False,
    }
    return {"model_type": "magma", "architectures": ["MagmaForCausalLM"], "text_config": text,
            "vision_config": vision, "image_token_index": ids["<image>"], "mm_use_image_start_end": False,
            "tie_word_embeddings": False, "torch_dtype": "float32"}


def write_tokenizer(directory: Path) -> dict[str, int]:
    """tokenizer.json + tokenizer_config.json (chat template); returns the special token ids."""
    from transformers import PreTrainedTokenizerFast

    tokenizer = PreTrainedTokenizerFast(tokenizer_object=build_tokenizer(), bos_token="<|begin_of_text|>",
                                        eos_token="<|eot_id|>", pad_token="<pad>", model_max_length=2048,
                                        model_input_names=["input_ids", "attention_mask"])
    tokenizer.chat_template = CHAT_TEMPLATE
    tokenizer.save_pretrained(directory)
    return {t: tokenizer.convert_tokens_to_ids(t) for t in SPECIAL_TOKENS}


def random_weights(config: dict[str, Any], seed: int, std: float = 0.3, head_std: float | None = None,
                   vision_std: float | None = None) -> dict[str, Any]:
    """Random tensors for every parameter of the native model described by ``config``, by checkpoint
    name: normal(0, ``std``) matrices (the output layer: ``head_std``, the vision tower's:
    ``vision_std``, if given), normal(0, 0.1) vectors, norm scales around 1."""
    import torch

    from .config import read_model_settings
    from .model import MagmaForActions

    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "config.json").write_text(json.dumps(config))
        settings = read_model_settings(Path(tmp))
    with torch.device("meta"):
        shapes = {n: p.shape for n, p in MagmaForActions(settings, "eager").named_parameters()}
    gen = torch.Generator().manual_seed(seed)
    weights = {}
    for name, shape in shapes.items():
        scale = std if len(shape) >= 2 else 0.1
        if head_std is not None and name == "language_model.lm_head.weight":
            scale = head_std
        if vision_std is not None and len(shape) >= 2 and name.startswith("vision_tower."):
            scale = vision_std
        tensor = torch.randn(shape, generator=gen) * scale
        if name.endswith((".norm.weight", "stem.1.weight", "downsample.0.weight", "layernorm.weight")):
            tensor = 1.0 + tensor
        weights[name] = tensor.contiguous()
    return weights


def write_weights(directory: Path, weights: dict[str, Any], shards: int = 2, layerscale: str = "gamma") -> None:
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


def build_small_magma(directory: Path, spec: SmallMagmaSpec = SmallMagmaSpec()) -> Path:
    """Write the whole checkpoint to ``directory`` (created if needed) and return it."""
    from transformers import PreTrainedTokenizerFast

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    ids = write_tokenizer(directory)
    vocab = len(PreTrainedTokenizerFast.from_pretrained(str(directory)))
    config = magma_config(vocab, ids, spec)
    (directory / "config.json").write_text(json.dumps(config, indent=1))
    (directory / "preprocessor_config.json").write_text(json.dumps({
        "image_processor_type": "MagmaImageProcessor", "anyres_strategy": "crop", "base_img_size": spec.crop,
        "num_crops": spec.max_crops, "do_convert_rgb": True, "image_mean": list(IMAGE_MEAN),
        "image_std": list(IMAGE_STD),
    }, indent=1))
    (directory / "generation_config.json").write_text(json.dumps({
        "bos_token_id": ids["<|begin_of_text|>"], "eos_token_id": ids["<|eot_id|>"], "pad_token_id": ids["<pad>"]}))
    write_weights(directory, random_weights(config, spec.seed, spec.weight_std, spec.head_std, spec.vision_std),
                  spec.shards, spec.layerscale)
    return directory
