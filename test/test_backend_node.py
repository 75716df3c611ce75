"""magma_node end to end with ``backend: magma`` on the tiny test VLM (CPU): camera image in,
the model's constrained 7-token action decoded and published, twists out."""
from __future__ import annotations

import numpy as np
import pytest
from node_support import assert_node_publishes, rgb_image, topics_under
from tiny_vlm import build_tiny_vlm

from magma_ros.actions import ActionDecoder, ActionTokenizer, load_profile
from magma_ros.image_msgs import image_to_rgb
from magma_ros.policy import BackendConfig
from magma_ros.policy.magma import MagmaPolicy
from magma_ros.policy.vlm import VLMRunner

TOPICS = topics_under("tv")
INSTRUCTION = "put the spoon in the pot"


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return build_tiny_vlm(tmp_path_factory.mktemp("tiny_vlm_node"))


def expected_action(model_dir, image_msg) -> np.ndarray:
    """The same model, image and prompt in this process: what the node must publish."""
    profile = load_profile("bridge_orig")
    runner = VLMRunner.load(BackendConfig(backend="magma", model=str(model_dir), device="cpu", dtype="float32"))
    try:
        ids = MagmaPolicy(runner, profile).predict(image_to_rgb(image_msg), INSTRUCTION).token_ids
    finally:
        runner.close()
    return ActionDecoder(profile.stats, ActionTokenizer(runner.vocab_size)).decode_ids(ids)


def test_node_runs_the_tiny_model_end_to_end(console_script, model_dir, tmp_path):
    image = rgb_image(96, 72)
    expected = expected_action(model_dir, image)
    params = {"backend": "magma", "model": str(model_dir), "device": "cpu", "dtype": "float32",
              "enabled_on_start": True, "instruction": INSTRUCTION, "action_timeout_s": 30.0}
    assert_node_publishes(console_script, "tiny_vlm_node", params, TOPICS, tmp_path, image, expected)
