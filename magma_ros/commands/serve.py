"""Serve the model over an OpenAI-compatible HTTP API, plus /v1/action-tokens and /health.

endpoints:
  POST /v1/chat/completions   chat completions (text and image_url parts, stream: true as SSE);
                              a robot prompt with an image answers 7 action tokens
  POST /v1/action-tokens      {"text", "robot_type" | "normalization_stats"} -> {"x", ..., "gripper"}
  GET  /v1/models             the served model
  GET  /v1/stats              per-robot requests, errors, 503s and latency (X-Robot-Id header or 'user')
  GET  /health                model loaded, queue depth, running batch (no auth)

examples:
  magma-ros serve --model microsoft/Magma-8B --device cuda --port 8000
  MAGMA_TOKEN=s3cret magma-ros serve --model /models/Magma-8B --auth-token-env MAGMA_TOKEN --host 0.0.0.0
  magma-ros serve --no-model --tokenizer /models/Magma-8B/tokenizer.json   # decoding only

One server runs one model in one worker thread (run one server per GPU; 'magma-ros fleet' runs
replicas on Ray Serve). Action requests arriving within --batch-window-ms of each other are decoded
together, up to --max-batch-size at once. When --queue-depth requests are already waiting, new
ones get 503 with Retry-After. Every request's cost is bounded
before model work starts: body size, JSON depth, text length, prompt tokens against the model's
context, image pixels; a request's --timeout-s deadline drops it if it is still waiting and stops
its generation if it is running.
"""
from __future__ import annotations

import argparse
import logging
import os
from pathlib import Path
from typing import Any

