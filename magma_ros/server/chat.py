"""Chat completions: request -> model job -> OpenAI response objects.

An action request (the last user message is a robot prompt such as "What action should the
robot take to pick up the cup?" and the request carries an image) runs the constrained
7-action-token path and answers the action token text, as the hosted Magma endpoint does. Any
other request generates text freely with the client's temperature, top_p and max_tokens.
"""
from __future__ import annotations

import contextlib
import logging
import string
import time
import uuid
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Protocol, Sequence

import anyio
import numpy as np

from ..actions import ACTION_DIM, TextTokenizer
from ..policy.base import PolicyError
from .decoding import ActionTokenService
from .errors import ApiError
from .images import ImageLoader, PixelHold
from .schemas import ChatCompletionRequest
from .worker import Job

LOG = logging.getLogger("magma_ros.server")
MESSAGE_TOKENS = 5  # a chat template's tokens around each message (role header, end of turn), Llama-3 style


class ModelRunner(Protocol):
    """What the server needs from the model runtime (``magma_ros.policy.vlm.VLMRunner``)."""

    vocab_size: int
    model_name: str
    max_context_tokens: int    # prompt plus generated tokens the model can attend to (known at load)

    def prepare_action(self, image: Any, prompt: str, temperature: float) -> Any:
        """An action request's model inputs, built in the request's own thread (any thread)."""

    def decode_actions(self, prepared: list[Any]) -> list[Sequence[int]]:
        """7 action ids per prepared request, decoded together (in the model worker's thread)."""

    def generate_text(self, image: Any, messages: list[dict], max_new_tokens: int, temperature: float,
                      top_p: float) -> Iterator[str]: ...

    def count_tokens(self, text: str) -> int: ...

    def close(self) -> None: ...


@dataclass
class PreparedChat:
    """A validated chat request in the runtime's terms."""

    messages: list[dict[str, str]]
    image: np.ndarray | None
    action_prompt: str | None        # set for action requests
    max_new_tokens: int
    temperature: float
    top_p: float


@dataclass(frozen=True)
class ChatLimits:
    """Per-request bounds checked before any model work."""

    max_tokens: int            # largest max_tokens a client may ask for
    default_max_tokens: int    # used when the client gives none
    max_text_chars: int        # characters of message text, checked before tokenizing
    context_tokens: int        # the model's context: prompt tokens + max_tokens must fit


@dataclass
class ChatResult:
    """What the worker produced."""

    text: str
    finish_reason: str
    prompt_tokens: int
    completion_tokens: int
    action_ids: list[int] | None = None


def _literal_head_and_tail(template: str) -> tuple[str, str]:
    """The text before and after ``{instruction}`` in the prompt ``template`` formats to."""
    head, tail, seen = [], [], False
    for literal, field, _, _ in string.Formatter().parse(template):
        (tail if seen else head).append(literal)
        seen = seen or field is not None
    return "".join(head), "".join(tail)


class ActionPromptMatcher:
    """Recognises a robot prompt: any template with ``{instruction}`` filled in by at least one
    character, case-insensitive, surrounding whitespace ignored. Linear in the text's length.
    Templates are checked ones (``prompt_template_problem``); ``{{`` and ``}}`` match the single
    braces the formatted prompt holds."""

    def __init__(self, templates: Sequence[str]) -> None:
        self._parts = [tuple(part.strip().casefold() for part in _literal_head_and_tail(template))
                       for template in dict.fromkeys(templates)]

    def matches(self, text: str) -> bool:
        """True when ``text`` (already stripped) is one of the templates with an instruction."""
        for head, tail in self._parts:
            if len(text) < len(head) + len(tail) + 1:
                continue
            end = len(text) - len(tail)
            if text[:len(head)].casefold() == head and text[end:].casefold() == tail:
                return True
        return False


