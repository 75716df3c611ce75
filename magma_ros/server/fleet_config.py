"""The ``magma-ros fleet`` configuration file: serve options for every replica, Ray Serve
deployment options, the HTTP address and the Ray cluster to join. Pure Python (no ray import),
so a configuration is checked before Ray starts; errors name the file and the key."""
from __future__ import annotations

import argparse
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import one_line

SECTIONS = ("serve", "deployment", "http", "ray")
# Ray Serve deployment options passed through as given (see Ray Serve's ``serve.deployment``)
DEPLOYMENT_KEYS = ("num_replicas", "max_ongoing_requests", "max_queued_requests", "autoscaling_config",
                   "ray_actor_options", "health_check_period_s", "health_check_timeout_s",
                   "graceful_shutdown_timeout_s", "graceful_shutdown_wait_loop_s")
RAY_KEYS = ("address", "num_cpus", "num_gpus", "node_ip_address", "include_dashboard")
SERVE_FORBIDDEN = ("host", "port")  # one HTTP address for the whole fleet: the http section


class FleetConfigError(ValueError):
    """An invalid fleet configuration (a user error)."""


@dataclass(frozen=True)
class FleetConfig:
    """A validated fleet configuration."""

    serve_argv: tuple[str, ...]                        # ``magma-ros serve`` options of every replica
    deployment: dict[str, Any] = field(default_factory=dict)
    host: str = "127.0.0.1"
    port: int = 8000
    ray: dict[str, Any] = field(default_factory=dict)  # empty address: start a local Ray instance


def load_fleet_config(path: str | Path, parse_serve: Any) -> FleetConfig:
    """Read and check ``path``; ``parse_serve(argv)`` parses serve options (raising on bad ones)."""
    import yaml

    where = str(path)
    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise FleetConfigError(f"{where}: cannot read: {exc.strerror or exc}") from None
    except (yaml.YAMLError, UnicodeDecodeError, RecursionError) as exc:
        raise FleetConfigError(f"{where}: not a valid YAML file: {one_line(exc)[:200]}") from None
    return fleet_config_from_mapping(data, where, parse_serve)


def fleet_config_from_mapping(data: Any, where: str, parse_serve: Any) -> FleetConfig:
    """Check a loaded configuration (see ``load_fleet_config``)."""
    if not isinstance(data, dict):
        raise FleetConfigError(f"{where}: expected a mapping with sections {', '.join(SECTIONS)}")
    _known(data, SECTIONS, where)
    sections = {name: _section(data, name, where) for name in SECTIONS}
    serve = sections["serve"]
    for key in serve:
        if key.replace("-", "_") in SERVE_FORBIDDEN:
            raise FleetConfigError(f"{where}: serve.{key}: the fleet's address is set in the http section")
    argv = serve_argv(serve, where)
    try:
        args = parse_serve(argv)
    except FleetConfigError as exc:
        raise FleetConfigError(f"{where}: serve: {exc}") from None
    deployment = sections["deployment"]
    _known(deployment, DEPLOYMENT_KEYS, f"{where}: deployment")
    replicas = deployment.get("num_replicas", 1)
    if replicas != "auto" and not (isinstance(replicas, int) and not isinstance(replicas, bool) and replicas >= 1):
        raise FleetConfigError(f"{where}: deployment.num_replicas: expected an integer >= 1 or 'auto', got {replicas!r}")
    if replicas == "auto" or "autoscaling_config" in deployment:
        if "num_replicas" in deployment and replicas != "auto":
            raise FleetConfigError(f"{where}: deployment: give num_replicas or autoscaling_config, not both")
    for key in ("autoscaling_config", "ray_actor_options"):
        if key in deployment and not isinstance(deployment[key], dict):
            raise FleetConfigError(f"{where}: deployment.{key}: expected a mapping, got {deployment[key]!r}")
    # Let each replica take as many requests as its own queue and batch hold; Ray queues the rest.
    deployment.setdefault("max_ongoing_requests", args.queue_depth + args.max_batch_size)
    http = sections["http"]
    _known(http, ("host", "port"), f"{where}: http")
    host, port = http.get("host", "127.0.0.1"), http.get("port", 8000)
    if not isinstance(host, str) or not host:
        raise FleetConfigError(f"{where}: http.host: expected an address, got {host!r}")
    if not (isinstance(port, int) and not isinstance(port, bool) and 0 < port < 65536):
        raise FleetConfigError(f"{where}: http.port: expected 1..65535, got {port!r}")
    ray = sections["ray"]
    _known(ray, RAY_KEYS, f"{where}: ray")
    for key in ("num_cpus", "num_gpus"):
        value = ray.get(key)
        if value is not None and not (isinstance(value, (int, float)) and not isinstance(value, bool)
                                      and math.isfinite(value) and value >= 0):
            raise FleetConfigError(f"{where}: ray.{key}: expected a number >= 0, got {value!r}")
    if ray.get("address") and any(k in ray for k in ("num_cpus", "num_gpus", "node_ip_address")):
        raise FleetConfigError(f"{where}: ray: num_cpus, num_gpus and node_ip_address only apply when no address "
                               "is given (a local Ray instance is started)")
    return FleetConfig(tuple(argv), deployment, host, port, ray)


def serve_argv(options: dict[str, Any], where: str) -> list[str]:
    """``magma-ros serve`` arguments from a mapping: ``key: value`` -> ``--key value``, ``true`` ->
    ``--key``, lists -> the option repeated (``action_prompt``, ``allow_image_host``) or its values
    comma-separated (``fixed_action``)."""
    argv: list[str] = []
    for key, value in options.items():
        flag = "--" + str(key).replace("_", "-")
        if value is None or value is False:
            continue
        if value is True:
            argv.append(flag)
        elif isinstance(value, list):
            if key.replace("-", "_") == "fixed_action":
                argv += [flag, ",".join(map(str, value))]
            else:
                for item in value:
                    argv += [flag, str(item)]
        elif isinstance(value, (str, int, float)):
            argv += [flag, str(value)]
        else:
            raise FleetConfigError(f"{where}: serve.{key}: expected a scalar or a list, got {type(value).__name__}")
    return argv


class RaisingParser(argparse.ArgumentParser):
    """An argument parser whose errors raise ``FleetConfigError`` instead of exiting."""

    def error(self, message: str) -> Any:  # type: ignore[override]
        raise FleetConfigError(message)


def _section(data: dict, name: str, where: str) -> dict:
    value = data.get(name) or {}
    if not isinstance(value, dict):
        raise FleetConfigError(f"{where}: {name}: expected a mapping, got {value!r}")
    return dict(value)


def _known(data: dict, keys: tuple[str, ...], where: str) -> None:
    unknown = sorted(str(k) for k in data if k not in keys)
    if unknown:
        raise FleetConfigError(f"{where}: unknown key(s) {', '.join(unknown)} (known: {', '.join(keys)})")
