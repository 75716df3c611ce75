"""``interbotix_gripper_bridge``: magma_node's gripper command (std_msgs/Float64, 1.0 open, 0.0
closed) turned into what an Interbotix X-Series arm (e.g. the WidowX 250 s) takes.

Modes (parameter ``mode``):

- ``pwm`` (default): interbotix_xs_msgs/JointSingleCommand ``{name: gripper, cmd: +pwm | -pwm}`` on
  ``commands/joint_single`` (the xs_sdk driver, gripper in its default ``pwm`` operating mode):
  open when the command is >= ``threshold``, close otherwise.
- ``position``: the same message with ``cmd`` interpolated between ``closed_position`` and
  ``open_position`` (gripper motor in ``position`` operating mode, radians).
- ``forward_position``: std_msgs/Float64MultiArray ``[position]`` for a ros2_control forward command
  controller (e.g. ``gripper_controller/commands``), interpolated the same way.

interbotix_xs_msgs is imported only by the modes that need it; without it those modes exit 2 with
the reason. A command that is not a finite number in [0, 1] is rejected (logged, counted, nothing
sent): the gripper keeps its last command.
"""
from __future__ import annotations

import math
import signal
import sys
import threading
from dataclasses import dataclass
from typing import Any, Callable, Sequence

from .. import interface
from ..options import Option, declare_options, parameter_help, wants_help
from ..rcl_startup import RosStartupError, init_rclpy, node_startup

SUMMARY = ("Turns magma_node's gripper command (std_msgs/Float64, 1.0 open, 0.0 closed) into an Interbotix "
           "X-Series gripper command (xs_sdk JointSingleCommand) or a ros2_control forward command.")
MODES = ("pwm", "position", "forward_position")
SPIN_SLICE_S = 0.1  # the spin loop checks for a signal this often
# the bridge's parameters, read once at start-up (declared in this order); BridgeSettings checks their values
BRIDGE_PARAMETERS: tuple[Option, ...] = (
    Option("mode", "pwm", "pwm | position (interbotix_xs_msgs/JointSingleCommand) | forward_position "
           "(std_msgs/Float64MultiArray [position])", choices=MODES, read_only=True),
    Option("input_topic", interface.GRIPPER.name, "magma_node's gripper command (std_msgs/Float64, 1.0 open, "
           "0.0 closed)", read_only=True),
    Option("output_topic", "", "where the command goes; empty = commands/joint_single (pwm, position) or "
           "gripper_controller/commands (forward_position)", read_only=True),
    Option("joint_name", "gripper", "name in JointSingleCommand (the gripper joint of the Interbotix motor "
           "config)", read_only=True),
    Option("threshold", 0.5, "pwm mode: a command >= threshold opens, below it closes; in [0, 1]", read_only=True),
    Option("pwm", 250.0, "pwm mode: PWM magnitude sent (+ opens, - closes), in (0, 885] (the Dynamixel limit); "
           "Interbotix range 150-350", read_only=True),
    Option("open_position", 1.5, "position modes: command for a fully open gripper (motor or controller units)",
           read_only=True),
    Option("closed_position", 0.0, "position modes: command for a closed gripper", read_only=True),
)
DEFAULT_OUTPUT = {"pwm": "commands/joint_single", "position": "commands/joint_single",
                  "forward_position": "gripper_controller/commands"}


class BridgeError(ValueError):
    """A parameter value or missing message package that keeps the bridge from starting."""


@dataclass(frozen=True)
class BridgeSettings:
    mode: str = "pwm"
    threshold: float = 0.5
    pwm: float = 250.0
    open_position: float = 1.5
    closed_position: float = 0.0

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise BridgeError(f"mode: must be one of {', '.join(MODES)}, got {self.mode!r}")
        if not 0.0 <= self.threshold <= 1.0:
            raise BridgeError(f"threshold: must be in [0, 1], got {self.threshold!r}")
        if not 0.0 < self.pwm <= 885.0:  # 885: the Dynamixel PWM limit
            raise BridgeError(f"pwm: must be in (0, 885], got {self.pwm!r}")
        if not (math.isfinite(self.open_position) and math.isfinite(self.closed_position)):
            raise BridgeError("open_position and closed_position must be finite")


