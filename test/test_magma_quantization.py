"""``quantization: int8 | nf4`` for the native Magma on CPU (bitsandbytes' CPU backend), on tiny
checkpoints in the official layout: sizes of the quantized layers, loading with default options,
streaming (the full-precision language model never exists), the NF4 slices equal bitsandbytes'
own quantization, agreement with the unquantized ids, and every error path."""
from __future__ import annotations

import argparse
import json
import sys
import threading
import weakref

import numpy as np
import pytest
import torch
from finetune_support import held_out_frames
from tiny_magma import BASE_VOCAB, build_tiny_magma, random_weights, write_weights
from torch.utils._python_dispatch import TorchDispatchMode

from magma_ros.actions import load_profile
from magma_ros.policy import BackendConfig, PolicyConfigError, create_policy
from magma_ros.policy.cli_options import add_backend_arguments, backend_config_from_args
from magma_ros.policy.magma_native.loading import load_native
from magma_ros.policy.magma_native.quantization import Quantizer, layer_bytes, quantized_layers
from magma_ros.policy.vlm import VLMRunner

bnb = pytest.importorskip("bitsandbytes")
PROMPT = "What action should the robot take to pick up the red block?"
RNG = np.random.default_rng(5)
FRAMES = [RNG.integers(0, 256, (120, 160, 3), dtype=np.uint8) for _ in range(4)]
LINEARS_PER_LAYER = 7  # q, k, v, o, gate, up, down


@pytest.fixture(scope="module")
def wide_dir(tmp_path_factory):
    """Hidden 256 (MLP 512): whole NF4 blocks and int8 rows, as in a real model."""
    return build_tiny_magma(tmp_path_factory.mktemp("wide_magma"), hidden=256, layers=2)


def config(model_dir, **kwargs) -> BackendConfig:
    return BackendConfig(backend="magma", model=str(model_dir), **{"device": "cpu", **kwargs})


def bf16_bytes(layers: dict) -> int:
    return sum(layer.in_features * layer.out_features * 2 for layer in layers.values())


@pytest.mark.parametrize("method, limit", [("nf4", 0.30), ("int8", 0.55)])
def test_quantized_layers_are_a_fraction_of_bf16(wide_dir, method, limit):
    runner = VLMRunner.load(config(wide_dir, quantization=method))
    try:
        model = runner.adapter.model
        layers = quantized_layers(model)
        assert sorted(layers) == sorted(f"language_model.model.layers.{i}.{part}" for i in range(2) for part in (
            "self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
            "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj"))
        runner.action_ids(FRAMES[0], PROMPT)  # int8 layers move their state on the first forward: count after it
        ratio = sum(layer_bytes(layer) for layer in layers.values()) / bf16_bytes(layers)
        assert ratio <= limit, f"{method}: {ratio:.3f} of the bf16 bytes"
        assert ratio > 0.2, "the quantization state is not being counted"
        assert model.language_model.lm_head.weight.dtype == torch.bfloat16
        assert all(p.dtype == torch.bfloat16 for p in model.vision_tower.parameters())
    finally:
        runner.close()


def test_default_options_plus_quantization_predict_action_ids(wide_dir):
    """Every default (bfloat16, sdpa, native) except the device, plus quantization."""
    for method in ("nf4", "int8"):
        policy = create_policy(BackendConfig(backend="magma", model=str(wide_dir), device="cpu", quantization=method),
                               load_profile("bridge_orig"))
        try:
            assert quantized_layers(policy.runner.adapter.model)
            for frame in FRAMES:
                ids = policy.predict(frame, "pick up the red block").token_ids
                assert ids.shape == (7,) and np.all((ids >= BASE_VOCAB - 256) & (ids < BASE_VOCAB)), ids
        finally:
            policy.close()


@pytest.fixture(scope="module")
def wide_vision_dir(tmp_path_factory):
    """As ``wide_dir`` with a ConvNeXt of 64-256 channels, so its MLPs are whole NF4 blocks wide."""
    directory = build_tiny_magma(tmp_path_factory.mktemp("wide_vision_magma"), hidden=256, layers=1)
    cfg = json.loads((directory / "config.json").read_text())
    cfg["vision_config"].update(convnext_dims=[64, 128, 192, 256], convnext_depths=[1, 1, 1, 1], mm_hidden_size=256)
    (directory / "config.json").write_text(json.dumps(cfg))
    for old in directory.glob("model*.safetensors*"):
        old.unlink()
    write_weights(directory, random_weights(cfg, seed=3))
    return directory


