"""``make demo-learn``: the whole learning loop on this machine, as a lab runs it on a real arm.

1. base model: a small random Magma checkpoint in the official layout, built locally;
2. record: the simulator's scripted expert (``magma-ros sim-eval --backend expert --record``),
   one teleoperation-shaped bag per episode, new cube positions for every seed;
3. stats: ``magma-ros stats`` over the bags (the robot profile with the action statistics);
4. before: ``magma-ros sim-eval --backend magma`` with the untrained model on new seeds;
5. finetune: ``magma-ros finetune`` (full fine-tuning: the model is small) on the bags;
6. after: ``magma-ros sim-eval`` with the fine-tuned model on the same new seeds, the expert beside
   it, every episode recorded;
7. report: ``OUT/report.md`` + ``report.json`` (success rates of the expert, the model before and
   after, the time of each stage), ``loss.png`` (training loss) and ``frames.png`` (a successful
   episode of the learned policy).

Every stage is a ``magma-ros`` command (its progress bar on stderr, its output in OUT/logs/); the
world and the policy run in lockstep, and training is seeded and single-threaded, so a rerun with
the same seeds gives the same figures. When a stage fails the report says which one and why, and
the exit status is 1.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

from ..interface import TELEOP_ACTION

PROFILE_NAME = "sim_panda_learned"
DEVICE_ARGS = ("--device", "cpu", "--dtype", "float32")
TAIL_CHARS = 4000  # stderr kept per stage to explain a failure
# Recorded and evaluated with the eye-in-hand camera: the named cube is large in it and where it is
# in the image is the motion to make (in the scene camera it is ~9 px of 256, and the motion depends
# on where the gripper is too). ``make demo`` keeps the scene camera.
CAMERA = "wrist"
# The recorded expert's probability of a random step (DART-style, sim-eval --expert-perturbation):
# 0, as 0.3 with 100 episodes per instruction and 9 epochs measured worse (docs/demo.md).
DEMO_PERTURBATION = 0.0


@dataclass
class Stage:
    """One step of the pipeline: its name, wall-clock seconds, and why it failed (if it did)."""

    name: str
    seconds: float = 0.0
    error: str | None = None
    details: dict[str, Any] = field(default_factory=dict)


class StageFailed(Exception):
    """A stage did not produce what the next one needs."""


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """The demo's options."""
    from ..commands.sim_eval import perturbation_argument

    parser = argparse.ArgumentParser(prog="python -m magma_ros.demo_learn", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("out/demo-learn"),
                        help="output directory, replaced if it exists (default: out/demo-learn)")
    parser.add_argument("--episodes", type=int, default=40,
                        help="recorded expert episodes per instruction (3 instructions; default: 40)")
    parser.add_argument("--expert-perturbation", type=perturbation_argument, default=DEMO_PERTURBATION, metavar="P",
                        help="probability of a random step of the recorded expert (sim-eval "
                             f"--expert-perturbation; default: {DEMO_PERTURBATION:g})")
    parser.add_argument("--eval-episodes", type=int, default=10,
                        help="closed-loop evaluation episodes per instruction (default: 10)")
    parser.add_argument("--record-seed", type=int, default=1000, help="first seed of the recordings (default: 1000)")
    parser.add_argument("--eval-seed", type=int, default=5000,
                        help="first seed of the evaluation, new scenes (default: 5000)")
    parser.add_argument("--max-steps", type=int, default=40, help="control steps per evaluation episode (default: 40)")
    parser.add_argument("--epochs", type=int, default=None,
                        help="fine-tuning epochs (default: the demo's setting, see DEMO_FINETUNE)")
    parser.add_argument("--max-steps-train", dest="train_steps", type=int, default=None,
                        help="stop fine-tuning after this many optimizer steps (for a quick run)")
    parser.add_argument("--seed", type=int, default=0, help="model initialisation and training seed (default: 0)")
    parser.add_argument("--model-size", choices=("demo", "tiny"), default="demo",
                        help="demo: the model that learns the task; tiny: a few-second model for tests")
    args = parser.parse_args(argv)
    for name in ("episodes", "eval_episodes", "max_steps"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be >= 1")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Run the stages in order; write the report whatever happens."""
    args = parse_args(argv)
    out: Path = args.out
    if out.exists():
        shutil.rmtree(out)
    (out / "logs").mkdir(parents=True)
    env = deterministic_env()
    stages: list[Stage] = []
    results: dict[str, Any] = {}
    print(f"magma_ros demo-learn: {3 * args.episodes} expert episodes, fine-tuning, {3 * args.eval_episodes} "
          f"evaluation episodes per policy; output in {out}/", flush=True)
    steps: list[tuple[str, Callable[[Stage], None]]] = [
        ("base model", lambda st: build_base(out / "base_model", args, st)),
        ("record", lambda st: results.update(expert_train=record(out, args, env, st))),
        ("stats", lambda st: stats(out, env, st)),
        ("before", lambda st: results.update(before=evaluate(out, "before", out / "base_model", out / "robot.yaml",
                                                            args, env, st))),
        ("finetune", lambda st: finetune(out, args, env, st)),
        ("after", lambda st: results.update(after=evaluate(out, "after", out / "model", out / "model" / "robot.yaml",
                                                          args, env, st))),
        ("report", lambda st: figures(out, results, st)),
    ]
    for name, run in steps:
        stage = Stage(name)
        stages.append(stage)
        print(f"== {name}", flush=True)
        started = time.monotonic()
        try:
            run(stage)
        except StageFailed as exc:
            stage.error = str(exc)
        except Exception as exc:  # noqa: BLE001 - the report must name the stage whatever went wrong
            stage.error = f"{type(exc).__name__}: {exc}"
        stage.seconds = time.monotonic() - started
        print(f"== {name}: {'FAILED: ' + stage.error if stage.error else 'done'} in {stage.seconds:.1f} s", flush=True)
        if stage.error:
            break
    report = write_report(out, args, stages, results)
    print(report, flush=True)
    return 1 if any(s.error for s in stages) else 0


def deterministic_env() -> dict[str, str]:
    """The stages' environment: one thread for every math library (same sums in the same order on
    every run), a fixed hash seed, no colour codes."""
    env = dict(os.environ)
    env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", PYTHONHASHSEED="0",
               CUBLAS_WORKSPACE_CONFIG=":4096:8", TOKENIZERS_PARALLELISM="false")
    return env


