"""The ``magma`` backend's shared runtime on a tiny random LLaVA-style Llama VLM built at test time:
the real transformers generate path with constrained 7-token decoding, on CPU."""
from __future__ import annotations

import json
import statistics
import threading

import numpy as np
import pytest
import torch
from tiny_vlm import BASE_VOCAB, action_token, build_tiny_vlm

from magma_ros.actions import ActionDecoder, ActionTokenizer, TextTokenizer, load_profile
from magma_ros.policy import BackendConfig, Policy, PolicyConfigError, PolicyError, create_policy
from magma_ros.policy.vlm import VLMRunner
from magma_ros.policy.vlm_checks import check_layerscale, check_vocabulary

RNG = np.random.default_rng(7)
IMAGES = [RNG.integers(0, 256, (120, 160, 3), dtype=np.uint8) for _ in range(6)]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return build_tiny_vlm(tmp_path_factory.mktemp("tiny_vlm"))


@pytest.fixture(scope="module")
def profile():
    return load_profile("bridge_orig")


@pytest.fixture(scope="module")
def policy(model_dir, profile):
    policy = create_policy(BackendConfig(backend="magma", model=str(model_dir), device="cpu", dtype="float32"), profile)
    yield policy
    policy.close()


def config(model_dir, **kwargs) -> BackendConfig:
    return BackendConfig(backend="magma", model=str(model_dir), **{"device": "cpu", "dtype": "float32", **kwargs})


def test_seven_valid_action_ids_every_call(policy, profile):
    assert isinstance(policy, Policy)
    assert policy.vocab_size == BASE_VOCAB
    decoder = ActionDecoder(profile.stats, ActionTokenizer(policy.vocab_size))
    latencies = []
    for image in IMAGES:
        prediction = policy.predict(image, "pick up the red block")
        ids = prediction.token_ids
        assert ids.shape == (7,)
        assert np.all((ids >= BASE_VOCAB - 256) & (ids < BASE_VOCAB)), ids
        assert prediction.text == "".join(action_token(int(i) - (BASE_VOCAB - 256)) for i in ids)
        assert np.all(np.isfinite(decoder.decode_ids(ids)))
        assert prediction.timings["generate"] > 0 and prediction.timings["inference"] >= prediction.timings["generate"]
        latencies.append(prediction.timings["inference"])
    print(f"\ntiny VLM, constrained 7-token action: median {1000 * statistics.median(latencies):.1f} ms on CPU")


def test_greedy_is_deterministic_and_the_image_matters(policy):
    first = [policy.predict(image, "open the drawer").token_ids.tolist() for image in IMAGES]
    again = [policy.predict(image, "open the drawer").token_ids.tolist() for image in IMAGES]
    assert first == again
    assert len({tuple(ids) for ids in first}) > 1, "every image gave the same action: pixels do not reach the model"


def test_direct_loop_and_generate_path_agree(policy):
    """The KV-cached loop (LLaVA default) and generate + logits processor (Magma's path) pick the
    same greedy actions."""
    runner = policy.runner
    assert runner.decoder == "direct"
    direct = [runner.action_ids(image, "fold the towel").tolist() for image in IMAGES]
    runner.decoder = "generate"
    try:
        generated = [runner.action_ids(image, "fold the towel").tolist() for image in IMAGES]
    finally:
        runner.decoder = "direct"
    assert direct == generated


def test_the_constraint_is_what_keeps_ids_valid(policy):
    """Plain generate on the same inputs produces non-action tokens; the constrained path never does."""
    runner = policy.runner
    text = runner.adapter.prompt([{"role": "user", "content": "What action should the robot take to push?"}], True)
    inputs = runner.adapter.inputs(runner_image(IMAGES[0]), text)
    with torch.inference_mode():
        plain = runner.adapter.model.generate(**inputs, max_new_tokens=7, do_sample=False,
                                              pad_token_id=runner.adapter.tokenizer.pad_token_id)
    new = plain[0, inputs["input_ids"].shape[-1]:].numpy()
    assert not np.all((new >= BASE_VOCAB - 256) & (new < BASE_VOCAB))


def runner_image(image: np.ndarray):
    from PIL import Image

    return Image.fromarray(image)


@pytest.mark.parametrize("decoder", ["direct", "generate"])
def test_sampling_gives_valid_ids_and_is_seedable(model_dir, profile, decoder):
    sampled = create_policy(config(model_dir, temperature=1.5), profile)
    sampled.runner.decoder = decoder
    try:
        runs = []
        for _ in range(2):
            torch.manual_seed(3)
            runs.append([sampled.predict(image, "stack the cups").token_ids.tolist() for image in IMAGES[:3]])
        assert runs[0] == runs[1]
        for ids in runs[0]:
            assert all(BASE_VOCAB - 256 <= i < BASE_VOCAB for i in ids)
        greedy = [sampled.runner.action_ids(image, "stack the cups").tolist() for image in IMAGES[:3]]
        assert runs[0] != greedy, "temperature 1.5 gave exactly the greedy actions: sampling is not applied"
    finally:
        sampled.close()


