"""The training loop: AdamW with a linear warm-up and a cosine decay, gradient accumulation,
bf16 autocast and gradient checkpointing on CUDA, validation and resumable checkpoints on a step
schedule, a progress bar with loss, learning rate and samples/s. Ctrl-C stops at the next batch
boundary and saves a checkpoint that ``--resume`` continues from; a second Ctrl-C aborts at once."""
from __future__ import annotations

import contextlib
import json
import math
import shutil
import signal
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Iterator, Sequence, TextIO

import numpy as np

from ..errors import UserError
from ..policy.vlm import VLMRunner
from ..progress import Progress
from .dataset import TrainFrame
from .examples import ExampleBuilder, answer_loss
from .lora import load_adapter_weights, save_adapter
from .outputs import CHECKPOINTS, METRICS_FILE, OPTIMIZER_FILE, STATE_FILE, MetricsLog, finite_or_none
from .settings import TrainSettings
from .validation import validate

# settings a resumed run must share with the run that wrote the checkpoint
RESUME_KEYS = ("lora_rank", "lora_alpha", "lora_targets", "train_vision", "train_projector", "epochs", "max_steps",
               "batch_size", "grad_accum", "learning_rate", "warmup_fraction", "seed")


def lr_factor(step: int, warmup: int, total: int) -> float:
    """Learning-rate multiplier after ``step`` optimizer steps: linear warm-up, then cosine to 0."""
    if step < warmup:
        return (step + 1) / warmup
    span = max(total - warmup, 1)
    return 0.5 * (1.0 + math.cos(math.pi * min(step - warmup, span) / span))


def enable_checkpointing(language_model: Any) -> None:
    """Recompute each decoder layer's activations in the backward pass (non-reentrant, so frozen
    inputs are fine); transformers 5 names it ``activation_checkpointing_enable``."""
    kwargs = {"use_reentrant": False}
    if hasattr(language_model, "activation_checkpointing_enable"):
        language_model.activation_checkpointing_enable(activation_checkpointing_kwargs=kwargs)
    else:
        language_model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)


@dataclass
class TrainResult:
    """How the run ended: ``done`` or ``interrupted`` (then ``checkpoint`` resumes it)."""

    status: str
    step: int
    checkpoint: Path | None = None


