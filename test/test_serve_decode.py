"""``magma-ros serve`` without a model: /v1/action-tokens, errors, auth, limits, access logs, the CLI."""
from __future__ import annotations

import json
import subprocess

import httpx
import numpy as np
import pytest
from serve_support import CliServer, ServerThread, wait_until

from magma_ros.actions import ActionTokenizer, TextTokenizer, load_profile
from magma_ros.server.app import create_app
from magma_ros.server.decoding import ActionTokenService
from magma_ros.server.settings import ServerSettings

EXAMPLE_TEXT = "立刻ẳn сирiв衝ційнаiв"
# The hosted Magma endpoint's published answer for EXAMPLE_TEXT with robot_type bridge_orig.
PUBLISHED_BRIDGE = {"x": 0.006277765673749571, "y": -0.0017191617944661772, "z": -0.004658273500116439,
                    "roll": 0.0004997134208677839, "pitch": 0.00591804922503579, "yaw": -0.004902105561658515,
                    "gripper": 0.0}
EXAMPLE_IDS = [127843, 127876, 127917, 127872, 127852, 127874, 127872]
BODY_LIMIT = 4096
TOKEN = "test-token-0123456789"


@pytest.fixture(scope="module")
def service(llama3_tokenizer_path) -> ActionTokenService:
    return ActionTokenService(TextTokenizer(llama3_tokenizer_path), vocab_size=128000)


@pytest.fixture(scope="module")
def server(service):
    with ServerThread(create_app(ServerSettings(max_body_bytes=BODY_LIMIT), service, None)) as srv:
        yield srv


@pytest.fixture(scope="module")
def auth_server(service):
    with ServerThread(create_app(ServerSettings(auth_token=TOKEN), service, None)) as srv:
        yield srv


def post(url: str, body, **kwargs) -> httpx.Response:
    content = body if isinstance(body, (bytes, str)) else json.dumps(body)
    return httpx.post(url, content=content, headers={"Content-Type": "application/json", **kwargs.pop("headers", {})},
                      timeout=30, **kwargs)


def error_of(response: httpx.Response, status: int) -> dict:
    assert response.status_code == status, response.text
    return response.json()["error"]


def test_published_example_to_the_last_digit(server):
    response = post(server.url + "/v1/action-tokens", {"text": EXAMPLE_TEXT, "robot_type": "bridge_orig"})
    assert response.status_code == 200, response.text
    assert response.json() == PUBLISHED_BRIDGE
    assert list(response.json()) == ["x", "y", "z", "roll", "pitch", "yaw", "gripper"]


def test_google_robot_follows_the_contract(server):
    stats = load_profile("google_robot").stats
    centers = ActionTokenizer().centers
    normalized = centers[128000 - np.asarray(EXAMPLE_IDS) - 1]
    expected = np.where(stats.mask, 0.5 * (normalized + 1) * (np.asarray(stats.q99) - stats.q01) + stats.q01,
                        normalized)
    response = post(server.url + "/v1/action-tokens", {"text": EXAMPLE_TEXT, "robot_type": "google_robot"})
    assert response.status_code == 200, response.text
    assert list(response.json().values()) == pytest.approx(expected.tolist(), abs=1e-12)


def test_client_statistics_equal_the_profile(server):
    stats = load_profile("bridge_orig").stats.as_dict()
    response = post(server.url + "/v1/action-tokens", {"text": EXAMPLE_TEXT, "normalization_stats": stats})
    assert response.status_code == 200, response.text
    assert response.json() == PUBLISHED_BRIDGE
    unmasked = dict(stats, mask=[False] * 7)
    normalized = post(server.url + "/v1/action-tokens", {"text": EXAMPLE_TEXT, "normalization_stats": unmasked}).json()
    assert list(normalized.values()) == pytest.approx(ActionTokenizer().ids_to_normalized(EXAMPLE_IDS).tolist())