def magma_ros(args: Sequence[str], env: dict[str, str], log: Path) -> str:
    """Run ``magma-ros ARGS``: stdout to ``log``, stderr to ours and to ``log``; StageFailed with
    the command's last error line when it fails."""
    command = [sys.executable, "-m", "magma_ros.cli", *map(str, args)]
    tail = ""
    with log.open("w", encoding="utf-8") as out:
        out.write("$ magma-ros " + " ".join(map(str, args)) + "\n")
        out.flush()
        proc = subprocess.Popen(command, stdout=out, stderr=subprocess.PIPE, env=env)
        assert proc.stderr is not None
        while chunk := proc.stderr.read1(4096) if hasattr(proc.stderr, "read1") else proc.stderr.read(4096):
            text = chunk.decode("utf-8", "replace")
            sys.stderr.write(text)
            sys.stderr.flush()
            out.write(text)
            tail = (tail + text)[-TAIL_CHARS:]
        code = proc.wait()
    if code != 0:
        lines = [line.strip() for line in tail.replace("\r", "\n").splitlines() if line.strip()]
        raise StageFailed(f"magma-ros {args[0]} exited with status {code}: {lines[-1] if lines else 'no message'} "
                          f"(log: {log})")
    return log.read_text(encoding="utf-8")


def build_base(directory: Path, args: argparse.Namespace, stage: Stage) -> None:
    """The untrained checkpoint."""
    from ..policy.magma_native.small_checkpoint import build_small_magma

    spec = model_spec(args.model_size, args.seed)
    build_small_magma(directory, spec)
    stage.details = {"spec": {k: (list(v) if isinstance(v, tuple) else v) for k, v in vars(spec).items()}}
    print(f"built {directory} ({parameter_count(directory):,} parameters)", flush=True)


def record(out: Path, args: argparse.Namespace, env: dict[str, str], stage: Stage) -> dict[str, Any]:
    """Expert demonstrations as bags; returns the expert's report on the recorded seeds."""
    magma_ros(["sim-eval", "--backend", "expert", "--camera", CAMERA, "--episodes", args.episodes,
               "--expert-perturbation", args.expert_perturbation,
               "--seed-start", args.record_seed, "--max-steps", args.max_steps, "--baselines", "none",
               "--record", out / "demos", "--out", out / "expert_train"], env, out / "logs" / "record.log")
    bags = demo_bags(out)
    if not bags:
        raise StageFailed(f"no bags in {out / 'demos'}")
    stage.details = {"bags": len(bags)}
    return json.loads((out / "expert_train" / "report.json").read_text(encoding="utf-8"))


