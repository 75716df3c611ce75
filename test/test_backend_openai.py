"""The ``openai`` backend against a real HTTP server on 127.0.0.1 started by the test."""
from __future__ import annotations

import base64
import io
import json
import socket
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest
from PIL import Image

from magma_ros.actions import TextTokenizer, load_profile
from magma_ros.policy import BackendConfig, Policy, PolicyConfigError, PolicyError, create_policy
from magma_ros.policy.openai_backend import OpenAIPolicy, chat_url

EXAMPLE_TEXT = "立刻ẳn сирiв衝ційнаiв"  # Magma's published bridge example: these 7 Llama-3 action tokens
EXAMPLE_IDS = [127843, 127876, 127917, 127872, 127852, 127874, 127872]
IMAGE = np.random.default_rng(1).integers(0, 256, (240, 320, 3), dtype=np.uint8)


def ok(text: str = EXAMPLE_TEXT) -> dict:
    return {"status": 200, "json": {"id": "x", "object": "chat.completion",
                                    "choices": [{"index": 0, "message": {"role": "assistant", "content": text},
                                                 "finish_reason": "stop"}]}}


class QuietServer(ThreadingHTTPServer):
    """The fake endpoint: a client that gave up (its timeout) before the answer is not an error
    worth a traceback on the terminal; anything else still prints one."""

    def handle_error(self, request, client_address) -> None:
        if not isinstance(sys.exc_info()[1], (BrokenPipeError, ConnectionResetError)):
            super().handle_error(request, client_address)


class ScriptedServer:
    """A chat-completions server answering from a script (one entry per request; then ``ok()``)."""

    def __init__(self) -> None:
        self.script: list[dict] = []
        self.requests: list[dict] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                outer.requests.append({"path": self.path, "headers": dict(self.headers),
                                       "body": json.loads(body), "client": self.client_address})
                step = outer.script.pop(0) if outer.script else ok()
                if step.get("sleep"):
                    time.sleep(step["sleep"])
                if step.get("drop"):
                    self.close_connection = True
                    self.connection.shutdown(socket.SHUT_RDWR)
                    return
                payload = step["raw"] if "raw" in step else json.dumps(step["json"]).encode()
                self.send_response(step["status"])
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                for key, value in step.get("headers", {}).items():
                    self.send_header(key, value)
                self.end_headers()
                self.wfile.write(payload)

        self.httpd = QuietServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture()
def server():
    srv = ScriptedServer()
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def llama3(llama3_tokenizer_path) -> TextTokenizer:
    return TextTokenizer(llama3_tokenizer_path)


@pytest.fixture(scope="module")
def profile():
    return load_profile("bridge_orig")


@pytest.fixture()
def make_policy(llama3, profile):
    made = []

    def make(url: str, **kwargs) -> OpenAIPolicy:
        policy = OpenAIPolicy(url, "microsoft/Magma-8B", profile, llama3, **kwargs)
        made.append(policy)
        return policy

    yield make
    for policy in made:
        policy.close()


def test_request_format_and_action_ids(server, make_policy, profile):
    policy = make_policy(server.url, temperature=0.0)
    prediction = policy.predict(IMAGE, "put the spoon in the pot")
    assert prediction.token_ids.tolist() == EXAMPLE_IDS
    assert prediction.text == EXAMPLE_TEXT
    assert policy.vocab_size == 128000
    (req,) = server.requests
    assert req["path"] == "/v1/chat/completions"
    assert "Authorization" not in req["headers"]
    body = req["body"]
    assert set(body) == {"model", "messages", "temperature", "stream"}
    assert body["model"] == "microsoft/Magma-8B" and body["temperature"] == 0.0 and body["stream"] is False
    system, user = body["messages"]
    assert system == {"role": "system", "content": "You are agent that can see, talk and act."}
    assert user["role"] == "user"
    text_part, image_part = user["content"]
    assert text_part == {"type": "text", "text": "What action should the robot take to put the spoon in the pot?"}
    assert image_part["type"] == "image_url"
    prefix = "data:image/jpeg;base64,"
    assert image_part["image_url"]["url"].startswith(prefix)
    jpeg = Image.open(io.BytesIO(base64.b64decode(image_part["image_url"]["url"][len(prefix):])))
    assert jpeg.format == "JPEG" and jpeg.size == profile.image_size


