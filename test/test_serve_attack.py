"""``magma-ros serve`` as a process on 127.0.0.1, attacked as a careless or hostile client would:
client mistakes are 4xx naming the field, work per request is bounded before it starts, and
/health and follow-up requests keep being served while heavy requests are processed."""
from __future__ import annotations

import base64
import concurrent.futures
import json
import socket
from urllib.parse import urlsplit

import httpx
import openai
import pytest
from serve_support import CliServer, png_bytes, png_data_url, tiny_model_dir
from waiting import wait_until

pytestmark = pytest.mark.slow
EXAMPLE_TEXT = "立刻ẳn сирiв衝ційнаiв"
GOOD_STATS = {"mask": [True] * 6 + [False], "q01": [-0.1] * 6 + [0.0], "q99": [0.1] * 6 + [1.0]}
PATHOLOGICAL_PROMPT = "What action should the robot take to a" + " " * 60_000 + "b"


def post(url: str, raw: bytes | str, timeout: float = 120) -> httpx.Response:
    content = raw.encode() if isinstance(raw, str) else raw
    return httpx.post(url, content=content, headers={"Content-Type": "application/json"}, timeout=timeout)


def error_of(response: httpx.Response, status: int) -> dict:
    assert response.status_code == status, response.text
    assert "Traceback" not in response.text
    return response.json()["error"]


@pytest.fixture(scope="module")
def decode_server(console_script, llama3_tokenizer_path, tmp_path_factory):
    server = CliServer(console_script("magma-ros"), ["--no-model", "--tokenizer", str(llama3_tokenizer_path)],
                       tmp_path_factory.mktemp("attack_decode") / "serve.log")
    try:
        yield server.wait_healthy(60)
    finally:
        code = server.stop()
    assert code == 0, server.output()


@pytest.fixture(scope="module")
def model_server(console_script, tmp_path_factory):
    model_dir = tiny_model_dir(tmp_path_factory.mktemp("attack_model"))
    server = CliServer(console_script("magma-ros"),
                       ["--model", str(model_dir), "--device", "cpu", "--dtype", "float32", "--served-model-name",
                        "tiny", "--queue-depth", "2", "--max-tokens-limit", "64"],
                       tmp_path_factory.mktemp("attack_model_log") / "serve.log")
    try:
        yield server.wait_healthy()
    finally:
        code = server.stop()
    assert code == 0, server.output()
    assert "Traceback" not in server.output()


@pytest.fixture(scope="module")
def client(model_server) -> openai.OpenAI:
    return openai.OpenAI(base_url=model_server.url + "/v1", api_key="unused", max_retries=0, timeout=120)


def _stats_body(q01: str = "-0.1", q99: str = "0.1", text: str = json.dumps(EXAMPLE_TEXT)) -> str:
    return (f'{{"text": {text}, "normalization_stats": {{"mask": [true, true, true, true, true, true, false], '
            f'"q01": [{q01}, -0.1, -0.1, -0.1, -0.1, -0.1, 0.0], "q99": [{q99}, 0.1, 0.1, 0.1, 0.1, 0.1, 1.0]}}}}')


DECODE_4XX = {
    "400-digit integer": (_stats_body(q01="-" + "9" * 400), 422, "normalization_stats",
                          "normalization_stats.q01[0]: number too large for a float"),
    "span overflows": (_stats_body(q01="-1e308", q99="1e308"), 422, "normalization_stats", "overflows"),
    "lone surrogate": (_stats_body(text='"\\ud800"'), 400, "text", "text: string holds a lone surrogate"),
    "surrogate in robot_type": ('{"text": "a", "robot_type": "\\udfff"}', 400, "robot_type", "lone surrogate"),
    "deep nesting": ('{"text": ' + "[" * 20_000 + "]" * 20_000 + "}", 400, None, "nested more than 32 levels"),
    "moderate nesting": ('{"text": "a", "normalization_stats": {"mask": ' + "[" * 500 + "]" * 500 + "}}", 400,
                         "normalization_stats.mask" + "[0]" * 30, "nested more than 32 levels"),
    "long text": (json.dumps({"text": "x" * 513, "robot_type": "bridge_orig"}), 422, "text", "at most 512"),
    "long list": ('{"text": "a", "normalization_stats": {"mask": [' + "0," * 1024 + '0], "q01": [], "q99": []}}', 400,
                  "normalization_stats.mask", "1025 entries, more than this server's limit of 1024"),
    "many keys": (json.dumps({f"k{i}": 0 for i in range(1025)}), 400, None, "body: 1025 entries"),
    "huge digits": ('{"text": "a", "robot_type": ' + "1" * 5000 + "}", 400, None, "malformed JSON body"),
}


