"""Server options that are not backend options (network, auth, limits, queue, image fetching): the
option tables of ``magma-ros serve`` and the validated ``ServerSettings`` they make."""
from __future__ import annotations

import argparse
import math
from dataclasses import dataclass

from ..actions.profiles import prompt_template_problem
from ..options import Option, add_arguments, defaults
from ..policy.cli_options import add_backend_arguments

LOG_LEVELS = ("debug", "info", "warning", "error")
NETWORK_OPTIONS: tuple[Option, ...] = (
    Option("host", "127.0.0.1", "address to listen on; 0.0.0.0 for all interfaces: then set --auth-token-env"),
    Option("port", 8000, "TCP port", range=(1, 65535)),
    Option("served_model_name", "", "model name in /v1/models and in responses (requests may name any model); "
           "empty = the --model value"),
    Option("no_model", False, "load no model: serve only /v1/action-tokens, /v1/models and /health (needs "
           "--tokenizer)"),
    Option("action_prompt", [], "prompt template marking an action request, checked as a robot profile's "
           "prompt_template ({instruction} exactly once, no other field, {{ and }} for literal braces); "
           "default: the built-in robot profiles' 'What action should the robot take to {instruction}?' (add "
           "your robot profile's prompt_template here if it differs)",
           type=str, repeated=True, metavar="TEMPLATE"),
    Option("robot", [], "robot profile (built-in name or YAML path, e.g. a fine-tuned model's robot.yaml) that "
           "/v1/action-tokens accepts as robot_type under its name; its prompt_template also marks action "
           "requests (besides the built-in ones, unless --action-prompt is given)",
           type=str, repeated=True, metavar="PROFILE"),
    Option("log_level", "info", "log level; access logs are JSON lines at info", choices=LOG_LEVELS),
)
LIMIT_OPTIONS: tuple[Option, ...] = (
    Option("auth_token_env", "", "require 'Authorization: Bearer <token>' on /v1/*, the token being the value of "
           "environment variable NAME; empty = no auth", metavar="NAME"),
    Option("max_body_bytes", 8 * 1024 * 1024, "largest request body accepted, else 413"),
    Option("queue_depth", 8, "requests that may wait for the model (at least 1; not counting the ones running); "
           "more get 503 + Retry-After"),
    Option("max_batch_size", 8, "action requests decoded together in one batch; 1 turns batching off",
           range=(1, 256)),
    Option("batch_window_ms", 5.0, "how long the first action request of a batch waits for others to join it, "
           "when others are in flight (being prepared, or the last batch had several); no wait once "
           "--max-batch-size requests are waiting", range=(0.0, 1000.0)),
    Option("timeout_s", 60.0, "per-request limit from arrival to answer, else 504; a request still waiting is "
           "dropped, a running generation is stopped"),
    Option("max_tokens_limit", 1024, "largest max_tokens a client may request (a request without one gets 256, "
           "or this limit if lower)"),
    Option("max_text_chars", 65536, "characters of message text a chat request may carry, checked before "
           "tokenizing; the prompt's tokens plus max_tokens must also fit the model's context, else 400"),
    Option("max_json_depth", 32, "nesting levels a request body may have, else 400"),
    Option("max_image_pixels", 4096 * 4096, "largest image (width x height) decoded, else 400"),
    Option("max_decoded_pixels", 4 * 4096 * 4096, "image pixels decoded and held at once by all requests (from "
           "decoding until the model is done with them); an image that does not fit gets 503 + Retry-After before "
           "it is decoded; at least --max-image-pixels. Bounds the memory of images (see docs/serve.md)"),
    Option("allow_image_host", [], "fetch http(s) image URLs from this host; by default only data: URLs are "
           "accepted, as fetching would let any client make the server request any address",
           type=str, repeated=True, metavar="HOST[:PORT]"),
    Option("image_fetch_max_bytes", 8 * 1024 * 1024, "largest image fetched from an allowed host"),
    Option("image_fetch_timeout_s", 5.0, "time limit for fetching one image (s)"),
)
SERVE_OPTIONS = NETWORK_OPTIONS + LIMIT_OPTIONS  # plus the backend options
_DEFAULT = defaults(SERVE_OPTIONS)


