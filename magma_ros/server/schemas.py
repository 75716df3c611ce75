"""Request bodies (pydantic) and the error text for their validation failures."""
from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, ValidationError, model_validator

MAX_ACTION_TEXT_CHARS = 512  # seven action tokens are a few dozen bytes


class _Lenient(BaseModel):
    """OpenAI clients send fields this server does not use; they are ignored."""

    model_config = ConfigDict(extra="ignore")


class ImageURL(_Lenient):
    url: str = Field(min_length=1)
    detail: str | None = None


class ContentPart(_Lenient):
    """``{"type": "text", "text": ...}`` or ``{"type": "image_url", "image_url": {"url": ...}}``."""

    type: Literal["text", "image_url"]
    text: str | None = None
    image_url: ImageURL | None = None

    @model_validator(mode="after")
    def _has_its_field(self) -> "ContentPart":
        if getattr(self, self.type) is None:
            raise ValueError(f"a {self.type!r} part needs a {self.type!r} field")
        return self


class ChatMessage(_Lenient):
    role: Literal["system", "developer", "user", "assistant"]
    content: str | list[ContentPart] | None = None


class StreamOptions(_Lenient):
    include_usage: StrictBool = False


class ChatCompletionRequest(_Lenient):
    model: str | None = None
    messages: list[ChatMessage] = Field(min_length=1)
    temperature: float = Field(default=0.0, ge=0.0, le=2.0, allow_inf_nan=False)
    top_p: float = Field(default=1.0, gt=0.0, le=1.0, allow_inf_nan=False)
    max_tokens: int | None = Field(default=None, ge=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)
    n: int = Field(default=1, ge=1, le=1)
    stream: StrictBool = False
    stream_options: StreamOptions | None = None
    user: str | None = None  # the robot's identity when no X-Robot-Id header is sent


class ActionTokensRequest(BaseModel):
    """``{"text", "robot_type"}`` or ``{"text", "normalization_stats"}``."""

    model_config = ConfigDict(extra="forbid")

    text: str = Field(max_length=MAX_ACTION_TEXT_CHARS)
    robot_type: str | None = None
    normalization_stats: Any = None  # validated by NormalizationStats.from_mapping, as everywhere else


def describe_validation_error(exc: ValidationError) -> tuple[str, str | None]:
    """One readable line naming each failing field, and the first field's path.

    For ``content: str | list[...]`` pydantic reports a failure per union member; when the client
    sent a list, only the list member's errors are kept. Member labels are left out of paths.
    """
    errors = exc.errors(include_url=False)
    list_branches = {err["loc"][:i] for err in errors for i, item in enumerate(err["loc"][:-1])
                     if _is_list_label(item)}
    parts, first = [], None
    for err in errors:
        loc = err["loc"]
        if loc and loc[-1] == "str" and loc[:-1] in list_branches:
            continue
        path = _path(loc)
        first = first or path
        parts.append(f"{path or 'body'}: {err['msg']}")
    return "; ".join(parts), first


def _is_list_label(item: Any) -> bool:
    return isinstance(item, str) and item.startswith("list[")


def _path(loc: tuple) -> str:
    out = ""
    for item in loc:
        if isinstance(item, int):
            out += f"[{item}]"
        elif item == "str" or _is_list_label(item):
            continue
        else:
            out += f".{item}" if out else str(item)
    return out
