"""One fine-tuning run from checked options to the finished directory: read the bags, load the base,
add LoRA (QLoRA on a quantized base), train, then write the adapter, the profile, the metrics and
(``--merge``) the merged checkpoint in the official Magma layout into ``OUT.partial``, renamed to
``OUT`` at the end."""
from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from ..actions.profiles import RobotProfile
from ..errors import UserError
from ..policy.base import PolicyConfigError
from ..policy.config import BackendConfig
from .dataset import BagInput, FrameSet, coverage_warning, read_frames, split_by_episode
from .lora import ADAPTER_DIR, add_lora, merged_weights, prepare_quantized, require_peft, save_adapter
from .outputs import (
    CHECKPOINTS,
    PLOT_FILE,
    PROFILE_FILE,
    check_output,
    finish,
    newest_checkpoint,
    plot_training,
    work_directory,
)
from .settings import TrainSettings
from .trainer import Trainer

INTERRUPTED = 130


@dataclass(frozen=True)
class FinetuneRequest:
    """Everything a run needs, checked by the command."""

    backend: BackendConfig  # the base model and where it runs (backend ``magma``)
    bags: tuple[Path, ...]
    val_bags: tuple[Path, ...]
    profile: RobotProfile
    profile_file: Path
    source: BagInput
    out: Path
    settings: TrainSettings


def base_directory(config: BackendConfig) -> Path:
    """The base checkpoint's local directory; UserError unless it is a Magma checkpoint."""
    from ..policy.magma_native.config import read_model_settings
    from ..policy.magma_native.loading import resolve_directory

    try:
        directory = resolve_directory(config.model, config.revision or None)
        read_model_settings(directory)
    except PolicyConfigError as exc:
        raise UserError(f"--model {config.model}: not a Magma checkpoint: {exc}") from None
    return directory


def load_frames(request: FinetuneRequest, log: TextIO) -> tuple[FrameSet, FrameSet]:
    """(training, validation) frames, with the skip counts and the statistics check reported."""
    settings = request.settings
    frames = read_frames(list(request.bags), request.source, request.profile)
    if request.val_bags:
        train, val = frames, read_frames(list(request.val_bags), request.source, request.profile)
    else:
        train, val = split_by_episode(frames, settings.val_fraction, settings.seed)
    for name, part in (("training", train), ("validation", val)):
        if part.skipped.get("bad_ground_truth"):
            print(f"warning: {part.skipped['bad_ground_truth']} {name} action message(s) with NaN or out-of-range "
                  f"values skipped", file=log)
    warning = coverage_warning(train.frames + val.frames, request.profile)
    if warning:
        print(f"warning: {warning}", file=log)
    if not settings.quiet:
        print(f"frames: {len(train.frames)} training ({len(train.episodes)} episodes), {len(val.frames)} validation "
              f"({len(val.episodes)} episodes); skipped: {frames.describe_skips() or 'none'}", file=log)
    return train, val


def finetune(request: FinetuneRequest, log: TextIO) -> int:
    """Run; 0 when ``OUT`` is complete, ``INTERRUPTED`` (130) after Ctrl-C saved a checkpoint."""
    settings, out = request.settings, request.out
    resume = Path(settings.resume) if settings.resume else None
    check_output(out, settings.overwrite, resume)
    checkpoint = newest_checkpoint(resume) if resume is not None else None
    base = base_directory(request.backend)
    require_peft()
    if request.backend.quantization != "none":
        from ..policy.magma_native.quantization import import_bitsandbytes

        import_bitsandbytes()  # before the bags are read: a missing extra is the first thing said
    train, val = load_frames(request, log)
    runner = _load(request.backend)
    import torch

    torch.manual_seed(settings.seed)
    model = runner.adapter.model
    if request.backend.quantization != "none":
        prepare_quantized(model)
    peft_model = add_lora(model, settings)
    work = work_directory(out)
    if checkpoint is None:
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir(parents=True)
    trainer = Trainer(runner, peft_model, _builder(runner, request.profile), train.frames, val.frames, settings,
                      work, log, request.backend.quantization)
    if checkpoint is not None:
        trainer.resume(checkpoint)
    result = trainer.run()
    if result.status == "interrupted":
        print(f"interrupted at step {result.step} of {trainer.total_steps}: continue with --resume {result.checkpoint}",
              file=log)
        return INTERRUPTED
    _write_result(request, base, work, peft_model, model, trainer)
    finish(work, out, settings.overwrite)
    final = [r["val"] for r in trainer.metrics.records if "val" in r]
    summary = f"; validation all 7 bins exact {final[-1]['exact_bin']['all']:.3f}" if final else ""
    print(f"wrote {out} ({trainer.step} steps{summary})", file=log)
    return 0


def _load(config: BackendConfig) -> Any:
    from ..policy.magma_native.adapter import MagmaNativeAdapter
    from ..policy.vlm import VLMRunner

    runner = VLMRunner.load(config)
    if not isinstance(runner.adapter, MagmaNativeAdapter):
        runner.close()
        raise UserError(f"--model {config.model}: fine-tuning runs on the native Magma implementation only")
    return runner


def _builder(runner: Any, profile: RobotProfile) -> Any:
    from .examples import ExampleBuilder

    return ExampleBuilder(runner, profile)


def _write_result(request: FinetuneRequest, base: Path, work: Path, peft_model: Any, model: Any,
                  trainer: Trainer) -> None:
    from ..policy.magma_native.saving import copy_non_weight_files, save_like_base

    save_adapter(peft_model, model, work / ADAPTER_DIR)
    plot_training(trainer.metrics.records, work / PLOT_FILE, f"magma-ros finetune: {request.profile.name}")
    if request.settings.merge:  # full precision, also from a quantized base
        weights = merged_weights(model)
        merged = peft_model.unload()
        copy_non_weight_files(base, work)
        save_like_base(merged, base, work, weights)
    shutil.copyfile(request.profile_file, work / PROFILE_FILE)
    shutil.rmtree(work / CHECKPOINTS, ignore_errors=True)
