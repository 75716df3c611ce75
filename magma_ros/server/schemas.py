"""Request bodies (pydantic) and the error text for their validation failures."""
from __future__ import annotations

from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, ValidationError


class _Lenient(BaseModel):
    """OpenAI clients send fields this server does not use; they are ignored."""

    model_config = ConfigDict(extra="ignore")


class TextPart(_Lenient):
    type: Literal["text"]
    text: str


class ImageURL(_Lenient):
    url: str = Field(min_length=1)
    detail: str | None = None


class ImagePart(_Lenient):
    type: Literal["image_url"]
    image_url: ImageURL


ContentPart = Annotated[Union[TextPart, ImagePart], Field(discriminator="type")]


class ChatMessage(_Lenient):
    role: Literal["system", "developer", "user", "assistant"]
    content: str | list[ContentPart] | None = None


class StreamOptions(_Lenient):
    include_usage: bool = False


class ChatCompletionRequest(_Lenient):
    model: str | None = None
    messages: list[ChatMessage] = Field(min_length=1)
    temperature: float = Field(default=0.0, ge=0.0, le=2.0, allow_inf_nan=False)
    top_p: float = Field(default=1.0, gt=0.0, le=1.0, allow_inf_nan=False)
    max_tokens: int | None = Field(default=None, ge=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)
    n: int = Field(default=1, ge=1, le=1)
    stream: bool = False
    stream_options: StreamOptions | None = None


class StatsBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    mask: list[Any]
    q01: list[Any]
    q99: list[Any]


class ActionTokensRequest(BaseModel):
    """``{"text", "robot_type"}`` or ``{"text", "normalization_stats"}``."""

    model_config = ConfigDict(extra="forbid")

    text: str
    robot_type: str | None = None
    normalization_stats: StatsBody | None = None


def describe_validation_error(exc: ValidationError) -> tuple[str, str | None]:
    """One readable line naming each failing field, and the first field's path."""
    parts, first = [], None
    for err in exc.errors(include_url=False):
        path = _path(err["loc"])
        first = first or path
        parts.append(f"{path or 'body'}: {err['msg']}")
    return "; ".join(parts), first


def _path(loc: tuple) -> str:
    out = ""
    for item in loc:
        if isinstance(item, int):
            out += f"[{item}]"
        elif item in ("str", "list[tagged-union[TextPart,ImagePart]]"):
            continue  # pydantic names union members in the location; the field path is enough
        else:
            out += f".{item}" if out else str(item)
    return out
