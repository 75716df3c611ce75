"""The ``magma-ros fleet`` configuration file: serve options for every replica, Ray Serve
deployment options, the HTTP address and the Ray cluster to join. Pure Python (no ray import),
so a configuration is checked before Ray starts; errors name the file and the key."""
from __future__ import annotations

import argparse
import ipaddress
import math
import re
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
# Each replica holds its own copy of the model on its own GPU(s): more replicas than this is a typo
# (1000000000 would leave Ray's controller scheduling actors that never start), not a fleet.
MAX_REPLICAS = 1024
# Ray Serve's value rules (its DeploymentConfig and AutoscalingConfig): (minimum, whether the minimum
# itself is allowed); max_queued_requests also takes -1 (no limit).
_DEPLOYMENT_NUMBERS = {"health_check_period_s": (0, False), "health_check_timeout_s": (0, False),
                       "graceful_shutdown_timeout_s": (0, True), "graceful_shutdown_wait_loop_s": (0, True)}
ACTOR_OPTION_KEYS = ("accelerator_type", "memory", "num_cpus", "num_gpus", "resources", "runtime_env",
                     "label_selector", "fallback_strategy")  # what Ray Serve allows in ray_actor_options
_AUTOSCALING_INTS = {"min_replicas": 0, "initial_replicas": 0, "max_replicas": 1}
_AUTOSCALING_NUMBERS = {"target_ongoing_requests": (0, False), "metrics_interval_s": (0, False),
                        "look_back_period_s": (0, False), "smoothing_factor": (0, False),
                        "upscale_smoothing_factor": (0, False), "downscale_smoothing_factor": (0, False),
                        "upscaling_factor": (0, False), "downscaling_factor": (0, False),
                        "downscale_delay_s": (0, True), "downscale_to_zero_delay_s": (0, True),
                        "upscale_delay_s": (0, True)}
AUTOSCALING_KEYS = (*_AUTOSCALING_INTS, *_AUTOSCALING_NUMBERS, "aggregation_function", "policy")
_HOST_LABEL = re.compile(r"[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?")


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
    _check_local_paths(args, where)
    deployment = sections["deployment"]
    _check_deployment(deployment, f"{where}: deployment")
    # Let each replica take as many requests as its own queue and batch hold; Ray queues the rest.
    deployment.setdefault("max_ongoing_requests", args.queue_depth + args.max_batch_size)
    http = sections["http"]
    _known(http, ("host", "port"), f"{where}: http")
    host, port = http.get("host", "127.0.0.1"), http.get("port", 8000)
    if not _is_host(host):
        raise FleetConfigError(f"{where}: http.host: expected an IP address or a host name, got {host!r}"[:300])
    if not (isinstance(port, int) and not isinstance(port, bool) and 0 < port < 65536):
        raise FleetConfigError(f"{where}: http.port: expected 1..65535, got {port!r}")
    ray = sections["ray"]
    _known(ray, RAY_KEYS, f"{where}: ray")
    for key in ("num_cpus", "num_gpus"):
        value = ray.get(key)
        if value is not None and not (isinstance(value, (int, float)) and not isinstance(value, bool)
                                      and math.isfinite(value) and value >= 0):
            raise FleetConfigError(f"{where}: ray.{key}: expected a number >= 0, got {value!r}")
    if "node_ip_address" in ray and not _is_ip(ray["node_ip_address"]):
        raise FleetConfigError((f"{where}: ray.node_ip_address: expected an IP address, "
                                f"got {ray['node_ip_address']!r}")[:300])
    if "include_dashboard" in ray and not isinstance(ray["include_dashboard"], bool):
        raise FleetConfigError(f"{where}: ray.include_dashboard: expected true or false, "
                               f"got {ray['include_dashboard']!r}")
    if "address" in ray and not (isinstance(ray["address"], str) and ray["address"].strip()):
        raise FleetConfigError(f"{where}: ray.address: expected 'auto' or a cluster address, got {ray['address']!r}")
    if ray.get("address") and any(k in ray for k in ("num_cpus", "num_gpus", "node_ip_address")):
        raise FleetConfigError(f"{where}: ray: num_cpus, num_gpus and node_ip_address only apply when no address "
                               "is given (a local Ray instance is started)")
    return FleetConfig(tuple(argv), deployment, host, port, ray)


