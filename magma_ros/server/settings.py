"""Server options that are not backend options: network, auth, limits, queue, image fetching."""
from __future__ import annotations

import math
from dataclasses import dataclass


class SettingsError(ValueError):
    """An invalid server option (a user error)."""


@dataclass(frozen=True)
class ServerSettings:
    """Validated options of ``magma-ros serve`` (see ``commands/serve.py`` for the help text)."""

    host: str = "127.0.0.1"
    port: int = 8000
    served_model_name: str = "magma"
    auth_token: str | None = None          # the bearer token itself (read from --auth-token-env)
    max_body_bytes: int = 8 * 1024 * 1024
    queue_depth: int = 8                   # requests waiting for the model, not counting the one running
    timeout_s: float = 60.0                # per request, from arrival to the last byte of the answer
    max_tokens_limit: int = 1024           # largest max_tokens a client may ask for
    allowed_image_hosts: tuple[str, ...] = ()   # http(s) image URLs are fetched only from these hosts
    image_fetch_max_bytes: int = 8 * 1024 * 1024
    image_fetch_timeout_s: float = 5.0
    max_image_pixels: int = 4096 * 4096
    max_text_chars: int = 65536            # characters of message text per chat request, checked before tokenizing
    max_json_depth: int = 32               # nesting levels of a request body
    action_prompts: tuple[str, ...] = ()   # templates with {instruction} marking action requests; empty = built-in profiles'
    max_batch_size: int = 8                # action requests decoded together; 1 = no batching
    batch_window_ms: float = 5.0           # how long the first action request waits for others to join its batch

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
            if template.count("{instruction}") != 1:
                raise SettingsError(f"action prompt {template!r}: must contain {{instruction}} exactly once")
        hosts = tuple(h.strip().lower() for h in self.allowed_image_hosts)
        if any(not h or "/" in h or "@" in h for h in hosts):
            raise SettingsError(f"allowed image hosts: give bare host names or host:port, got {list(self.allowed_image_hosts)}")
        object.__setattr__(self, "allowed_image_hosts", hosts)
