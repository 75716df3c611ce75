"""Test double of moveit_servo's servo_node (MoveIt is not installed here): a node named as the launch
file names it that takes every parameter it is given, fails like Servo when one it needs is missing,
counts the twists on its ~/delta_twist_cmds, and writes what it got as JSON to $SERVO_DOUBLE_REPORT
(at start-up, on the first twist and at shutdown)."""
from __future__ import annotations

import json
import os
import signal
import sys
import threading

import rclpy
from geometry_msgs.msg import TwistStamped
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.node import Node
from rclpy.signals import SignalHandlerOptions

REQUIRED = ("robot_description", "robot_description_semantic", "moveit_servo.command_in_type",
            "moveit_servo.planning_frame", "moveit_servo.move_group_name")
REQUIRED_PREFIXES = ("robot_description_kinematics.", "robot_description_planning.")


def plain(value):
    return list(value) if hasattr(value, "__len__") and not isinstance(value, (str, bytes)) else value


def main() -> int:
    # SIGINT/SIGTERM only set an event that ends the spin loop: with rclpy's own handler the
    # KeyboardInterrupt could land inside a message take and end the double with a traceback
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    rclpy.init(args=sys.argv, signal_handler_options=SignalHandlerOptions.NO)
    node = Node("servo_node", allow_undeclared_parameters=True, automatically_declare_parameters_from_overrides=True)
    params = {name: plain(p.value) for name, p in node.get_parameters_by_prefix("").items()}
    missing = [n for n in REQUIRED if n not in params] + \
              [p for p in REQUIRED_PREFIXES if not any(n.startswith(p) for n in params)]
    if missing:
        print(f"servo_node double: missing parameters {missing}", file=sys.stderr)
        return 1
    report = {"name": node.get_fully_qualified_name(), "parameters": params, "twists": 0}

    def write() -> None:  # atomically: the test reads it while this runs
        path = os.environ["SERVO_DOUBLE_REPORT"]
        with open(path + ".tmp", "w") as f:
            json.dump(report, f)
        os.replace(path + ".tmp", path)

    def on_twist(msg: TwistStamped) -> None:
        report["twists"] += 1
        if report["twists"] == 1:
            write()

    sub = node.create_subscription(TwistStamped, "~/delta_twist_cmds", on_twist, 10)
    report["twist_topic"] = sub.topic_name
    write()
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    try:
        while not stop.is_set() and rclpy.ok():
            executor.spin_once(timeout_sec=0.1)
    except ExternalShutdownException:
        pass
    write()
    return 0


if __name__ == "__main__":
    sys.exit(main())
