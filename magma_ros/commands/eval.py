"""Evaluate a policy offline on a recorded rosbag2 bag (MCAP or sqlite3; no ROS needed).

Each image frame (with the latest instruction) is sent to the backend; the prediction is compared
with the recorded action that follows the frame (the first message at or after it, within
--max-delay). Writes OUT/report.json (per-axis MSE and NRMSE, exact-bin and gripper agreement,
latency p50/p99, per episode and overall, every skipped frame counted), OUT/frames.csv and
OUT/actions.png.

examples:
  magma-ros eval my_bag --robot bridge_orig --action-topic /teleop/action --backend openai \\
      --endpoint-url http://gpu-box:8000 --tokenizer /models/Magma-8B --out eval_out
  magma-ros eval my_bag --twist-topic /servo_node/delta_twist_cmds --gripper-topic /gripper \\
      --backend fixed --fixed-action 0,0,0,0,0,0,1
  magma-ros eval replayed_bag --action-topic /teleop/action --predicted-action-topic /magma_node/action
"""
from __future__ import annotations

import argparse
import math
from pathlib import Path

from ..interface import GRIPPER, IMAGE, INSTRUCTION, NODE_ACTION, TWIST
from ..options import Option
from ..options import add_arguments as add_options
from ..policy.cli_options import add_backend_arguments, backend_config_from_args

HELP = "evaluate a backend on a recorded bag: metrics, per-frame CSV and plots"
INPUT_OPTIONS: tuple[Option, ...] = (
    Option("image_topic", IMAGE.absolute, "sensor_msgs/Image or CompressedImage"),
    Option("instruction_topic", INSTRUCTION.absolute, "std_msgs/String"),
    Option("instruction", None, "use this instruction for every frame instead of --instruction-topic", type=str),
)
TRUTH_OPTIONS: tuple[Option, ...] = (
    Option("action_topic", None, "std_msgs/Float64MultiArray 7-vectors (x y z roll pitch yaw gripper, robot units)",
           type=str),
    Option("twist_topic", None, "geometry_msgs/TwistStamped; deltas = twist * control period", type=str),
    Option("gripper_topic", None, "std_msgs/Float64 gripper command in [0, 1] (with --twist-topic)", type=str),
    Option("control_period", None, "seconds per control step for twists (default: the robot profile's)", type=float),
)
RECORDED_OPTIONS: tuple[Option, ...] = (
    Option("predicted_action_topic", None, f"Float64MultiArray (e.g. {NODE_ACTION.absolute})", type=str),
    Option("predicted_twist_topic", None, f"TwistStamped (e.g. {TWIST.absolute})", type=str),
    Option("predicted_gripper_topic", None, f"Float64 gripper command (e.g. {GRIPPER.absolute}), with "
           "--predicted-twist-topic", type=str),
)
RUN_OPTIONS: tuple[Option, ...] = (
    Option("every", 1, "evaluate every k-th image frame"),
    Option("max_delay", 1.0, "seconds after a frame within which its recorded action must arrive"),
    Option("no_plots", False, "skip actions.png"),
    Option("quiet", False, "no progress bar"),
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``magma-ros eval``."""
    parser.add_argument("bag", type=Path, help="rosbag2 directory (MCAP or sqlite3), or one .mcap/.db3 file")
    add_options(parser, (Option("robot", "bridge_orig", "robot profile name or YAML path (normalization, gripper, "
                                "control period)"),))
    parser.add_argument("--out", type=Path, default=None,
                        help="output directory for report.json, frames.csv, actions.png (default: eval_<bag name>)")
    add_options(parser.add_argument_group("input topics"), INPUT_OPTIONS)
    add_options(parser.add_argument_group("ground truth (one form)"), TRUTH_OPTIONS)
    add_options(parser.add_argument_group("recorded predictions instead of a backend (e.g. a replay output bag)"),
                RECORDED_OPTIONS)
    add_options(parser, RUN_OPTIONS)
    add_backend_arguments(parser, backend=None)  # None: not given (magma), checked against --predicted-...
    for action in parser._actions:
        if action.dest == "backend":
            action.help = f"{action.help} (default: magma; not with --predicted-...)"


def run(args: argparse.Namespace) -> int:
    """Evaluate and print a summary."""
    from ..actions import load_profile
    from ..errors import UserError
    from ..eval.errors import BagError
    from ..eval.runner import EvalOptions, Evaluator, print_summary
    from ..policy.registry import create_policy

    profile = load_profile(args.robot)
    dt = args.control_period if args.control_period is not None else profile.control_period_s
    if not (dt > 0 and math.isfinite(dt)):
        raise UserError(f"--control-period must be a finite number > 0, got {dt}")
    truth = _source(args.action_topic, args.twist_topic, args.gripper_topic, dt, "",
                    required=True)
    recorded = _source(args.predicted_action_topic, args.predicted_twist_topic, args.predicted_gripper_topic, dt,
                       "predicted-", required=False)
    if recorded is not None and args.backend is not None:
        raise UserError("give either --backend or --predicted-... topics, not both")
    if args.every < 1:
        raise UserError(f"--every must be >= 1, got {args.every}")
    if not (args.max_delay > 0 and math.isfinite(args.max_delay)):
        raise UserError(f"--max-delay must be a finite number > 0, got {args.max_delay}")
    options = EvalOptions(
        bag=args.bag, out_dir=args.out or Path(f"eval_{args.bag.resolve().name}"), profile=profile,
        image_topic=args.image_topic, instruction_topic=None if args.instruction else args.instruction_topic,
        instruction=args.instruction, truth=truth, recorded=recorded, max_delay_s=args.max_delay,
        every=args.every, plots=not args.no_plots, progress=not args.quiet,
    )
    policy, backend_name = None, ""
    if recorded is None:
        args.backend = args.backend or "magma"
        config = backend_config_from_args(args)
        backend_name = config.backend
        policy = create_policy(config, profile)
    try:
        report = Evaluator(options, policy, backend_name).run()
    except BagError as exc:
        raise UserError(str(exc)) from None
    finally:
        if policy is not None:
            policy.close()
    print_summary(report)
    print(f"report: {options.out_dir / 'report.json'}")
    if report["read_error"]:
        raise UserError(f"{report['read_error']} (partial report written to {options.out_dir})")
    if report["frames"]["evaluated"] == 0:
        skipped = ", ".join(f"{k} {v}" for k, v in report["frames"]["skipped"].items() if v) or "no image frames"
        raise UserError(f"no frame could be evaluated ({skipped}); see {options.out_dir / 'report.json'}")
    return 0


def _source(action_topic: str | None, twist_topic: str | None, gripper_topic: str | None, dt: float,
            flag: str, required: bool):
    """The ActionSource named by one of the two option forms (or None when neither is given)."""
    from ..errors import UserError
    from ..eval.stream import ActionSource

    if action_topic and (twist_topic or gripper_topic):
        raise UserError(f"give --{flag}action-topic or --{flag}twist-topic with --{flag}gripper-topic, not both")
    if action_topic:
        return ActionSource(action_topic)
    if twist_topic or gripper_topic:
        if not (twist_topic and gripper_topic):
            raise UserError(f"--{flag}twist-topic and --{flag}gripper-topic go together")
        return ActionSource(twist_topic, gripper_topic, dt)
    if required:
        raise UserError(f"give the ground truth: --{flag}action-topic TOPIC, or --{flag}twist-topic TOPIC "
                        f"with --{flag}gripper-topic TOPIC")
    return None
