"""The shared ``--backend ...`` command-line options, built from ``BACKEND_OPTIONS``."""
from __future__ import annotations

import argparse
from typing import Any

from .base import PolicyConfigError
from .config import BACKEND_OPTIONS, BackendConfig


def add_backend_arguments(parser: argparse.ArgumentParser, **defaults: Any) -> None:
    """Add one ``--kebab-case`` option per backend option; ``defaults`` overrides table defaults."""
    group = parser.add_argument_group("policy backend (same names as the node parameters)")
    for spec in BACKEND_OPTIONS:
        default = defaults.get(spec.name, spec.default)
        flag = "--" + spec.name.replace("_", "-")
        if spec.type is list:
            group.add_argument(flag, dest=spec.name, type=_float_list, default=list(default), metavar="X,Y,Z,R,P,YAW,G",
                               help=f"{spec.description} (comma-separated)")
        elif spec.type is bool:
            group.add_argument(flag, dest=spec.name, action="store_true", default=bool(default), help=spec.description)
        else:
            shown = f" (default: {default!r})" if default != "" else ""
            group.add_argument(flag, dest=spec.name, type=spec.type, default=default,
                               choices=list(spec.choices) or None,
                               help=spec.description + shown)


def backend_config_from_args(args: argparse.Namespace) -> BackendConfig:
    """The ``BackendConfig`` named by parsed options; raises ``PolicyConfigError`` when invalid."""
    return BackendConfig.from_mapping({spec.name: getattr(args, spec.name) for spec in BACKEND_OPTIONS})


def _float_list(text: str) -> list[float]:
    try:
        return [float(v) for v in text.replace(" ", ",").split(",") if v]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from None


__all__ = ["add_backend_arguments", "backend_config_from_args", "PolicyConfigError"]
