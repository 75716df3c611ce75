"""Compute a robot's normalization statistics from recorded bags and write them as a robot profile.

The ground truth is read exactly as `magma-ros eval` reads it (same topics and flags): each image
frame takes the recorded action that follows it, episodes split on instruction change. The
statistics are in the form OpenVLA and Magma publish them (mask, q01, q99, mean, std, min, max,
num_transitions, num_trajectories; q01/q99 are numpy's 1st/99th percentiles over every action,
the gripper axis is not normalized). The control rate is estimated from the recorded action
timing, the gripper mode proposed from its values (binary when they are only 0 and 1). With
--from-dataset-statistics a published dataset_statistics.json becomes a profile instead.

examples:
  magma-ros stats run1 run2 --action-topic /teleop/action --out my_arm.yaml --base-frame base_link
  magma-ros stats run1 --twist-topic /servo_node/delta_twist_cmds --gripper-topic /gripper --out my_arm.yaml
  magma-ros stats --from-dataset-statistics dataset_statistics.json --key bridge_orig --control-rate 5 \\
      --out bridge.yaml
"""
from __future__ import annotations

import argparse
import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from ..options import Option
from ..options import add_arguments as add_options
from .eval import INPUT_OPTIONS, RUN_OPTIONS, TRUTH_OPTIONS