def _check_deployment(deployment: dict, where: str) -> None:
    """Every Ray Serve deployment value by Ray Serve's rules (and replicas at most ``MAX_REPLICAS``)."""
    _known(deployment, DEPLOYMENT_KEYS, where)
    replicas = deployment.get("num_replicas", 1)
    if replicas != "auto" and not (_is_int(replicas) and 1 <= replicas <= MAX_REPLICAS):
        raise FleetConfigError(f"{where}.num_replicas: expected an integer in 1..{MAX_REPLICAS} or 'auto' (each "
                               f"replica is a copy of the model), got {replicas!r}")
    if "autoscaling_config" in deployment and "num_replicas" in deployment and replicas != "auto":
        raise FleetConfigError(f"{where}: give num_replicas or autoscaling_config, not both")
    if "max_ongoing_requests" in deployment:
        _at_least(deployment["max_ongoing_requests"], 1, f"{where}.max_ongoing_requests")
    if "max_queued_requests" in deployment and deployment["max_queued_requests"] != -1:
        _at_least(deployment["max_queued_requests"], 1, f"{where}.max_queued_requests", " or -1 (no limit)")
    for key, (low, inclusive) in _DEPLOYMENT_NUMBERS.items():
        if key in deployment:
            _number(deployment[key], low, inclusive, f"{where}.{key}")
    for key in ("autoscaling_config", "ray_actor_options"):
        if key in deployment and not isinstance(deployment[key], dict):
            raise FleetConfigError(f"{where}.{key}: expected a mapping, got {deployment[key]!r}"[:300])
    if "ray_actor_options" in deployment:
        _check_actor_options(deployment["ray_actor_options"], f"{where}.ray_actor_options")
    if "autoscaling_config" in deployment:
        _check_autoscaling(deployment["autoscaling_config"], f"{where}.autoscaling_config")


def _check_actor_options(options: dict, where: str) -> None:
    _known(options, ACTOR_OPTION_KEYS, where)
    for key in ("num_cpus", "num_gpus", "memory"):
        if key in options:
            _number(options[key], 0, True, f"{where}.{key}")
    resources = options.get("resources", {})
    if not isinstance(resources, dict):
        raise FleetConfigError((f"{where}.resources: expected a mapping of resource name to amount, "
                                f"got {resources!r}")[:300])
    for name, amount in resources.items():
        _number(amount, 0, True, f"{where}.resources.{name}")


def _check_autoscaling(config: dict, where: str) -> None:
    _known(config, AUTOSCALING_KEYS, where)
    for key, low in _AUTOSCALING_INTS.items():
        if key in config:
            _at_least(config[key], low, f"{where}.{key}")
    for key, (low, inclusive) in _AUTOSCALING_NUMBERS.items():
        if key in config:
            _number(config[key], low, inclusive, f"{where}.{key}")
    low, high = config.get("min_replicas", 1), config.get("max_replicas", 1)
    if high > MAX_REPLICAS:
        raise FleetConfigError(f"{where}.max_replicas: at most {MAX_REPLICAS} (each replica is a copy of the model), "
                               f"got {high}")
    if low > high:
        raise FleetConfigError(f"{where}: min_replicas ({low}) is more than max_replicas ({high})")
    initial = config.get("initial_replicas")
    if initial is not None and not low <= initial <= high:
        raise FleetConfigError(f"{where}.initial_replicas: must be in min_replicas..max_replicas ({low}..{high}), "
                               f"got {initial}")


def _check_local_paths(args: argparse.Namespace, where: str) -> None:
    """The model and tokenizer, when they are local paths (a hub id such as microsoft/Magma-8B is
    not), must exist here: the replicas expect them at the same path."""
    sources = [("tokenizer", args.tokenizer)] + ([] if args.no_model else [("model", args.model)])
    for key, value in sources:
        if value and looks_local(value) and not Path(value).expanduser().exists():
            raise FleetConfigError(f"{where}: serve.{key}: {value} does not exist (a local path; a Hugging Face "
                                   f"hub id looks like org/name)"[:400])


def looks_local(source: str) -> bool:
    """True when a model or tokenizer source is a local path rather than a hub id (``org/name``)."""
    return source.startswith(("/", ".", "~")) or source.count("/") > 1 or source.endswith(".json")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _at_least(value: Any, low: int, where: str, alternative: str = "") -> None:
    if not (_is_int(value) and value >= low):
        raise FleetConfigError(f"{where}: expected an integer >= {low}{alternative}, got {value!r}"[:300])


def _number(value: Any, low: float, inclusive: bool, where: str) -> None:
    if not (isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
            and (value >= low if inclusive else value > low)):
        raise FleetConfigError(f"{where}: expected a number {'>=' if inclusive else '>'} {low}, got {value!r}"[:300])


def _is_ip(value: Any) -> bool:
    if not isinstance(value, str):
        return False
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return False
    return True


def _is_host(value: Any) -> bool:
    """An IP address, or a host name of dot-separated labels (RFC 1123)."""
    if not isinstance(value, str) or not value:
        return False
    if _is_ip(value):
        return True
    return len(value) <= 253 and all(_HOST_LABEL.fullmatch(label) for label in value.removesuffix(".").split("."))


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
