"""The shared ``--backend ...`` command-line options, built from ``BACKEND_OPTIONS``."""
from __future__ import annotations

import argparse
from typing import Any

from ..options import add_arguments
from .base import PolicyConfigError
from .config import BACKEND_OPTIONS, BackendConfig


def add_backend_arguments(parser: argparse.ArgumentParser, **defaults: Any) -> None:
    """Add one ``--kebab-case`` option per backend option; ``defaults`` overrides table defaults."""
    add_arguments(parser.add_argument_group("policy backend (same names as the node parameters)"), BACKEND_OPTIONS,
                  **defaults)


def backend_config_from_args(args: argparse.Namespace) -> BackendConfig:
    """The ``BackendConfig`` named by parsed options; raises ``PolicyConfigError`` when invalid."""
    return BackendConfig.from_mapping({option.name: getattr(args, option.name) for option in BACKEND_OPTIONS})


__all__ = ["add_backend_arguments", "backend_config_from_args", "PolicyConfigError"]
