"""Create a ``Policy`` from a ``BackendConfig``; heavy backends are imported only when chosen."""
from __future__ import annotations

import importlib
from typing import Callable

from ..actions.profiles import RobotProfile
from .base import Policy, PolicyConfigError
from .config import BUILTIN_BACKENDS, BackendConfig

PolicyFactory = Callable[[BackendConfig, RobotProfile], Policy]


def create_policy(config: BackendConfig, profile: RobotProfile) -> Policy:
    """Instantiate the configured backend. Raises ``PolicyConfigError`` for bad options and
    ``PolicyError`` when a valid configuration cannot be brought up (e.g. no GPU)."""
    factory = _load_factory(BUILTIN_BACKENDS.get(config.backend, config.backend))
    policy = factory(config, profile)
    if not isinstance(policy, Policy):
        raise PolicyConfigError(f"backend {config.backend!r}: factory returned {type(policy).__name__}, not a Policy")
    return policy


def _load_factory(path: str) -> PolicyFactory:
    module_name, _, func_name = path.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        raise PolicyConfigError(f"backend {path!r}: cannot import {exc.name!r} "
                                f"(is the extra for this backend installed?)") from None
    factory = getattr(module, func_name, None)
    if not callable(factory):
        raise PolicyConfigError(f"backend {path!r}: {module_name} has no function {func_name!r}")
    return factory