class ChatPreparer:
    """Validates messages, checks the request's size against the model, loads the (single) image
    and recognises action requests."""

    def __init__(self, images: ImageLoader, matcher: ActionPromptMatcher, text_tokenizer: TextTokenizer,
                 limits: ChatLimits) -> None:
        self._images = images
        self._matcher = matcher
        self._tokenizer = text_tokenizer
        self._limits = limits

    async def prepare(self, request: ChatCompletionRequest, hold: PixelHold) -> PreparedChat:
        """The request in runtime terms; 400/422 ``ApiError`` naming the field otherwise.

        Cheap checks first (structure, max_tokens, characters), then the prompt's token count
        against the model's context, off the event loop; the image is decoded last, its pixels
        added to ``hold`` (503 when the server's pixel budget is spent).
        """
        limits = self._limits
        requested = request.max_completion_tokens or request.max_tokens
        field_name = "max_completion_tokens" if request.max_completion_tokens else "max_tokens"
        if requested is not None and requested > limits.max_tokens:
            raise ApiError(422, f"{field_name}: at most {limits.max_tokens} on this server, got {requested}",
                           param=field_name)
        messages: list[dict[str, str]] = []
        image_url: tuple[str, str] | None = None
        for i, message in enumerate(request.messages):
            role = "system" if message.role == "developer" else message.role
            if isinstance(message.content, list):
                texts = []
                for j, part in enumerate(message.content):
                    where = f"messages[{i}].content[{j}].image_url.url"
                    if part.type == "image_url":
                        if role != "user":
                            raise ApiError(422, f"messages[{i}]: images are only accepted in user messages",
                                           param=f"messages[{i}].content")
                        if image_url is not None:
                            raise ApiError(422, f"{where}: only one image per request is supported", param=where)
                        image_url = (part.image_url.url, where)
                    else:
                        texts.append(part.text)
                content = "\n".join(texts)
            else:
                content = message.content or ""
            messages.append({"role": role, "content": content})
        if messages[-1]["role"] != "user":
            raise ApiError(422, f"messages[{len(messages) - 1}].role: the last message must be from the user",
                           param=f"messages[{len(messages) - 1}].role")
        chars = sum(len(m["content"]) for m in messages)
        if chars > limits.max_text_chars:
            raise ApiError(400, f"messages: {chars} characters of text, more than this server's limit of "
                                f"{limits.max_text_chars}", param="messages")
        last = messages[-1]["content"].strip()
        is_action = image_url is not None and self._matcher.matches(last)
        max_new_tokens = ACTION_DIM if is_action else requested or min(limits.default_max_tokens, limits.max_tokens)
        prompt_tokens = await anyio.to_thread.run_sync(self._count_tokens, messages)
        if prompt_tokens + max_new_tokens > limits.context_tokens:
            raise ApiError(400, f"messages: at least {prompt_tokens} prompt tokens plus {max_new_tokens} to generate "
                                f"is more than the model's context of {limits.context_tokens} tokens", param="messages")
        image = None if image_url is None else await self._images.load(*image_url, hold)
        return PreparedChat(messages=messages, image=image, action_prompt=last if is_action else None,
                            max_new_tokens=max_new_tokens, temperature=request.temperature, top_p=request.top_p)

    def _count_tokens(self, messages: list[dict[str, str]]) -> int:
        """Prompt tokens of the messages' text and chat-template framing (image tokens not counted);
        stops counting once over the context."""
        total = 0
        for message in messages:
            total += MESSAGE_TOKENS + len(self._tokenizer.encode(message["content"]))
            if total > self._limits.context_tokens:
                break
        return total


@dataclass
class ActionItem:
    """An action request ready for the model worker (its part in a batch): the runtime's prepared
    inputs, the robot prompt and where its text goes."""

    prepared: Any
    prompt: str
    emit: Callable[[str], None]


def prepare_action(chat: PreparedChat, runner: ModelRunner, emit: Callable[[str], None]) -> ActionItem:
    """The action request ``chat`` made ready for the worker; runs in the request's own thread, so
    that tokenizing and image processing of a batch's members overlap instead of queueing on the
    model thread."""
    return ActionItem(runner.prepare_action(chat.image, chat.action_prompt, chat.temperature), chat.action_prompt,
                      emit)


def action_job(item: ActionItem, runner: ModelRunner, actions: ActionTokenService) -> Callable[[Job], ChatResult]:
    """The worker-thread function for one action request decoded alone."""

    def run(job: Job) -> ChatResult:
        return _action_result(runner.decode_actions([item.prepared])[0], item, runner, actions)

    return run


