"""Magma-8B's calling convention, checked with a recording double of its remote-code processor and
model (the 8B checkpoint cannot exist here). The double enforces the keyword names and tensor
shapes of the model card; the tokenizer and chat template are the real Llama-3 ones."""
from __future__ import annotations

import re
import types

import numpy as np
import pytest
import torch
from PIL import Image
from tiny_vlm import CHAT_TEMPLATE
from transformers import BatchFeature, PreTrainedTokenizerFast

from magma_ros.actions import ActionDecoder, ActionTokenizer, load_profile
from magma_ros.policy import PolicyConfigError
from magma_ros.policy.hf_adapters import MagmaAdapter
from magma_ros.policy.magma import MagmaPolicy
from magma_ros.policy.vlm import VLMRunner
from magma_ros.policy.vlm_checks import check_transformers_version

LLAMA3_BASE = 128000
MAGMA_LM_VOCAB = 128320  # Magma's output layer is wider than the base vocabulary (added tokens)
EOT = 128009
SYSTEM = "You are agent that can see, talk and act."
CROP = 64


class RecordingMagmaProcessor:
    """Accepts exactly ``processor(images=[PIL image], texts=str, return_tensors="pt")``."""

    def __init__(self, tokenizer) -> None:
        self.tokenizer = tokenizer
        self.calls: list[dict] = []

    def __call__(self, *args, **kwargs) -> BatchFeature:
        if args or set(kwargs) != {"images", "texts", "return_tensors"}:
            raise TypeError("MagmaProcessor takes images=, texts=, return_tensors=; "
                            f"got args={args} kwargs={sorted(kwargs)}")
        images, texts = kwargs["images"], kwargs["texts"]
        if kwargs["return_tensors"] != "pt":
            raise ValueError("return_tensors must be 'pt'")
        if not (isinstance(images, list) and len(images) == 1 and isinstance(images[0], Image.Image)):
            raise TypeError(f"images must be a list with one PIL image, got {images!r}")
        if not isinstance(texts, str):
            raise TypeError(f"texts must be one prompt string, got {type(texts).__name__}")
        self.calls.append({"image": images[0], "text": texts})
        ids = torch.tensor([self.tokenizer(texts, add_special_tokens=False)["input_ids"]], dtype=torch.long)
        return BatchFeature({
            "input_ids": ids,
            "attention_mask": torch.ones_like(ids),
            "pixel_values": torch.rand(1, 3, CROP, CROP),  # (crops, channels, h, w) before unsqueeze
            "image_sizes": torch.tensor([[1, 1]]),  # (images, 2) before unsqueeze
        })


class RecordingMagmaModel:
    """``generate`` with Magma's keyword names; checks the batch dimensions added after the processor."""

    def __init__(self, mm_use_image_start_end: bool, dtype: torch.dtype) -> None:
        self.config = types.SimpleNamespace(mm_use_image_start_end=mm_use_image_start_end, max_position_embeddings=4096)
        self.generation_config = types.SimpleNamespace(eos_token_id=EOT)
        self.dtype = dtype
        self.calls: list[dict] = []
        self.rng = torch.Generator().manual_seed(0)

    def get_output_embeddings(self):
        return types.SimpleNamespace(out_features=MAGMA_LM_VOCAB)

    def generate(self, *, input_ids, attention_mask, pixel_values, image_sizes, max_new_tokens, num_beams,
                 use_cache, pad_token_id, do_sample, logits_processor=None, stopping_criteria=None, streamer=None):
        assert input_ids.dtype == torch.long and input_ids.ndim == 2 and input_ids.shape[0] == 1
        assert attention_mask.shape == input_ids.shape
        assert pixel_values.shape == (1, 1, 3, CROP, CROP), (f"pixel_values needs unsqueeze(0), "
                                                             f"got {tuple(pixel_values.shape)}")
        assert pixel_values.dtype == self.dtype, f"pixel_values must be cast to {self.dtype}, got {pixel_values.dtype}"
        assert image_sizes.shape == (1, 1, 2), f"image_sizes needs unsqueeze(0), got {tuple(image_sizes.shape)}"
        assert num_beams == 1 and use_cache is True and do_sample is False
        self.calls.append({"max_new_tokens": max_new_tokens, "constrained": logits_processor is not None})
        seq = input_ids
        if streamer is not None:
            streamer.put(input_ids)
        for _ in range(max_new_tokens):
            scores = torch.randn(1, MAGMA_LM_VOCAB, generator=self.rng)
            if logits_processor is not None:
                scores = logits_processor(seq, scores)
            token = scores.argmax(dim=-1, keepdim=True)
            seq = torch.cat([seq, token], dim=-1)
            if streamer is not None:
                streamer.put(token[0])
            if stopping_criteria is not None and bool(stopping_criteria(seq, scores).all()):
                break
        if streamer is not None:
            streamer.end()
        return seq


