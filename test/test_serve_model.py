"""``magma-ros serve`` with the tiny test model through the real runtime, driven by the official
``openai`` client and raw HTTP: completions, streaming, action requests, sampling options,
chat validation, image URL policy, the bounded queue, disconnects and timeouts."""
from __future__ import annotations

import base64
import http.server
import io
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import openai
import pytest
from PIL import Image
from serve_support import GatedRunner, ServerThread, png_bytes, png_data_url, tiny_model_dir, wait_until

from magma_ros.actions import ActionTokenizer, TextTokenizer, text_ids_to_action_ids
from magma_ros.policy.config import BackendConfig
from magma_ros.server.app import create_app
from magma_ros.server.decoding import ActionTokenService
from magma_ros.server.settings import ServerSettings

pytestmark = pytest.mark.slow
ROBOT_PROMPT = "What action should the robot take to pick up the red block?"
MODEL_NAME = "tiny-magma"


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    return tiny_model_dir(tmp_path_factory.mktemp("serve_model"))


@pytest.fixture(scope="module")
def runner(model_dir):
    from magma_ros.policy.vlm import VLMRunner

    runner = VLMRunner.load(BackendConfig(backend="magma", model=str(model_dir), device="cpu", dtype="float32"))
    yield runner
    runner.close()


@pytest.fixture(scope="module")
def service(model_dir, runner) -> ActionTokenService:
    return ActionTokenService(TextTokenizer(model_dir), runner.vocab_size)


def serve(runner, service, **settings) -> ServerThread:
    """A server on the shared runner; ``.runner`` is its ``GatedRunner``. Unbatched unless
    ``max_batch_size`` is given: the queue tests count one running request (test_serve_batching
    covers batches)."""
    shared = GatedRunner(runner)
    settings = {"max_batch_size": 1, **settings}
    srv = ServerThread(create_app(ServerSettings(served_model_name=MODEL_NAME, **settings), service, shared))
    srv.runner = shared
    return srv


@pytest.fixture(scope="module")
def server(runner, service):
    with serve(runner, service, max_tokens_limit=64) as srv:
        yield srv


@pytest.fixture(scope="module")
def client(server) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.url + "/v1", api_key="unused", max_retries=0, timeout=60)


def action_messages(url: str | None = None, prompt: str = ROBOT_PROMPT) -> list[dict]:
    return [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": url or png_data_url()}},
                                         {"type": "text", "text": prompt}]}]


def chat(url: str, body: dict, timeout: float = 60) -> httpx.Response:
    return httpx.post(url + "/v1/chat/completions", json=body, timeout=timeout)


# --- the openai client ---------------------------------------------------------------------------
def test_chat_completion(client):
    response = client.chat.completions.create(model=MODEL_NAME, max_tokens=8,
                                              messages=[{"role": "system", "content": "You are terse."},
                                                        {"role": "user", "content": "Say hello to the robot arm."}])
    assert response.object == "chat.completion" and response.id.startswith("chatcmpl-")
    assert response.model == MODEL_NAME and response.created > 0
    choice = response.choices[0]
    assert choice.message.role == "assistant" and isinstance(choice.message.content, str) and choice.message.content
    assert choice.finish_reason in ("stop", "length")
    usage = response.usage
    assert usage.prompt_tokens > 0 and 0 < usage.completion_tokens <= 8
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens


def test_streamed_completion_equals_the_plain_one(client):
    messages = [{"role": "user", "content": "Describe the table."}]
    plain = client.chat.completions.create(model=MODEL_NAME, messages=messages, max_tokens=12)
    chunks = list(client.chat.completions.create(model=MODEL_NAME, messages=messages, max_tokens=12, stream=True,
                                                 stream_options={"include_usage": True}))
    assert all(c.object == "chat.completion.chunk" and c.id == chunks[0].id for c in chunks)
    assert chunks[0].choices[0].delta.role == "assistant"
    content = [c.choices[0].delta.content or "" for c in chunks if c.choices]
    assert len([piece for piece in content if piece]) >= 1
    assert "".join(content) == plain.choices[0].message.content
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finishes == [plain.choices[0].finish_reason]
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == plain.usage.completion_tokens