HELP = "serve the model over an OpenAI-compatible HTTP API with /v1/action-tokens"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``magma-ros serve``."""
    from ..policy.cli_options import add_backend_arguments
    from ..server.settings import ServerSettings

    d = ServerSettings()
    net = parser.add_argument_group("network")
    net.add_argument("--host", default=d.host, help=f"address to listen on (default: {d.host}; 0.0.0.0 for all "
                                                    "interfaces: then set --auth-token-env)")
    net.add_argument("--port", type=int, default=d.port, help=f"TCP port (default: {d.port})")
    net.add_argument("--served-model-name", default=None,
                     help="model name in /v1/models and in responses (default: the --model value)")
    net.add_argument("--no-model", action="store_true",
                     help="load no model: serve only /v1/action-tokens, /v1/models and /health (needs --tokenizer)")
    net.add_argument("--action-prompt", action="append", default=[], metavar="TEMPLATE",
                     help="prompt template marking an action request, with {instruction} (repeatable; default: "
                          "the built-in robot profiles' 'What action should the robot take to {instruction}?')")
    net.add_argument("--log-level", default="info", choices=("debug", "info", "warning", "error"),
                     help="log level; access logs are JSON lines at info (default: info)")
    sec = parser.add_argument_group("security and limits")
    sec.add_argument("--auth-token-env", default="", metavar="NAME",
                     help="require 'Authorization: Bearer <token>' on /v1/*, the token being the value of "
                          "environment variable NAME (default: no auth)")
    sec.add_argument("--max-body-bytes", type=int, default=d.max_body_bytes,
                     help=f"largest request body accepted, else 413 (default: {d.max_body_bytes})")
    sec.add_argument("--queue-depth", type=int, default=d.queue_depth,
                     help=f"requests that may wait for the model; more get 503 + Retry-After (default: {d.queue_depth})")
    sec.add_argument("--max-batch-size", type=int, default=d.max_batch_size,
                     help="action requests decoded together in one batch; 1 turns batching off "
                          f"(default: {d.max_batch_size})")
    sec.add_argument("--batch-window-ms", type=float, default=d.batch_window_ms,
                     help="how long the first action request of a batch waits for others to join it, when "
                          "others are in flight (being prepared, or the last batch had several); no wait once "
                          f"--max-batch-size requests are waiting (default: {d.batch_window_ms:g})")
    sec.add_argument("--timeout-s", type=float, default=d.timeout_s,
                     help=f"per-request limit from arrival to answer, else 504 (default: {d.timeout_s:g})")
    sec.add_argument("--max-tokens-limit", type=int, default=d.max_tokens_limit,
                     help=f"largest max_tokens a client may request (default: {d.max_tokens_limit})")
    sec.add_argument("--max-text-chars", type=int, default=d.max_text_chars,
                     help="characters of message text a chat request may carry, checked before tokenizing; the "
                          "prompt's tokens plus max_tokens must also fit the model's context, else 400 "
                          f"(default: {d.max_text_chars})")
    sec.add_argument("--max-json-depth", type=int, default=d.max_json_depth,
                     help=f"nesting levels a request body may have, else 400 (default: {d.max_json_depth})")
    sec.add_argument("--max-image-pixels", type=int, default=d.max_image_pixels,
                     help=f"largest image (width x height) decoded, else 400 (default: {d.max_image_pixels})")
    sec.add_argument("--allow-image-host", action="append", default=[], metavar="HOST[:PORT]",
                     help="fetch http(s) image URLs from this host (repeatable); by default only data: URLs "
                          "are accepted, as fetching would let any client make the server request any address")
    sec.add_argument("--image-fetch-max-bytes", type=int, default=d.image_fetch_max_bytes,
                     help=f"largest image fetched from an allowed host (default: {d.image_fetch_max_bytes})")
    sec.add_argument("--image-fetch-timeout-s", type=float, default=d.image_fetch_timeout_s,
                     help=f"time limit for fetching one image (default: {d.image_fetch_timeout_s:g})")
    add_backend_arguments(parser)


def run(args: argparse.Namespace) -> int:
    """Load the model (unless --no-model) and serve until interrupted."""
    import uvicorn

    logging.basicConfig(level=args.log_level.upper(), format="%(message)s")
    app, settings = build_app(args)
    uvicorn.run(app, host=settings.host, port=settings.port, access_log=False, log_level=args.log_level,
                timeout_graceful_shutdown=5)
    return 0


def build_app(args: argparse.Namespace) -> tuple[Any, Any]:
    """(the FastAPI app with its model loaded, its ``ServerSettings``) from serve's options;
    ``magma-ros fleet`` builds each Ray Serve replica with it."""
    from ..actions import TextTokenizer
    from ..errors import UserError
    from ..server.app import create_app
    from ..server.decoding import ActionTokenService

    settings, config = check_args(args)
    text_tokenizer = TextTokenizer(_tokenizer_file(config.tokenizer or config.model, config.revision))
    runner = None
    if not args.no_model:
        from ..policy.vlm import VLMRunner

        runner = VLMRunner.load(config)
        if runner.vocab_size != text_tokenizer.base_vocab_size:
            runner.close()
            raise UserError(f"--tokenizer {text_tokenizer.path}: base vocabulary {text_tokenizer.base_vocab_size} "
                            f"does not match the model's {runner.vocab_size}")
    actions = ActionTokenService(text_tokenizer, runner.vocab_size if runner else text_tokenizer.base_vocab_size)
    app = create_app(settings, actions, runner)
    logging.getLogger("magma_ros.server").info(
        "magma-ros serve: %s on http://%s:%d (auth %s, batches of up to %d)",
        "no model" if runner is None else settings.served_model_name, settings.host, settings.port,
        "on" if settings.auth_token else "off", settings.max_batch_size)
    return app, settings


def check_args(args: argparse.Namespace, read_token: bool = True) -> tuple[Any, Any]:
    """(``ServerSettings``, ``BackendConfig``) from serve's options, before anything is loaded;
    ``UserError`` naming the option otherwise. ``read_token`` False skips reading the auth token
    (a fleet's replicas read it where they run)."""
    from ..errors import UserError
    from ..policy.cli_options import backend_config_from_args
    from ..server.settings import ServerSettings, SettingsError

    token = None
    if args.auth_token_env and read_token:
        token = os.environ.get(args.auth_token_env, "")
        if not token:
            raise UserError(f"--auth-token-env: environment variable {args.auth_token_env} is unset or empty")
    config = backend_config_from_args(args)
    if config.backend != "magma":
        raise UserError(f"--backend: serve runs the model itself and supports only 'magma', got {config.backend!r}")
    try:
        settings = ServerSettings(
            host=args.host, port=args.port, served_model_name=args.served_model_name or config.model,
            auth_token=token, max_body_bytes=args.max_body_bytes, queue_depth=args.queue_depth,
            timeout_s=args.timeout_s, max_tokens_limit=args.max_tokens_limit,
            allowed_image_hosts=tuple(args.allow_image_host), image_fetch_max_bytes=args.image_fetch_max_bytes,
            image_fetch_timeout_s=args.image_fetch_timeout_s, action_prompts=tuple(args.action_prompt),
            max_text_chars=args.max_text_chars, max_json_depth=args.max_json_depth,
            max_image_pixels=args.max_image_pixels, max_batch_size=args.max_batch_size,
            batch_window_ms=args.batch_window_ms,
        )
    except SettingsError as exc:
        raise UserError(str(exc)) from None
    if args.no_model and not config.tokenizer:
        raise UserError("--no-model needs --tokenizer (a tokenizer.json or model directory)")
    return settings, config


def _tokenizer_file(source: str, revision: str) -> Path:
    """A tokenizer.json file or model directory as given, else a Hugging Face model id's tokenizer.json
    (from the local cache, or downloaded)."""
    path = Path(source).expanduser()
    if path.exists() or source.startswith((".", "/", "~")) or source.endswith(".json") or source.count("/") != 1:
        return path  # a path: TextTokenizer reports it clearly if it is not a tokenizer
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError

    try:
        return Path(hf_hub_download(repo_id=source, filename="tokenizer.json", revision=revision or None))
    except (HfHubHTTPError, LocalEntryNotFoundError, OSError, ValueError) as exc:
        from ..errors import UserError

        raise UserError(f"tokenizer: {source!r} is neither a local path nor a reachable Hugging Face model id "
                        f"with a tokenizer.json: {' '.join(str(exc).split())[:300]}") from None
