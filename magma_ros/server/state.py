"""What the endpoints of one server share: settings, model runtime and worker, budgets, metrics, auth."""
from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from ..policy.base import PolicyError
from .auth import BearerAuth
from .chat import ActionPromptMatcher, ChatLimits, ChatPreparer, ModelRunner, action_batch_runner
from .decoding import ActionTokenService
from .errors import ApiError
from .images import ImageLoader, PixelBudget
from .robots import RobotMetrics
from .settings import ServerSettings, builtin_prompt_templates
from .worker import ModelWorker

DEFAULT_MAX_TOKENS = 256


@dataclass
class ServerState:
    """The server's parts, built once by ``ServerState.build`` and held by the app (``app.state.server``)."""

    settings: ServerSettings
    actions: ActionTokenService
    runner: ModelRunner | None         # None: --no-model (action tokens, models and health only)
    worker: ModelWorker | None         # runs the model's jobs; None without a model
    pixels: PixelBudget                # decoded image pixels held at once by all requests
    metrics: RobotMetrics
    auth: BearerAuth
    preparer: ChatPreparer
    # One large body parsed at a time: json.loads holds the GIL, so parallel parses would add up
    # to a long pause of the event loop.
    parse_slot: asyncio.Semaphore = field(default_factory=lambda: asyncio.Semaphore(1))

    @classmethod
    def build(cls, settings: ServerSettings, actions: ActionTokenService, runner: ModelRunner | None) -> "ServerState":
        """The state for ``settings``; ``PolicyError`` when the model's context length is unknown."""
        if runner is not None and not runner.max_context_tokens > 0:
            raise PolicyError(f"model {runner.model_name}: its context length is unknown (max_context_tokens "
                              f"{runner.max_context_tokens!r}), so prompts cannot be bounded")
        worker = _model_worker(settings, actions, runner) if runner is not None else None
        limits = ChatLimits(max_tokens=settings.max_tokens_limit, default_max_tokens=DEFAULT_MAX_TOKENS,
                            max_text_chars=settings.max_text_chars,
                            context_tokens=runner.max_context_tokens if runner is not None else 0)
        templates = settings.action_prompts or tuple(builtin_prompt_templates())
        preparer = ChatPreparer(ImageLoader(settings), ActionPromptMatcher(templates), actions.text_tokenizer, limits)
        return cls(settings=settings, actions=actions, runner=runner, worker=worker,
                   pixels=PixelBudget(settings.max_decoded_pixels, lambda: worker.retry_after_s if worker else 1),
                   metrics=RobotMetrics(), auth=BearerAuth(settings.auth_token), preparer=preparer)

    def model(self) -> tuple[ModelRunner, ModelWorker]:
        """The runtime and its worker; 404 when this server runs without a model."""
        if self.runner is None or self.worker is None:
            raise ApiError(404, "chat completions are not served: this server runs with --no-model "
                                "(only /v1/action-tokens, /v1/models and /health)")
        return self.runner, self.worker


def _model_worker(settings: ServerSettings, actions: ActionTokenService, runner: ModelRunner) -> ModelWorker:
    """The worker; it batches action requests when allowed (``--max-batch-size`` > 1)."""
    return ModelWorker(settings.queue_depth, max_batch_size=settings.max_batch_size,
                       batch_window_s=settings.batch_window_ms / 1000.0,
                       run_batch=action_batch_runner(runner, actions) if settings.max_batch_size > 1 else None)
