"""magma_node end to end with ``backend: magma`` on the tiny test VLM (CPU): camera image in,
the model's constrained 7-token action decoded and published, twists out."""
from __future__ import annotations

import numpy as np
import pytest

from magma_ros.actions import ActionDecoder, ActionTokenizer, load_profile
from magma_ros.policy import BackendConfig
from magma_ros.policy.magma import MagmaPolicy
from magma_ros.policy.vlm import VLMRunner
from magma_ros.ros.images import image_to_rgb
from node_support import NodeProcess, Probe, rgb_image, wait_until
from tiny_vlm import build_tiny_vlm

TOPICS = {"image": "/tv/camera", "instruction": "/tv/instruction", "estop": "/tv/estop",
          "twist": "/tv/twist", "gripper": "/tv/gripper"}
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
              "enabled_on_start": True, "instruction": INSTRUCTION, "action_timeout_s": 30.0,
              "image_topic": TOPICS["image"], "instruction_topic": TOPICS["instruction"],
              "estop_topic": TOPICS["estop"], "twist_topic": TOPICS["twist"], "gripper_topic": TOPICS["gripper"]}
    node = NodeProcess(console_script("magma_node"), "tiny_vlm_node", params, tmp_path)
    probe = Probe("tiny_vlm_node", TOPICS)
    try:
        wait_until(lambda: probe.twists.items, 90, what=f"first twist; node log:\n{node.output()}")
        with probe.stream(image, rate_hz=10.0):
            wait_until(lambda: len(probe.actions.items) >= 3, 60,
                       what=f"three decoded actions on ~/action; node log:\n{node.output()}")
        published = [np.array(msg.data) for _, msg in list(probe.actions.items)]
        for action in published:
            assert np.allclose(action, expected), (action, expected)
        assert probe.twists.items, "no twist commands"
    finally:
        probe.close()
        code = node.stop()
    assert code == 0, node.output()