def demo_bags(out: Path) -> list[Path]:
    """The recorded bag directories, sorted."""
    return sorted(p for p in (out / "demos").iterdir() if (p / "metadata.yaml").is_file())


def stats(out: Path, env: dict[str, str], stage: Stage) -> None:
    """The robot profile with the demonstrations' statistics."""
    from ..actions.profiles import load_profile
    from ..sim.world import BASE_FRAME, SimConfig

    magma_ros(["stats", *demo_bags(out), "--action-topic", TELEOP_ACTION.absolute, "--out", out / "robot.yaml",
               "--name", PROFILE_NAME, "--base-frame", BASE_FRAME, "--workspace-min", _csv(SimConfig.workspace_min),
               "--workspace-max", _csv(SimConfig.workspace_max)], env, out / "logs" / "stats.log")
    profile = load_profile(str(out / "robot.yaml"))
    stage.details = {"q01": list(profile.stats.q01), "q99": list(profile.stats.q99),
                     "control_rate_hz": profile.control_rate_hz}


def _csv(values: Sequence[float]) -> str:
    return ",".join(f"{v:g}" for v in values)


def finetune(out: Path, args: argparse.Namespace, env: dict[str, str], stage: Stage) -> None:
    """Full fine-tuning of the base model on the bags."""
    settings = dict(DEMO_FINETUNE if args.model_size == "demo" else TINY_FINETUNE)
    if args.epochs is not None:
        settings["--epochs"] = args.epochs
    if args.train_steps is not None:
        settings["--max-steps"] = args.train_steps
    flags = [str(x) for item in settings.items() for x in item]
    magma_ros(["finetune", "--model", out / "base_model", "--bags", *demo_bags(out), "--action-topic",
               TELEOP_ACTION.absolute, "--robot", out / "robot.yaml",
               "--out", out / "model", "--seed", args.seed,
               *full_finetune_flags(model_spec(args.model_size, args.seed).hidden),
               *flags, *DEVICE_ARGS],
              env, out / "logs" / "finetune.log")
    if not (out / "model" / "robot.yaml").is_file():
        raise StageFailed(f"finetune wrote no {out / 'model' / 'robot.yaml'}")
    stage.details = {"settings": settings}


def evaluate(out: Path, name: str, model: Path, profile: Path, args: argparse.Namespace, env: dict[str, str],
             stage: Stage) -> dict[str, Any]:
    """Closed-loop success of ``model`` on the evaluation seeds (after fine-tuning: with the expert
    on the same seeds, and every episode recorded)."""
    extra = (["--baselines", "expert", "--record", out / "learned_episodes"] if name == "after"
             else ["--baselines", "none"])
    magma_ros(["sim-eval", "--backend", "magma", "--camera", CAMERA, "--model", model, *DEVICE_ARGS,
               "--robot", profile,
               "--episodes", args.eval_episodes, "--seed-start", args.eval_seed, "--max-steps", args.max_steps,
               *extra, "--out", out / f"eval_{name}"], env, out / "logs" / f"eval_{name}.log")
    report = json.loads((out / f"eval_{name}" / "report.json").read_text(encoding="utf-8"))
    stage.details = {c: r["success_rate"] for c, r in report["controllers"].items()}
    return report


def figures(out: Path, results: dict[str, Any], stage: Stage) -> None:
    """loss.png from the training metrics, frames.png from a successful learned episode."""
    from .figures import frames_figure, loss_figure

    made = [loss_figure(out / "model" / "metrics.jsonl", out / "loss.png")]
    success = first_success(results.get("after"))
    if success is None:
        stage.details["frames"] = "no successful episode of the fine-tuned model to show"
    else:
        made.append(frames_figure(out / "learned_episodes", success, out / "frames.png"))
    stage.details["figures"] = [p.name for p in made]


def first_success(report: dict[str, Any] | None) -> tuple[str, int] | None:
    """(instruction, seed) of the first successful episode of the magma backend in a sim-eval report."""
    if not report:
        return None
    for instruction, summary in report["controllers"].get("magma", {}).get("instructions", {}).items():
        for episode in summary["episodes"]:
            if episode["success"]:
                return instruction, int(episode["seed"])
    return None


