"""Backend configuration: one table of option names used by node parameters and every CLI."""
from __future__ import annotations

import math
import re
from dataclasses import dataclass, fields
from typing import Any

from ..options import Option
from .base import PolicyConfigError

BACKEND_NAMES = ("magma", "openai", "fixed", "demo")
QUANTIZATIONS = ("none", "int8", "nf4")
_ROBOT_ID = re.compile(r"[A-Za-z0-9_./:@-]{1,128}")  # what magma-ros serve accepts in X-Robot-Id

BACKEND_OPTIONS: tuple[Option, ...] = (
    Option("backend", "magma",
           "policy backend: magma, openai, fixed, demo, or a custom factory as 'package.module:function'"),
    Option("model", "microsoft/Magma-8B",
           "model id or local directory (magma); model name sent to the endpoint (openai)"),
    Option("revision", "", "model revision (commit hash) to take from the local Hugging Face cache; empty = default branch"),
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


@dataclass(frozen=True)
class BackendConfig:
    """Validated backend options (meanings: ``BACKEND_OPTIONS``, whose defaults test_policy_config checks
    against these)."""

    backend: str = "magma"
    model: str = "microsoft/Magma-8B"
    revision: str = ""
    trust_remote_code: bool = False
    device: str = "cuda"
    dtype: str = "bfloat16"
    attn_implementation: str = "sdpa"
    quantization: str = "none"
    quantize_vision: bool = False
    compile: bool = False
    endpoint_url: str = ""
    api_key_env: str = ""
    tokenizer: str = ""
    temperature: float = 0.0
    request_timeout_s: float = 10.0
    robot_id: str = ""
    fixed_action: tuple[float, ...] = ()

    def __post_init__(self) -> None:
        if self.backend not in BACKEND_NAMES and not _is_factory_path(self.backend):
            raise PolicyConfigError(
                f"backend: must be one of {', '.join(BACKEND_NAMES)} or 'package.module:function', got {self.backend!r}"
            )
        for spec in BACKEND_OPTIONS:
            value = getattr(self, spec.name)
            if spec.choices and value not in spec.choices:
                raise PolicyConfigError(f"{spec.name}: must be one of {', '.join(spec.choices)}, got {value!r}")
        for flag in ("trust_remote_code", "quantize_vision", "compile"):
            if not isinstance(getattr(self, flag), bool):
                raise PolicyConfigError(f"{flag}: must be true or false, got {getattr(self, flag)!r}")
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
    def from_mapping(cls, values: dict[str, Any]) -> "BackendConfig":
        """Build from a dict of option names (unknown names are an error)."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise PolicyConfigError(f"unknown backend option(s): {', '.join(unknown)}")
        return cls(**values)


def _is_factory_path(name: str) -> bool:
    module, sep, func = name.partition(":")
    return bool(sep and module and func and all(part.isidentifier() for part in module.split(".")) and func.isidentifier())