def test_streamed_text_generation(policy):
    runner = policy.runner
    messages = [{"role": "user", "content": "What is on the table?"}]
    pieces = list(runner.generate_text(IMAGES[0], messages, 12, 0.0, 1.0))
    assert pieces and all(isinstance(p, str) and p for p in pieces)
    assert pieces == list(runner.generate_text(IMAGES[0], messages, 12, 0.0, 1.0))
    text_only = "".join(runner.generate_text(None, messages, 6, 0.8, 0.9))
    assert isinstance(text_only, str)
    assert runner.count_tokens("What is on the table?") > 1


def test_closing_a_stream_early_stops_generation_and_frees_the_runner(policy):
    runner = policy.runner
    stream = runner.generate_text(IMAGES[1], [{"role": "user", "content": "Describe."}], 400, 0.0, 1.0)
    next(stream)
    closer = threading.Thread(target=stream.close)
    closer.start()
    closer.join(60)  # generous: closing must not wait for the remaining ~400 tokens
    assert not closer.is_alive()
    assert policy.predict(IMAGES[1], "wave").token_ids.shape == (7,)


@pytest.mark.parametrize("call, error", [
    (lambda r: r.action_ids(np.zeros((8, 8), np.uint8), "x"), ValueError),
    (lambda r: r.action_ids(np.zeros((8, 8, 3), np.float32), "x"), ValueError),
    (lambda r: r.action_ids(np.zeros((8, 8, 3), np.uint8), "x", temperature=-1.0), PolicyConfigError),
    (lambda r: list(r.generate_text(None, [], 5, 0.0, 1.0)), PolicyConfigError),
    (lambda r: list(r.generate_text(None, [{"role": "robot", "content": "x"}], 5, 0.0, 1.0)), PolicyConfigError),
    (lambda r: list(r.generate_text(None, [{"role": "user", "content": "x"}], 0, 0.0, 1.0)), PolicyConfigError),
    (lambda r: list(r.generate_text(None, [{"role": "user", "content": "x"}], 5, 0.0, 0.0)), PolicyConfigError),
])
def test_bad_calls_are_rejected_with_clear_errors(policy, call, error):
    with pytest.raises(error):
        call(policy.runner)


def test_cuda_requested_without_a_gpu(model_dir, profile):
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    with pytest.raises(PolicyError, match="cuda requested but CUDA is not available"):
        create_policy(config(model_dir, device="cuda"), profile)


@pytest.mark.parametrize("options, message", [
    ({"device": "tpu"}, "device: expected cpu, cuda or cuda:N"),
    ({"attn_implementation": "flash_attention_2"}, "cannot load"),
])
def test_bad_load_options(model_dir, profile, options, message):
    with pytest.raises(PolicyConfigError, match=message):
        create_policy(config(model_dir, **options), profile)


def test_missing_model_directory(tmp_path, profile):
    with pytest.raises(PolicyConfigError, match="model: cannot find"):
        create_policy(config(tmp_path / "no-such-model"), profile)


def test_unsupported_model_type(tmp_path, profile):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "bert"}))
    with pytest.raises(PolicyConfigError, match="model_type 'bert' is not supported"):
        create_policy(config(tmp_path), profile)


def test_model_vocabulary_smaller_than_the_tokenizer(policy):
    adapter = policy.runner.adapter
    original = adapter.model.get_output_embeddings()
    adapter.model.set_output_embeddings(torch.nn.Linear(original.in_features, BASE_VOCAB - 10, bias=False))
    try:
        with pytest.raises(PolicyError, match=f"model output vocabulary \\({BASE_VOCAB - 10}\\) is smaller"):
            VLMRunner(adapter, "shrunk")
    finally:
        adapter.model.set_output_embeddings(original)


def test_vocabulary_checks():
    check_vocabulary(128000, 128256, 128000)
    with pytest.raises(PolicyError, match="base vocabulary is 32000, expected at least 128000"):
        check_vocabulary(32000, 32064, 128000)


class _Block(torch.nn.Module):
    def __init__(self, gamma: torch.Tensor) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(4, 4, 1)
        self.gamma = torch.nn.Parameter(gamma)


def test_layerscale_left_at_initial_value_is_refused():
    towers = torch.nn.Sequential(_Block(torch.full((4,), 1e-6)), _Block(torch.full((4,), 1e-6)))
    with pytest.raises(PolicyError,
                       match=r"LayerScale .*: vision_tower\.0\.gamma \(all 1e-06\), vision_tower\.1\.gamma"):
        check_layerscale(_wrap(towers))
    check_layerscale(torch.nn.Sequential(_Block(torch.tensor([0.2, -0.1, 0.05, 0.3]))))


def _wrap(tower: torch.nn.Module) -> torch.nn.Module:
    root = torch.nn.Module()
    root.vision_tower = tower
    return root


def test_a_closed_policy_refuses_to_predict(model_dir, profile):
    closed = create_policy(config(model_dir), profile)
    closed.close()
    with pytest.raises(PolicyError, match="closed"):
        closed.predict(IMAGES[0], "wave")


def test_the_openai_client_reads_the_tiny_tokenizer(model_dir):
    text = TextTokenizer(model_dir)
    assert text.base_vocab_size == BASE_VOCAB
    ids = list(range(BASE_VOCAB - 256, BASE_VOCAB - 249))
    assert text.encode(text.decode(ids)).tolist() == ids