@pytest.mark.parametrize("raw,status,param,message", DECODE_4XX.values(), ids=DECODE_4XX.keys())
def test_decode_client_mistakes_are_4xx_naming_the_field(decode_server, raw, status, param, message):
    error = error_of(post(decode_server.url + "/v1/action-tokens", raw), status)
    assert error["param"] == param and message in error["message"], error
    assert len(error["message"]) < 500
    ok = post(decode_server.url + "/v1/action-tokens", json.dumps({"text": EXAMPLE_TEXT, "robot_type": "bridge_orig"}))
    assert ok.status_code == 200  # the next request is served normally


def test_health_is_served_while_oversized_decode_bodies_are_refused(decode_server):
    """An action-tokens body is small by nature: 7 MB bodies are refused (413) while being read, and
    /health and normal decodes are answered meanwhile and afterwards."""
    big_text = json.dumps({"text": "x" * (7 * 1024 * 1024), "robot_type": "bridge_orig"})
    big_list = ('{"text": "a", "normalization_stats": {"mask": [' + "0," * (3 * 1024 * 1024) +
                '0], "q01": [], "q99": []}}')
    good = json.dumps({"text": EXAMPLE_TEXT, "normalization_stats": GOOD_STATS})
    with concurrent.futures.ThreadPoolExecutor(6) as pool:
        heavy = [pool.submit(post, decode_server.url + "/v1/action-tokens", body) for body in (big_text, big_list) * 2]
        health = [pool.submit(httpx.get, decode_server.url + "/health", timeout=120) for _ in range(3)]
        normal = pool.submit(post, decode_server.url + "/v1/action-tokens", good)
        assert all(h.result().status_code == 200 for h in health)
        assert normal.result().status_code == 200
        statuses = [f.result().status_code for f in heavy]
    assert statuses == [413] * 4
    assert post(decode_server.url + "/v1/action-tokens", good).status_code == 200


def test_errors_keep_their_headers_through_the_cli_server(decode_server):
    """A 405 names the allowed methods (RFC 9110) in the served process as in the app."""
    for method, path, allowed in (("GET", "/v1/chat/completions", "POST"), ("PUT", "/v1/action-tokens", "POST"),
                                  ("POST", "/v1/models", "GET")):
        response = httpx.request(method, decode_server.url + path, timeout=30)
        assert error_of(response, 405)["message"] == f"{method} {path}: Method Not Allowed"
        assert response.headers["allow"] == allowed
        assert response.headers["x-request-id"]  # the access log saw it


def test_oversized_body_is_413_then_next_request_served(decode_server):
    error = error_of(post(decode_server.url + "/v1/action-tokens", b" " * (64 * 1024 + 1)), 413)
    assert "limit" in error["message"]
    assert post(decode_server.url + "/v1/action-tokens",
                json.dumps({"text": EXAMPLE_TEXT, "robot_type": "bridge_orig"})).status_code == 200


# --- chat completions with the tiny model ------------------------------------------------------------
def _image_part(url: str) -> dict:
    return {"type": "image_url", "image_url": {"url": url}}


def _png_url(width: int, height: int) -> str:
    return "data:image/png;base64," + base64.b64encode(png_bytes(width, height)).decode()


CHAT_4XX = {
    "stream yes": ({"stream": "yes", "messages": [{"role": "user", "content": "hi"}]}, 422, "stream",
                   "valid boolean"),
    "include_usage string": ({"stream": True, "stream_options": {"include_usage": "true"},
                              "messages": [{"role": "user", "content": "hi"}]}, 422, "stream_options.include_usage",
                             "valid boolean"),
    "1-pixel-tall image": ({"messages": [{"role": "user", "content": [_image_part(_png_url(64, 1)),
                                                                     {"type": "text", "text": "what?"}]}]},
                           400, "messages[0].content[0].image_url.url", "at least 8 pixels"),
    "long strip image": ({"messages": [{"role": "user", "content": [_image_part(_png_url(4000, 10)),
                                                                   {"type": "text", "text": "what?"}]}]},
                         400, "messages[0].content[0].image_url.url", "at most 20 times"),
    "too many pixels": ({"messages": [{"role": "user", "content": [_image_part(_png_url(4097, 4096)),
                                                                  {"type": "text", "text": "what?"}]}]},
                        400, "messages[0].content[0].image_url.url", "more than the server's limit"),
    "text over the character limit": ({"messages": [{"role": "user", "content": "a " * 40_000}]}, 400, "messages",
                                      "more than this server's limit of 65536"),
    "prompt over the context": ({"messages": [{"role": "user", "content": "robot arm " * 1000}]}, 400, "messages",
                                "than the model's context of 1024 tokens"),
    "many empty messages": ({"messages": [{"role": "user", "content": ""}] * 300}, 400, "messages",
                            "than the model's context of 1024 tokens"),
    "too many messages": ({"messages": [{"role": "user", "content": ""}] * 1025}, 400, "messages",
                          "1025 entries, more than this server's limit of 1024"),
    "pathological action prompt": ({"messages": [{"role": "user", "content": [_image_part(png_data_url()),
                                                                             {"type": "text",
                                                                              "text": PATHOLOGICAL_PROMPT}]}]},
                                   400, "messages", "than the model's context of 1024 tokens"),
}


