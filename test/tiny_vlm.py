"""Build a tiny random Llama-based vision-language model (LLaVA layout) for tests and benchmarks.

The model directory holds everything ``VLMRunner.load`` needs offline: config.json, safetensors
weights, a LlavaProcessor (CLIP image processor + fast tokenizer + chat template) and a
``tokenizer.json`` built here with ``tokenizers``. Its base vocabulary is ``BASE_VOCAB`` and, as in
Magma/OpenVLA, the action tokens are the last 256 ids of that base vocabulary; they are also
registered as (non-special) added tokens so that action text tokenizes back to the same ids.
"""
from __future__ import annotations

from pathlib import Path

from magma_ros.policy.magma_native.small_checkpoint import (
    BASE_VOCAB,
    CHAT_TEMPLATE,
    N_ACTION_BINS,
    SPECIAL_TOKENS,
    action_token,
)
from magma_ros.policy.magma_native.small_checkpoint import build_tokenizer as _build_tokenizer

WEIGHT_STD = 0.3  # much larger than the usual 0.02, so image and prompt visibly change the greedy output
IMAGE_SIZE = 32
PATCH_SIZE = 8
__all__ = ["BASE_VOCAB", "CHAT_TEMPLATE", "N_ACTION_BINS", "SPECIAL_TOKENS", "action_token", "build_tiny_vlm"]


def build_tiny_vlm(directory: Path, seed: int = 0, *, hidden_size: int = 64, layers: int = 2,
                   weight_std: float = WEIGHT_STD) -> Path:
    """Write a tiny random LLaVA-style model (Llama text model, CLIP vision tower) to ``directory``.

    The defaults build in about a second; ``hidden_size``, ``layers`` and ``weight_std`` (0.02 is
    the usual initialisation, easier to train) make other Llama-architecture models for benchmarks.
    """
    import torch
    from transformers import (
        CLIPImageProcessor,
        CLIPVisionConfig,
        GenerationConfig,
        LlamaConfig,
        LlavaConfig,
        LlavaForConditionalGeneration,
        LlavaProcessor,
        PreTrainedTokenizerFast,
    )

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=_build_tokenizer(), bos_token="<|begin_of_text|>", eos_token="<|eot_id|>",
        pad_token="<pad>", model_max_length=1024, model_input_names=["input_ids", "attention_mask"],
    )
    tokenizer.chat_template = CHAT_TEMPLATE
    image_processor = CLIPImageProcessor(size={"shortest_edge": IMAGE_SIZE},
                                         crop_size={"height": IMAGE_SIZE, "width": IMAGE_SIZE})
    processor = LlavaProcessor(image_processor=image_processor, tokenizer=tokenizer, patch_size=PATCH_SIZE,
                               vision_feature_select_strategy="default", num_additional_image_tokens=1,
                               chat_template=CHAT_TEMPLATE)
    processor.save_pretrained(directory)
    tokenizer.save_pretrained(directory)  # writes tokenizer.json next to config.json

    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in SPECIAL_TOKENS}
    text_config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=hidden_size, intermediate_size=2 * hidden_size,
        num_hidden_layers=layers, num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=1024,
        bos_token_id=ids["<|begin_of_text|>"], eos_token_id=ids["<|eot_id|>"], pad_token_id=ids["<pad>"],
    )
    vision_config = CLIPVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
                                     image_size=IMAGE_SIZE, patch_size=PATCH_SIZE, projection_dim=32)
    config = LlavaConfig(vision_config=vision_config.to_dict(), text_config=text_config.to_dict(),
                         image_token_index=ids["<image>"], vision_feature_layer=-1,
                         vision_feature_select_strategy="default", projector_hidden_act="gelu")
    torch.manual_seed(seed)
    model = LlavaForConditionalGeneration(config).eval()
    with torch.no_grad():
        for param in model.parameters():
            if param.dim() >= 2:
                param.normal_(0.0, weight_std)
    model.generation_config = GenerationConfig(bos_token_id=ids["<|begin_of_text|>"], eos_token_id=ids["<|eot_id|>"],
                                               pad_token_id=ids["<pad>"])
    model.save_pretrained(directory, safe_serialization=True)
    return directory