@pytest.fixture(scope="module")
def llama3_tokenizer(llama3_tokenizer_path):
    tok = PreTrainedTokenizerFast(tokenizer_file=str(llama3_tokenizer_path), bos_token="<|begin_of_text|>",
                                  eos_token="<|eot_id|>")
    tok.chat_template = CHAT_TEMPLATE
    return tok


def make_runner(tokenizer, mm_use_image_start_end: bool = False):
    model = RecordingMagmaModel(mm_use_image_start_end, torch.bfloat16)
    processor = RecordingMagmaProcessor(tokenizer)
    adapter = MagmaAdapter(model, processor, "cpu", torch.bfloat16)
    return VLMRunner(adapter, "recording/magma", min_base_vocab=LLAMA3_BASE), model, processor


def test_magma_policy_follows_the_model_card(llama3_tokenizer):
    runner, model, processor = make_runner(llama3_tokenizer)
    profile = load_profile("bridge_orig")
    policy = MagmaPolicy(runner, profile)
    assert policy.vocab_size == LLAMA3_BASE
    image = np.random.default_rng(0).integers(0, 256, (480, 640, 3), dtype=np.uint8)
    prediction = policy.predict(image, "put the carrot on the plate")

    call = processor.calls[-1]
    assert call["image"].size == profile.image_size and call["image"].mode == "RGB"
    text = call["text"]
    assert text.startswith("<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\n" + SYSTEM + "<|eot_id|>")
    assert ("<|start_header_id|>user<|end_header_id|>\n\n<image>\n"
            "What action should the robot take to put the carrot on the plate?<|eot_id|>") in text
    assert text.endswith("<|start_header_id|>assistant<|end_header_id|>\n\n")
    assert "<image_start>" not in text

    assert model.calls[-1] == {"max_new_tokens": 7, "constrained": True}
    ids = prediction.token_ids
    assert ids.shape == (7,) and np.all((ids >= LLAMA3_BASE - 256) & (ids < LLAMA3_BASE))
    ActionDecoder(profile.stats, ActionTokenizer(policy.vocab_size)).decode_ids(ids)
    assert prediction.timings["inference"] > 0


def test_image_start_end_markers_when_the_config_says_so(llama3_tokenizer):
    runner, _, processor = make_runner(llama3_tokenizer, mm_use_image_start_end=True)
    runner.action_ids(np.zeros((256, 256, 3), np.uint8), "What action should the robot take to wave?")
    text = processor.calls[-1]["text"]
    assert ("user<|end_header_id|>\n\n<image_start><image><image_end>\n"
            "What action should the robot take to wave?") in text
    assert text.count("<image>") == 1


def test_streamed_text_uses_the_same_convention(llama3_tokenizer):
    runner, model, processor = make_runner(llama3_tokenizer)
    pieces = list(runner.generate_text(np.zeros((64, 64, 3), np.uint8),
                                       [{"role": "user", "content": "What is on the table?"}], 5, 0.0, 1.0))
    assert pieces and model.calls[-1] == {"max_new_tokens": 5, "constrained": False}
    assert "<image>\nWhat is on the table?" in processor.calls[-1]["text"]


def test_text_only_generation_is_refused_for_magma(llama3_tokenizer):
    runner, _, _ = make_runner(llama3_tokenizer)
    with pytest.raises(PolicyConfigError, match="text-only"):  # the server answers 422
        list(runner.generate_text(None, [{"role": "user", "content": "hi"}], 5, 0.0, 1.0))


@pytest.mark.parametrize("version, supported", [
    ("4.48.2", False), ("4.49.0", True), ("4.55.4", True), ("4.56.0", False), ("4.57.1", False), ("5.0.0", False),
])
def test_transformers_version_range(version, supported):
    if supported:
        check_transformers_version(version)
    else:
        with pytest.raises(PolicyConfigError,
                           match=re.escape(f"transformers {version} cannot run Magma's remote code")):
            check_transformers_version(version)


def test_a_user_message_that_already_has_the_markers_is_left_alone(llama3_tokenizer):
    runner, _, _ = make_runner(llama3_tokenizer, mm_use_image_start_end=True)
    text = runner.adapter.prompt([{"role": "user", "content": "<image_start><image><image_end>\nWhat is this?"}], True)
    assert text.count("<image_start>") == 1 and text.count("<image>") == 1
