"""bench/gpu_action_rate.py: its model-building and timing path at tiny sizes on CPU (none, int8,
nf4), Magma-8B's sizes (counted on the meta device), the bandwidth arithmetic, its flags, and the
no-CUDA exit on this machine."""
from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parent.parent
SCRIPT = REPO / "bench" / "gpu_action_rate.py"
TINY_TEXT = {"model_type": "llama", "vocab_size": 320, "hidden_size": 128, "intermediate_size": 256,
             "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
             "max_position_embeddings": 1024, "rms_norm_eps": 1e-5, "rope_theta": 500000.0, "hidden_act": "silu",
             "tie_word_embeddings": False}


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("gpu_action_rate", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_magma_8b_sizes(bench):
    """The published architecture: about 8.3 B parameters, of which the language model ~8.0 B."""
    from magma_ros.policy.magma_native.model import MagmaForActions

    with torch.device("meta"):
        model = MagmaForActions(bench.magma_8b_settings(), "sdpa")
    total = sum(p.numel() for p in model.parameters())
    language = sum(p.numel() for p in model.language_model.parameters())
    assert 8.0e9 < language < 8.1e9 and 8.7e9 < total < 9.0e9, (language, total)
    assert bench.image_grid() == (1, 1)


@pytest.mark.parametrize("method", ["none", "int8", "nf4"])
def test_tiny_model_builds_and_times_on_cpu(bench, method):
    if method != "none":
        pytest.importorskip("bitsandbytes")
    settings = bench.magma_8b_settings(TINY_TEXT, depths=(1, 1, 1, 1), dims=(64, 64, 128, 128))
    model = bench.build_random_model(settings, "cpu", torch.bfloat16, method)
    assert not any(t.is_meta for t in list(model.parameters()) + list(model.buffers()))
    inputs = bench.synthetic_inputs(settings, 2, "cpu", torch.bfloat16, crop=64, text_tokens=12)
    with torch.inference_mode():
        logits, state = model.prefill(**inputs)
        ids = bench.decode_loop(model, logits, state)
    assert ids.shape == (2, 7) and bool(((ids >= 320 - 256) & (ids < 320)).all())
    prefill, loop = bench.time_action(model, inputs, 1, lambda: None)
    assert prefill > 0 and loop > 0
    weights = bench.decoded_weight_bytes(model)
    bf16 = sum(p.numel() * 2 for n, p in model.language_model.named_parameters() if "embed_tokens" not in n)
    assert weights == bf16 if method == "none" else weights < 0.8 * bf16


def test_compiled_loop_rows_give_the_eager_ids(bench):
    """--compile: the backend's compile: true loop (inductor on this CPU) next to the eager one."""
    settings = bench.magma_8b_settings(TINY_TEXT, depths=(1, 1, 1, 1), dims=(64, 64, 128, 128))
    model = bench.build_random_model(settings, "cpu", torch.float32)
    inputs = bench.synthetic_inputs(settings, 2, "cpu", torch.float32, crop=64, text_tokens=12)
    (eager_name, eager), (compiled_name, compiled) = bench.decoders(model, "cpu", True)
    assert (eager_name, compiled_name) == ("eager", "compiled") and len(bench.decoders(model, "cpu", False)) == 1
    with torch.inference_mode():
        ids = [bench.decode_loop(d, *d.prefill(**inputs)) for d in (eager, compiled)]
    assert torch.equal(ids[0], ids[1])
    assert all(t > 0 for t in bench.time_action(compiled, inputs, 1, lambda: None))


def test_bandwidth_table_and_override(bench):
    assert bench.bandwidth_gbs("NVIDIA H100 80GB HBM3", None)[0] == 3350  # SXM
    assert bench.bandwidth_gbs("NVIDIA H100 PCIe", None)[0] == 2000
    assert bench.bandwidth_gbs("NVIDIA GeForce RTX 4090", None)[0] == 1008
    assert bench.bandwidth_gbs("Orin (nvgpu) AGX Orin", None)[0] == 204.8
    assert bench.bandwidth_gbs("Mystery GPU", None)[0] is None
    assert bench.bandwidth_gbs("NVIDIA GeForce RTX 4090", 500.0) == (500.0, "--bandwidth-gbs")
    assert bench.step_floor_seconds(16 * 10**9, 1000) == pytest.approx(0.016)


def test_flags_are_checked(bench):
    with pytest.raises(SystemExit) as info:
        bench.parse_args(["--quantization", "fp8"])
    assert info.value.code == 2
    with pytest.raises(SystemExit):
        bench.parse_args(["--batch-sizes", "0"])
    args = bench.parse_args(["--quantization", "nf4", "--batch-sizes", "1,8", "--bandwidth-gbs", "204.8"])
    assert (args.quantization, args.batch_sizes, args.bandwidth_gbs) == (["nf4"], [1, 8], 204.8)


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA: the bench would run")
def test_without_cuda_it_says_so_and_exits_0():
    result = subprocess.run([sys.executable, str(SCRIPT)], capture_output=True, text=True, timeout=300,
                            cwd=REPO, env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"})
    assert result.returncode == 0, result.stderr
    assert "no CUDA device here" in result.stdout and result.stdout.count("\n") == 1