@pytest.mark.parametrize("body,status,param,message", CHAT_4XX.values(), ids=CHAT_4XX.keys())
def test_chat_client_mistakes_are_4xx_naming_the_field(model_server, client, body, status, param, message):
    error = error_of(post(model_server.url + "/v1/chat/completions", json.dumps({"model": "tiny", **body})), status)
    assert error["param"] == param and message in error["message"], error
    follow_up = client.chat.completions.create(model="tiny", max_tokens=2, messages=[{"role": "user", "content": "hi"}])
    assert follow_up.choices[0].message.content is not None


def test_lone_surrogate_in_chat_content_is_400(model_server):
    raw = '{"messages": [{"role": "user", "content": [{"type": "text", "text": "pick \\ud800 up"}]}]}'
    error = error_of(post(model_server.url + "/v1/chat/completions", raw), 400)
    assert error["param"] == "messages[0].content[0].text" and "lone surrogate" in error["message"]


def test_openai_client_sees_context_overflow_as_bad_request(client):
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(model="tiny", max_tokens=64,
                                       messages=[{"role": "user", "content": "table cup bowl " * 400}])
    assert "context of 1024 tokens" in str(info.value)
    reply = client.chat.completions.create(model="tiny", messages=[{"role": "user", "content": [
        _image_part(png_data_url()),
        {"type": "text", "text": "What action should the robot take to pick up the cup?"}]}])
    assert len(reply.choices[0].message.model_extra["action_token_ids"]) == 7


def test_health_is_served_while_heavy_chat_requests_are_processed(model_server, client):
    """Pathological prompts (linear match, token count off the loop) and large images run while /health
    and a normal request are answered."""
    url = model_server.url + "/v1/chat/completions"
    pathological = json.dumps(CHAT_4XX["pathological action prompt"][0])
    near_limit = json.dumps({"messages": [{"role": "user", "content": [
        _image_part(_png_url(2048, 2048)), {"type": "text", "text": "What action should the robot take to go?"}]}]})
    big_text = json.dumps({"messages": [{"role": "user", "content": "x" * (7 * 1024 * 1024)}]})
    big_list = '{"messages": [' + '{"role": "user", "content": ""},' * 200_000 + '{"role": "user", "content": ""}]}'
    bodies = (pathological, near_limit, big_text, big_list, pathological)
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        heavy = [pool.submit(post, url, body) for body in bodies]
        health = [pool.submit(httpx.get, model_server.url + "/health", timeout=120) for _ in range(3)]
        assert all(h.result().status_code == 200 for h in health)
        statuses = [f.result().status_code for f in heavy]
    assert statuses[0] == statuses[2] == statuses[3] == statuses[4] == 400, statuses
    assert statuses[1] in (200, 503)  # 503 only when the queue (depth 2) was full at that moment
    follow_up = client.chat.completions.create(model="tiny", max_tokens=2, messages=[{"role": "user", "content": "hi"}])
    assert follow_up.usage.completion_tokens >= 1


# --- clients that go away -----------------------------------------------------------------------------
def _send_half_a_body_and_close(url: str, path: str, robot: str) -> None:
    """Headers announcing 2000 bytes, then 1000 of them, then the connection is closed."""
    parts = urlsplit(url)
    head = (f"POST {path} HTTP/1.1\r\nHost: {parts.netloc}\r\nContent-Type: application/json\r\n"
            f"Content-Length: 2000\r\nX-Robot-Id: {robot}\r\n\r\n")
    with socket.create_connection((parts.hostname, parts.port), timeout=30) as sock:
        sock.sendall(head.encode() + b'{"text": "' + b"a" * 990)


@pytest.mark.parametrize("server_name, path", [("decode_server", "/v1/action-tokens"),
                                               ("model_server", "/v1/chat/completions")])
def test_client_that_closes_mid_body_is_a_499_not_a_server_error(request, server_name, path):
    server = request.getfixturevalue(server_name)
    robot = f"gone-{server_name}"
    _send_half_a_body_and_close(server.url, path, robot)
    wait_until(lambda: any(e["robot_id"] == robot for e in server.access_log()), 60, "no access-log entry")
    (entry,) = [e for e in server.access_log() if e["robot_id"] == robot]
    assert (entry["path"], entry["status"]) == (path, 499)
    stats = httpx.get(server.url + "/v1/stats", timeout=30).json()["robots"][robot]
    assert (stats["requests"], stats["errors"], stats["disconnects"]) == (1, 0, 1), stats
    output = server.output()
    assert "Traceback" not in output and "ClientDisconnect" not in output and " failed: " not in output, output[-3000:]
