"""The ``openai`` backend: any OpenAI-compatible chat-completions endpoint that answers with
action token text (the hosted Magma endpoint, ``magma-ros serve``, vLLM, ...).

One persistent ``httpx.Client`` per policy; bounded retries with backoff on connection errors,
5xx and 429 (never on other 4xx, never on timeouts); every failure is a ``PolicyError``.
"""
from __future__ import annotations

import base64
import io
import os
import time
from typing import Any

import httpx
import numpy as np

from ..actions.decoder import text_ids_to_action_ids
from ..actions.errors import ActionContractError
from ..actions.profiles import RobotProfile
from ..actions.sequence import extract_action_ids
from ..actions.text import TextTokenizer
from ..actions.tokenizer import ActionTokenizer
from .base import PolicyConfigError, PolicyError, Prediction, check_image
from .config import BackendConfig
from .hf_adapters import MAGMA_SYSTEM_PROMPT

CHAT_PATH = "/v1/chat/completions"
MAX_RETRIES = 2  # so at most 3 attempts per action
BACKOFF_S = 0.25  # first retry delay; doubles each retry
MAX_BACKOFF_S = 2.0  # cap, also for a server's Retry-After
JPEG_QUALITY = 95


class OpenAIPolicy:
    """Sends image + instruction to ``{endpoint}/v1/chat/completions``; reply -> 7 action ids.

    The reply's ``action_token_ids`` are used when present; otherwise the content text is split
    into action tokens by its bytes (``text_ids_to_action_ids``)."""

    def __init__(self, endpoint_url: str, model: str, profile: RobotProfile, text_tokenizer: TextTokenizer,
                 api_key: str | None = None, temperature: float = 0.0, timeout_s: float = 10.0,
                 robot_id: str = "") -> None:
        self.url = chat_url(endpoint_url)
        self.model = model
        self.profile = profile
        self.text_tokenizer = text_tokenizer
        self.vocab_size = text_tokenizer.base_vocab_size
        self.action_tokenizer = ActionTokenizer(self.vocab_size)
        try:  # the table that splits reply text into action tokens, built before the first action
            text_tokenizer.prepare_action_range(self.action_tokenizer.min_action_id,
                                                self.action_tokenizer.max_action_id)
        except ActionContractError as exc:
            raise PolicyConfigError(f"tokenizer: cannot index the action tokens: {exc}") from None
        self.temperature = float(temperature)
        self.robot_id = robot_id
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        if robot_id:
            headers["X-Robot-Id"] = robot_id  # the server's access log and per-robot metrics name this robot
        self._client = httpx.Client(headers=headers, timeout=httpx.Timeout(timeout_s))
        self._timeout_s = timeout_s

    def predict(self, image: np.ndarray, instruction: str) -> Prediction:
        """One chat-completions request; raises ``PolicyError`` on any failure."""
        check_image(image)
        t0 = time.perf_counter()
        body = self.request_body(image, instruction)
        t1 = time.perf_counter()
        reply = self._post(body)
        t2 = time.perf_counter()
        text = reply_text(reply, self.url)
        exact = reply_action_ids(reply, self.url)
        try:
            if exact is not None:
                ids = extract_action_ids(exact, self.action_tokenizer)
            else:
                ids = text_ids_to_action_ids(text, self.text_tokenizer, self.action_tokenizer)
        except ActionContractError as exc:
            raise PolicyError(f"{self.url}: reply {text[:200]!r} is not one action: {exc}") from None
        return Prediction(token_ids=ids, text=text,
                          timings={"inference": t2 - t0, "encode": t1 - t0, "request": t2 - t1})

    def request_body(self, image: np.ndarray, instruction: str) -> dict[str, Any]:
        """The JSON body: system message, then a user message with the prompt text and the JPEG image
        (and ``user``: the robot's id, when set)."""
        body = {
            "model": self.model,
            "messages": [
                {"role": "system", "content": MAGMA_SYSTEM_PROMPT},
                {"role": "user", "content": [
                    {"type": "text", "text": self.profile.prompt(instruction)},
                    {"type": "image_url", "image_url": {"url": jpeg_data_url(image, self.profile.image_size)}},
                ]},
            ],
            "temperature": self.temperature,
            "stream": False,
        }
        if self.robot_id:
            body["user"] = self.robot_id
        return body

    def close(self) -> None:
        """Close the connection pool."""
        self._client.close()

    def _post(self, body: dict[str, Any]) -> Any:
        attempt = 0
        while True:
            last = attempt == MAX_RETRIES
            try:
                response = self._client.post(self.url, json=body)
            except httpx.TimeoutException:
                raise PolicyError(f"{self.url}: no answer within {self._timeout_s:g} s (request_timeout_s)") from None
            except httpx.TransportError as exc:
                if last:
                    raise PolicyError(f"{self.url}: connection failed after {attempt + 1} attempt(s): "
                                      f"{type(exc).__name__}: {exc}") from None
                time.sleep(_backoff(attempt, None))
                attempt += 1
                continue
            status = response.status_code
            if status == 200:
                try:
                    return response.json()
                except ValueError:
                    raise PolicyError(f"{self.url}: reply is not JSON: {response.text[:200]!r}") from None
            retryable = status == 429 or status >= 500
            if not retryable or last:
                tries = f" after {attempt + 1} attempt(s)" if retryable else ""
                raise PolicyError(f"{self.url}: HTTP {status}{tries}: {response.text[:200]!r}")
            time.sleep(_backoff(attempt, response.headers.get("retry-after")))
            attempt += 1


