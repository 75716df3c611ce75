"""``magma-ros serve`` replicas on Ray Serve: each replica loads the model and serves the same
FastAPI app (OpenAI-compatible chat completions, /v1/action-tokens, /v1/stats, /health) behind
one Ray Serve HTTP endpoint, with Ray Serve's own replica, autoscaling and routing options.

Needs the ``fleet`` extra (``ray[serve]``); only ``magma-ros fleet`` imports this module.
"""
from __future__ import annotations

import logging
import threading
import urllib.error
import urllib.request
from typing import Any, Callable

from ray import serve

from ..errors import one_line
from .fleet_config import FleetConfig, FleetConfigError

APP_NAME = "magma"
LOG = logging.getLogger("magma_ros.server.fleet")


@serve.ingress()
class MagmaReplica:
    """One replica: the model and the server app, built from ``magma-ros serve`` options."""

    def __init__(self, serve_argv: list[str]) -> None:
        self._serve_argv = list(serve_argv)

    def __serve_build_asgi_app__(self) -> Any:
        from .startup import build_app, parse_serve_args

        args = parse_serve_args(self._serve_argv)
        logging.getLogger("magma_ros").setLevel(args.log_level.upper())
        app, _ = build_app(args)
        return app


def build_application(config: FleetConfig) -> Any:
    """The Ray Serve application (a bound deployment) for ``config``; Ray Serve validates the
    deployment options here, without a running Ray (``FleetConfigError`` in one line)."""
    try:
        deployment = serve.deployment(MagmaReplica, name=APP_NAME, **config.deployment)
    except (ValueError, TypeError) as exc:  # pydantic's ValidationError is a ValueError
        raise FleetConfigError(f"deployment: Ray Serve refuses the options: {_first_error(exc)}") from None
    return deployment.bind(list(config.serve_argv))


def _first_error(exc: Exception) -> str:
    errors = getattr(exc, "errors", None)
    if callable(errors):  # pydantic: where and what of the first problem
        first = errors()[0]
        return one_line(f"{'.'.join(map(str, first['loc']))}: {first['msg']}")[:300]
    return one_line(exc)[:300]


def run_fleet(config: FleetConfig, stop: threading.Event, on_ready: Callable[[str], None] | None = None) -> None:
    """Join (or start) Ray, deploy the replicas behind ``http://host:port``, wait for ``stop``,
    then shut Serve and the Ray connection down (a Ray instance started here stops with it)."""
    import ray

    application = build_application(config)  # before Ray starts: Ray Serve's own checks of the options
    options = dict(config.ray)
    address = options.pop("address", None)
    if address:
        ray.init(address=address, logging_level=logging.WARNING)
    else:
        ray.init(num_cpus=options.get("num_cpus"), num_gpus=options.get("num_gpus"),
                 include_dashboard=bool(options.get("include_dashboard", False)),
                 _node_ip_address=options.get("node_ip_address", "127.0.0.1"), logging_level=logging.WARNING)
    try:
        http_options = {"host": config.host, "port": config.port}
        try:
            serve.start(http_options=http_options)
        except ray.exceptions.RayActorError:
            # Under load the controller kills a proxy slow to report ready and starts another;
            # the controller is up: connect to it (the wait below covers the new proxy).
            serve.start(http_options=http_options)
        serve.run(application, name=APP_NAME, route_prefix="/", blocking=False)
        url = f"http://{config.host}:{config.port}"
        # serve.run returns once the app is RUNNING, but the HTTP proxy may not listen yet (its
        # readiness check passes when the proxy is slow to start): announce only what answers.
        while not stop.is_set() and not (_replicas_running(config) and _answers(f"{url}/health")):
            stop.wait(0.5)
        if stop.is_set():
            return
        LOG.info("magma-ros fleet: %s replica(s) ready on %s", config.deployment.get("num_replicas", "auto"), url)
        if on_ready is not None:
            on_ready(url)
        stop.wait()
    finally:
        try:
            serve.shutdown()
        finally:
            ray.shutdown()


def _replicas_running(config: FleetConfig) -> bool:
    """Whether the deployment has all its fixed replicas (or, autoscaled, its target) RUNNING."""
    deployment = serve.status().applications[APP_NAME].deployments[APP_NAME]
    replicas = config.deployment.get("num_replicas")
    if isinstance(replicas, int):
        return deployment.replica_states.get("RUNNING", 0) >= replicas
    return deployment.status == "HEALTHY"


def _answers(url: str) -> bool:
    """Whether ``url`` answers 200 (through Serve's HTTP proxy)."""
    try:
        with urllib.request.urlopen(url, timeout=10) as reply:
            return reply.status == 200
    except (urllib.error.URLError, OSError):
        return False
