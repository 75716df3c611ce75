"""Record magma_node's topics (or any others) into a rosbag2 bag, without ros2cli.

By default records what magma_node publishes: servo_node/delta_twist_cmds, magma/gripper_command,
magma_node/action (relative names: in the recorder's namespace, as a node's topics) and
/diagnostics. The recording starts once every topic has a publisher (or after --discovery-timeout)
and its subscriptions match their QoS. Stops after --duration or on Ctrl-C / SIGTERM, and always
leaves a complete, readable bag.

examples:
  magma-ros record --out run1
  magma-ros record --out run2 --inputs --duration 60 --storage sqlite3
  magma-ros record --out run3 --topic /joint_states:sensor_msgs/msg/JointState --topic /tf
  magma-ros record --out run4 --duration 30 --ros-args -r __ns:=/robot1   # magma_node in /robot1
"""
from __future__ import annotations

import argparse
import math
from pathlib import Path

from ..interface import IMAGE, INSTRUCTION
from ..options import Option
from ..options import add_arguments as add_options

HELP = "record magma_node's topics into an MCAP bag (no ros2cli needed)"
RECORD_OPTIONS: tuple[Option, ...] = (
    Option("storage", "mcap", "bag storage format", choices=("mcap", "sqlite3")),
    Option("duration", None, "seconds to record (default: until Ctrl-C)", type=float),
    Option("topic", [], "also record this topic (type looked up in the graph when omitted)", type=str,
           repeated=True, metavar="NAME[:pkg/msg/Type]"),
    Option("inputs", False, f"also record the node's inputs {IMAGE.name} and {INSTRUCTION.name}"),
    Option("no_node_outputs", False, "record only the --topic/--inputs topics"),
    Option("discovery_timeout", 10.0, "seconds to wait for the topics' publishers to appear (topics given "
           "without a type: an error after that)"),
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``magma-ros record``."""
    parser.add_argument("--out", type=Path, required=True, help="bag directory to create (must not exist)")
    add_options(parser, RECORD_OPTIONS)
    parser.add_argument("--ros-args", nargs=argparse.REMAINDER, default=[],
                        help="ROS arguments for the recorder node (a namespace moves the node's topics, "
                        "e.g. -r __ns:=/robot1; remappings); must come last")


def run(args: argparse.Namespace) -> int:
    """Record and print the counts."""
    from ..errors import UserError
    from ..eval.errors import BagError, RosSetupError
    from ..eval.record import record
    from ..eval.recorder import NODE_INPUTS, NODE_OUTPUTS, TopicSpec

    if args.duration is not None and not (args.duration > 0 and math.isfinite(args.duration)):
        raise UserError(f"--duration must be a finite number > 0, got {args.duration}")
    if not (args.discovery_timeout > 0 and math.isfinite(args.discovery_timeout)):
        raise UserError(f"--discovery-timeout must be a finite number > 0, got {args.discovery_timeout}")
    try:
        topics = [] if args.no_node_outputs else [TopicSpec(t.name, t.type) for t in NODE_OUTPUTS]
        if args.inputs:
            topics += [TopicSpec(t.name, t.type) for t in NODE_INPUTS]
        topics += [TopicSpec.parse(text) for text in args.topic]
        names = [t.name for t in topics]
        if not topics:
            raise UserError("nothing to record: give --topic or --inputs, or drop --no-node-outputs")
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise UserError(f"topic(s) given twice: {', '.join(duplicates)}")
        record(args.out, topics, storage=args.storage, duration_s=args.duration,
               discovery_timeout_s=args.discovery_timeout, ros_args=args.ros_args)
    except (BagError, RosSetupError) as exc:
        raise UserError(str(exc)) from None
    return 0