SEVEN = [0.0] * 7
VALIDATION_CASES = {
    "unknown robot": ({"text": EXAMPLE_TEXT, "robot_type": "r2d2"}, "robot_type", "unknown robot 'r2d2'"),
    "robot path refused": ({"text": EXAMPLE_TEXT, "robot_type": "/etc/passwd"}, "robot_type", "unknown robot"),
    "neither source": ({"text": EXAMPLE_TEXT}, "robot_type", "exactly one of robot_type and normalization_stats"),
    "both sources": ({"text": EXAMPLE_TEXT, "robot_type": "bridge_orig",
                      "normalization_stats": {"mask": [True] * 7, "q01": SEVEN, "q99": SEVEN}},
                     "robot_type", "exactly one of"),
    "mask of 6": ({"text": EXAMPLE_TEXT, "normalization_stats": {"mask": [True] * 6, "q01": SEVEN, "q99": SEVEN}},
                  "normalization_stats", "normalization_stats.mask: expected exactly 7 values, got 6"),
    "q01 of 8": ({"text": EXAMPLE_TEXT, "normalization_stats": {"mask": [True] * 7, "q01": [0.0] * 8, "q99": SEVEN}},
                 "normalization_stats", "normalization_stats.q01: expected exactly 7 values, got 8"),
    "q99 of 3": ({"text": EXAMPLE_TEXT, "normalization_stats": {"mask": [True] * 7, "q01": SEVEN, "q99": [1, 2, 3]}},
                 "normalization_stats", "normalization_stats.q99: expected exactly 7 values, got 3"),
    "q01 > q99": ({"text": EXAMPLE_TEXT, "normalization_stats": {"mask": [True] * 7, "q01": [0, 0, 0.5, 0, 0, 0, 0],
                                                                  "q99": [1, 1, 0.25, 1, 1, 1, 1]}},
                  "normalization_stats", "normalization_stats.q01[2]: 0.5 is greater than q99[2] = 0.25"),
    "mask not bools": ({"text": EXAMPLE_TEXT, "normalization_stats": {"mask": [1] * 7, "q01": SEVEN, "q99": SEVEN}},
                       "normalization_stats", "normalization_stats.mask[0]: expected true or false"),
    "q01 not numbers": ({"text": EXAMPLE_TEXT, "normalization_stats": {"mask": [True] * 7, "q01": ["a"] * 7,
                                                                        "q99": SEVEN}},
                        "normalization_stats", "normalization_stats.q01[0]: expected a number"),
    "stats key missing": ({"text": EXAMPLE_TEXT, "normalization_stats": {"mask": [True] * 7, "q01": SEVEN}},
                          "normalization_stats", "normalization_stats: missing key(s) q99"),
    "stats not lists": ({"text": EXAMPLE_TEXT, "normalization_stats": {"mask": "yes", "q01": SEVEN, "q99": SEVEN}},
                        "normalization_stats", "normalization_stats.mask: expected a list of 7 values, got str"),
    "non-action text": ({"text": "pick up the cup", "robot_type": "bridge_orig"}, "text",
                        "expected exactly 7 action tokens"),
    "six action tokens": ({"text": "立刻ẳn сирiв衝ційна", "robot_type": "bridge_orig"}, "text",
                          "expected exactly 7 action tokens"),
    "empty text": ({"text": "", "robot_type": "bridge_orig"}, "text", "found 0 action token(s)"),
    "text missing": ({"robot_type": "bridge_orig"}, "text", "text: Field required"),
    "text not a string": ({"text": 7, "robot_type": "bridge_orig"}, "text", "text: Input should be a valid string"),
    "unknown field": ({"text": EXAMPLE_TEXT, "robot_type": "bridge_orig", "robot": "x"}, "robot",
                      "robot: Extra inputs are not permitted"),
}


@pytest.mark.parametrize("body,param,message", VALIDATION_CASES.values(), ids=VALIDATION_CASES.keys())
def test_validation_errors_are_422_naming_the_field(server, body, param, message):
    error = error_of(post(server.url + "/v1/action-tokens", body), 422)
    assert message in error["message"]
    assert error["param"] == param
    assert error["type"] == "invalid_request_error"


@pytest.mark.parametrize("raw,message", [
    (b'{"text": "abc", ', "malformed JSON body: Expecting property name enclosed in double quotes at line 1"),
    (b"", "request body is empty"),
    (b"[1, 2]", "expected a JSON object, got list"),
    (b'{"text": "\xff"}', "not UTF-8"),
], ids=["truncated", "empty", "array", "not utf-8"])
def test_malformed_bodies_are_400(server, raw, message):
    for path in ("/v1/action-tokens", "/v1/chat/completions"):
        response = post(server.url + path, raw)
        if path == "/v1/chat/completions":
            assert response.status_code == 404  # no model: the route refuses before reading the body
            continue
        assert message in error_of(response, 400)["message"]


def test_body_size_limit(server):
    big = {"text": "x" * BODY_LIMIT, "robot_type": "bridge_orig"}
    assert "limit of 4096" in error_of(post(server.url + "/v1/action-tokens", big), 413)["message"]

    def chunks():  # no Content-Length: the limit is enforced while reading
        for _ in range(10):
            yield b" " * 1024

    response = httpx.post(server.url + "/v1/action-tokens", content=chunks(), timeout=30)
    assert "limit of 4096" in error_of(response, 413)["message"]
    response = post(server.url + "/v1/action-tokens", {"text": EXAMPLE_TEXT, "robot_type": "bridge_orig"})
    assert response.status_code == 200


