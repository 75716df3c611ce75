"""Request bodies: read within a byte limit, parsed as JSON, bounded in shape, validated as a schema."""
from __future__ import annotations

import json
import re
from typing import Any

from fastapi import Request
from pydantic import BaseModel, ValidationError
from starlette.requests import ClientDisconnect

from ..errors import one_line
from .errors import ApiError, ClientGone
from .schemas import describe_validation_error

INLINE_BODY_BYTES = 16 * 1024  # smaller bodies are parsed on the event loop (cheaper than a thread hop)
MAX_JSON_ITEMS = 1024  # items of one JSON array or keys of one object, checked before field validation
_SURROGATE = re.compile("[\ud800-\udfff]")


async def read_body(request: Request, limit: int) -> bytes:
    """At most ``limit`` bytes of body: 413 otherwise, 400 when empty, ``ClientGone`` when the client
    closes the connection before sending all of it."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise ApiError(413, f"request body is {declared} bytes, more than this server's limit of {limit}")
    raw = bytearray()
    try:
        async for chunk in request.stream():
            raw += chunk
            if len(raw) > limit:
                raise ApiError(413, f"request body is more than this server's limit of {limit} bytes")
    except ClientDisconnect:
        raise ClientGone() from None
    if not raw:
        raise ApiError(400, "request body is empty; expected a JSON object")
    return bytes(raw)


def parse_body(raw: bytes, model: type[BaseModel], max_depth: int) -> Any:
    """The JSON body as ``model``: 400 for malformed JSON, too deep nesting or invalid text, 422 for
    invalid fields (CPU work: large bodies call this off the event loop)."""
    try:
        data = json.loads(raw)
    except UnicodeDecodeError:
        raise ApiError(400, "malformed JSON body: not UTF-8 text") from None
    except json.JSONDecodeError as exc:
        raise ApiError(400, f"malformed JSON body: {exc.msg} at line {exc.lineno} column {exc.colno}") from None
    except RecursionError:
        raise ApiError(400, f"malformed request: JSON nested more than {max_depth} levels deep") from None
    except ValueError as exc:  # e.g. an integer with more digits than Python converts
        raise ApiError(400, f"malformed JSON body: {one_line(exc)[:200]}") from None
    if not isinstance(data, dict):
        raise ApiError(400, f"malformed request: expected a JSON object, got {type(data).__name__}")
    _check_tree(data, max_depth)
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        message, param = describe_validation_error(exc)
        raise ApiError(422, message, param=param) from None


def _check_tree(data: dict, max_depth: int) -> None:
    """400 naming the place of the first value nested deeper than ``max_depth``, of an array or object
    with more than ``MAX_JSON_ITEMS`` entries, or of a string holding a lone surrogate (``"\\ud800"`` is
    valid JSON but not text). Bounds the cost of field validation; leaves cost no allocation."""
    stack: list[tuple[Any, str, int]] = [(data, "", 1)]
    while stack:
        value, where, depth = stack.pop()
        if depth > max_depth:
            raise ApiError(400, f"{where}: JSON nested more than {max_depth} levels deep", param=where)
        if len(value) > MAX_JSON_ITEMS:
            raise ApiError(400, f"{where or 'body'}: {len(value)} entries, more than this server's limit of "
                                f"{MAX_JSON_ITEMS}", param=where or None)
        for key, item in (value.items() if isinstance(value, dict) else enumerate(value)):
            if isinstance(key, str) and _bad_text(key):
                raise ApiError(400, f"{where or 'body'}: a key holds a lone surrogate (not valid Unicode text)",
                               param=where or None)
            if isinstance(item, str):
                if _bad_text(item):
                    path = _child(where, key)
                    raise ApiError(400, f"{path}: string holds a lone surrogate (not valid Unicode text)", param=path)
            elif isinstance(item, (dict, list)):
                stack.append((item, _child(where, key), depth + 1))


def _bad_text(text: str) -> bool:
    return not text.isascii() and _SURROGATE.search(text) is not None


def _child(where: str, key: str | int) -> str:
    if isinstance(key, int):
        return f"{where}[{key}]"
    return f"{where}.{key}" if where else key
