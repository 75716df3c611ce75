"""The native Magma's 7-token loop on a static KV cache, eager and ``compile: true`` (torch.compile
with inductor on this CPU), gives the ids of the default dynamic-cache loop, alone and batched."""
from __future__ import annotations

import numpy as np
import pytest
from tiny_magma import build_tiny_magma

from magma_ros.policy import BackendConfig
from magma_ros.policy.magma_native.static_decoding import LENGTH_BUCKET, StaticMagmaAdapter
from magma_ros.policy.vlm import VLMRunner

RNG = np.random.default_rng(23)
FRAMES = [RNG.integers(0, 256, (h, w, 3), dtype=np.uint8) for h, w in [(120, 160), (256, 256), (480, 640), (64, 200)]]
PROMPTS = ["What action should the robot take to pick up the red block?", "What action should the robot take to stop?"]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return build_tiny_magma(tmp_path_factory.mktemp("tiny_magma_static"))


def load(model_dir, **kwargs) -> VLMRunner:
    return VLMRunner.load(BackendConfig(backend="magma", model=str(model_dir), device="cpu", dtype="float32", **kwargs))


def ids_of(runner: VLMRunner) -> tuple[list, list]:
    """Each (frame, prompt) alone, then all of them as one left-padded batch."""
    requests = [(frame, prompt, 0.0) for frame in FRAMES for prompt in PROMPTS]
    alone = [runner.action_ids(frame, prompt).tolist() for frame, prompt, _ in requests]
    batched = [ids.tolist() for ids in runner.action_ids_batch(requests)]
    return alone, batched


@pytest.fixture(scope="module")
def eager_ids(model_dir):
    runner = load(model_dir)
    try:
        alone, batched = ids_of(runner)
    finally:
        runner.close()
    assert alone == batched and len({tuple(i) for i in alone}) > 1
    return alone


def test_static_cache_eager_step_gives_the_dynamic_cache_ids(model_dir, eager_ids):
    runner = load(model_dir)
    try:
        adapter = runner.adapter
        runner.adapter = StaticMagmaAdapter(adapter.model, adapter.tokenizer, adapter.image_settings, adapter.device,
                                            adapter.dtype, adapter.image_start_end, compile_step=False)
        alone, batched = ids_of(runner)
        assert alone == eager_ids and batched == eager_ids
        lengths = {length for _, length in runner.adapter.decoder._caches}
        assert lengths and all(length % LENGTH_BUCKET == 0 for length in lengths)
    finally:
        runner.close()


def test_compile_true_gives_the_eager_ids(model_dir, eager_ids):
    """Inductor compiles the decode step here (gcc); no fallback backend."""
    runner = load(model_dir, compile=True)
    try:
        assert isinstance(runner.adapter, StaticMagmaAdapter)
        assert runner.adapter.decoder._step is not runner.adapter.decoder._eager_step
        alone, batched = ids_of(runner)
        assert alone == eager_ids and batched == eager_ids
    finally:
        runner.close()
