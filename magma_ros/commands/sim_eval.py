"""Closed-loop evaluation in the PyBullet simulator: N seeded episodes per instruction with any
policy backend, next to a scripted-expert and a zero-action baseline on the same seeds. World and
policy run in one process in lockstep (each control step waits for the backend), so the results
do not depend on how busy the machine is.

Writes report.json and report.md (success rate, mean steps per instruction) to --out.
--backend expert runs the scripted expert itself; --record DIR writes every episode of the
evaluated backend as a rosbag2 bag shaped like a teleoperation recording (camera frames, the
instruction, the executed actions on /teleop/action and /teleop/twist + /teleop/gripper), the
input of magma-ros stats, finetune and eval. --camera wrist renders an eye-in-hand view (from the
grasp point straight down) instead of the fixed scene camera: evaluate a policy with the camera it
was trained on. --expert-perturbation P makes the recorded expert take a random step with
probability P (DART-style), so the demonstrations also show how to come back to the path.

examples:
  magma-ros sim-eval --backend demo --episodes 20 --out out/sim-eval
  magma-ros sim-eval --backend expert --episodes 30 --seed-start 1000 --baselines none --record out/demos
  magma-ros sim-eval --backend expert --camera wrist --episodes 30 --baselines none --record out/demos-wrist
  magma-ros sim-eval --backend expert --expert-perturbation 0.3 --baselines none --record out/demos-dart
"""
from __future__ import annotations

import argparse
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Iterator

from ..policy.cli_options import add_backend_arguments, backend_config_from_args

if TYPE_CHECKING:
    from ..actions.profiles import RobotProfile
    from .sim_record import EpisodeBagWriter

HELP = "evaluate a policy backend closed-loop in the simulator (success rate per instruction)"
BASELINES = ("expert", "zero")
EXPERT = "expert"  # --backend expert: the scripted expert (privileged state), e.g. to record demonstrations


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """sim-eval options plus the shared backend options (default backend: demo)."""
    from ..sim.tasks import INSTRUCTIONS
    from ..sim.world import CAMERAS

    parser.add_argument("--robot", default="sim_panda", help="robot profile name or YAML path (default: sim_panda)")
    parser.add_argument("--instruction", dest="instructions", action="append", metavar="TEXT",
                        help=f"instruction to evaluate (repeatable; default: {', '.join(INSTRUCTIONS)})")
    parser.add_argument("--episodes", type=_positive_int, default=20,
                        help="seeded episodes per instruction (default: 20)")
    parser.add_argument("--seed-start", type=int, default=0, help="first episode seed (default: 0)")
    parser.add_argument("--max-steps", type=_positive_int, default=40,
                        help="control steps before an episode fails (default: 40)")
    parser.add_argument("--baselines", default=",".join(BASELINES),
                        help="comma-separated baselines to run on the same seeds: expert, zero, or none "
                             "(default: expert,zero)")
    parser.add_argument("--camera", choices=CAMERAS, default=CAMERAS[0],
                        help="scene: the fixed third-person camera; wrist: eye-in-hand, from the grasp point "
                             f"straight down (default: {CAMERAS[0]})")
    parser.add_argument("--out", type=Path, default=Path("out/sim-eval"),
                        help="report directory (default: out/sim-eval)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    parser.add_argument("--record", type=Path, metavar="DIR",
                        help="write each episode of the evaluated backend as a bag DIR/<instruction>_seed<N> "
                             "(teleop topics; --backend expert records demonstrations)")
    parser.add_argument("--expert-perturbation", type=perturbation_argument, default=0.0, metavar="P",
                        help="--backend expert: replace each step with probability P by a random one (uniform "
                             "within the expert's 3 cm per axis; recorded as executed), so demonstrations also "
                             "show states off the expert's path and the way back (default: 0)")
    add_backend_arguments(parser, backend="demo")


def run(args: argparse.Namespace) -> int:
    """Run the evaluation and print the Markdown report."""
    from ..actions.profiles import load_profile
    from ..errors import UserError
    from ..eval.errors import BagError, RosSetupError
    from ..policy.registry import create_policy
    from ..sim.controllers import ExpertController, PolicyController, ZeroController
    from ..sim.evaluation import evaluate, progress_bar, write_reports
    from ..sim.tasks import INSTRUCTIONS, TaskError, parse_instruction
    from ..sim.world import SimConfig, SimWorld

    instructions = args.instructions or list(INSTRUCTIONS)
    for text in instructions:
        try:
            parse_instruction(text)
        except TaskError as exc:
            raise UserError(f"--instruction: {exc}") from None
    baselines = [] if args.baselines.strip() == "none" else [b.strip() for b in args.baselines.split(",") if b.strip()]
    unknown = sorted(set(baselines) - set(BASELINES))
    if unknown:
        raise UserError(f"--baselines: unknown baseline {unknown[0]!r} (choose from {', '.join(BASELINES)}, or none)")
    if args.record is not None and args.record.exists() and any(args.record.iterdir()):
        raise UserError(f"--record {args.record}: directory exists and is not empty (not overwriting recordings)")
    if args.expert_perturbation and args.backend != EXPERT:
        raise UserError(f"--expert-perturbation: only with --backend expert (got --backend {args.backend})")
    profile = load_profile(args.robot)
    makers = {"expert": ExpertController, "zero": ZeroController}
    policy = None
    if args.backend == EXPERT:
        backend = EXPERT
        controllers = {EXPERT: ExpertController(args.expert_perturbation, seed=args.seed_start)}
    else:
        config = backend_config_from_args(args)
        backend = config.backend
        policy = create_policy(config, profile)
        controllers = {backend: PolicyController(policy, profile)}
    controllers.update({name: makers[name]() for name in baselines if name not in controllers})
    world = SimWorld(SimConfig(camera=args.camera))
    try:
        with _recording(args.record, profile) as writer:
            report = evaluate(world, controllers, instructions, episodes=args.episodes, seed_start=args.seed_start,
                              max_steps=args.max_steps, control_rate_hz=profile.control_rate_hz,
                              progress=None if args.no_progress else progress_bar(),
                              sinks={backend: writer} if writer else None)
    except (BagError, RosSetupError) as exc:
        raise UserError(f"--record: {exc}") from None
    finally:
        world.close()
        if policy is not None:
            policy.close()
    report.update(robot=profile.name, backend=backend, camera=args.camera)
    if args.expert_perturbation:
        report["expert_perturbation"] = args.expert_perturbation
    if args.record is not None:
        report["recorded"] = str(args.record)
    json_path, md_path = write_reports(report, args.out, f"sim-eval: backend {backend}, robot {profile.name}")
    sys.stdout.write(md_path.read_text(encoding="utf-8"))
    print(f"\nwrote {json_path} and {md_path}")
    return 0


@contextmanager
def _recording(directory: Path | None, profile: RobotProfile) -> Iterator[EpisodeBagWriter | None]:
    """An episode bag writer for ``--record DIR``, or None."""
    if directory is None:
        yield None
        return
    from .sim_record import EpisodeBagWriter

    with EpisodeBagWriter(directory, control_rate_hz=profile.control_rate_hz, base_frame=profile.base_frame) as writer:
        yield writer


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def perturbation_argument(text: str) -> float:
    """``--expert-perturbation``'s value (also ``make demo-learn``'s), checked by the expert's own rule."""
    from ..sim.expert import check_perturbation

    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    try:
        return check_perturbation(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
