"""Replay a bag's camera and instruction topics into a live ROS graph with the original timing,
while recording what magma_node publishes (twist, gripper, ~/action, diagnostics) into a new bag.

Start magma_node first (enabled); replay waits for it to subscribe. The output bag also holds
the published images and instructions and the --copy-topic topics of the source (e.g. the
recorded actions), stamped at replay time, so the node's outputs can then be scored with
`magma-ros eval OUT --action-topic ... --predicted-action-topic /magma_node/action`.

examples:
  magma_node --ros-args -p robot:=bridge_orig -p backend:=fixed \\
      -p fixed_action:="[0.01,0.0,0.0,0.0,0.0,0.0,1.0]" -p enabled_on_start:=true &
  magma-ros replay teleop_bag --out replayed --copy-topic /teleop/action
  magma-ros replay teleop_bag --out replayed --rate 0.5 --loop 3
"""
from __future__ import annotations

import argparse
import math
from pathlib import Path

from ..interface import IMAGE, INSTRUCTION
from ..options import Option
from ..options import add_arguments as add_options

HELP = "replay a bag through magma_node and record its outputs"
REPLAY_OPTIONS: tuple[Option, ...] = (
    Option("storage", "mcap", "output bag format", choices=("mcap", "sqlite3")),
    Option("image_topic", IMAGE.absolute, "camera topic in the source bag"),
    Option("instruction_topic", INSTRUCTION.absolute, "instruction topic in the source bag ('' if it has none)"),
    Option("publish_image_topic", IMAGE.absolute, "topic to publish images on"),
    Option("publish_instruction_topic", INSTRUCTION.absolute,
           "topic to publish instructions on (reliable, transient local)"),
    Option("copy_topic", [], "copy this source topic into the output bag (not published)", type=str,
           repeated=True, metavar="TOPIC"),
    Option("rate", 1.0, "playback speed factor (2 = twice as fast)"),
    Option("keep_stamps", False, "publish images with their recorded header stamps (default: stamped now)"),
    Option("wait_node", 30.0, "seconds to wait for magma_node"),
    Option("tail", 2.0, "seconds (at --rate) to keep recording after the last message"),
    Option("topic", [], "also record this topic (a known magma topic, or with its type)", type=str, repeated=True,
           metavar="NAME[:pkg/msg/Type]"),
    Option("quiet", False, "no progress bar"),
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``magma-ros replay``."""
    parser.add_argument("bag", type=Path, help="source rosbag2 directory (MCAP or sqlite3) or .mcap/.db3 file")
    parser.add_argument("--out", type=Path, required=True, help="bag directory to create for the recording")
    add_options(parser, REPLAY_OPTIONS)
    parser.add_argument("--loop", type=int, nargs="?", const=0, default=1, metavar="N",
                        help="play N times (--loop alone: until Ctrl-C)")
    parser.add_argument("--ros-args", nargs=argparse.REMAINDER, default=[],
                        help="ROS arguments for the replay node; must come last")


def run(args: argparse.Namespace) -> int:
    """Replay, record, and print what was published and recorded."""
    from ..errors import UserError
    from ..eval.errors import BagError, RosSetupError
    from ..eval.recorder import NODE_OUTPUT_TOPICS, TopicSpec
    from ..eval.replay import ReplayOptions, replay

    if args.loop < 0:
        raise UserError(f"--loop must be >= 0, got {args.loop}")
    if not (0 <= args.tail < math.inf and 0 < args.wait_node < math.inf):
        raise UserError(f"--tail must be a finite number >= 0 and --wait-node a finite number > 0, got "
                        f"{args.tail} and {args.wait_node}")
    try:
        extra = [TopicSpec.parse(text) for text in args.topic]
        untyped = [t.name for t in extra if not t.msgtype]
        if untyped:
            raise UserError(f"--topic {untyped[0]}: give the type as NAME:pkg/msg/Type")
        options = ReplayOptions(
            bag=args.bag, out=args.out, storage=args.storage,
            record_topics=tuple(TopicSpec(n, t) for n, t in NODE_OUTPUT_TOPICS.items()) + tuple(extra),
            image_topic=args.image_topic, instruction_topic=args.instruction_topic,
            publish_image_topic=args.publish_image_topic, publish_instruction_topic=args.publish_instruction_topic,
            copy_topics=tuple(args.copy_topic), rate=args.rate, loops=args.loop, restamp=not args.keep_stamps,
            wait_node_s=args.wait_node, tail_s=args.tail, progress=not args.quiet,
        )
        result = replay(options, tuple(args.ros_args))
    except (BagError, RosSetupError) as exc:
        raise UserError(str(exc)) from None
    published = ", ".join(f"{t} {n}" for t, n in result.published.items())
    recorded = ", ".join(f"{t} {n}" for t, n in result.recorded.items())
    print(f"passes: {result.passes}{' (interrupted)' if result.interrupted else ''}; "
          f"worst publish delay behind schedule: {result.max_late_s * 1e3:.1f} ms")
    print(f"published: {published}")
    print(f"recorded to {args.out}: {recorded}")
    return 0