def test_bearer_token_comes_from_the_named_environment_variable(server, monkeypatch, llama3_tokenizer_path, profile):
    monkeypatch.setenv("MAGMA_TEST_TOKEN", "s3cret-token")
    config = BackendConfig(backend="openai", endpoint_url=server.url, api_key_env="MAGMA_TEST_TOKEN",
                           tokenizer=str(llama3_tokenizer_path), temperature=0.5, robot_id="lab/arm-2")
    policy = create_policy(config, profile)
    try:
        assert isinstance(policy, Policy)
        assert policy.predict(IMAGE, "open the drawer").token_ids.tolist() == EXAMPLE_IDS
    finally:
        policy.close()
    assert server.requests[0]["headers"]["Authorization"] == "Bearer s3cret-token"
    assert server.requests[0]["body"]["temperature"] == 0.5
    assert server.requests[0]["headers"]["X-Robot-Id"] == "lab/arm-2"
    assert server.requests[0]["body"]["user"] == "lab/arm-2"


@pytest.mark.parametrize("robot_id", ["arm 1", "x" * 129, "arm\n1"])
def test_invalid_robot_id_is_a_config_error(robot_id):
    with pytest.raises(PolicyConfigError, match="robot_id: 1 to 128 characters"):
        BackendConfig(backend="openai", robot_id=robot_id)


def test_unset_token_variable_is_a_config_error(server, monkeypatch, llama3_tokenizer_path, profile):
    monkeypatch.delenv("MAGMA_TEST_TOKEN_UNSET", raising=False)
    config = BackendConfig(backend="openai", endpoint_url=server.url, api_key_env="MAGMA_TEST_TOKEN_UNSET",
                           tokenizer=str(llama3_tokenizer_path))
    with pytest.raises(PolicyConfigError, match="MAGMA_TEST_TOKEN_UNSET"):
        create_policy(config, profile)


@pytest.mark.parametrize("options, message", [
    ({"tokenizer": "TOKENIZER"}, "endpoint_url: required"),
    ({"endpoint_url": "http://127.0.0.1:9"}, "tokenizer: required"),
    ({"endpoint_url": "127.0.0.1:9", "tokenizer": "TOKENIZER"}, "endpoint_url: expected an http"),
    ({"endpoint_url": "http://127.0.0.1:9", "tokenizer": "/nonexistent/tokenizer.json"}, "tokenizer not found"),
])
def test_config_errors(options, message, llama3_tokenizer_path, profile):
    options = {k: (str(llama3_tokenizer_path) if v == "TOKENIZER" else v) for k, v in options.items()}
    with pytest.raises(PolicyConfigError, match=message):
        create_policy(BackendConfig(backend="openai", **options), profile)


@pytest.mark.parametrize("endpoint, expected", [
    ("http://h:8000", "http://h:8000/v1/chat/completions"),
    ("http://h:8000/", "http://h:8000/v1/chat/completions"),
    ("https://h/v1", "https://h/v1/chat/completions"),
    ("https://h/v1/chat/completions", "https://h/v1/chat/completions"),
])
def test_chat_url(endpoint, expected):
    assert chat_url(endpoint) == expected


def test_one_connection_is_kept_between_calls(server, make_policy):
    policy = make_policy(server.url)
    for _ in range(4):
        policy.predict(IMAGE, "wipe the table")
    assert len({r["client"] for r in server.requests}) == 1


@pytest.mark.parametrize("status", [500, 502, 503, 429])
def test_5xx_and_429_are_retried(server, make_policy, status):
    server.script = [{"status": status, "json": {"error": "busy"}, "headers": {"Retry-After": "0"}},
                     {"status": status, "json": {"error": "busy"}}]
    assert make_policy(server.url).predict(IMAGE, "x").token_ids.tolist() == EXAMPLE_IDS
    assert len(server.requests) == 3


def test_retries_are_bounded(server, make_policy):
    server.script = [{"status": 503, "json": {"error": "down"}}] * 5
    with pytest.raises(PolicyError, match="HTTP 503 after 3 attempt"):
        make_policy(server.url).predict(IMAGE, "x")
    assert len(server.requests) == 3


@pytest.mark.parametrize("status", [400, 401, 404, 422])
def test_4xx_is_not_retried(server, make_policy, status):
    server.script = [{"status": status, "json": {"error": "nope"}}]
    with pytest.raises(PolicyError, match=f"HTTP {status}: .*nope"):
        make_policy(server.url).predict(IMAGE, "x")
    assert len(server.requests) == 1


def test_timeout_fails_fast_without_retry(server, make_policy):
    server.script = [{"sleep": 3.0, **ok()}]
    policy = make_policy(server.url, timeout_s=0.5)
    # the client's own timeout ends the call (not the server's late answer), and it is not retried
    with pytest.raises(PolicyError, match="no answer within 0.5 s"):
        policy.predict(IMAGE, "x")
    assert len(server.requests) == 1


def test_dropped_connection_is_retried(server, make_policy):
    server.script = [{"drop": True}]
    assert make_policy(server.url).predict(IMAGE, "x").token_ids.tolist() == EXAMPLE_IDS
    assert len(server.requests) == 2


