"""Backend configuration, declared once: ``BACKEND_OPTIONS`` (the option table used by node parameters,
every CLI and the docs) generates ``BackendConfig``'s fields, and ``BUILTIN_BACKENDS`` (each built-in
backend's factory, loaded by ``registry.create_policy``) gives ``BACKEND_NAMES``."""
from __future__ import annotations

import math
import re
from dataclasses import field, fields, make_dataclass
from typing import Any

from ..options import Option
from .base import PolicyConfigError

BUILTIN_BACKENDS: dict[str, str] = {  # name -> "module:function" creating the policy
    "magma": "magma_ros.policy.magma:create",
    "openai": "magma_ros.policy.openai_backend:create",
    "fixed": "magma_ros.policy.fixed:create",
    "demo": "magma_ros.policy.demo:create",
}
BACKEND_NAMES = tuple(BUILTIN_BACKENDS)
QUANTIZATIONS = ("none", "int8", "nf4")
_ROBOT_ID = re.compile(r"[A-Za-z0-9_./:@-]{1,128}")  # what magma-ros serve accepts in X-Robot-Id

BACKEND_OPTIONS: tuple[Option, ...] = (
    Option("backend", "magma",
           f"policy backend: {', '.join(BACKEND_NAMES)}, or a custom factory as 'package.module:function'"),
    Option("model", "microsoft/Magma-8B",
           "model id or local directory (magma); model name sent to the endpoint (openai)"),
    Option("revision", "",
           "model revision (commit hash) to take from the local Hugging Face cache; empty = default branch"),
    Option("trust_remote_code", False,
           "magma: run Magma's own model code from the checkpoint instead of the native implementation (opt-in; "
           "executes downloaded code and needs transformers<4.56)"),
    Option("device", "cuda", "torch device for the magma backend (cuda, cuda:1, cpu)"),
    Option("dtype", "bfloat16", "torch dtype for the magma backend", choices=("bfloat16", "float16", "float32")),
    Option("attn_implementation", "sdpa", "attention kernel for the magma backend",
           choices=("sdpa", "eager", "flash_attention_2")),
    Option("quantization", "none",
           "magma (native): language-model linear layers as bitsandbytes 8-bit (int8) or 4-bit NF4 (nf4) weights, "
           "quantized while the checkpoint loads; needs the quantization extra", choices=QUANTIZATIONS),
    Option("quantize_vision", False, "magma (native): with quantization, also quantize the vision tower and projector"),
    Option("compile", False,
           "magma (native): torch.compile the 7-token decode step over a static KV cache (CUDA graphs on a GPU); "
           "the first actions take longer while it compiles"),
    Option("endpoint_url", "", "base URL of an OpenAI-compatible endpoint (openai), e.g. http://gpu-box:8000"),
    Option("api_key_env", "", "name of the environment variable holding the endpoint's bearer token (never the token)"),
    Option("tokenizer", "", "tokenizer.json or model directory used to turn action text into ids (openai)"),
    Option("temperature", 0.0, "sampling temperature; 0 = greedy"),
    Option("request_timeout_s", 10.0, "per-request timeout for remote backends (s)"),
    Option("robot_id", "",
           "this robot's name sent to the endpoint (openai) as X-Robot-Id and user, for its logs and per-robot "
           "metrics; empty = magma_node's fully qualified name (none from CLIs)"),
    Option("fixed_action", [], "constant 7-DoF action in robot units for the fixed backend", type=list,
           metavar="X,Y,Z,R,P,YAW,G"),
)


class _BackendChecks:
    """The checks and constructor of ``BackendConfig``, whose fields ``BACKEND_OPTIONS`` generates."""

    def __post_init__(self) -> None:
        if self.backend not in BACKEND_NAMES and not _is_factory_path(self.backend):
            raise PolicyConfigError(
                f"backend: must be one of {', '.join(BACKEND_NAMES)} or 'package.module:function', got {self.backend!r}"
            )
        for spec in BACKEND_OPTIONS:
            value = getattr(self, spec.name)
            if spec.choices and value not in spec.choices:
                raise PolicyConfigError(f"{spec.name}: must be one of {', '.join(spec.choices)}, got {value!r}")
            if spec.type is bool and not isinstance(value, bool):
                raise PolicyConfigError(f"{spec.name}: must be true or false, got {value!r}")
        if self.trust_remote_code and (self.quantization != "none" or self.compile):
            raise PolicyConfigError("quantization and compile apply to the native Magma implementation: "
                                    "set trust_remote_code: false")
        if not math.isfinite(self.temperature) or self.temperature < 0:
            raise PolicyConfigError(f"temperature: must be >= 0, got {self.temperature!r}")
        if not math.isfinite(self.request_timeout_s) or self.request_timeout_s <= 0:
            raise PolicyConfigError(f"request_timeout_s: must be > 0, got {self.request_timeout_s!r}")
        if self.robot_id and not _ROBOT_ID.fullmatch(self.robot_id):
            raise PolicyConfigError(f"robot_id: 1 to 128 characters of letters, digits and _ . / : @ -, "
                                    f"got {self.robot_id[:40]!r}")
        action = tuple(float(v) for v in self.fixed_action)
        if any(not math.isfinite(v) for v in action):
            raise PolicyConfigError(f"fixed_action: values must be finite, got {list(action)}")
        object.__setattr__(self, "fixed_action", action)

    @classmethod
    def from_mapping(cls, values: dict[str, Any]) -> _BackendChecks:
        """Build from a dict of option names (unknown names are an error)."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise PolicyConfigError(f"unknown backend option(s): {', '.join(unknown)}")
        return cls(**values)


def _config_field(option: Option) -> tuple[str, Any, Any]:
    """(name, type, dataclass field) of one option; a list option is a tuple of floats."""
    if option.type is list:
        return option.name, tuple[float, ...], field(default=tuple(option.default))
    return option.name, option.type, field(default=option.default)


BackendConfig = make_dataclass(
    "BackendConfig", [_config_field(option) for option in BACKEND_OPTIONS], bases=(_BackendChecks,), frozen=True,
    namespace={"__module__": __name__, "__doc__": "Validated backend options: one field per ``BACKEND_OPTIONS`` "
               "entry, with its name and default."})


def _is_factory_path(name: str) -> bool:
    module, sep, func = name.partition(":")
    return bool(sep and module and func and all(part.isidentifier() for part in module.split("."))
                and func.isidentifier())