def chat_url(endpoint_url: str) -> str:
    """``{endpoint}/v1/chat/completions`` (an endpoint already ending in /v1 or the full path is kept)."""
    base = endpoint_url.strip().rstrip("/")
    if not base.startswith(("http://", "https://")):
        raise PolicyConfigError(f"endpoint_url: expected an http:// or https:// URL, got {endpoint_url!r}")
    if base.endswith(CHAT_PATH):
        return base
    if base.endswith("/v1"):
        return base + "/chat/completions"
    return base + CHAT_PATH


def reply_text(reply: Any, url: str) -> str:
    """``choices[0].message.content`` of a chat-completions reply, or ``PolicyError`` saying what is wrong."""
    try:
        content = reply["choices"][0]["message"]["content"]
    except (KeyError, IndexError, TypeError):
        raise PolicyError(f"{url}: reply has no choices[0].message.content: {str(reply)[:200]}") from None
    if not isinstance(content, str):
        raise PolicyError(f"{url}: choices[0].message.content is {type(content).__name__}, expected text")
    return content


def reply_action_ids(reply: Any, url: str) -> list[int] | None:
    """``choices[0].message.action_token_ids`` when the server sends the exact ids (``magma-ros serve``
    does: some action tokens are not valid UTF-8 on their own and do not survive the text)."""
    ids = reply["choices"][0]["message"].get("action_token_ids")
    if ids is None:
        return None
    if not isinstance(ids, list) or not all(isinstance(i, int) and not isinstance(i, bool) for i in ids):
        raise PolicyError(f"{url}: choices[0].message.action_token_ids must be a list of integers, "
                          f"got {str(ids)[:200]}")
    return ids


def jpeg_data_url(image: np.ndarray, size: tuple[int, int]) -> str:
    """``image`` resized to ``size`` (width, height) as a ``data:image/jpeg;base64,...`` URL."""
    from PIL import Image

    pil = Image.fromarray(np.ascontiguousarray(image), mode="RGB")
    if pil.size != tuple(size):
        pil = pil.resize(tuple(size), Image.BICUBIC)
    buf = io.BytesIO()
    pil.save(buf, format="JPEG", quality=JPEG_QUALITY)
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _backoff(attempt: int, retry_after: str | None) -> float:
    delay = BACKOFF_S * (2 ** attempt)
    if retry_after:
        try:
            delay = max(delay, float(retry_after))
        except ValueError:
            pass  # an HTTP-date Retry-After: keep our own backoff
    return min(delay, MAX_BACKOFF_S)


def create(config: BackendConfig, profile: RobotProfile) -> OpenAIPolicy:
    """Factory for ``backend: openai``: checks the endpoint, token variable, tokenizer and pillow."""
    if not config.endpoint_url:
        raise PolicyConfigError("endpoint_url: required for backend openai (e.g. http://gpu-box:8000)")
    if not config.tokenizer:
        raise PolicyConfigError("tokenizer: required for backend openai (tokenizer.json or a model directory "
                                "holding one) to turn the reply text into action ids")
    api_key = None
    if config.api_key_env:
        api_key = os.environ.get(config.api_key_env, "")
        if not api_key:
            raise PolicyConfigError(f"api_key_env: environment variable {config.api_key_env} is not set or empty")
    try:
        import PIL  # noqa: F401 - fail early: JPEG encoding of camera images needs it
    except ImportError:
        raise PolicyConfigError("backend openai needs pillow to encode images: pip install pillow") from None
    try:
        text_tokenizer = TextTokenizer(config.tokenizer)
    except ActionContractError as exc:
        raise PolicyConfigError(f"tokenizer: {exc}") from None
    if text_tokenizer.base_vocab_size <= ActionTokenizer().n_bins:
        raise PolicyConfigError(f"tokenizer: {text_tokenizer.path} has a base vocabulary of "
                                f"{text_tokenizer.base_vocab_size}, too small to hold the action ids")
    return OpenAIPolicy(config.endpoint_url, config.model, profile, text_tokenizer, api_key=api_key,
                        temperature=config.temperature, timeout_s=config.request_timeout_s, robot_id=config.robot_id)