def add_serve_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``magma-ros serve``: network, security and limits, policy backend."""
    add_arguments(parser.add_argument_group("network"), NETWORK_OPTIONS)
    add_arguments(parser.add_argument_group("security and limits"), LIMIT_OPTIONS)
    add_backend_arguments(parser)


class SettingsError(ValueError):
    """An invalid server option (a user error)."""


@dataclass(frozen=True)
class ServerSettings:
    """Validated options of ``magma-ros serve`` (meanings and defaults: ``SERVE_OPTIONS``)."""

    host: str = _DEFAULT["host"]
    port: int = _DEFAULT["port"]
    served_model_name: str = "magma"       # the command passes --served-model-name or --model
    auth_token: str | None = None          # the bearer token itself (read from --auth-token-env)
    max_body_bytes: int = _DEFAULT["max_body_bytes"]
    queue_depth: int = _DEFAULT["queue_depth"]
    timeout_s: float = _DEFAULT["timeout_s"]
    max_tokens_limit: int = _DEFAULT["max_tokens_limit"]
    allowed_image_hosts: tuple[str, ...] = ()   # --allow-image-host: http(s) image URLs are fetched only from these
    image_fetch_max_bytes: int = _DEFAULT["image_fetch_max_bytes"]
    image_fetch_timeout_s: float = _DEFAULT["image_fetch_timeout_s"]
    max_image_pixels: int = _DEFAULT["max_image_pixels"]
    max_decoded_pixels: int = _DEFAULT["max_decoded_pixels"]
    max_text_chars: int = _DEFAULT["max_text_chars"]
    max_json_depth: int = _DEFAULT["max_json_depth"]
    action_prompts: tuple[str, ...] = ()   # --action-prompt templates; empty = the built-in profiles'
    max_batch_size: int = _DEFAULT["max_batch_size"]
    batch_window_ms: float = _DEFAULT["batch_window_ms"]
    robot_profiles: tuple[str, ...] = ()  # --robot: profiles (names or paths) loaded at start for robot_type

    def __post_init__(self) -> None:
        if not 0 < self.port < 65536:
            raise SettingsError(f"port: must be 1..65535, got {self.port}")
        if not self.served_model_name:
            raise SettingsError("served_model_name: must not be empty")
        if self.auth_token is not None and not self.auth_token:
            raise SettingsError("auth token: must not be empty")
        for name in ("max_body_bytes", "max_tokens_limit", "image_fetch_max_bytes", "max_image_pixels",
                     "max_text_chars", "max_json_depth"):
            if getattr(self, name) < 1:
                raise SettingsError(f"{name}: must be >= 1, got {getattr(self, name)}")
        if self.max_decoded_pixels < self.max_image_pixels:
            raise SettingsError(f"max_decoded_pixels: must be at least max_image_pixels ({self.max_image_pixels}), "
                                "else the largest image accepted could never be decoded; "
                                f"got {self.max_decoded_pixels}")
        if not 1 <= self.max_batch_size <= 256:
            raise SettingsError(f"max_batch_size: must be in 1..256 (1 = no batching), got {self.max_batch_size}")
        if not math.isfinite(self.batch_window_ms) or not 0 <= self.batch_window_ms <= 1000:
            raise SettingsError(f"batch_window_ms: must be in 0..1000, got {self.batch_window_ms}")
        if self.queue_depth < 1:
            raise SettingsError(f"queue_depth: must be >= 1 (0 would refuse every request), got {self.queue_depth}")
        for name in ("timeout_s", "image_fetch_timeout_s"):
            value = getattr(self, name)
            if not math.isfinite(value) or value <= 0:
                raise SettingsError(f"{name}: must be > 0, got {value}")
        for template in self.action_prompts:
            problem = prompt_template_problem(template)
            if problem:
                raise SettingsError(f"action prompt {template[:200]!r}: {problem}")
        hosts = tuple(h.strip().lower() for h in self.allowed_image_hosts)
        if any(not h or "/" in h or "@" in h for h in hosts):
            raise SettingsError("allowed image hosts: give bare host names or host:port, "
                                f"got {list(self.allowed_image_hosts)}")
        object.__setattr__(self, "allowed_image_hosts", hosts)


def builtin_prompt_templates() -> list[str]:
    """The prompt templates of the built-in robot profiles: the action prompts serve knows by default."""
    from ..actions import builtin_profiles

    return [profile.prompt_template for profile in builtin_profiles().values()]
