"""Build a tiny random Magma checkpoint in the official layout for tests and benchmarks: the
package's small-checkpoint builder (magma_ros.policy.magma_native.small_checkpoint) with test sizes.
Small crops (64 px) keep it fast on a CPU.
"""
from __future__ import annotations

from pathlib import Path

from magma_ros.policy.magma_native.small_checkpoint import (
    BASE_VOCAB,
    N_ACTION_BINS,
    SmallMagmaSpec,
    action_token,
    build_small_magma,
    random_weights,
    write_weights,
)

CROP = SmallMagmaSpec.crop
__all__ = ["BASE_VOCAB", "N_ACTION_BINS", "CROP", "action_token", "build_tiny_magma", "random_weights", "write_weights"]


def build_tiny_magma(directory: Path, seed: int = 0, *, hidden: int = 64, layers: int = 2, shards: int = 2,
                     layerscale: str = "gamma", projector: str = "mlp2x_gelu", strategy: str = "crop") -> Path:
    """Write the whole tiny checkpoint to ``directory`` and return it."""
    return build_small_magma(directory, SmallMagmaSpec(hidden=hidden, layers=layers, shards=shards,
                                                       layerscale=layerscale, projector=projector,
                                                       strategy=strategy, seed=seed))