def text_job(chat: PreparedChat, runner: ModelRunner, emit: Callable[[str], None]) -> Callable[[Job], ChatResult]:
    """The worker-thread function for free-form generation; ``emit`` receives each piece of text."""

    def run(job: Job) -> ChatResult:
        pieces = []
        stream = runner.generate_text(chat.image, chat.messages, chat.max_new_tokens, chat.temperature, chat.top_p)
        with contextlib.closing(stream):  # closing stops the generation
            for piece in stream:
                if job.stopped:  # client gone or deadline passed: closing the stream ends the generation
                    break
                if piece:
                    pieces.append(piece)
                    emit(piece)
        text = "".join(pieces)
        # The runtime streams text, not ids: re-tokenizing may count more tokens than were generated.
        counted = runner.count_tokens(text) if text else 0
        prompt = runner.count_tokens("\n".join(m["content"] for m in chat.messages))
        return ChatResult(text=text, finish_reason="length" if counted >= chat.max_new_tokens else "stop",
                          prompt_tokens=prompt, completion_tokens=min(counted, chat.max_new_tokens))

    return run


def action_batch_runner(runner: ModelRunner, actions: ActionTokenService) -> Callable[[list[Job]], list[Any]]:
    """The worker's ``run_batch`` for action jobs (``Job.batch_item`` an ``ActionItem``): one batched
    decode through ``runner.decode_actions``, then each member's result or its own error."""

    def run(jobs: list[Job]) -> list[Any]:
        items: list[ActionItem] = [job.batch_item for job in jobs]
        out: list[Any] = []
        for item, row in zip(items, runner.decode_actions([item.prepared for item in items])):
            try:
                out.append(_action_result(row, item, runner, actions))
            except PolicyError as exc:
                out.append(exc)
        return out

    return run


def _action_result(ids: Any, item: ActionItem, runner: ModelRunner, actions: ActionTokenService) -> ChatResult:
    """The answer to an action request from the runtime's ids (checked: 7 action ids)."""
    ids = np.asarray(ids, dtype=np.int64)
    if ids.shape != (ACTION_DIM,) or not actions.tokenizer.is_action_id(ids).all():
        raise PolicyError(f"model runtime returned {ids.tolist()}, not {ACTION_DIM} action token ids")
    text = actions.ids_to_text(ids)
    if not np.array_equal(actions.text_tokenizer.encode(text), ids):
        LOG.warning("action ids %s decode to text that re-tokenizes differently; clients that decode the text "
                    "will reject it (the reply's action_token_ids are exact)", ids.tolist())
    item.emit(text)
    return ChatResult(text=text, finish_reason="stop", prompt_tokens=runner.count_tokens(item.prompt),
                      completion_tokens=int(ids.size), action_ids=ids.tolist())


class ResponseBuilder:
    """OpenAI ``chat.completion`` and ``chat.completion.chunk`` objects for one request."""

    def __init__(self, model: str) -> None:
        self.id = f"chatcmpl-{uuid.uuid4().hex}"
        self.created = int(time.time())
        self.model = model

    def completion(self, result: ChatResult) -> dict[str, Any]:
        """The whole answer."""
        message: dict[str, Any] = {"role": "assistant", "content": result.text}
        if result.action_ids is not None:
            message["action_token_ids"] = result.action_ids  # extension: exact ids, text may not round-trip
        return {"id": self.id, "object": "chat.completion", "created": self.created, "model": self.model,
                "choices": [{"index": 0, "message": message, "finish_reason": result.finish_reason,
                             "logprobs": None}],
                "usage": _usage(result)}

    def chunk(self, delta: dict[str, Any], finish_reason: str | None = None) -> dict[str, Any]:
        """One streamed delta."""
        return {"id": self.id, "object": "chat.completion.chunk", "created": self.created, "model": self.model,
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason, "logprobs": None}]}

    def usage_chunk(self, result: ChatResult) -> dict[str, Any]:
        """The final chunk with usage (``stream_options.include_usage``)."""
        return {"id": self.id, "object": "chat.completion.chunk", "created": self.created, "model": self.model,
                "choices": [], "usage": _usage(result)}


def _usage(result: ChatResult) -> dict[str, int]:
    return {"prompt_tokens": result.prompt_tokens, "completion_tokens": result.completion_tokens,
            "total_tokens": result.prompt_tokens + result.completion_tokens}
