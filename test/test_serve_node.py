"""``magma-ros serve`` started from the command line with the tiny model, used by the official
``openai`` client and by ``magma_node`` with ``backend: openai`` (end to end over real HTTP and DDS)."""
from __future__ import annotations

import httpx
import numpy as np
import openai
import pytest
from node_support import assert_node_publishes, rgb_image
from serve_support import CliServer, png_data_url, tiny_model_dir

from magma_ros.actions import ActionDecoder, ActionTokenizer, TextTokenizer, load_profile, text_ids_to_action_ids
from magma_ros.image_msgs import image_to_rgb
from magma_ros.policy.openai_backend import OpenAIPolicy

pytestmark = [pytest.mark.slow, pytest.mark.ros]
TOKEN = "serve-node-token-42"
TOKEN_ENV = "MAGMA_SERVE_TEST_TOKEN"
INSTRUCTION = "put the spoon in the pot"
TOPICS = {"image": "/sv/camera", "instruction": "/sv/instruction", "estop": "/sv/estop",
          "twist": "/sv/twist", "gripper": "/sv/gripper"}


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return tiny_model_dir(tmp_path_factory.mktemp("serve_node"))


@pytest.fixture(scope="module")
def cli_server(console_script, model_dir, tmp_path_factory):
    server = CliServer(console_script("magma-ros"),
                       ["--model", str(model_dir), "--device", "cpu", "--dtype", "float32",
                        "--served-model-name", "tiny", "--auth-token-env", TOKEN_ENV],
                       tmp_path_factory.mktemp("serve_node_log") / "serve.log", env={TOKEN_ENV: TOKEN})
    try:
        yield server.wait_healthy()
    finally:
        code = server.stop()
    assert code == 0, server.output()


def test_openai_client_against_the_cli_server(cli_server, model_dir):
    client = openai.OpenAI(base_url=cli_server.url + "/v1", api_key=TOKEN, max_retries=0, timeout=60)
    assert [m.id for m in client.models.list().data] == ["tiny"]
    reply = client.chat.completions.create(model="tiny", messages=[
        {"role": "user", "content": [{"type": "text", "text": f"What action should the robot take to {INSTRUCTION}?"},
                                     {"type": "image_url", "image_url": {"url": png_data_url()}}]}])
    tok = TextTokenizer(model_dir)
    ids = text_ids_to_action_ids(reply.choices[0].message.content, tok, ActionTokenizer(tok.base_vocab_size))
    assert ids.shape == (7,)
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=cli_server.url + "/v1", api_key="wrong", max_retries=0).models.list()


def expected_action(url: str, model_dir, image_msg) -> np.ndarray:
    """The node's own request, sent from here: what the node must publish."""
    profile = load_profile("bridge_orig")
    tok = TextTokenizer(model_dir)
    policy = OpenAIPolicy(url, "tiny", profile, tok, api_key=TOKEN, timeout_s=60)
    try:
        prediction = policy.predict(image_to_rgb(image_msg), INSTRUCTION)
    finally:
        policy.close()
    return ActionDecoder(profile.stats, ActionTokenizer(tok.base_vocab_size)).decode_ids(prediction.token_ids)


def test_node_with_openai_backend_drives_against_the_server(console_script, cli_server, model_dir, tmp_path,
                                                            monkeypatch):
    image = rgb_image(96, 72)
    expected = expected_action(cli_server.url, model_dir, image)
    monkeypatch.setenv(TOKEN_ENV, TOKEN)
    params = {"backend": "openai", "model": "tiny", "endpoint_url": cli_server.url, "tokenizer": str(model_dir),
              "api_key_env": TOKEN_ENV, "request_timeout_s": 30.0, "enabled_on_start": True,
              "instruction": INSTRUCTION, "action_timeout_s": 30.0}
    assert_node_publishes(console_script, "serve_openai_node", params, TOPICS, tmp_path, image, expected)
    chats = [e for e in cli_server.access_log() if e["path"] == "/v1/chat/completions"]
    assert len(chats) >= 4 and {e["status"] for e in chats} == {200}, chats  # ours + at least 3 from the node
    # the node names itself (its fully qualified name) in every request; ours named no robot
    assert {e["robot_id"] for e in chats} == {None, "/serve_openai_node"}, chats
    stats = httpx.get(cli_server.url + "/v1/stats", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10).json()
    robot = stats["robots"]["/serve_openai_node"]
    assert robot["requests"] >= 3 and robot["errors"] == 0
    health = httpx.get(cli_server.url + "/health", timeout=10).json()
    assert health["model_loaded"] is True and health["queue_depth"] == 0


def test_startup_line_gives_the_batch_size_health_reports(cli_server):
    health = httpx.get(cli_server.url + "/health", timeout=10).json()
    lines = [line for line in cli_server.output().splitlines() if line.startswith("magma-ros serve: ")]
    assert health["model_loaded"] is True and health["max_batch_size"] == 8  # the --max-batch-size default
    assert lines == [f"magma-ros serve: tiny on {cli_server.url} (auth on; action requests in batches of up to "
                     f"{health['max_batch_size']})"]
