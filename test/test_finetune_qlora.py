"""QLoRA: ``magma-ros finetune --quantization nf4`` on CPU trains the adapter on the 4-bit base (the
same task, base and bags as test_finetune.py), and ``--merge`` writes full-precision weights
(dequantized base + adapter) in the base's layout, which load without quantization."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from finetune_support import ACTION_TOPIC, held_out_frames
from safetensors import safe_open
from tiny_magma import BASE_VOCAB

from magma_ros.actions import ActionDecoder, ActionTokenizer, load_profile
from magma_ros.cli import main
from magma_ros.policy import BackendConfig
from magma_ros.policy.magma_native.quantization import quantized_layers
from magma_ros.policy.vlm import VLMRunner
from magma_ros.train.lora import apply_adapter, prepare_quantized
from magma_ros.train.validation import predict_ids

pytest.importorskip("bitsandbytes")


def test_qlora_learns_the_rule_on_held_out_episodes(finetuned_nf4):
    validations = finetuned_nf4.validations()
    before, after = validations[0], validations[-1]
    assert before["val"]["frames"] == 40 and before["val"]["exact_bin"]["all"] <= 0.05, before
    assert after["step"] > 0 and after["val"]["exact_bin"]["all"] >= 0.8, after


def test_qlora_merge_is_full_precision_in_the_base_layout(finetuned_nf4):
    out, base = finetuned_nf4.out, finetuned_nf4.base
    index = json.loads((out / "model.safetensors.index.json").read_text())["weight_map"]
    assert index == json.loads((base / "model.safetensors.index.json").read_text())["weight_map"]
    changed = 0
    for shard in set(index.values()):
        with safe_open(str(out / shard), "pt") as new, safe_open(str(base / shard), "pt") as old:
            assert set(new.keys()) == set(old.keys())
            for key in new.keys():
                assert new.get_slice(key).get_dtype() == old.get_slice(key).get_dtype(), key
                assert new.get_slice(key).get_shape() == old.get_slice(key).get_shape(), key
                a, b = new.get_tensor(key), old.get_tensor(key)
                if "language_model.model.layers" in key and key.endswith("proj.weight"):
                    # dequantized NF4 base + the adapter's update: near the base, never equal to it
                    assert not torch.equal(a, b), key
                    assert (a.float() - b.float()).abs().mean() < 0.5 * b.float().abs().mean(), key
                    changed += 1
                else:
                    assert torch.equal(a, b), key  # not quantized and not trained: as it was
    assert changed == 2 * 7


def test_qlora_merged_loads_without_quantization_and_gives_the_ids_of_the_trained_model(
        finetuned_nf4, tmp_path, capsys):
    run = finetuned_nf4
    frames = held_out_frames()
    profile = load_profile(run.out / "robot.yaml")
    merged = VLMRunner.load(BackendConfig(backend="magma", model=str(run.out), device="cpu", dtype="float32"))
    try:
        assert not quantized_layers(merged.adapter.model)
        merged_ids = predict_ids(merged, frames, profile, 8)
    finally:
        merged.close()
    trained = VLMRunner.load(BackendConfig(backend="magma", model=str(run.base), device="cpu", dtype="float32",
                                           quantization="nf4"))
    try:  # the quantized base as it trained (prepared for k-bit training) + the adapter
        prepare_quantized(trained.adapter.model)
        apply_adapter(trained.adapter.model, run.out / "adapter")
        trained_ids = predict_ids(trained, frames, profile, 8)
    finally:
        trained.close()
    assert merged_ids.tolist() == trained_ids.tolist()
    truth = ActionDecoder(profile.stats, ActionTokenizer(BASE_VOCAB)).encode(np.stack([f.action for f in frames]))
    assert np.mean(np.all(merged_ids == truth, axis=1)) >= 0.8
    # and the evaluator, on the held-out bag, scores the merged directory loaded without quantization
    code = main(["eval", str(run.val_bag), "--backend", "magma", "--model", str(run.out), "--robot",
                 str(run.out / "robot.yaml"), "--action-topic", ACTION_TOPIC, "--device", "cpu", "--dtype", "float32",
                 "--out", str(tmp_path / "eval"), "--quiet", "--no-plots"])
    assert code == 0, capsys.readouterr().err
    report = json.loads((tmp_path / "eval" / "report.json").read_text())
    assert report["frames"]["evaluated"] == 40 and report["overall"]["exact_bin"]["all"] >= 0.8, report["overall"]
