"""Batched action decoding on the tiny test models: batched greedy ids equal unbatched ones (tiny
native Magma checkpoint and tiny LLaVA), logits stay close, a bad member fails alone; through the
server: concurrent action requests are decoded in one batch with the same answers, a cancelled
member leaves its batch, the queue still answers 503, and each robot's identity reaches the
access log and /v1/stats."""
from __future__ import annotations

import base64
import io
import json
import logging
import threading

import httpx
import numpy as np
import openai
import pytest
import torch
from PIL import Image
from serve_support import GatedRunner, ServerThread, png_bytes, tiny_model_dir, wait_until

from magma_ros.actions import TextTokenizer
from magma_ros.policy.base import PolicyConfigError
from magma_ros.policy.config import BackendConfig
from magma_ros.server.app import create_app
from magma_ros.server.decoding import ActionTokenService
from magma_ros.server.settings import ServerSettings

pytestmark = pytest.mark.slow
PROMPTS = ["What action should the robot take to pick up the red block?",
           "What action should the robot take to go?",
           "What action should the robot take to put the spoon in the pot and then close the drawer?",
           "What action should the robot take to push the cloth?",
           "What action should the robot take to open the gripper?"]
MODEL_NAME = "tiny"


def _load(directory):
    from magma_ros.policy.vlm import VLMRunner

    return VLMRunner.load(BackendConfig(backend="magma", model=str(directory), device="cpu", dtype="float32"))


@pytest.fixture(scope="module")
def llava(tmp_path_factory):
    runner = _load(tiny_model_dir(tmp_path_factory.mktemp("batch_llava")))
    yield runner
    runner.close()


@pytest.fixture(scope="module")
def native(tmp_path_factory):
    from tiny_magma import build_tiny_magma

    runner = _load(build_tiny_magma(tmp_path_factory.mktemp("batch_magma") / "magma"))
    yield runner
    runner.close()


@pytest.fixture(params=["native", "llava"])
def runner(request):
    return request.getfixturevalue(request.param)


def _images(n: int) -> list[np.ndarray]:
    """Random images of different sizes (different crop grids and prompt lengths for Magma)."""
    rng = np.random.default_rng(7)
    return [rng.integers(0, 256, (24 + 20 * i, 70 - 9 * i, 3), dtype=np.uint8) for i in range(n)]


def test_batched_greedy_ids_equal_unbatched(runner):
    images = _images(len(PROMPTS))
    single = [runner.action_ids(image, prompt) for image, prompt in zip(images, PROMPTS)]
    assert len({tuple(s) for s in single}) > 1  # the inputs matter, so equality below means something
    batched = runner.action_ids_batch([(image, prompt, 0.0) for image, prompt in zip(images, PROMPTS)])
    assert [b.tolist() for b in batched] == [s.tolist() for s in single]
    assert runner.last_timings["batch"] == len(PROMPTS)
    reordered = runner.action_ids_batch([(images[i], PROMPTS[i], 0.0) for i in (3, 0, 4)])
    assert [r.tolist() for r in reordered] == [single[i].tolist() for i in (3, 0, 4)]


def test_batched_prefill_logits_match_single_prompts(runner):
    adapter = runner.adapter
    images = [Image.fromarray(image) for image in _images(3)]
    texts = [adapter.prompt([{"role": "user", "content": p}], with_image=True) for p in PROMPTS[:3]]
    with torch.inference_mode():
        batch_inputs = adapter.batch_inputs(list(zip(images, texts)))
        assert bool((batch_inputs["attention_mask"] == 0).any())  # left padding is exercised
        batched, _ = adapter.prefill(batch_inputs)
        for row, (image, text) in enumerate(zip(images, texts)):
            single, _ = adapter.prefill(adapter.inputs(image, text))
            torch.testing.assert_close(batched[row].float(), single[0].float(), rtol=1e-4, atol=1e-4)


def test_a_bad_member_fails_alone_and_sampled_rows_stay_in_the_action_range(runner):
    images = _images(3)
    single = [runner.action_ids(image, prompt) for image, prompt in zip(images, PROMPTS)]
    out = runner.action_ids_batch([(images[0], PROMPTS[0], 0.0), (np.zeros((4, 4), np.uint8), PROMPTS[1], 0.0),
                                   (images[2], PROMPTS[2], 0.0), (images[1], PROMPTS[1], 1.5),
                                   (images[1], PROMPTS[1], -1.0)])
    assert out[0].tolist() == single[0].tolist() and out[2].tolist() == single[2].tolist()
    assert isinstance(out[1], ValueError) and "H x W x 3" in str(out[1]) and isinstance(out[4], PolicyConfigError)
    assert "temperature" in str(out[4])
    lo, hi = runner.vocab_size - 256, runner.vocab_size
    assert out[3].shape == (7,) and np.all((out[3] >= lo) & (out[3] < hi))


# --- through the server (tiny LLaVA) -----------------------------------------------------------------
def _serve(llava, **settings) -> ServerThread:
    service = ActionTokenService(TextTokenizer(llava.adapter.tokenizer.name_or_path), llava.vocab_size)
    gated = GatedRunner(llava)
    srv = ServerThread(create_app(ServerSettings(served_model_name=MODEL_NAME, **settings), service, gated))
    srv.runner = gated
    return srv


def _color_png(i: int) -> bytes:
    return png_bytes(32, 32, ((60 * i) % 256, (200 - 35 * i) % 256, (90 + 50 * i) % 256))


