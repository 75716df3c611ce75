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

from ..server.settings import add_serve_arguments as add_arguments

HELP = "serve the model over an OpenAI-compatible HTTP API with /v1/action-tokens"
__all__ = ["HELP", "add_arguments", "run"]


def run(args: argparse.Namespace) -> int:
    """Load the model (unless --no-model) and serve until interrupted."""
    import uvicorn

    from ..server.startup import build_app

    logging.basicConfig(level=args.log_level.upper(), format="%(message)s")
    app, settings = build_app(args)
    uvicorn.run(app, host=settings.host, port=settings.port, access_log=False, log_level=args.log_level,
                timeout_graceful_shutdown=5)
    return 0