def test_auth(auth_server):
    url = auth_server.url + "/v1/action-tokens"
    body = {"text": EXAMPLE_TEXT, "robot_type": "bridge_orig"}
    missing = post(url, body)
    assert "missing bearer token" in error_of(missing, 401)["message"]
    assert missing.headers["www-authenticate"].startswith("Bearer")
    invalid = post(url, body, headers={"Authorization": "Bearer nope"})
    assert "invalid bearer token" in error_of(invalid, 401)["message"]
    assert invalid.headers["www-authenticate"] == 'Bearer error="invalid_token"'
    assert error_of(post(url, body, headers={"Authorization": f"Basic {TOKEN}"}), 401)
    assert error_of(post(url, body, headers={"Authorization": f"Bearer {TOKEN}x"}), 401)
    ok = post(url, body, headers={"Authorization": f"Bearer {TOKEN}"})
    assert ok.status_code == 200 and ok.json() == PUBLISHED_BRIDGE
    assert httpx.get(auth_server.url + "/v1/models", timeout=10).status_code == 401
    assert httpx.get(auth_server.url + "/v1/models", headers={"Authorization": f"Bearer {TOKEN}"},
                     timeout=10).status_code == 200
    assert httpx.get(auth_server.url + "/health", timeout=10).status_code == 200  # health stays open for probes
    # auth is checked before the body is read or parsed
    assert error_of(post(url, b"{not json"), 401)


def test_a_wrong_method_is_405_naming_the_allowed_ones(server, auth_server):
    """RFC 9110: a 405 carries ``Allow``; the error keeps the API's format (and auth is not asked first)."""
    for srv in (server, auth_server):
        response = httpx.get(srv.url + "/v1/action-tokens", timeout=10)
        assert error_of(response, 405)["message"] == "GET /v1/action-tokens: Method Not Allowed"
        assert response.headers["allow"] == "POST"
    response = httpx.delete(server.url + "/health", timeout=10)
    assert error_of(response, 405)["type"] == "invalid_request_error"
    assert response.headers["allow"] == "GET"


def test_the_action_token_table_is_built_at_start_up(llama3_tokenizer_path, monkeypatch):
    from magma_ros.server.schemas import ActionTokensRequest

    text_tokenizer = TextTokenizer(llama3_tokenizer_path)  # a fresh one: no table built by other tests
    service = ActionTokenService(text_tokenizer, vocab_size=128000)
    monkeypatch.setattr(text_tokenizer, "token_bytes",
                        lambda token_id: pytest.fail(f"token {token_id} looked up during a request"))
    assert service.decode(ActionTokensRequest(text=EXAMPLE_TEXT, robot_type="bridge_orig")) == PUBLISHED_BRIDGE


def test_bearer_comparison_is_constant_time(monkeypatch):
    import hmac

    from magma_ros.server.auth import BearerAuth

    calls = []
    real = hmac.compare_digest
    monkeypatch.setattr(hmac, "compare_digest", lambda a, b: calls.append((a, b)) or real(a, b))
    BearerAuth("secret").check("Bearer secret")
    assert calls == [(b"secret", b"secret")]


def test_no_model_endpoints(server):
    health = httpx.get(server.url + "/health", timeout=10).json()
    assert health == {"status": "ok", "model_loaded": False, "model": None, "queue_depth": 0,
                      "queue_capacity": 8, "busy": False, "running": 0, "max_batch_size": 1,
                      "decoded_pixels": 0, "decoded_pixels_capacity": 4 * 4096 * 4096}
    assert httpx.get(server.url + "/v1/models", timeout=10).json() == {"object": "list", "data": []}
    error = error_of(post(server.url + "/v1/chat/completions", {"messages": [{"role": "user", "content": "hi"}]}), 404)
    assert "--no-model" in error["message"]
    unknown = error_of(httpx.get(server.url + "/v2/nothing", timeout=10), 404)
    assert unknown["message"] == "GET /v2/nothing: Not Found"


def test_cli_no_model_with_auth_and_access_log(console_script, llama3_tokenizer_path, tmp_path):
    server = CliServer(console_script("magma-ros"), ["--no-model", "--tokenizer", str(llama3_tokenizer_path),
                                                     "--auth-token-env", "MAGMA_TEST_TOKEN"],
                       tmp_path / "serve.log", env={"MAGMA_TEST_TOKEN": TOKEN})
    try:
        server.wait_healthy(60)
        body = {"text": EXAMPLE_TEXT, "robot_type": "bridge_orig"}
        assert post(server.url + "/v1/action-tokens", body).status_code == 401
        ok = post(server.url + "/v1/action-tokens", body, headers={"Authorization": f"Bearer {TOKEN}"})
        assert ok.status_code == 200 and ok.json() == PUBLISHED_BRIDGE
        served = wait_until(lambda: [e for e in server.access_log() if e["path"] == "/v1/action-tokens"][1:] and
                            [e for e in server.access_log() if e["path"] == "/v1/action-tokens"], 10, "access log")
    finally:
        assert server.stop() == 0, server.output()
    assert [entry["status"] for entry in served] == [401, 200]
    assert all(entry["method"] == "POST" and entry["latency_ms"] >= 0 and entry["client"].startswith("127.0.0.1:")
               for entry in served)
    assert TOKEN not in server.output()


