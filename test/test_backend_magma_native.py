"""The native Magma implementation on tiny random checkpoints in the official layout (config.json,
sharded safetensors + index, tokenizer files, preprocessor_config.json), on CPU: default
``backend: magma`` loading, decoding paths, batch-readiness, round trip and every load error."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch
from tiny_magma import BASE_VOCAB, CROP, build_tiny_magma

from magma_ros.actions import load_profile
from magma_ros.policy import BackendConfig, PolicyConfigError, create_policy
from magma_ros.policy.magma_native.config import ImageSettings
from magma_ros.policy.magma_native.processing import best_grid
from magma_ros.policy.vlm import VLMRunner

RNG = np.random.default_rng(11)
IMAGES = [RNG.integers(0, 256, (h, w, 3), dtype=np.uint8) for h, w in [(256, 256), (480, 640), (120, 160), (64, 200)]]
PROMPT = "What action should the robot take to pick up the red block?"


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return build_tiny_magma(tmp_path_factory.mktemp("tiny_magma"))


@pytest.fixture(scope="module")
def runner(model_dir):
    runner = VLMRunner.load(config(model_dir))
    yield runner
    runner.close()


def config(model_dir, **kwargs) -> BackendConfig:
    """Default options except what a CPU-only machine needs."""
    return BackendConfig(backend="magma", model=str(model_dir), **{"device": "cpu", "dtype": "float32", **kwargs})


def all_ids(runner) -> list[list[int]]:
    return [runner.action_ids(image, PROMPT).tolist() for image in IMAGES]


def test_backend_magma_predicts_seven_action_ids_with_default_options(model_dir):
    """Every default (bfloat16, sdpa, no remote code) except the device: this machine has no GPU."""
    defaults = BackendConfig()
    assert (defaults.trust_remote_code, defaults.attn_implementation, defaults.dtype) == (False, "sdpa", "bfloat16")
    policy = create_policy(BackendConfig(backend="magma", model=str(model_dir), device="cpu"),
                           load_profile("bridge_orig"))
    try:
        assert type(policy.runner.adapter).__name__ == "MagmaNativeAdapter" and policy.runner.decoder == "direct"
        assert all(p.dtype == torch.bfloat16 for p in policy.runner.adapter.model.parameters())
        assert policy.vocab_size == BASE_VOCAB
        for image in IMAGES:
            ids = policy.predict(image, "pick up the red block").token_ids
            assert ids.shape == (7,) and np.all((ids >= BASE_VOCAB - 256) & (ids < BASE_VOCAB)), ids
    finally:
        policy.close()


def test_runner_interface(runner):
    assert runner.max_context_tokens == 2048
    assert runner.count_tokens("pick up the red block") > 1
    assert runner.decode([BASE_VOCAB - 256]) == "<act_0>"


def test_a_repeated_prompt_is_tokenized_once_with_the_same_ids(runner):
    adapter = runner.adapter
    first, again = adapter.inputs(IMAGES[0], PROMPT + "?"), adapter.inputs(IMAGES[1], PROMPT + "?")
    fresh = adapter.tokenizer(PROMPT + "?", return_tensors="pt")
    assert again["input_ids"] is first["input_ids"] and torch.equal(first["input_ids"], fresh["input_ids"])
    assert torch.equal(first["attention_mask"], fresh["attention_mask"])
    other = adapter.inputs(IMAGES[0], PROMPT)["input_ids"]
    assert not torch.equal(other, first["input_ids"])
    assert torch.equal(other, adapter.tokenizer(PROMPT, return_tensors="pt")["input_ids"])


def test_kv_cached_loop_equals_generate_and_the_image_matters(runner):
    direct = all_ids(runner)
    runner.decoder = "generate"
    try:
        generated = all_ids(runner)
    finally:
        runner.decoder = "direct"
    assert direct == generated
    assert direct == all_ids(runner)
    assert len({tuple(ids) for ids in direct}) > 1, "every image gave the same action"


def test_streamed_text(runner):
    messages = [{"role": "user", "content": "What is on the table?"}]
    pieces = list(runner.generate_text(IMAGES[0], messages, 10, 0.0, 1.0))
    assert pieces and pieces == list(runner.generate_text(IMAGES[0], messages, 10, 0.0, 1.0))
    assert isinstance("".join(runner.generate_text(None, messages, 5, 0.8, 0.9)), str)


def test_left_padded_batch_gives_the_same_logits_as_single_prompts(runner):
    """The forward takes a batch with left padding + attention mask (what batched requests need)."""
    adapter = runner.adapter
    singles = [adapter.inputs(image, adapter.prompt([{"role": "user", "content": text}], True))
               for image, text in [(IMAGES[0], "go"), (IMAGES[1], PROMPT)]]
    length = max(s["input_ids"].shape[1] for s in singles)
    crops = max(s["pixel_values"].shape[1] for s in singles)
    pad = adapter.tokenizer.pad_token_id
    ids = torch.full((2, length), pad)
    mask = torch.zeros((2, length), dtype=torch.long)
    pixels = torch.zeros((2, crops, 3, CROP, CROP))
    for b, s in enumerate(singles):
        n, c = s["input_ids"].shape[1], s["pixel_values"].shape[1]
        ids[b, length - n:], mask[b, length - n:], pixels[b, :c] = s["input_ids"][0], 1, s["pixel_values"][0]
    sizes = torch.cat([s["image_sizes"] for s in singles])
    with torch.inference_mode():
        batch = adapter.model(ids, mask, pixels, sizes, logits_to_keep=1)[:, -1]
        for b, s in enumerate(singles):
            assert torch.allclose(batch[b], adapter.model(**s, logits_to_keep=1)[0, -1], atol=1e-4)
        first, state = adapter.model.prefill(ids, mask, pixels, sizes)
        assert torch.allclose(first, batch, atol=1e-4)
        assert adapter.model.step(first.argmax(-1, keepdim=True), state).shape == first.shape


def test_layerscale_stored_as_weight_and_segtokv_projector_spelling(tmp_path, runner):
    other = build_tiny_magma(tmp_path / "renamed", layerscale="weight", projector="mlp2x_gelu_segtokv1", shards=3)
    index = json.loads((other / "model.safetensors.index.json").read_text())["weight_map"]
    assert any(k.endswith("blocks.0.weight") for k in index) and not any(k.endswith(".gamma") for k in index)
    renamed = VLMRunner.load(config(other))
    try:
        assert all_ids(renamed) == all_ids(runner)  # same seed, same tensors, other names
    finally:
        renamed.close()


def test_global_strategy_loads_and_predicts(tmp_path):
    other = VLMRunner.load(config(build_tiny_magma(tmp_path / "global", strategy="global")))
    try:
        assert other.action_ids(IMAGES[1], PROMPT).shape == (7,)
    finally:
        other.close()


def test_round_trip_of_the_loaded_weights(runner, model_dir, tmp_path):
    from safetensors.torch import save_file

    copy = tmp_path / "copy"
    shutil.copytree(model_dir, copy, ignore=shutil.ignore_patterns("model*.safetensors*"))
    state = {k: v.contiguous() for k, v in runner.adapter.model.state_dict().items()}
    save_file(state, str(copy / "model.safetensors"))
    again = VLMRunner.load(config(copy))
    try:
        assert all_ids(again) == all_ids(runner)
    finally:
        again.close()


def test_best_grid_prefers_kept_pixels_then_less_waste():
    settings = ImageSettings(512, 4, (0.5,) * 3, (0.5,) * 3)
    assert best_grid(256, 256, settings) == (1, 1)
    assert best_grid(640, 480, settings) == (1, 2)
    assert best_grid(480, 1200, settings) == (3, 1)


def _edit_json(path, change):
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))


def _drop_tensor(d):
    from safetensors.torch import load_file, save_file

    index = json.loads((d / "model.safetensors.index.json").read_text())["weight_map"]
    name = "vision_tower.clip_vision_model.trunk.stages.2.blocks.1.gamma"
    tensors = load_file(str(d / index[name]))
    del tensors[name]
    save_file(tensors, str(d / index[name]))
    _edit_json(d / "model.safetensors.index.json", lambda j: j["weight_map"].pop(name))


def _extra_tensor(d):
    from safetensors.torch import save_file

    save_file({"multi_modal_projector.extra.weight": torch.zeros(2)}, str(d / "extra.safetensors"))
    _edit_json(d / "model.safetensors.index.json",
               lambda j: j["weight_map"].update({"multi_modal_projector.extra.weight": "extra.safetensors"}))


def _reshape_tensor(d):
    from safetensors.torch import load_file, save_file

    index = json.loads((d / "model.safetensors.index.json").read_text())["weight_map"]
    name = "multi_modal_projector.row_seperator"
    tensors = load_file(str(d / index[name]))
    tensors[name] = torch.zeros(1, 1, 8)
    save_file(tensors, str(d / index[name]))


def _corrupt_shard(d):
    shard = sorted(d.glob("model-*.safetensors"))[0]
    shard.write_bytes(b"\xff" * 64)


@pytest.mark.parametrize("breakage, message", [
    (_drop_tensor, r"missing 1 tensor\(s\): vision_tower\.clip_vision_model\.trunk\.stages\.2\.blocks\.1\.gamma"),
    (_extra_tensor, r"unexpected 1 tensor\(s\): multi_modal_projector\.extra\.weight"),
    (_reshape_tensor,
     r"mis-shaped tensor\(s\): multi_modal_projector\.row_seperator is \[1, 1, 8\], expected \[1, 1, 64\]"),
    (_corrupt_shard, r"model-00001-of-00002\.safetensors: not a readable safetensors file"),
    (lambda d: sorted(d.glob("model-*.safetensors"))[1].unlink(), r"shard file\(s\) missing: model-00002-of-00002"),
    (lambda d: [p.unlink() for p in d.glob("model*.safetensors*")],
     "no model.safetensors.index.json or model.safetensors"),
    (lambda d: _edit_json(d / "config.json", lambda j: j["vision_config"].update(mm_projector_type="qformer")),
     "mm_projector_type 'qformer' is not supported"),
    (lambda d: _edit_json(d / "config.json", lambda j: [j["vision_config"].pop(k)
                                                        for k in ("convnext_depths", "convnext_dims")]
                          and j["vision_config"].update(vision_backbone="convnexthuge")),
     "vision_backbone 'convnexthuge' is not supported"),
    (lambda d: _edit_json(d / "config.json", lambda j: j["text_config"].update(model_type="mistral")),
     "text_config.model_type 'mistral' is not supported"),
    (lambda d: _edit_json(d / "config.json", lambda j: j.update(image_token_index=5)),
     "<image> token is id .* image_token_index 5"),
    (lambda d: _edit_json(d / "config.json", lambda j: j["text_config"].update(hidden_size=32)),
     "mis-shaped tensor"),
    (lambda d: (d / "preprocessor_config.json").unlink(),
     "preprocessor_config.json: the image processor configuration is missing"),
    (lambda d: _edit_json(d / "preprocessor_config.json", lambda j: j.update(num_crops=0)), "num_crops >= 1"),
    (lambda d: (d / "tokenizer.json").unlink(), "tokenizer.json is missing"),
])
def test_load_errors_name_the_cause(model_dir, tmp_path, breakage, message):
    broken = tmp_path / "broken"
    shutil.copytree(model_dir, broken)
    breakage(broken)
    with pytest.raises(PolicyConfigError, match=message) as info:
        VLMRunner.load(config(broken))
    assert "\n" not in str(info.value)


def test_a_hub_id_that_is_not_downloaded(tmp_path, monkeypatch):
    """Offline, with an empty cache. huggingface_hub reads its environment once, when imported (an
    earlier test may have done that: then the variables alone leave it online, trying the network
    for 20 s), so its constants are set as well."""
    from huggingface_hub import constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(constants, "HF_HOME", str(tmp_path))
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    with pytest.raises(PolicyConfigError, match="model: cannot find 'microsoft/Magma-8B'"):
        VLMRunner.load(config("microsoft/Magma-8B"))


def test_trust_remote_code_failure_is_a_config_error(model_dir):
    """The tiny checkpoint ships no remote code: the opt-in path fails with the cause and the working setup."""
    with pytest.raises(PolicyConfigError, match="remote code|trust_remote_code") as info:
        VLMRunner.load(config(model_dir, trust_remote_code=True))
    assert "native implementation" in str(info.value)


def test_trust_remote_code_option_on_the_command_line():
    import argparse

    from magma_ros.policy.cli_options import add_backend_arguments, backend_config_from_args

    parser = argparse.ArgumentParser()
    add_backend_arguments(parser)
    assert backend_config_from_args(parser.parse_args([])).trust_remote_code is False
    assert backend_config_from_args(parser.parse_args(["--trust-remote-code"])).trust_remote_code is True
    with pytest.raises(PolicyConfigError, match="trust_remote_code: must be true or false"):
        BackendConfig(trust_remote_code="yes")