def _body(i: int, **extra) -> dict:
    url = "data:image/png;base64," + base64.b64encode(_color_png(i)).decode()
    return {"model": MODEL_NAME, "messages": [{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": url}}, {"type": "text", "text": PROMPTS[i % len(PROMPTS)]}]}],
        **extra}


def _post_in_thread(url: str, body: dict, results: dict, key, timeout: float = 60, headers=None) -> threading.Thread:
    def run() -> None:
        try:
            results[key] = httpx.post(url + "/v1/chat/completions", json=body, timeout=timeout, headers=headers)
        except httpx.HTTPError as exc:
            results[key] = exc

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def _health(url: str) -> dict:
    return httpx.get(url + "/health", timeout=10).json()


def _expected(llava, i: int) -> list[int]:
    image = np.asarray(Image.open(io.BytesIO(_color_png(i))).convert("RGB"))
    return llava.action_ids(image, PROMPTS[i % len(PROMPTS)]).tolist()


def test_concurrent_action_requests_are_decoded_in_one_batch(llava):
    with _serve(llava, max_batch_size=4, batch_window_ms=0.0, queue_depth=8) as srv:
        results: dict = {}
        srv.runner.gate.clear()
        threads = [_post_in_thread(srv.url, _body(0), results, 0)]
        assert srv.runner.entered.acquire(timeout=60)  # the first request holds the worker
        threads += [_post_in_thread(srv.url, _body(i), results, i) for i in range(1, 5)]
        wait_until(lambda: _health(srv.url)["queue_depth"] == 4, 30, "four requests not queued")
        srv.runner.gate.set()
        for t in threads:
            t.join(60)
        assert srv.runner.sizes == [1, 4]
        for i in range(5):
            assert results[i].status_code == 200, results[i].text
            assert results[i].json()["choices"][0]["message"]["action_token_ids"] == _expected(llava, i)
        client = openai.OpenAI(base_url=srv.url + "/v1", api_key="unused", max_retries=0, timeout=60)
        reply = client.chat.completions.create(**_body(2))
        assert reply.choices[0].message.model_extra["action_token_ids"] == _expected(llava, 2)


def test_a_cancelled_member_leaves_its_batch_and_a_full_queue_still_answers_503(llava):
    with _serve(llava, max_batch_size=4, batch_window_ms=0.0, queue_depth=2) as srv:
        results: dict = {}
        srv.runner.gate.clear()
        held = _post_in_thread(srv.url, _body(0), results, 0)
        assert srv.runner.entered.acquire(timeout=60)
        gone = _post_in_thread(srv.url, _body(1), results, 1, timeout=4)  # disconnects after 4 s
        wait_until(lambda: _health(srv.url)["queue_depth"] == 1, 30, "request 1 not queued")
        kept = [_post_in_thread(srv.url, _body(i), results, i) for i in (2, 3, 4, 5)]
        wait_until(lambda: _health(srv.url)["queue_depth"] == 5, 30, "requests 2-5 not queued")
        # 1 running + 5 waiting = queue_depth 2 + max_batch_size 4: the next one is turned away
        full = httpx.post(srv.url + "/v1/chat/completions", json=_body(6), timeout=30)
        assert full.status_code == 503, full.text
        assert int(full.headers["retry-after"]) >= 1
        gone.join(30)
        assert isinstance(results[1], httpx.ReadTimeout)
        wait_until(lambda: _health(srv.url)["queue_depth"] == 4, 30, "the disconnected request kept its slot")
        srv.runner.gate.set()
        for t in (held, *kept):
            t.join(60)
        assert srv.runner.sizes == [1, 4]  # the batch holds requests 2-5 only
        for i in (0, 2, 3, 4, 5):
            assert results[i].status_code == 200, results[i].text
            assert results[i].json()["choices"][0]["message"]["action_token_ids"] == _expected(llava, i)


def test_robot_identity_in_the_access_log_and_stats(llava, caplog):
    with _serve(llava, max_batch_size=4, batch_window_ms=1.0) as srv, \
            caplog.at_level(logging.INFO, logger="magma_ros.server.access"):
        assert httpx.post(srv.url + "/v1/chat/completions", json=_body(1), headers={"X-Robot-Id": "arm-left"},
                          timeout=60).status_code == 200
        assert httpx.post(srv.url + "/v1/chat/completions", json=_body(2, user="lab/arm-right"),
                          timeout=60).status_code == 200
        decoded = httpx.post(srv.url + "/v1/action-tokens", headers={"X-Robot-Id": "arm-left"},
                             json={"text": "nonsense", "robot_type": "bridge_orig"}, timeout=30)
        assert decoded.status_code >= 400
        bad = httpx.post(srv.url + "/v1/chat/completions", json=_body(1), headers={"X-Robot-Id": "arm left!"},
                         timeout=30)
        assert bad.status_code == 400 and "X-Robot-Id" in bad.json()["error"]["message"]
        bad_user = httpx.post(srv.url + "/v1/chat/completions", json=_body(1, user="x" * 200), timeout=30)
        assert bad_user.status_code == 422 and bad_user.json()["error"]["param"] == "user"
        stats = httpx.get(srv.url + "/v1/stats", timeout=10).json()["robots"]
    assert stats["arm-left"]["requests"] == 2 and stats["arm-left"]["errors"] == 1
    assert stats["lab/arm-right"]["requests"] == 1 and stats["lab/arm-right"]["errors"] == 0
    assert stats["arm-left"]["latency_ms"]["p50"] > 0 and stats["arm-left"]["latency_ms"]["window"] == 2
    assert stats["anonymous"]["requests"] == 2  # the two rejected requests name no valid robot
    access = [json.loads(r.getMessage()) for r in caplog.records if r.name == "magma_ros.server.access"]
    robots = [(a["path"], a["status"], a["robot_id"]) for a in access if a["path"] != "/v1/stats"]
    assert ("/v1/chat/completions", 200, "arm-left") in robots
    assert ("/v1/chat/completions", 200, "lab/arm-right") in robots
    assert ("/v1/chat/completions", 400, None) in robots