class Trainer:
    """Fine-tunes the runner's model (LoRA already applied) on ``train``; validates on ``val``."""

    def __init__(self, runner: VLMRunner, peft_model: Any, builder: ExampleBuilder, train: Sequence[TrainFrame],
                 val: Sequence[TrainFrame], settings: TrainSettings, work: Path, log: TextIO,
                 quantization: str = "none") -> None:
        import torch

        self.runner, self.peft_model, self.builder = runner, peft_model, builder
        self.model = runner.adapter.model
        self.train, self.val, self.settings, self.work, self.log = list(train), list(val), settings, work, log
        self.quantization = quantization  # how the base was loaded: a resumed run must load it the same way
        self.cuda = str(runner.adapter.device).startswith("cuda")
        self.params = [p for p in self.model.parameters() if p.requires_grad]
        self.optimizer = torch.optim.AdamW(self.params, lr=settings.learning_rate, weight_decay=settings.weight_decay)
        self.batches_per_epoch = math.ceil(len(self.train) / settings.batch_size)
        steps_per_epoch = math.ceil(self.batches_per_epoch / settings.grad_accum)
        self.total_steps = settings.epochs * steps_per_epoch
        if settings.max_steps:
            self.total_steps = min(self.total_steps, settings.max_steps)
        warmup = int(round(settings.warmup_fraction * self.total_steps))
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lambda s: lr_factor(s, warmup, self.total_steps))
        self.step, self.epoch, self.next_batch = 0, 0, 0
        self.metrics = MetricsLog(work / METRICS_FILE)
        self.stop_requested = False
        self.last_validated = -1
        if self.cuda and settings.gradient_checkpointing:
            enable_checkpointing(self.model.language_model)

    # -- checkpoints ------------------------------------------------------------------------------
    def save_checkpoint(self) -> Path:
        """Adapter, optimizer, scheduler and position at the current step under
        ``checkpoints/step-N`` (written aside, then renamed; older checkpoints removed)."""
        import torch

        root = self.work / CHECKPOINTS
        final = root / f"step-{self.step:07d}"
        temp = root / f".step-{self.step:07d}.tmp"
        shutil.rmtree(temp, ignore_errors=True)
        temp.mkdir(parents=True)
        save_adapter(self.peft_model, self.model, temp)
        torch.save({"optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict(),
                    "torch_rng": torch.get_rng_state()}, temp / OPTIMIZER_FILE)
        state = {"step": self.step, "epoch": self.epoch, "next_batch": self.next_batch,
                 "total_steps": self.total_steps, "settings": {k: asdict(self.settings)[k] for k in RESUME_KEYS},
                 "quantization": self.quantization}
        (temp / STATE_FILE).write_text(json.dumps(state, indent=1), encoding="utf-8")
        shutil.rmtree(final, ignore_errors=True)
        temp.rename(final)
        for old in root.glob("step-*"):
            if old != final:
                shutil.rmtree(old, ignore_errors=True)
        return final

    def resume(self, checkpoint: Path) -> None:
        """Continue from a checkpoint written by ``save_checkpoint`` with the same settings."""
        import torch

        state = json.loads((checkpoint / STATE_FILE).read_text(encoding="utf-8"))
        ours = {k: asdict(self.settings)[k] for k in RESUME_KEYS}
        differ = [f"--{k.replace('_', '-')} {state['settings'].get(k)!r} there, {ours[k]!r} now"
                  for k in RESUME_KEYS if state["settings"].get(k) != ours[k]]
        theirs = state.get("quantization", "none")  # checkpoints of earlier versions: trained unquantized
        if theirs != self.quantization:
            differ.append(f"--quantization {theirs!r} there, {self.quantization!r} now")
        if differ:
            raise UserError(f"--resume {checkpoint}: settings differ from that run's ({'; '.join(differ)})")
        if state["total_steps"] != self.total_steps:
            raise UserError(f"--resume {checkpoint}: that run had {state['total_steps']} steps, this one "
                            f"{self.total_steps} (different bags?)")
        load_adapter_weights(self.peft_model, self.model, checkpoint)
        saved = torch.load(checkpoint / OPTIMIZER_FILE, map_location="cpu", weights_only=False)
        self.optimizer.load_state_dict(saved["optimizer"])
        self.scheduler.load_state_dict(saved["scheduler"])
        torch.set_rng_state(saved["torch_rng"])
        self.step, self.epoch, self.next_batch = state["step"], state["epoch"], state["next_batch"]
        self.metrics.truncate_after(self.step)
        self.last_validated = max((r["step"] for r in self.metrics.records if "val" in r), default=-1)

    # -- the loop -----------------------------------------------------------------------------------
    def run(self) -> TrainResult:
        """Train to the last step, or until Ctrl-C (then save a checkpoint and say so)."""
        progress = Progress(self.total_steps, "finetune", unit="steps", stream=self.log,
                            enabled=not self.settings.quiet)
        progress.update(self.step)
        try:
            with self._interruptible():
                if self.last_validated < 0:
                    self.validate()
                while self.step < self.total_steps and not self.stop_requested:
                    self._epoch(progress)
        finally:
            progress.close()
        if self.stop_requested:
            return TrainResult("interrupted", self.step, self.save_checkpoint())
        if self.last_validated != self.step:
            self.validate()
        return TrainResult("done", self.step)

    def _epoch(self, progress: Progress) -> None:
        import torch

        order = np.random.default_rng([self.settings.seed, self.epoch]).permutation(len(self.train))
        size, accum = self.settings.batch_size, self.settings.grad_accum
        batches = [order[i:i + size] for i in range(0, len(order), size)]
        self.model.train()
        while self.next_batch < len(batches) and self.step < self.total_steps:
            group = batches[self.next_batch:self.next_batch + accum]
            samples = sum(len(b) for b in group)
            t0, total = time.perf_counter(), 0.0
            for batch in group:
                if self.stop_requested:
                    self.optimizer.zero_grad(set_to_none=True)
                    return
                inputs, labels = self.builder.batch([self.train[i] for i in batch])
                with self._autocast():
                    loss = answer_loss(self.model, inputs, labels)
                if not torch.isfinite(loss):
                    raise UserError(f"the loss is {float(loss)} at step {self.step + 1}: training diverged; lower "
                                    f"--learning-rate (now {self.settings.learning_rate:g}) or check the actions")
                (loss * (len(batch) / samples)).backward()
                total += float(loss.detach()) * len(batch)
            if self.settings.max_grad_norm > 0:
                torch.nn.utils.clip_grad_norm_(self.params, self.settings.max_grad_norm)
            lr = self.scheduler.get_last_lr()[0]
            self.optimizer.step()
            self.scheduler.step()
            self.optimizer.zero_grad(set_to_none=True)
            self.step += 1
            self.next_batch += len(group)
            rate = samples / max(time.perf_counter() - t0, 1e-9)
            self.metrics.write({"step": self.step, "epoch": self.epoch + self.next_batch / len(batches),
                                "loss": finite_or_none(total / samples), "lr": lr, "samples_per_s": rate})
            progress.label = f"finetune loss {total / samples:.4f} lr {lr:.2e} {rate:.1f} samples/s"
            progress.update(self.step)
            if self.settings.eval_every and self.step % self.settings.eval_every == 0:
                self.validate()
            if self.settings.save_every and self.step % self.settings.save_every == 0:
                self.save_checkpoint()
        if self.next_batch >= len(batches):
            self.epoch, self.next_batch = self.epoch + 1, 0
            if not self.settings.eval_every:
                self.validate()
            if not self.settings.save_every and self.step < self.total_steps:
                self.save_checkpoint()

    def validate(self) -> dict[str, Any] | None:
        """Score the held-out frames (if any) and log the summary."""
        if not self.val:
            return None
        self.model.eval()
        try:
            summary = validate(self.runner, self.val, self.builder.profile, self.settings.batch_size)
        finally:
            self.model.train()
        self.metrics.write({"step": self.step, "val": summary})
        self.last_validated = self.step
        if not self.settings.quiet:
            print(f"validation at step {self.step}: all 7 bins exact {summary['exact_bin']['all']:.3f}, gripper "
                  f"agreement {summary['gripper_agreement']:.3f}, mean arm NRMSE {summary['nrmse_mean_arm']}",
                  file=self.log)
        return summary

    def _autocast(self) -> Any:
        import torch

        return torch.autocast("cuda", dtype=torch.bfloat16) if self.cuda else contextlib.nullcontext()

    @contextlib.contextmanager
    def _interruptible(self) -> Iterator[None]:
        """The first SIGINT asks the loop to stop at the next batch; a second one aborts."""
        if threading.current_thread() is not threading.main_thread():
            yield
            return

        def on_sigint(signum: int, frame: Any) -> None:
            if self.stop_requested:
                raise KeyboardInterrupt
            self.stop_requested = True
            if not self.settings.quiet:
                print("\ninterrupted: saving a checkpoint at the end of this batch (Ctrl-C again to abort)",
                      file=self.log)

        previous = signal.signal(signal.SIGINT, on_sigint)
        try:
            yield
        finally:
            signal.signal(signal.SIGINT, previous)
