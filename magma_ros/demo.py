"""``make demo``: the whole main job in simulation, headless.

Starts the PyBullet arm (``magma_sim``) and ``magma_node`` (enabled) as ROS 2 processes, in lockstep on
simulated time unless --real-time is given (same seeds, same outcome, however busy the CPU), sends each
instruction in turn (a new seeded scene for each), prints progress (step, distance to the target,
safety state) and SUCCESS or FAILURE, and writes a report to ``out/demo/``: a strip of camera frames
with the commanded motion
(frames_seed<N>.png), a plot of the commanded twist, gripper and distance over time
(commands_seed<N>.png), summary.json and both nodes' logs.

The policy is the small trained ``demo`` backend, unless ``MAGMA_MODEL`` names a Magma checkpoint
(hub id or directory) and a CUDA GPU is present: then magma_node runs Magma (``backend: magma``,
device ``MAGMA_DEVICE``, default cuda) with the Bridge statistics on the simulated arm.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import sys
from pathlib import Path

from .interface import EE_POSE


def main(argv: list[str] | None = None) -> int:
    """Run the demo; exit 0 when every episode reaches its target."""
    parser = argparse.ArgumentParser(prog="python -m magma_ros.demo", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--instruction", dest="instructions", action="append", metavar="TEXT",
                        help="what to ask (repeatable; default: reach the red, then the green, then the blue cube)")
    parser.add_argument("--seed", type=int, default=3, help="scene seed of the first episode; the next ones "
                        "count up (default: %(default)s)")
    parser.add_argument("--episodes", type=int, default=1, help="episodes per instruction (default: 1)")
    parser.add_argument("--timeout", type=float, default=30.0,
                        help="simulated seconds per episode before FAILURE (default: 30)")
    parser.add_argument("--real-time", action="store_true",
                        help="run the simulator in real time instead of in lockstep with magma_node (for watching; "
                        "the outcome then depends on the CPU)")
    parser.add_argument("--out", type=Path, default=Path("out/demo"), help="report directory (default: out/demo)")
    args = parser.parse_args(argv)
    if args.episodes < 1:
        parser.error("--episodes must be >= 1")
    if not args.timeout > 0:
        parser.error("--timeout must be > 0")
    os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    os.environ.setdefault("ROS_DOMAIN_ID", str(random.SystemRandom().randint(1, 101)))
    os.environ.setdefault("AMENT_PREFIX_PATH", sys.prefix)

    from .actions.profiles import load_profile
    from .sim.demo_episodes import run_episodes
    from .sim.report import command_plot, frame_strip
    from .sim.tasks import INSTRUCTIONS, TaskError, parse_instruction
    from .sim.world import SimConfig

    instructions = args.instructions or list(INSTRUCTIONS)
    try:
        for text in instructions:
            parse_instruction(text)
    except TaskError as exc:
        print(f"demo: error: {exc}", file=sys.stderr)
        return 2
    try:
        params, backend_label = node_parameters(args.out)
    except RuntimeError as exc:
        print(f"demo: error: {exc}", file=sys.stderr)
        return 2
    mode = "real time" if args.real_time else "lockstep on simulated time"
    print(f"magma_ros demo: backend {backend_label}; {mode}; ROS_DOMAIN_ID={os.environ['ROS_DOMAIN_ID']}; "
          f"report in {args.out}/", flush=True)
    plan = [(args.seed + i, text) for i, text in enumerate(t for t in instructions for _ in range(args.episodes))]
    try:
        logs = run_episodes(args.out, plan, params, episode_timeout=args.timeout, lockstep=not args.real_time,
                            control_rate_hz=load_profile(params["robot"]).control_rate_hz,
                            progress=lambda line: print(line, flush=True))
    except RuntimeError as exc:
        print(f"demo: FAILURE: {exc}", file=sys.stderr)
        return 1
    config = SimConfig()
    for log in logs:
        outcome = "success" if log.success else "failure"
        title = f"{log.instruction!r}, seed {log.seed}: {outcome} (backend {backend_label})"
        if log.frames:
            frame_strip(log.frames, args.out / f"frames_seed{log.seed}.png", config)
        command_plot(log.commands, log.gripper, log.distance, args.out / f"commands_seed{log.seed}.png", title)
    summary = {"backend": backend_label, "lockstep": not args.real_time,
               "episodes": [log.summary() for log in logs], "successes": sum(log.success for log in logs)}
    (args.out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    ok = all(log.success for log in logs)
    stalls = sum(log.lockstep_timeouts for log in logs)
    if stalls:
        print(f"demo: warning: the simulator stopped waiting for magma_node {stalls} time(s) "
              "(lockstep_timeout_s); this run may not be reproducible (see magma_sim.log)", file=sys.stderr)
    print(f"{'SUCCESS' if ok else 'FAILURE'}: {summary['successes']}/{len(logs)} episodes reached the target; "
          f"report: {', '.join(sorted(p.name for p in args.out.glob('*.png')))} and summary.json in {args.out}/",
          flush=True)
    return 0 if ok else 1


def node_parameters(out_dir: Path) -> tuple[dict, str]:
    """magma_node parameters: the demo backend, or Magma when MAGMA_MODEL is set and a GPU exists."""
    common = {"enabled_on_start": True, "ee_pose_topic": EE_POSE.absolute}
    model = os.environ.get("MAGMA_MODEL", "")
    if not model:
        return {**common, "robot": "sim_panda", "backend": "demo"}, "demo (trained in this simulator)"
    device = os.environ.get("MAGMA_DEVICE", "cuda")
    try:
        import torch
    except ImportError:
        raise RuntimeError("MAGMA_MODEL is set but torch is not installed (pip install .[magma])") from None
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise RuntimeError(f"MAGMA_MODEL={model} is set but no CUDA GPU is available; unset MAGMA_MODEL "
                           "to run the demo policy")
    return ({**common, "robot": str(magma_sim_profile(out_dir)), "backend": "magma", "model": model,
             "device": device}, f"magma ({model} on {device})")


def magma_sim_profile(out_dir: Path) -> Path:
    """The Bridge profile (Magma's statistics) with the simulated arm's frame, limits and workspace."""
    from .actions.profile_writer import write_profile_variant
    from .actions.profiles import profile_data

    sim, _ = profile_data("sim_panda")
    overrides = {"name": "sim_panda_bridge", "base_frame": sim["base_frame"], "workspace": sim["workspace"],
                 "description": "Simulated Panda driven by a Bridge-trained model (bridge_orig statistics)"}
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "sim_panda_bridge.yaml"
    write_profile_variant(path, "bridge_orig", overrides,
                          "bridge_orig with sim_panda's frame and workspace (written by make demo)")
    return path.resolve()


if __name__ == "__main__":
    raise SystemExit(main())