def write_report(out: Path, args: argparse.Namespace, stages: list[Stage], results: dict[str, Any]) -> str:
    """report.json and report.md; returns the Markdown."""
    rates = success_rates(results)
    failed = next((s for s in stages if s.error), None)
    data = {
        "success_rates": rates,
        "failed_stage": None if failed is None else {"stage": failed.name, "error": failed.error},
        "stages": [{"stage": s.name, "seconds": round(s.seconds, 1), "error": s.error, **s.details} for s in stages],
        "settings": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
    }
    (out / "report.json").write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    lines = ["# demo-learn report", ""]
    if failed is not None:
        lines += [f"**FAILED at stage '{failed.name}'**: {failed.error}", ""]
    lines += [f"{3 * args.episodes} recorded expert episodes (seeds {args.record_seed}-"
              f"{args.record_seed + args.episodes - 1} per instruction); evaluation on new seeds "
              f"{args.eval_seed}-{args.eval_seed + args.eval_episodes - 1} per instruction, "
              f"{3 * args.eval_episodes} episodes, at most {args.max_steps} steps each, in lockstep.", "",
              "| policy | success on the evaluation seeds |", "|---|---:|"]
    for label, key in (("expert", "expert"), ("model before fine-tuning", "before"),
                       ("model after fine-tuning", "after")):
        value = rates.get(key)
        lines.append(f"| {label} | {'-' if value is None else f'{100 * value:.0f}%'} |")
    lines += ["", "| stage | time |", "|---|---:|"]
    lines += [f"| {s.name} | {s.seconds:.1f} s{' (failed)' if s.error else ''} |" for s in stages]
    lines += ["", f"| total | {sum(s.seconds for s in stages):.1f} s |", ""]
    if (out / "loss.png").is_file():
        lines += ["![training loss](loss.png)", ""]
    if (out / "frames.png").is_file():
        lines += ["![a successful episode of the fine-tuned model](frames.png)", ""]
    text = "\n".join(lines)
    (out / "report.md").write_text(text, encoding="utf-8")
    return text


def success_rates(results: dict[str, Any]) -> dict[str, float | None]:
    """Expert (on the evaluation seeds, else on the recorded ones), before and after fine-tuning."""
    def rate(report: dict[str, Any] | None, controller: str) -> float | None:
        if not report or controller not in report["controllers"]:
            return None
        return float(report["controllers"][controller]["success_rate"])

    expert = rate(results.get("after"), "expert")
    return {"expert": expert if expert is not None else rate(results.get("expert_train"), "expert"),
            "before": rate(results.get("before"), "magma"), "after": rate(results.get("after"), "magma")}


def parameter_count(directory: Path) -> int:
    """Parameters in the checkpoint's index."""
    index = json.loads((directory / "model.safetensors.index.json").read_text(encoding="utf-8"))
    return int(index["metadata"]["total_size"]) // 4


def model_spec(size: str, seed: int) -> Any:
    """The checkpoint's sizes: ``demo`` learns the task in the time budget; ``tiny`` is for tests."""
    from ..policy.magma_native.small_checkpoint import SmallMagmaSpec

    if size == "tiny":
        return SmallMagmaSpec(seed=seed)
    return SmallMagmaSpec(**DEMO_SPEC, seed=seed)


# The demo model and its training (chosen by experiment, see docs/demo.md#learning-in-the-simulator-make-demo-learn).
# The whole 256 x 256 frame goes through the vision tower at once (strategy global, one 128 px crop):
# its features then know where in the frame they are, which separate crops would not.
DEMO_SPEC: dict[str, Any] = {"hidden": 128, "layers": 4, "dims": (16, 32, 64, 128), "depths": (1, 1, 2, 1),
                             "crop": 128, "max_crops": 1, "strategy": "global", "weight_std": 0.02,
                             "head_std": 0.1, "vision_std": 0.3}
DEMO_FINETUNE: dict[str, Any] = {"--epochs": 28, "--learning-rate": 1e-3, "--batch-size": 16, "--val-fraction": 0.05}
TINY_FINETUNE: dict[str, Any] = {"--epochs": 1, "--max-steps": 3, "--batch-size": 2, "--val-fraction": 0.34}


def full_finetune_flags(hidden: int) -> list[str]:
    """Every weight trained: the vision tower and the projector fully, the language model's linear
    layers through a LoRA of full rank (rank = width, scale 1), no activation recomputation."""
    return ["--train-vision", "--train-projector", "--lora-rank", str(hidden), "--lora-alpha", str(hidden),
            "--no-gradient-checkpointing"]