@pytest.mark.parametrize("args,env,message", [
    (["--no-model"], {}, "--no-model needs --tokenizer"),
    (["--no-model", "--tokenizer", "{tok}", "--auth-token-env", "MAGMA_UNSET_TOKEN_VAR"], {},
     "environment variable MAGMA_UNSET_TOKEN_VAR is unset or empty"),
    (["--no-model", "--tokenizer", "{tok}", "--queue-depth", "0"], {}, "queue_depth: must be >= 1"),
    (["--no-model", "--tokenizer", "{tok}", "--allow-image-host", "http://evil/x"], {}, "allowed image hosts"),
    (["--backend", "openai", "--tokenizer", "{tok}"], {}, "supports only 'magma'"),
    (["--no-model", "--tokenizer", "{tok}", "--action-prompt", "Go!"], {}, "containing {instruction} exactly once"),
    (["--no-model", "--tokenizer", "{tok}", "--action-prompt", "{instruction} to {place}"], {},
     "only {instruction} may be substituted"),
    (["--no-model", "--tokenizer", "/nonexistent/tokenizer.json"], {}, "tokenizer not found"),
    (["--no-model", "--tokenizer", "{tok}", "--max-decoded-pixels", "1000"], {},
     "max_decoded_pixels: must be at least max_image_pixels (16777216)"),
], ids=["no tokenizer", "token env unset", "queue depth", "image host", "backend", "action prompt",
        "action prompt field",
        "missing tokenizer", "pixel budget below one image"])
def test_cli_user_errors_exit_2(console_script, llama3_tokenizer_path, args, env, message):
    args = [a.replace("{tok}", str(llama3_tokenizer_path)) for a in args]
    result = subprocess.run([console_script("magma-ros"), "serve", *args, "--port", "1"], capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("magma-ros serve: error:") and message in lines[0], result.stderr


class Magma8BIds:
    """Stands in for Magma-8B (its checkpoint cannot exist here): answers fixed Llama-3 action ids."""

    vocab_size = 128000
    model_name = "magma-8b-ids"
    max_context_tokens = 8192  # Llama-3-8B's

    def __init__(self, ids: list[int]) -> None:
        self.ids = ids

    def prepare_action(self, image, prompt, temperature=0.0):
        return prompt

    def decode_actions(self, prepared):
        return [np.asarray(self.ids) for _ in prepared]

    def count_tokens(self, text: str) -> int:
        return len(text.split())

    def close(self) -> None:
        pass


def action_reply(service, ids: list[int]) -> dict:
    from serve_support import png_data_url

    with ServerThread(create_app(ServerSettings(), service, Magma8BIds(ids))) as srv:
        content = [{"type": "image_url", "image_url": {"url": png_data_url()}},
                   {"type": "text", "text": "What action should the robot take to pick up the cup?"}]
        response = post(srv.url + "/v1/chat/completions", {"messages": [{"role": "user", "content": content}]})
    assert response.status_code == 200, response.text
    return response.json()["choices"][0]["message"]


def test_action_reply_is_the_published_example_text(service):
    message = action_reply(service, EXAMPLE_IDS)
    assert message["content"] == EXAMPLE_TEXT and message["action_token_ids"] == EXAMPLE_IDS


def test_action_text_that_does_not_round_trip_is_flagged(service, caplog):
    ids = EXAMPLE_IDS[:3] + [127771] + EXAMPLE_IDS[4:]  # 127771 alone is an incomplete UTF-8 sequence
    with caplog.at_level("WARNING", logger="magma_ros.server"):
        message = action_reply(service, ids)
    assert message["action_token_ids"] == ids
    assert service.text_tokenizer.encode(message["content"]).tolist() != ids
    assert any("re-tokenizes differently" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize("name", ["other", "anonymous"])
def test_reserved_robot_ids_are_refused_over_http(server, name):
    error = error_of(post(server.url + "/v1/action-tokens", {"text": EXAMPLE_TEXT, "robot_type": "bridge_orig"},
                          headers={"X-Robot-Id": name}), 400)
    assert error["param"] == "X-Robot-Id" and "reserved" in error["message"], error
    assert "other" not in httpx.get(server.url + "/v1/stats", timeout=30).json()["robots"]  # nothing was evicted