@pytest.mark.parametrize("method", ["nf4", "int8"])
def test_quantize_vision_also_quantizes_the_tower_and_projector(wide_vision_dir, method):
    for vision in (False, True):
        runner = VLMRunner.load(config(wide_vision_dir, quantization=method, quantize_vision=vision))
        try:
            names = set(quantized_layers(runner.adapter.model))
            tower = {n for n in names if n.startswith("vision_tower.")}
            projector = {"multi_modal_projector.proj.0", "multi_modal_projector.proj.2"}
            assert bool(tower) is vision and (projector <= names) is vision
            if vision:
                assert len(tower) == 2 * 4  # fc1 and fc2 of each block
            assert runner.action_ids(FRAMES[1], PROMPT).shape == (7,)
        finally:
            runner.close()


def test_nf4_slices_equal_bitsandbytes_whole_tensor_quantization():
    quantizer = Quantizer("nf4", "cpu", torch.bfloat16)
    weight = torch.randn(3 * 1024 + 64, 1024 // 2 + 64, generator=torch.Generator().manual_seed(0))
    assert weight.numel() > 1 << 20  # more than one slice
    packed, state = quantizer.nf4(weight)
    ref_packed, ref_state = bnb.functional.quantize_4bit(weight.to(torch.bfloat16), blocksize=64,
                                                         compress_statistics=True, quant_type="nf4")
    assert torch.equal(packed, ref_packed)
    assert torch.equal(state.absmax, ref_state.absmax) and torch.equal(state.offset, ref_state.offset)
    dequantize = bnb.functional.dequantize_4bit
    assert torch.equal(dequantize(packed, state), dequantize(ref_packed, ref_state))


def test_int8_equals_bitsandbytes_own_quantization():
    weight = torch.randn(96, 256, generator=torch.Generator().manual_seed(1))
    ours = Quantizer("int8", "cpu", torch.bfloat16).int8(weight)
    ref = bnb.nn.Int8Params(weight.to(torch.bfloat16), requires_grad=False, has_fp16_weights=False).to("cpu")
    assert ours.dtype == torch.int8 and torch.equal(ours.data, ref.data)
    assert torch.equal(ours.CB, ref.CB) and torch.equal(ours.SCB, ref.SCB)


class LiveBytes(TorchDispatchMode):
    """Bytes of CPU tensor storage made by torch operations and still alive, and their peak
    (storages are freed when their last tensor goes: tracked with weakref finalizers)."""

    def __init__(self) -> None:
        super().__init__()
        self.live = self.peak = 0
        self._seen: set[int] = set()
        self._lock = threading.Lock()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in (out if isinstance(out, (tuple, list)) else (out,)):
            if isinstance(t, torch.Tensor) and t.device.type == "cpu":
                self._track(t.untyped_storage())
        return out

    def _track(self, storage) -> None:
        key = id(storage)
        with self._lock:
            if key in self._seen:
                return
            self._seen.add(key)
            self.live += storage.nbytes()
            self.peak = max(self.peak, self.live)
        weakref.finalize(storage, self._free, key, storage.nbytes())

    def _free(self, key: int, nbytes: int) -> None:
        with self._lock:
            self._seen.discard(key)
            self.live -= nbytes


@pytest.fixture(scope="module")
def deep_dir(tmp_path_factory):
    """Language model (hidden 1024, 2 layers: 36 MB of linear weights in bf16) much larger than the rest."""
    return build_tiny_magma(tmp_path_factory.mktemp("deep_magma"), hidden=1024, layers=2, shards=4)


def test_nf4_load_never_materializes_the_bf16_language_model(deep_dir):
    peaks = {}
    for method in ("nf4", "none"):
        with LiveBytes() as tracker:
            adapter = load_native(deep_dir, "cpu", torch.bfloat16, "sdpa", method)
        peaks[method] = tracker.peak
        if method == "nf4":
            bf16 = bf16_bytes(quantized_layers(adapter.model))
        del adapter
    assert bf16 > 30e6
    # the measurement sees a full-precision load (the control), and the NF4 load stays under it
    assert peaks["none"] >= bf16, peaks
    assert peaks["nf4"] < bf16, f"peak {peaks['nf4'] / 1e6:.1f} MB during an nf4 load, bf16 layers {bf16 / 1e6:.1f} MB"


def test_missing_bitsandbytes_is_one_line_naming_the_extra(wide_dir, monkeypatch):
    monkeypatch.setitem(sys.modules, "bitsandbytes", None)
    with pytest.raises(PolicyConfigError) as info:
        VLMRunner.load(config(wide_dir, quantization="nf4"))
    message = str(info.value)
    assert "\n" not in message and "magma_ros[quantization]" in message and "quantization: none" in message


def test_a_device_bitsandbytes_cannot_serve_is_one_line(wide_dir, monkeypatch):
    def unsupported(self, *args, **kwargs):
        raise NotImplementedError("no kernel registered for this device\n(traceback detail)")

    monkeypatch.setattr(bnb.nn.Linear8bitLt, "forward", unsupported)
    with pytest.raises(PolicyConfigError) as info:
        VLMRunner.load(config(wide_dir, quantization="int8"))
    message = str(info.value)
    assert "\n" not in message and "cannot run on cpu" in message and "NotImplementedError" in message


def test_option_checks_and_flags(wide_dir):
    with pytest.raises(PolicyConfigError, match="quantization: must be one of none, int8, nf4, got 'fp8'"):
        BackendConfig(quantization="fp8")
    for flag in ("quantize_vision", "compile"):
        with pytest.raises(PolicyConfigError, match=f"{flag}: must be true or false"):
            BackendConfig(**{flag: "yes"})
    with pytest.raises(PolicyConfigError, match="native Magma implementation"):
        BackendConfig(trust_remote_code=True, quantization="nf4")
    parser = argparse.ArgumentParser()
    add_backend_arguments(parser)
    parsed = backend_config_from_args(parser.parse_args(["--quantization", "int8", "--quantize-vision", "--compile"]))
    assert (parsed.quantization, parsed.quantize_vision, parsed.compile) == ("int8", True, True)
    defaults = backend_config_from_args(parser.parse_args([]))
    assert (defaults.quantization, defaults.quantize_vision, defaults.compile) == ("none", False, False)


def agreement(directory, requests, method: str) -> tuple[float, int]:
    """(Share of the (image, prompt) requests whose 7 ids with ``method`` equal the unquantized ones,
    distinct unquantized answers)."""
    ids = {}
    for quantization in ("none", method):
        runner = VLMRunner.load(config(directory, quantization=quantization))
        try:
            ids[quantization] = [tuple(runner.action_ids(image, prompt).tolist()) for image, prompt in requests]
        finally:
            runner.close()
    same = sum(a == b for a, b in zip(ids["none"], ids[method]))
    return same / len(requests), len(set(ids["none"]))


@pytest.fixture(scope="module")
def confident_checkpoint(finetuned):
    """(checkpoint directory, held-out (image, prompt) requests) of the confident tiny model: the one
    the fine-tuning test trains (a random tiny model is not confident, its action logits are nearly
    tied: see the test below), on 40 frames of its task that are in no bag."""
    profile = load_profile(finetuned.out / "robot.yaml")
    return finetuned.out, [(f.image, profile.prompt(f.instruction)) for f in held_out_frames(40)]


@pytest.mark.parametrize("method", ["int8", "nf4"])
def test_quantized_ids_equal_unquantized_on_a_confident_model(confident_checkpoint, method):
    directory, requests = confident_checkpoint
    share, answers = agreement(directory, requests, method)
    assert answers > 1, "the model gives one answer for every frame: agreement would mean nothing"
    assert share >= 0.95, f"{method}: ids equal on {share:.0%} of the held-out frames"


def test_agreement_measure_sees_an_unconfident_model(wide_dir):
    """The measure can fail: on the random tiny model NF4 changes most frames' ids."""
    frames = [np.random.default_rng(i).integers(0, 256, (120, 160, 3), dtype=np.uint8) for i in range(6)]
    share, answers = agreement(wide_dir, [(frame, PROMPT) for frame in frames], "nf4")
    assert answers == len(frames) and share < 0.95


@pytest.mark.parametrize("option", [{"quantization": "nf4"}, {"compile": True}])
def test_quantization_and_compile_refuse_a_non_magma_checkpoint(tmp_path, option):
    from tiny_vlm import build_tiny_vlm

    directory = build_tiny_vlm(tmp_path / "llava")
    with pytest.raises(PolicyConfigError, match="apply to Magma checkpoints .*not to model_type 'llava'"):
        VLMRunner.load(config(directory, **option))