def test_stream_ends_with_done(server):
    body = {"model": MODEL_NAME, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 3, "stream": True}
    with httpx.stream("POST", server.url + "/v1/chat/completions", json=body, timeout=60) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        events = [line for line in response.iter_lines() if line]
    assert all(line.startswith("data: ") for line in events)
    assert events[-1] == "data: [DONE]" and len(events) >= 3


def test_robot_action_request_decodes_to_seven_action_ids(client, server, runner, model_dir):
    response = client.chat.completions.create(model=MODEL_NAME, messages=action_messages())
    content = response.choices[0].message.content
    ids = text_ids_to_action_ids(content, TextTokenizer(model_dir), ActionTokenizer(vocab_size=runner.vocab_size))
    assert ids.shape == (7,) and np.all((ids >= runner.vocab_size - 256) & (ids < runner.vocab_size))
    image = np.asarray(Image.open(io.BytesIO(png_bytes())))
    assert ids.tolist() == runner.action_ids(image, ROBOT_PROMPT).tolist()  # the constrained path, greedy
    assert response.choices[0].message.model_extra["action_token_ids"] == ids.tolist()
    assert response.usage.completion_tokens == 7 and response.choices[0].finish_reason == "stop"
    decoded = httpx.post(server.url + "/v1/action-tokens", json={"text": content, "robot_type": "bridge_orig"},
                         timeout=30)
    assert decoded.status_code == 200 and set(decoded.json()) == {"x", "y", "z", "roll", "pitch", "yaw", "gripper"}
    streamed = list(client.chat.completions.create(model=MODEL_NAME, messages=action_messages(), stream=True))
    assert "".join(c.choices[0].delta.content or "" for c in streamed if c.choices) == content


def test_questions_generate_freely(client):
    with_image = client.chat.completions.create(model=MODEL_NAME, max_tokens=3,
                                                messages=action_messages(prompt="What is on the table?"))
    without_image = client.chat.completions.create(model=MODEL_NAME, max_tokens=3,
                                                   messages=[{"role": "user", "content": ROBOT_PROMPT}])
    for response in (with_image, without_image):
        assert response.usage.completion_tokens <= 3  # the action path always answers 7 tokens
        assert "action_token_ids" not in (response.choices[0].message.model_extra or {})


def test_sampling_options_are_honoured(client):
    messages = [{"role": "user", "content": "Tell a story about a gripper."}]

    def text(**options) -> str:
        return client.chat.completions.create(model=MODEL_NAME, messages=messages, **options).choices[0].message.content

    greedy = text(max_tokens=10, temperature=0)
    assert text(max_tokens=10, temperature=0) == greedy
    # a nucleus this small holds only the most likely token: sampling at any temperature is greedy
    assert text(max_tokens=10, temperature=1.5, top_p=1e-9) == greedy
    samples = {text(max_tokens=10, temperature=2.0, top_p=1.0) for _ in range(4)}
    assert len(samples - {greedy}) >= 1
    short = client.chat.completions.create(model=MODEL_NAME, messages=messages, max_tokens=1, temperature=0)
    assert short.choices[0].finish_reason == "length" and short.usage.completion_tokens == 1


def test_models_and_health(client, server):
    assert [m.id for m in client.models.list().data] == [MODEL_NAME]
    health = httpx.get(server.url + "/health", timeout=10).json()
    assert health["model_loaded"] is True and health["model"] == MODEL_NAME and health["queue_depth"] == 0


def test_openai_client_sees_validation_errors(client):
    with pytest.raises(openai.UnprocessableEntityError) as info:
        client.chat.completions.create(model=MODEL_NAME, messages=[{"role": "user", "content": "hi"}], temperature=5)
    assert "temperature" in str(info.value)


