"""From ``magma-ros serve`` options to a running app: parse and check them, load the model, build
the FastAPI app. Used by ``magma-ros serve`` and by every ``magma-ros fleet`` replica."""
from __future__ import annotations

import argparse
import logging
import os
from pathlib import Path
from typing import Any

from ..errors import UserError, one_line
from ..policy.cli_options import backend_config_from_args
from ..policy.config import BackendConfig
from .fleet_config import RaisingParser
from .settings import ServerSettings, SettingsError, add_serve_arguments, builtin_prompt_templates


def parse_serve_args(argv: list[str]) -> argparse.Namespace:
    """``magma-ros serve`` options as serve parses them (``FleetConfigError`` on bad ones)."""
    parser = RaisingParser(prog="magma-ros serve", add_help=False)
    add_serve_arguments(parser)
    return parser.parse_args(argv)


def check_serve_args(args: argparse.Namespace, read_token: bool = True) -> tuple[ServerSettings, BackendConfig]:
    """(``ServerSettings``, ``BackendConfig``) from serve's options, before anything is loaded;
    ``UserError`` naming the option otherwise. ``read_token`` False skips reading the auth token
    (a fleet's replicas read it where they run)."""
    token = None
    if args.auth_token_env and read_token:
        token = os.environ.get(args.auth_token_env, "")
        if not token:
            raise UserError(f"--auth-token-env: environment variable {args.auth_token_env} is unset or empty")
    config = backend_config_from_args(args)
    prompts = tuple(args.action_prompt)
    profiles = _profiles(args.robot)
    if profiles and not prompts:  # the built-in profiles' templates and the loaded ones'
        prompts = tuple(dict.fromkeys([*builtin_prompt_templates(), *(p.prompt_template for p in profiles)]))
    if config.backend != "magma":
        raise UserError(f"--backend: serve runs the model itself and supports only 'magma', got {config.backend!r}")
    try:
        settings = ServerSettings(
            host=args.host, port=args.port, served_model_name=args.served_model_name or config.model,
            auth_token=token, max_body_bytes=args.max_body_bytes, queue_depth=args.queue_depth,
            timeout_s=args.timeout_s, max_tokens_limit=args.max_tokens_limit,
            allowed_image_hosts=tuple(args.allow_image_host), image_fetch_max_bytes=args.image_fetch_max_bytes,
            image_fetch_timeout_s=args.image_fetch_timeout_s, action_prompts=prompts,
            max_text_chars=args.max_text_chars, max_json_depth=args.max_json_depth,
            max_image_pixels=args.max_image_pixels, max_decoded_pixels=args.max_decoded_pixels,
            max_batch_size=args.max_batch_size, batch_window_ms=args.batch_window_ms,
            robot_profiles=tuple(args.robot),
        )
    except SettingsError as exc:
        raise UserError(str(exc)) from None
    if args.no_model and not config.tokenizer:
        raise UserError("--no-model needs --tokenizer (a tokenizer.json or model directory)")
    return settings, config


def build_app(args: argparse.Namespace) -> tuple[Any, ServerSettings]:
    """(the FastAPI app with its model loaded, its ``ServerSettings``) from serve's options."""
    from ..actions import TextTokenizer
    from .app import create_app
    from .decoding import ActionTokenService

    settings, config = check_serve_args(args)
    text_tokenizer = TextTokenizer(_tokenizer_file(config.tokenizer or config.model, config.revision))
    runner = None
    if not args.no_model:
        from ..policy.vlm import VLMRunner

        runner = VLMRunner.load(config)
        if runner.vocab_size != text_tokenizer.base_vocab_size:
            runner.close()
            raise UserError(f"--tokenizer {text_tokenizer.path}: base vocabulary {text_tokenizer.base_vocab_size} "
                            f"does not match the model's {runner.vocab_size}")
    actions = ActionTokenService(text_tokenizer, runner.vocab_size if runner else text_tokenizer.base_vocab_size,
                                 _profiles(settings.robot_profiles))
    app = create_app(settings, actions, runner)
    logging.getLogger("magma_ros.server").info("%s", startup_summary(settings, model_loaded=runner is not None))
    return app, settings


def startup_summary(settings: ServerSettings, model_loaded: bool) -> str:
    """The line serve prints once it is ready: what it serves, where, and how it runs action
    requests (batches only with a model and ``--max-batch-size`` > 1, as ``/health`` reports)."""
    where = f"http://{settings.host}:{settings.port} (auth {'on' if settings.auth_token else 'off'}"
    if not model_loaded:
        return f"magma-ros serve: no model on {where}; /v1/action-tokens, /v1/models and /health only)"
    if settings.max_batch_size > 1:
        batching = f"action requests in batches of up to {settings.max_batch_size}"
    else:
        batching = "one request at a time, no batching"
    return f"magma-ros serve: {settings.served_model_name} on {where}; {batching})"


def _profiles(names: Any) -> list[Any]:
    """The robot profiles named by --robot (names or YAML paths); UserError naming a bad one."""
    from ..actions import ActionContractError, load_profile

    try:
        return [load_profile(name) for name in names]
    except ActionContractError as exc:
        raise UserError(f"--robot: {exc}") from None


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
        raise UserError(f"tokenizer: {source!r} is neither a local path nor a reachable Hugging Face model id "
                        f"with a tokenizer.json: {one_line(exc)[:300]}") from None