PLACEHOLDER_WORKSPACE = ([0.10, -0.30, 0.02], [0.50, 0.30, 0.40])  # the WidowX box of bridge_orig
HELP = "compute normalization statistics from bags (or a dataset_statistics.json) into a robot profile"
READ_OPTIONS: tuple[Option, ...] = tuple(o for o in RUN_OPTIONS if o.name in ("max_delay", "quiet"))
TRUTH_TOPIC_OPTIONS: tuple[Option, ...] = tuple(o for o in TRUTH_OPTIONS if o.name != "control_period")
PUBLISHED_OPTIONS: tuple[Option, ...] = (
    Option("from_dataset_statistics", None, "a published dataset_statistics.json (OpenVLA/Magma format) "
           "instead of bags", type=str, metavar="FILE"),
    Option("key", None, "the dataset in that file, e.g. bridge_orig", type=str),
)
PROFILE_OPTIONS: tuple[Option, ...] = (
    Option("name", None, "profile name (default: the --out file name without .yaml)", type=str),
    Option("description", None, "one-line description (default: where the statistics come from)", type=str),
    Option("base_frame", "base_link", "frame of the end-effector deltas and published twists"),
    Option("control_rate", None, "control steps per second (default: estimated from the recorded action "
           "timing; required with --from-dataset-statistics)", type=float),
    Option("control_period", None, "seconds per control step for --twist-topic deltas (default: 1 / the "
           "control rate)", type=float),
    Option("gripper_mode", "auto", "gripper convention; auto proposes binary when the gripper values are only "
           "0 and 1, else continuous", choices=("auto", "binary", "continuous", "relative")),
    Option("workspace_min", PLACEHOLDER_WORKSPACE[0], "end-effector box lower corner x,y,z (m, base frame); the "
           "default is a placeholder: measure your setup"),
    Option("workspace_max", PLACEHOLDER_WORKSPACE[1], "end-effector box upper corner x,y,z (m, base frame)"),
    Option("overwrite", False, "replace an existing --out file"),
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``magma-ros stats``."""
    parser.add_argument("bags", nargs="*", type=Path, metavar="BAG",
                        help="rosbag2 directories (MCAP or sqlite3) or .mcap/.db3 files")
    parser.add_argument("--out", type=Path, required=True, help="robot profile YAML to write")
    add_options(parser.add_argument_group("input topics (as magma-ros eval)"), INPUT_OPTIONS)
    add_options(parser.add_argument_group("ground truth, one form (as magma-ros eval)"), TRUTH_TOPIC_OPTIONS)
    add_options(parser.add_argument_group("published statistics instead of bags"), PUBLISHED_OPTIONS)
    add_options(parser.add_argument_group("profile"), PROFILE_OPTIONS)
    add_options(parser, READ_OPTIONS)


def run(args: argparse.Namespace) -> int:
    """Compute (or convert) the statistics, print a summary and write the profile."""
    from ..actions.errors import ActionContractError
    from ..actions.profile_writer import profile_text, write_atomically
    from ..errors import UserError

    _check_arguments(args)
    if args.from_dataset_statistics is not None:
        data, summary = _from_published(args)
    else:
        data, summary = _from_bags(args)
    try:
        text, profile = profile_text(data, summary["header"], summary["comments"])
        write_atomically(args.out, text, args.overwrite)
    except ActionContractError as exc:
        raise UserError(str(exc)) from None
    print(summary["text"])
    print(f"wrote {args.out} (robot profile {profile.name!r})")
    return 0


def _check_arguments(args: argparse.Namespace) -> None:
    from ..errors import UserError

    if args.from_dataset_statistics is not None:
        if args.bags:
            raise UserError("give BAGs or --from-dataset-statistics FILE, not both")
        if not args.key:
            raise UserError("--from-dataset-statistics needs --key NAME (the dataset in the file)")
        if args.control_rate is None:
            raise UserError("--from-dataset-statistics needs --control-rate HZ (the file does not hold it)")
    elif not args.bags:
        raise UserError("give at least one BAG (or --from-dataset-statistics FILE --key NAME)")
    elif args.key is not None:
        raise UserError("--key goes with --from-dataset-statistics")
    if args.control_period is not None and not args.twist_topic:
        raise UserError("--control-period goes with --twist-topic (it converts twists into deltas)")
    for flag, value in (("--control-rate", args.control_rate), ("--control-period", args.control_period)):
        if value is not None and not (value > 0 and math.isfinite(value) and math.isfinite(1 / value)):
            raise UserError(f"{flag} must be a finite number > 0, got {value}")
    if not (args.max_delay > 0 and math.isfinite(args.max_delay)):
        raise UserError(f"--max-delay must be a finite number > 0, got {args.max_delay}")
    for flag, corner in (("--workspace-min", args.workspace_min), ("--workspace-max", args.workspace_max)):
        if len(corner) != 3 or not all(math.isfinite(v) for v in corner):
            raise UserError(f"{flag}: expected three finite numbers x,y,z, got {corner}")
    name = args.name if args.name is not None else args.out.name.removesuffix(".yaml").removesuffix(".yml")
    if not name.strip():
        raise UserError("--name: give a non-empty profile name")
    args.name = name
    if (args.out.exists() or args.out.is_symlink()) and not args.overwrite:
        raise UserError(f"{args.out}: already exists (give --overwrite to replace it)")


def _from_bags(args: argparse.Namespace) -> tuple[dict[str, Any], dict[str, Any]]:
    from ..actions.dataset_stats import action_statistics, estimate_control_rate, propose_gripper
    from ..actions.errors import StatsError
    from ..errors import UserError
    from ..eval.errors import BagError
    from ..eval.ground_truth import TruthInput, action_times, read_recorded_actions
    from ..eval.stream import ActionSource
    from .eval import _source

    probe = _source(args.action_topic, args.twist_topic, args.gripper_topic, 0.0, "", required=True)
    try:
        import rosbags  # noqa: F401 - fail early when the eval extra is missing
    except ImportError:
        raise UserError("reading bags needs the eval extra (rosbags): pip install 'magma_ros[eval]'") from None
    try:
        times = [action_times(bag, probe) for bag in args.bags]
        try:
            rate, interval = estimate_control_rate(times)
        except StatsError as exc:
            if args.control_rate is None:
                raise UserError(f"{exc}; give --control-rate") from None
            rate, interval = math.nan, math.nan
        control_rate = args.control_rate if args.control_rate is not None else rate
        dt = args.control_period if args.control_period is not None else 1.0 / control_rate
        truth = ActionSource(probe.topic, probe.gripper_topic, dt if probe.is_twist else 0.0)
        spec = TruthInput(image_topic=args.image_topic,
                          instruction_topic=None if args.instruction else args.instruction_topic,
                          instruction=args.instruction, truth=truth, max_delay_s=args.max_delay)
        recorded = read_recorded_actions(args.bags, spec, progress=not args.quiet)
    except BagError as exc:
        raise UserError(str(exc)) from None
    if not recorded.actions:
        counts = ", ".join(f"{k} {v}" for k, v in sorted(recorded.skips.items())) or "no image frames"
        raise UserError(f"no recorded action to compute statistics from ({recorded.images} image frames; "
                        f"skipped: {counts})")
    _warn_skips(recorded)
    actions = np.stack(recorded.actions)
    stats = action_statistics(actions, recorded.episodes)
    gripper = propose_gripper(actions[:, 6]) if args.gripper_mode == "auto" else _gripper(args.gripper_mode)
    bags = ", ".join(str(b) for b in args.bags)
    source = ", ".join(truth.describe().values())
    description = args.description or (f"statistics of {len(actions)} recorded actions in {recorded.episodes} "
                                       f"episode(s) ({Path(str(args.bags[0])).name}"
                                       f"{' and others' if len(args.bags) > 1 else ''})")
    if args.control_rate is not None:
        rate_note = "given with --control-rate" + (f" (estimated: {rate:g} Hz)" if math.isfinite(rate) else "")
    else:
        rate_note = f"estimated from the recorded action timing: median interval {interval:.4g} s"
    bad = recorded.skips.get("bad_ground_truth", 0)
    lines = [f"{len(args.bags)} bag(s), {recorded.images} image frames: {len(actions)} actions in "
             f"{recorded.episodes} episode(s) (ground truth {source})"]
    if bad:
        lines.append(f"skipped {bad} ground-truth message(s) that are not usable actions (NaN, infinite, out of "
                     "range or not 7 values; see the warnings)")
    data = _profile(args, description, control_rate, stats, gripper)
    header = (f"Robot profile written by `magma-ros stats` from {bags}\n"
              f"({len(actions)} actions in {recorded.episodes} episode(s), ground truth {source}).")
    return data, _summary(args, data, stats, lines, rate_note, header, gripper_values=actions[:, 6])


def _from_published(args: argparse.Namespace) -> tuple[dict[str, Any], dict[str, Any]]:
    from ..actions.dataset_stats import propose_gripper_from_summary, published_statistics
    from ..actions.errors import StatsError
    from ..errors import UserError

    path = Path(args.from_dataset_statistics)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise UserError(f"{path}: cannot read: {exc.strerror or exc}") from None
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise UserError(f"{path}: not valid JSON: {' '.join(str(exc).split())[:200]}") from None
    try:
        stats = published_statistics(data, args.key, str(path))
    except StatsError as exc:
        raise UserError(str(exc)) from None
    if args.gripper_mode == "auto":
        gripper = propose_gripper_from_summary(stats)
    else:
        gripper = _gripper(args.gripper_mode)
    description = args.description or f"published {args.key} statistics ({path.name})"
    profile = _profile(args, description, args.control_rate, stats, gripper)
    counts = (f": {stats.num_transitions} transitions in {stats.num_trajectories} trajectories"
              if stats.num_transitions is not None and stats.num_trajectories is not None else "")
    header = f"Robot profile written by `magma-ros stats` from the {args.key} statistics in {path.name}{counts}."
    return profile, _summary(args, profile, stats, [f"{path}: dataset {args.key}{counts}"],
                             "given with --control-rate", header, gripper_values=None)


def _gripper(mode: str) -> dict[str, Any]:
    if mode == "relative":  # the RT-1 convention of the google_robot profile
        return {"mode": "relative", "threshold": 0.5, "sticky_repeats": 15, "initial": 1.0}
    if mode == "binary":
        return {"mode": "binary", "threshold": 0.5, "initial": 1.0}
    return {"mode": "continuous", "open_value": 1.0, "closed_value": 0.0, "initial": 1.0}


def _profile(args: argparse.Namespace, description: str, control_rate: float, stats: Any,
             gripper: dict[str, Any]) -> dict[str, Any]:
    from ..actions.dataset_stats import propose_limits
    from ..actions.profile_writer import DEFAULT_IMAGE_SIZE, DEFAULT_PROMPT, stats_section

    return {
        "name": args.name, "description": description, "control_rate_hz": float(control_rate),
        "base_frame": args.base_frame, "image_size": list(DEFAULT_IMAGE_SIZE), "prompt_template": DEFAULT_PROMPT,
        "normalization": stats_section(stats), "gripper": gripper, "limits": propose_limits(stats),
        "workspace": {"min": [float(v) for v in args.workspace_min], "max": [float(v) for v in args.workspace_max]},
    }


def _summary(args: argparse.Namespace, data: dict[str, Any], stats: Any, lines: list[str], rate_note: str,
             header: str, gripper_values: np.ndarray | None) -> dict[str, Any]:
    from ..actions.tokenizer import AXIS_NAMES

    columns = ("q01", "q99", "mean", "std", "min", "max")
    table = [f"{'axis':<8} {'mask':<5} " + " ".join(f"{c:>11}" for c in columns)]
    for i, axis in enumerate(AXIS_NAMES):
        cells = [getattr(stats, c)[i] if getattr(stats, c) is not None else math.nan for c in columns]
        table.append(f"{axis:<8} {str(stats.mask[i]).lower():<5} " + " ".join(f"{v:>11.5g}" for v in cells))
    gripper = data["gripper"]
    if args.gripper_mode != "auto":
        why = "given with --gripper-mode"
    elif gripper_values is not None:
        distinct = np.unique(gripper_values)
        why = ("recorded values are only 0 and 1" if gripper["mode"] == "binary"
               else f"{distinct.size} distinct recorded values in [{distinct.min():g}, {distinct.max():g}]")
    else:
        why = "q01, q99, min and max are 0 or 1" if gripper["mode"] == "binary" else "values other than 0 and 1"
    limits = data["limits"]
    placeholder = (args.workspace_min, args.workspace_max) == PLACEHOLDER_WORKSPACE
    workspace = data["workspace"]
    lines = lines + table + [
        f"control_rate_hz: {data['control_rate_hz']:g} ({rate_note})",
        f"gripper: {gripper['mode']} ({why})",
        f"limits: max_linear_step {limits['max_linear_step']:g} m, max_angular_step {limits['max_angular_step']:g} "
        f"rad per step (q01..q99 with a 25 % margin)",
        f"workspace: {workspace['min']} .. {workspace['max']}"
        + (" (a placeholder: measure your setup and set --workspace-min/--workspace-max or edit the file)"
           if placeholder else ""),
    ]
    comments = {"control_rate_hz": rate_note, "gripper": f"proposed: {why}" if args.gripper_mode == "auto" else why}
    if placeholder:
        comments["workspace"] = "placeholder box (m, base frame): measure your own setup"
    return {"text": "\n".join(lines), "header": header, "comments": comments}


def _warn_skips(recorded: Any) -> None:
    import sys

    for kind, count in sorted(recorded.skips.items()):
        example = recorded.examples.get(kind, [""])[0]
        print(f"warning: {kind}: {count} skipped (e.g. {example})", file=sys.stderr)
