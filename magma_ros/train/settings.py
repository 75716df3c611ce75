"""The options of ``magma-ros finetune`` (declared once here; the command adds the bag-reading and
backend options it shares with ``magma-ros eval`` and the backends)."""
from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import Any

from ..errors import UserError
from ..options import Option

LM_LINEAR_LAYERS = "q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj"

DATA_OPTIONS: tuple[Option, ...] = (
    Option("val_fraction", 0.1, "fraction of the episodes held out for validation when no --val-bags are given "
           "(split by episode, never by frame; 0 = no validation)", range=(0.0, 0.9)),
    Option("max_delay", 1.0, "seconds after a frame within which its recorded action must arrive"),
)
LORA_OPTIONS: tuple[Option, ...] = (
    Option("lora_rank", 32, "LoRA rank r", range=(1, 4096)),
    Option("lora_alpha", 16.0, "LoRA alpha (the update is scaled by alpha / r)"),
    Option("lora_dropout", 0.0, "dropout on the LoRA input", range=(0.0, 0.9)),
    Option("lora_targets", LM_LINEAR_LAYERS, "comma-separated names of the language model's linear layers that "
           "get LoRA (default: every linear layer of every decoder layer)"),
    Option("train_vision", False, "also train the vision tower (fully; it is frozen by default)"),
    Option("train_projector", False, "also train the multi-modal projector (fully; frozen by default)"),
)
OPTIMIZER_OPTIONS: tuple[Option, ...] = (
    Option("epochs", 3, "passes over the training frames", range=(1, 100000)),
    Option("max_steps", 0, "stop after this many optimizer steps (0 = run all epochs)", range=(0, 10**9)),
    Option("batch_size", 8, "frames per forward pass", range=(1, 4096)),
    Option("grad_accum", 1, "forward passes per optimizer step (effective batch = batch_size * grad_accum)",
           range=(1, 4096)),
    Option("learning_rate", 5e-4, "AdamW peak learning rate (after the warm-up; cosine decay to 0)"),
    Option("weight_decay", 0.0, "AdamW weight decay"),
    Option("warmup_fraction", 0.03, "fraction of the optimizer steps spent warming the learning rate up linearly",
           range=(0.0, 0.5)),
    Option("max_grad_norm", 1.0, "gradient clipping norm (0 = no clipping)"),
    Option("gradient_checkpointing", True, "recompute the language model's activations in the backward pass "
           "(CUDA only; saves memory at ~30% more compute)"),
    Option("seed", 0, "seed of the split, the shuffling and the LoRA initialisation (a CPU run is reproducible)"),
)
OUTPUT_OPTIONS: tuple[Option, ...] = (
    Option("eval_every", 0, "validate every N optimizer steps (0 = at the end of every epoch)", range=(0, 10**9)),
    Option("save_every", 0, "write a resumable checkpoint every N optimizer steps (0 = at the end of every epoch)",
           range=(0, 10**9)),
    Option("merge", True, "write the merged model as a complete checkpoint in the official Magma layout"),
    Option("overwrite", False, "replace an existing --out directory"),
    Option("resume", None, "continue from a checkpoint directory (OUT.partial/checkpoints/step-N, or "
           "OUT.partial for its newest)", type=str),
    Option("quiet", False, "no progress bar and no log lines on stderr"),
)
FINETUNE_OPTIONS: tuple[Option, ...] = DATA_OPTIONS + LORA_OPTIONS + OPTIMIZER_OPTIONS + OUTPUT_OPTIONS


@dataclass(frozen=True)
class TrainSettings:
    """Validated training options (meanings: ``FINETUNE_OPTIONS``)."""

    val_fraction: float = 0.1
    max_delay: float = 1.0
    lora_rank: int = 32
    lora_alpha: float = 16.0
    lora_dropout: float = 0.0
    lora_targets: str = LM_LINEAR_LAYERS
    train_vision: bool = False
    train_projector: bool = False
    epochs: int = 3
    max_steps: int = 0
    batch_size: int = 8
    grad_accum: int = 1
    learning_rate: float = 5e-4
    weight_decay: float = 0.0
    warmup_fraction: float = 0.03
    max_grad_norm: float = 1.0
    gradient_checkpointing: bool = True
    seed: int = 0
    eval_every: int = 0
    save_every: int = 0
    merge: bool = True
    overwrite: bool = False
    resume: str | None = None
    quiet: bool = False

    def __post_init__(self) -> None:
        for option in FINETUNE_OPTIONS:
            value = getattr(self, option.name)
            if option.range is not None and not option.range[0] <= value <= option.range[1]:
                low, high = option.range
                raise UserError(f"{option.flag}: must be in {low:g} .. {high:g}, got {value!r}")
        for name in ("learning_rate", "lora_alpha", "max_delay"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise UserError(f"--{name.replace('_', '-')}: must be a finite number > 0, got {value!r}")
        for name in ("weight_decay", "max_grad_norm"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                raise UserError(f"--{name.replace('_', '-')}: must be a finite number >= 0, got {value!r}")
        if not self.target_modules():
            raise UserError("--lora-targets: name at least one linear layer, e.g. q_proj,v_proj")

    def target_modules(self) -> list[str]:
        """The LoRA target layer names."""
        return [name.strip() for name in self.lora_targets.split(",") if name.strip()]

    @classmethod
    def from_mapping(cls, values: dict[str, Any]) -> "TrainSettings":
        """Build from option names (other keys are ignored: they belong to other tables)."""
        return cls(**{f.name: values[f.name] for f in fields(cls) if f.name in values})
