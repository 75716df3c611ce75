"""The native Magma on the tiny official-layout checkpoint, end to end on CPU through the three
tools that run it: magma_node (``backend: magma``), ``magma-ros serve`` and ``magma-ros eval``."""
from __future__ import annotations

import json
import subprocess

import numpy as np
import openai
import pytest
from node_support import assert_node_publishes, rgb_image, topics_under
from serve_support import CliServer, png_data_url
from tiny_magma import BASE_VOCAB, build_tiny_magma

from magma_ros.actions import ActionDecoder, ActionTokenizer, TextTokenizer, load_profile, text_ids_to_action_ids
from magma_ros.eval.sample_bag import ACTION_TOPIC, SampleSpec, write_sample_bag
from magma_ros.image_msgs import image_to_rgb
from magma_ros.policy import BackendConfig
from magma_ros.policy.magma import MagmaPolicy
from magma_ros.policy.vlm import VLMRunner

TOPICS = topics_under("nm")
INSTRUCTION = "put the spoon in the pot"
CPU = {"device": "cpu", "dtype": "float32"}


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return build_tiny_magma(tmp_path_factory.mktemp("tiny_magma_e2e"))


def test_node(console_script, model_dir, tmp_path):
    image = rgb_image(96, 72)
    profile = load_profile("bridge_orig")
    runner = VLMRunner.load(BackendConfig(backend="magma", model=str(model_dir), **CPU))
    try:
        ids = MagmaPolicy(runner, profile).predict(image_to_rgb(image), INSTRUCTION).token_ids
    finally:
        runner.close()
    expected = ActionDecoder(profile.stats, ActionTokenizer(BASE_VOCAB)).decode_ids(ids)
    params = {"backend": "magma", "model": str(model_dir), **CPU, "enabled_on_start": True,
              "instruction": INSTRUCTION, "action_timeout_s": 30.0}
    assert_node_publishes(console_script, "native_magma_node", params, TOPICS, tmp_path, image, expected)


def test_serve(console_script, model_dir, tmp_path):
    server = CliServer(console_script("magma-ros"), ["--model", str(model_dir), "--device", "cpu", "--dtype", "float32",
                                                     "--served-model-name", "magma"], tmp_path / "serve.log")
    try:
        server.wait_healthy()
        client = openai.OpenAI(base_url=server.url + "/v1", api_key="unused", max_retries=0, timeout=60)
        reply = client.chat.completions.create(model="magma", messages=[
            {"role": "user", "content": [{"type": "text",
                                          "text": f"What action should the robot take to {INSTRUCTION}?"},
                                         {"type": "image_url", "image_url": {"url": png_data_url()}}]}])
        tok = TextTokenizer(model_dir)
        ids = text_ids_to_action_ids(reply.choices[0].message.content, tok, ActionTokenizer(tok.base_vocab_size))
        assert ids.shape == (7,) and np.all((ids >= BASE_VOCAB - 256) & (ids < BASE_VOCAB))
    finally:
        code = server.stop()
    assert code == 0, server.output()


def test_eval(console_script, model_dir, tmp_path):
    bag = write_sample_bag(tmp_path / "bag", SampleSpec(frames=6, episodes=1, storage="mcap"))
    out = tmp_path / "out"
    result = subprocess.run(
        [console_script("magma-ros"), "eval", str(bag), "--robot", "bridge_orig", "--action-topic", ACTION_TOPIC,
         "--backend", "magma", "--model", str(model_dir), "--device", "cpu", "--dtype", "float32", "--out", str(out)],
        capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    report = json.loads((out / "report.json").read_text())
    assert report["frames"]["evaluated"] == 6
    assert all(np.isfinite(v) for v in report["overall"]["mse"].values())