# --- chat validation -----------------------------------------------------------------------------
USER = {"role": "user", "content": "hi"}
IMAGE_PART = {"type": "image_url", "image_url": {"url": png_data_url()}}
CHAT_422 = {
    "no messages": ({"messages": []}, "messages", "at least 1 item"),
    "messages missing": ({}, "messages", "messages: Field required"),
    "bad role": ({"messages": [{"role": "robot", "content": "hi"}]}, "messages[0].role", "Input should be"),
    "temperature": ({"messages": [USER], "temperature": 2.5}, "temperature", "less than or equal to 2"),
    "top_p zero": ({"messages": [USER], "top_p": 0}, "top_p", "greater than 0"),
    "max_tokens zero": ({"messages": [USER], "max_tokens": 0}, "max_tokens", "greater than or equal to 1"),
    "max_tokens over limit": ({"messages": [USER], "max_tokens": 65}, "max_tokens", "at most 64 on this server"),
    "n": ({"messages": [USER], "n": 2}, "n", "less than or equal to 1"),
    "part type": ({"messages": [{"role": "user", "content": [{"type": "audio", "audio": {}}]}]},
                  "messages[0].content[0].type", "Input should be 'text' or 'image_url'"),
    "image without url": ({"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {}}]}]},
                          "messages[0].content[0].image_url.url", "Field required"),
    "part without its field": ({"messages": [{"role": "user", "content": [{"type": "text"}]}]},
                               "messages[0].content[0]", "a 'text' part needs a 'text' field"),
    "content not text": ({"messages": [{"role": "user", "content": 42}]}, "messages[0].content",
                         "Input should be a valid string"),
    "two images": ({"messages": [{"role": "user", "content": [IMAGE_PART, IMAGE_PART]}]},
                   "messages[0].content[1].image_url.url", "only one image per request"),
    "image from system": ({"messages": [{"role": "system", "content": [IMAGE_PART]}, USER]},
                          "messages[0].content", "images are only accepted in user messages"),
    "last not user": ({"messages": [USER, {"role": "assistant", "content": "hello"}]}, "messages[1].role",
                      "the last message must be from the user"),
}


@pytest.mark.parametrize("body,param,message", CHAT_422.values(), ids=CHAT_422.keys())
def test_chat_validation_errors(server, body, param, message):
    response = chat(server.url, {"model": MODEL_NAME, **body})
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["param"] == param and message in error["message"], error


def test_malformed_chat_json_is_400(server):
    response = httpx.post(server.url + "/v1/chat/completions", content=b'{"messages": [', timeout=30)
    assert response.status_code == 400 and "malformed JSON body" in response.json()["error"]["message"]


# --- image URLs ----------------------------------------------------------------------------------
class ImageHost:
    """A local HTTP server: /img.png, /big.png (large), /moved (redirect to /img.png), /slow (3 s)."""

    def __init__(self) -> None:
        small, big = png_bytes(), png_bytes(600, 600) + b"\0" * 200_000
        self.hits: list[str] = []
        hits = self.hits

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                hits.append(self.path)
                if self.path == "/moved":
                    self.send_response(302)
                    self.send_header("Location", "/img.png")
                    self.end_headers()
                    return
                if self.path == "/slow":
                    time.sleep(3)
                body = {"/img.png": small, "/big.png": big, "/slow": small}.get(self.path)
                self.send_response(200 if body else 404)
                self.send_header("Content-Type", "image/png")
                self.send_header("Content-Length", str(len(body or b"")))
                self.end_headers()
                try:
                    self.wfile.write(body or b"")
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the server under test stopped reading (size or time limit): expected

            def log_message(self, *args) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.netloc = f"127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture(scope="module")
def image_host():
    host = ImageHost()
    yield host
    host.close()


def image_error(url: str, body_url: str) -> dict:
    response = chat(url, {"model": MODEL_NAME, "messages": action_messages(body_url)})
    assert response.status_code == 400, response.text
    return response.json()["error"]


def test_url_fetching_is_refused_by_default(server, image_host):
    hits_before = list(image_host.hits)  # the image host is shared with the fetching tests of this module
    error = image_error(server.url, f"http://{image_host.netloc}/img.png")
    assert "fetching http(s) image URLs is disabled" in error["message"]
    assert error["param"] == "messages[0].content[0].image_url.url"
    assert "unsupported image URL scheme 'file'" in image_error(server.url, "file:///etc/passwd")["message"]
    assert image_host.hits == hits_before  # the server never connected


@pytest.mark.parametrize("url,message", [
    ("data:image/png,abc", "must be base64 encoded"),
    ("data:image/png;base64,@@@", "not valid base64"),
    ("data:image/png;base64," + base64.b64encode(b"not an image").decode(), "not a readable image"),
    ("data:image/png;base64," + base64.b64encode(png_bytes(300, 300)).decode(), "more than the server's limit"),
], ids=["not base64", "bad base64", "not an image", "too many pixels"])
def test_bad_data_urls(runner, service, url, message):
    with serve(runner, service, max_image_pixels=200 * 200) as srv:
        assert message in image_error(srv.url, url)["message"]


def test_allow_listed_host_is_fetched_within_limits(runner, service, image_host):
    hits_before = len(image_host.hits)  # the image host is shared with the other tests of this module
    with serve(runner, service, allowed_image_hosts=(image_host.netloc,), image_fetch_max_bytes=100_000,
               image_fetch_timeout_s=1.0) as srv:
        ok = chat(srv.url, {"model": MODEL_NAME, "messages": action_messages(f"http://{image_host.netloc}/img.png")})
        assert ok.status_code == 200, ok.text
        assert len(ok.json()["choices"][0]["message"]["action_token_ids"]) == 7
        assert "HTTP 302" in image_error(srv.url, f"http://{image_host.netloc}/moved")["message"]
        assert "larger than the server's limit" in image_error(srv.url, f"http://{image_host.netloc}/big.png")["message"]
        assert "took longer than 1 s" in image_error(srv.url, f"http://{image_host.netloc}/slow")["message"]
        other = image_error(srv.url, "http://localhost:9/img.png")
        assert "'localhost:9' is not on this server's allow-list" in other["message"]
    assert image_host.hits[hits_before:] == ["/img.png", "/moved", "/big.png", "/slow"]  # the redirect was not followed


# --- the bounded queue ---------------------------------------------------------------------------
def _post_in_thread(url: str, body: dict, results: list, timeout: float = 60) -> threading.Thread:
    def run() -> None:
        try:
            results.append(chat(url, body, timeout=timeout))
        except httpx.HTTPError as exc:
            results.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def _health(url: str) -> dict:
    return httpx.get(url + "/health", timeout=10).json()


def test_queue_full_503_and_disconnect_frees_the_slot(runner, service):
    with serve(runner, service, queue_depth=1) as srv:
        body = {"model": MODEL_NAME, "messages": action_messages()}
        running, waiting, late = [], [], []
        srv.runner.gate.clear()  # hold the worker inside decode_actions
        t1 = _post_in_thread(srv.url, body, running)
        assert srv.runner.entered.acquire(timeout=60)
        t2 = _post_in_thread(srv.url, body, waiting, timeout=6)  # gives up after 6 s: disconnects
        wait_until(lambda: _health(srv.url)["queue_depth"] == 1, 30, "second request not queued")
        assert _health(srv.url)["busy"] is True
        full = chat(srv.url, body)
        assert full.status_code == 503, full.text
        assert int(full.headers["retry-after"]) >= 1
        assert "busy" in full.json()["error"]["message"]
        t2.join(30)
        assert isinstance(waiting[0], httpx.ReadTimeout)
        wait_until(lambda: _health(srv.url)["queue_depth"] == 0, 30, "disconnected client kept its slot")
        t3 = _post_in_thread(srv.url, body, late)
        wait_until(lambda: _health(srv.url)["queue_depth"] == 1, 30, "new request not queued")
        srv.runner.gate.set()
        t1.join(60)
        t3.join(60)
        assert running[0].status_code == 200 and late[0].status_code == 200
        assert srv.runner.entered.acquire(timeout=1)  # the queued request ran; the abandoned one never did
        assert not srv.runner.entered.acquire(timeout=0.5)


def test_per_request_timeout_is_504_and_frees_the_slot(runner, service):
    with serve(runner, service, queue_depth=1, timeout_s=2.0) as srv:
        srv.runner.gate.clear()
        body = {"model": MODEL_NAME, "messages": action_messages()}
        first = []
        t1 = _post_in_thread(srv.url, body, first)
        assert srv.runner.entered.acquire(timeout=60)
        queued = chat(srv.url, body)
        assert queued.status_code == 504 and "timeout" in queued.json()["error"]["message"]
        assert _health(srv.url)["queue_depth"] == 0
        srv.runner.gate.set()
        t1.join(60)
        assert first[0].status_code == 504  # it was running when its deadline passed
        assert chat(srv.url, body).status_code == 200  # the next request is served at once


def test_running_generation_stops_at_its_deadline(runner, service):
    with serve(runner, service, timeout_s=1.0) as srv:
        srv.runner.pace_text_s = 3.0  # the answer has several pieces: longer than the deadline
        body = {"model": MODEL_NAME, "max_tokens": 64, "messages": [{"role": "user", "content": "Describe the table."}]}
        timed_out = chat(srv.url, body)
        assert timed_out.status_code == 504, timed_out.text
        wait_until(srv.runner.text_closed_early.is_set, 30, "generation kept running after its deadline")
        wait_until(lambda: not _health(srv.url)["busy"], 30, "worker still busy after the deadline")
        srv.runner.pace_text_s = 0.0
        assert chat(srv.url, {**body, "max_tokens": 2}).status_code == 200


def test_images_are_decoded_only_in_a_granted_queue_slot(runner, service, monkeypatch):
    from magma_ros.server import images

    decoded = []
    real_decode = images._decode_image
    monkeypatch.setattr(images, "_decode_image", lambda *args: decoded.append(args[1]) or real_decode(*args))
    with serve(runner, service, queue_depth=2) as srv:
        body = {"model": MODEL_NAME, "messages": action_messages(_big_png_url())}
        srv.runner.gate.clear()
        first: list = []
        t1 = _post_in_thread(srv.url, body, first)
        assert srv.runner.entered.acquire(timeout=60)
        rest: list = []
        threads = [_post_in_thread(srv.url, body, rest) for _ in range(7)]
        wait_until(lambda: len(rest) >= 5, 60, "refused requests not answered")
        assert [r.status_code for r in rest] == [503] * 5
        wait_until(lambda: _health(srv.url)["queue_depth"] == 2, 30, "two requests not queued")
        assert len(decoded) == 3  # the running request and the two queued ones; refused ones decoded nothing
        srv.runner.gate.set()
        for thread in [t1, *threads]:
            thread.join(60)
        assert [r.status_code for r in [*first, *rest]].count(200) == 3


def test_decoded_images_are_bounded_by_pixels_not_requests(runner, service, monkeypatch):
    """Room for two 1024x1024 images: with one running and one queued, a third image gets 503 before it
    is decoded although the queue has room; the pixels come back when the jobs end (or fail)."""
    from magma_ros.server import images

    decoded = []
    real_decode = images._decode_image

    def decode(*args):
        rgb = real_decode(*args)  # the budget is checked from the header, before the pixels are decoded
        decoded.append(rgb.shape)
        return rgb

    monkeypatch.setattr(images, "_decode_image", decode)
    with serve(runner, service, queue_depth=8, max_image_pixels=1024 * 1024, max_decoded_pixels=2 * 1024 * 1024) as srv:
        body = {"model": MODEL_NAME, "messages": action_messages(_big_png_url())}
        srv.runner.gate.clear()
        held: list = []
        threads = [_post_in_thread(srv.url, body, held)]
        assert srv.runner.entered.acquire(timeout=60)
        threads.append(_post_in_thread(srv.url, body, held))
        wait_until(lambda: _health(srv.url)["queue_depth"] == 1, 30, "second request not queued")
        refused = chat(srv.url, body)
        assert refused.status_code == 503, refused.text
        error = refused.json()["error"]
        assert "pixels" in error["message"] and error["param"] == "messages[0].content[0].image_url.url", error
        assert int(refused.headers["retry-after"]) >= 1
        small = chat(srv.url, {"model": MODEL_NAME, "messages": action_messages(png_data_url(64, 64))})
        assert small.status_code == 503  # the budget is spent: even a small image waits
        assert {k: _health(srv.url)[k] for k in ("decoded_pixels", "decoded_pixels_capacity")} == \
            {"decoded_pixels": 2 * 1024 * 1024, "decoded_pixels_capacity": 2 * 1024 * 1024}
        assert decoded == [(1024, 1024, 3)] * 2  # the refused images were never decoded
        srv.runner.gate.set()
        for thread in threads:
            thread.join(60)
        assert [r.status_code for r in held] == [200, 200]
        srv.runner.fail_with = RuntimeError("model fault")
        assert chat(srv.url, body).status_code == 500  # a failed job gives its pixels back too
        srv.runner.fail_with = None
        both = []
        threads = [_post_in_thread(srv.url, body, both) for _ in range(2)]
        for thread in threads:
            thread.join(60)
        assert [r.status_code for r in both] == [200, 200], [r.text for r in both]
        wait_until(lambda: _health(srv.url)["decoded_pixels"] == 0, 30, "pixels not given back")


def _big_png_url() -> str:
    buffer = io.BytesIO()
    Image.new("RGB", (1024, 1024), (10, 200, 30)).save(buffer, "PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()



def test_stream_client_disconnect_stops_the_generation(runner, service):
    with serve(runner, service) as srv:
        srv.runner.pace_text_s = 0.5
        body = {"model": MODEL_NAME, "stream": True, "max_tokens": 64,
                "messages": [{"role": "user", "content": "Describe the table."}]}
        with httpx.stream("POST", srv.url + "/v1/chat/completions", json=body, timeout=60) as response:
            lines = response.iter_lines()
            assert next(line for line in lines if '"content": "' in line and '"content": ""' not in line)
        # the client is gone after one piece: the generation must stop instead of running to the end
        wait_until(srv.runner.text_closed_early.is_set, 20, "generation not stopped after the client left")
        wait_until(lambda: not _health(srv.url)["busy"], 20, "worker still busy")


def test_model_failures_are_500_or_422_with_the_reason(runner, service):
    from magma_ros.policy.base import PolicyConfigError, PolicyError

    with serve(runner, service) as srv:
        srv.runner.fail_with = PolicyError("CUDA out of memory (scripted)")
        response = chat(srv.url, {"model": MODEL_NAME, "messages": action_messages()})
        assert response.status_code == 500
        assert response.json()["error"]["message"] == "model error: CUDA out of memory (scripted)"
        srv.runner.fail_with = PolicyConfigError("temperature: not supported by this model (scripted)")
        refused = chat(srv.url, {"model": MODEL_NAME, "messages": action_messages()})
        assert refused.status_code == 422
        assert refused.json()["error"]["message"] == ("the model cannot serve this request: temperature: not "
                                                      "supported by this model (scripted)")
        srv.runner.fail_with = None
        assert chat(srv.url, {"model": MODEL_NAME, "messages": action_messages()}).status_code == 200


def test_custom_action_prompt(runner, service):
    with serve(runner, service, action_prompts=("Robot, please {instruction}.", "Arm {{2}}: {instruction}")) as srv:
        custom = chat(srv.url, {"model": MODEL_NAME,
                                "messages": action_messages(prompt="Robot, please wipe the table.")})
        assert custom.status_code == 200 and len(custom.json()["choices"][0]["message"]["action_token_ids"]) == 7
        braces = chat(srv.url, {"model": MODEL_NAME, "messages": action_messages(prompt="Arm {2}: wipe the table")})
        assert "action_token_ids" in braces.json()["choices"][0]["message"]  # {{ }} are the prompt's single braces
        default = chat(srv.url, {"model": MODEL_NAME, "max_tokens": 3, "messages": action_messages()})
        assert default.status_code == 200 and "action_token_ids" not in default.json()["choices"][0]["message"]
