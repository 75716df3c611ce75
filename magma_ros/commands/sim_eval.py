"""Closed-loop evaluation in the PyBullet simulator: N seeded episodes per instruction with any
policy backend, next to a scripted-expert and a zero-action baseline on the same seeds. World and
policy run in one process in lockstep (each control step waits for the backend), so the results
do not depend on how busy the machine is.

Writes report.json and report.md (success rate, mean steps per instruction) to --out.

example:
  magma-ros sim-eval --backend demo --episodes 20 --out out/sim-eval
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..policy.cli_options import add_backend_arguments, backend_config_from_args

HELP = "evaluate a policy backend closed-loop in the simulator (success rate per instruction)"
BASELINES = ("expert", "zero")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """sim-eval options plus the shared backend options (default backend: demo)."""
    from ..sim.tasks import INSTRUCTIONS

    parser.add_argument("--robot", default="sim_panda", help="robot profile name or YAML path (default: sim_panda)")
    parser.add_argument("--instruction", dest="instructions", action="append", metavar="TEXT",
                        help=f"instruction to evaluate (repeatable; default: {', '.join(INSTRUCTIONS)})")
    parser.add_argument("--episodes", type=_positive_int, default=20, help="seeded episodes per instruction (default: 20)")
    parser.add_argument("--seed-start", type=int, default=0, help="first episode seed (default: 0)")
    parser.add_argument("--max-steps", type=_positive_int, default=40, help="control steps before an episode fails (default: 40)")
    parser.add_argument("--baselines", default=",".join(BASELINES),
                        help="comma-separated baselines to run on the same seeds: expert, zero, or none "
                             "(default: expert,zero)")
    parser.add_argument("--out", type=Path, default=Path("out/sim-eval"), help="report directory (default: out/sim-eval)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    add_backend_arguments(parser, backend="demo")


def run(args: argparse.Namespace) -> int:
    """Run the evaluation and print the Markdown report."""
    from ..actions.profiles import load_profile
    from ..errors import UserError
    from ..policy.registry import create_policy
    from ..sim.controllers import ExpertController, PolicyController, ZeroController
    from ..sim.evaluation import evaluate, progress_bar, write_reports
    from ..sim.tasks import INSTRUCTIONS, TaskError, parse_instruction
    from ..sim.world import SimWorld

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
    config = backend_config_from_args(args)
    profile = load_profile(args.robot)
    policy = create_policy(config, profile)
    controllers = {config.backend: PolicyController(policy, profile)}
    makers = {"expert": ExpertController, "zero": ZeroController}
    controllers.update({name: makers[name]() for name in baselines})
    world = SimWorld()
    try:
        report = evaluate(world, controllers, instructions, episodes=args.episodes, seed_start=args.seed_start,
                          max_steps=args.max_steps, control_rate_hz=profile.control_rate_hz,
                          progress=None if args.no_progress else progress_bar())
    finally:
        world.close()
        policy.close()
    report.update(robot=profile.name, backend=config.backend)
    json_path, md_path = write_reports(report, args.out, f"sim-eval: backend {config.backend}, robot {profile.name}")
    sys.stdout.write(md_path.read_text(encoding="utf-8"))
    print(f"\nwrote {json_path} and {md_path}")
    return 0


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value