def test_unreachable_endpoint_is_a_policy_error(make_policy):
    with socket.socket() as s:  # a port that was free a moment ago: nobody listens there
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(PolicyError, match="connection failed after 3 attempt"):
        make_policy(f"http://127.0.0.1:{port}").predict(IMAGE, "x")


@pytest.mark.parametrize("step, message", [
    ({"status": 200, "raw": b"<html>gateway</html>"}, "not JSON"),
    ({"status": 200, "json": {"object": "chat.completion"}}, "no choices"),
    ({"status": 200, "json": {"choices": []}}, "no choices"),
    ({"status": 200, "json": {"choices": [{"message": {"role": "assistant"}}]}}, "no choices"),
    ({"status": 200, "json": {"choices": [{"message": {"content": None}}]}}, "content is NoneType"),
    ({"status": 200, "json": [1, 2, 3]}, "no choices"),
])
def test_malformed_replies(server, make_policy, step, message):
    server.script = [step]
    with pytest.raises(PolicyError, match=message):
        make_policy(server.url).predict(IMAGE, "x")


@pytest.mark.parametrize("ids, found", [
    (EXAMPLE_IDS[:6], "found 6 action token"),
    (EXAMPLE_IDS + EXAMPLE_IDS[:1], "found 8 action token"),
    (None, "found 0 action token"),
])
def test_replies_with_wrong_token_counts(server, make_policy, llama3, ids, found):
    text = "Move the arm left." if ids is None else llama3.decode(ids)
    server.script = [ok(text)]
    with pytest.raises(PolicyError, match=f"is not one action: .*{found}"):
        make_policy(server.url).predict(IMAGE, "x")


def test_text_around_the_actions_is_rejected(server, make_policy):
    server.script = [ok("Sure: " + EXAMPLE_TEXT)]
    with pytest.raises(PolicyError, match="other token"):
        make_policy(server.url).predict(IMAGE, "x")


def test_text_that_bpe_would_retokenize_differently_gives_the_generated_ids(server, make_policy, llama3):
    ids = [127951, 127765, 127789, 127804, 127790, 127949, 127966]
    text = llama3.decode(ids)
    assert llama3.encode(text).tolist() != ids  # re-tokenizing would merge these into other tokens
    server.script = [ok(text)]
    assert make_policy(server.url).predict(IMAGE, "x").token_ids.tolist() == ids


def test_exact_action_token_ids_in_the_reply_are_preferred(server, make_policy, llama3):
    lossy = [127843, 127876, 127771, 127872, 127852, 127874, 127872]  # 127771 is not UTF-8 on its own
    reply = ok(llama3.decode(lossy))
    reply["json"]["choices"][0]["message"]["action_token_ids"] = lossy
    server.script = [reply, ok(llama3.decode(lossy))]
    policy = make_policy(server.url)
    assert policy.predict(IMAGE, "x").token_ids.tolist() == lossy
    with pytest.raises(PolicyError, match="U\\+FFFD"):
        policy.predict(IMAGE, "x")


@pytest.mark.parametrize("ids, message", [
    ("127843", "must be a list of integers"),
    ([127843, 1.5], "must be a list of integers"),
    (EXAMPLE_IDS[:6], "found 6 action token"),
    (EXAMPLE_IDS[:6] + [15339], "other token"),
])
def test_malformed_action_token_ids(server, make_policy, ids, message):
    reply = ok()
    reply["json"]["choices"][0]["message"]["action_token_ids"] = ids
    server.script = [reply]
    with pytest.raises(PolicyError, match=message):
        make_policy(server.url).predict(IMAGE, "x")


def test_the_action_token_table_is_built_at_start_up(server, llama3_tokenizer_path, profile, monkeypatch):
    text_tokenizer = TextTokenizer(llama3_tokenizer_path)  # a fresh one: no table built by other tests
    policy = OpenAIPolicy(server.url, "microsoft/Magma-8B", profile, text_tokenizer)
    try:
        monkeypatch.setattr(text_tokenizer, "token_bytes",
                            lambda token_id: pytest.fail(f"token {token_id} looked up during an action"))
        assert policy.predict(IMAGE, "put the spoon in the pot").token_ids.tolist() == EXAMPLE_IDS
    finally:
        policy.close()


def test_a_tokenizer_without_the_action_tokens_fails_at_start_up(tmp_path, profile):
    from tokenizers import Tokenizer, models

    vocab = {f"w{i}": i for i in range(400) if i != 390}  # 399 tokens: action ids 143..398, 390 missing
    Tokenizer(models.WordLevel(vocab, unk_token="w0")).save(str(tmp_path / "tokenizer.json"))
    with pytest.raises(PolicyConfigError, match="tokenizer: cannot index the action tokens: .*no token with id 390"):
        OpenAIPolicy("http://127.0.0.1:9", "m", profile, TextTokenizer(tmp_path))
