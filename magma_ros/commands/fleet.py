"""Serve the model from several replicas (GPUs, machines) on Ray Serve, behind one endpoint.

Every replica runs what 'magma-ros serve' runs (the same OpenAI-compatible API, /v1/action-tokens,
/v1/stats, /health, batching and limits); Ray Serve routes the requests and can add or remove
replicas. The robot side does not change: point magma_node's openai backend at the fleet's URL.

config file (YAML):
  serve:        options of 'magma-ros serve' for every replica (model, device, max_batch_size, ...;
                not host/port)
  deployment:   Ray Serve deployment options: num_replicas (or 'auto'), autoscaling_config,
                max_ongoing_requests (default: queue_depth + max_batch_size), max_queued_requests,
                ray_actor_options (e.g. {num_gpus: 1}), health_check_period_s, ...
  http:         host, port of the endpoint (default 127.0.0.1:8000)
  ray:          address of a running cluster ('auto' on a cluster node); without one a local Ray
                instance is started (num_cpus, num_gpus, node_ip_address, include_dashboard)

examples:
  magma-ros fleet docs/fleet/multi_gpu_host.yaml
  magma-ros fleet docs/fleet/cluster.yaml --check        # run a start's checks, start nothing

Needs the fleet extra: pip install 'magma_ros[fleet]' (ray[serve]).
"""
from __future__ import annotations

import argparse
import logging
import signal
import threading
from typing import TYPE_CHECKING

from ..options import Option
from ..options import add_arguments as add_options
from ..server.settings import LOG_LEVELS

if TYPE_CHECKING:
    from ..server.fleet_config import FleetConfig

HELP = "serve the model from several replicas on Ray Serve behind one OpenAI-compatible endpoint"
FLEET_OPTIONS: tuple[Option, ...] = (
    Option("check", False, "run every check a start makes before Ray starts (Ray Serve's own validation of the "
           "deployment options included), print ok and exit"),
    Option("log_level", "info", "log level of this command", choices=LOG_LEVELS),
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``magma-ros fleet``."""
    parser.add_argument("config", help="fleet configuration file (YAML; see above and docs/fleet/)")
    add_options(parser, FLEET_OPTIONS)


def run(args: argparse.Namespace) -> int:
    """Check the configuration, start the replicas, serve until SIGINT/SIGTERM."""
    logging.basicConfig(level=args.log_level.upper(), format="%(message)s")
    config = _checked_config(args.config)
    if args.check:
        print(f"{args.config}: ok ({config.deployment.get('num_replicas', 'autoscaling')} replica(s), "
              f"http://{config.host}:{config.port})")
        return 0
    from ..server.fleet import run_fleet

    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    run_fleet(config, stop, on_ready=lambda url: print(f"magma-ros fleet: serving on {url}", flush=True))
    return 0


def _checked_config(path: str) -> "FleetConfig":
    """The configuration at ``path`` after every check a start makes before Ray starts (``--check``
    runs exactly these): the file, each replica's serve options, and Ray Serve's own validation of
    the deployment options (which needs the fleet extra); ``UserError`` in one line otherwise."""
    from ..errors import UserError
    from ..server.fleet_config import FleetConfigError, load_fleet_config
    from ..server.startup import check_serve_args, parse_serve_args

    try:
        config = load_fleet_config(path, parse_serve_args)
    except FleetConfigError as exc:
        raise UserError(str(exc)) from None
    try:
        check_serve_args(parse_serve_args(list(config.serve_argv)), read_token=False)
    except UserError as exc:
        raise UserError(f"{path}: serve: {exc}") from None
    try:
        from ..server.fleet import build_application
    except ImportError as exc:
        raise UserError(f"magma-ros fleet needs Ray Serve ({exc.name} is missing): "
                        "pip install 'magma_ros[fleet]'") from None
    try:
        build_application(config)
    except FleetConfigError as exc:
        raise UserError(f"{path}: {exc}") from None
    return config