def gripper_output(value: float, settings: BridgeSettings) -> float:
    """The number sent for a magma gripper command ``value`` (1.0 open, 0.0 closed); ``ValueError``
    if ``value`` is not a finite number in [0, 1]."""
    if not (math.isfinite(value) and 0.0 <= value <= 1.0):
        raise ValueError(f"gripper command must be a finite number in [0, 1], got {value!r}")
    if settings.mode == "pwm":
        return settings.pwm if value >= settings.threshold else -settings.pwm
    return settings.closed_position + value * (settings.open_position - settings.closed_position)


def message_factory(mode: str, joint_name: str) -> tuple[type, Callable[[float], Any]]:
    """The output message type and a function building one message from the command number."""
    if mode == "forward_position":
        from std_msgs.msg import Float64MultiArray

        return Float64MultiArray, lambda cmd: Float64MultiArray(data=[cmd])
    try:
        from interbotix_xs_msgs.msg import JointSingleCommand
    except ImportError:
        raise BridgeError(f"mode {mode} needs the interbotix_xs_msgs message package (source the Interbotix "
                          "workspace first), or use mode forward_position") from None
    return JointSingleCommand, lambda cmd: JointSingleCommand(name=joint_name, cmd=float(cmd))


def _make_node():
    from rclpy.node import Node
    from std_msgs.msg import Float64

    class GripperBridge(Node):
        def __init__(self) -> None:
            super().__init__("interbotix_gripper_bridge")
            values = declare_options(self, BRIDGE_PARAMETERS)
            self.settings = BridgeSettings(mode=values["mode"], threshold=values["threshold"], pwm=values["pwm"],
                                           open_position=values["open_position"],
                                           closed_position=values["closed_position"])
            msg_type, self.build = message_factory(self.settings.mode, values["joint_name"])
            output = values["output_topic"] or DEFAULT_OUTPUT[self.settings.mode]
            self.pub = self.create_publisher(msg_type, output, 10)
            self.sub = self.create_subscription(Float64, values["input_topic"], self._on_command,
                                                interface.GRIPPER.qos.profile())
            self.rejected = 0
            self.get_logger().info(f"gripper bridge ready: {self.sub.topic_name} -> {self.pub.topic_name} "
                                   f"({self.settings.mode})")

        def _on_command(self, msg: Float64) -> None:
            try:
                cmd = gripper_output(msg.data, self.settings)
            except ValueError as exc:
                self.rejected += 1
                self.get_logger().error(f"rejected command #{self.rejected} on {self.sub.topic_name}: "
                                        f"{exc}; the gripper keeps its last command")
                return
            self.pub.publish(self.build(cmd))

    return GripperBridge()


def main(args: Sequence[str] | None = None) -> int:
    """Run until Ctrl-C or SIGTERM (exit 0); bad parameters or a missing message package exit 2."""
    argv = list(args) if args is not None else sys.argv
    if wants_help(argv):
        print(parameter_help("interbotix_gripper_bridge", SUMMARY,
                             BRIDGE_PARAMETERS, "interbotix_gripper_bridge --ros-args -r __ns:=/wx250s "
                             f"-p input_topic:={interface.GRIPPER.absolute}"))
        return 0
    import rclpy
    from rclpy.exceptions import ParameterException
    from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
    from rclpy.signals import SignalHandlerOptions

    # SIGINT and SIGTERM end the spin loop below (until then they raise KeyboardInterrupt). With
    # rclpy's own handlers, the KeyboardInterrupt of a Ctrl-C could land inside rclpy's construction
    # of a callback's task and leave an "Exception ignored in Task.__del__" report.
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, _interrupt)
    try:
        init_rclpy(argv, signal_handler_options=SignalHandlerOptions.NO)
    except KeyboardInterrupt:
        return 0
    except RosStartupError as exc:
        print(f"interbotix_gripper_bridge: error: {exc}", file=sys.stderr)
        return 2
    try:
        try:
            with node_startup():
                node = _make_node()
        except (BridgeError, ParameterException, RosStartupError) as exc:
            print(f"interbotix_gripper_bridge: error: {exc}", file=sys.stderr)
            return 2
        executor = SingleThreadedExecutor()
        executor.add_node(node)
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, lambda *_: stop.set())
        try:
            while not stop.is_set() and rclpy.ok():
                executor.spin_once(timeout_sec=SPIN_SLICE_S)
        except ExternalShutdownException:
            pass
        executor.shutdown()
        node.destroy_node()
        return 0
    except KeyboardInterrupt:  # stopped while starting up
        return 0
    finally:
        if rclpy.ok():
            rclpy.shutdown()


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


if __name__ == "__main__":
    sys.exit(main())
