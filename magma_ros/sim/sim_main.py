"""``magma_sim``: the simulated Panda as a ROS 2 node (PyBullet, headless).

Subscribes the node's commands and executes them, publishes what a real arm's drivers would:

- in:  ``servo_node/delta_twist_cmds`` geometry_msgs/TwistStamped (``panda_link0``, m/s and rad/s),
       ``magma/gripper_command`` std_msgs/Float64 (1.0 open, 0.0 closed),
       ``magma/instruction`` std_msgs/String (the task whose distance ``sim/status`` reports),
       ``sim/reset`` std_msgs/Int64 (a new episode with this seed)
- out: ``camera/image_raw`` sensor_msgs/Image (rgb8, 256 x 256), ``sim/ee_pose`` PoseStamped,
       ``joint_states`` JointState, ``sim/status`` std_msgs/String (JSON: seed, time, distance,
       success), ``/clock`` rosgraph_msgs/Clock (simulated time)

Topic names are relative (``/clock`` aside): a namespace moves the whole simulated arm.

A twist is executed until the next one or until its stamp is ``command_timeout_s`` old (then the
arm stops); older twists are ignored. Twists in another frame than the base frame are rejected and
stop the arm.
"""
from __future__ import annotations

import json
import signal
import sys
import time
from typing import Any

import numpy as np

from .tasks import Task, TaskError, parse_instruction
from .world import BASE_FRAME, PHYSICS_HZ, SimWorld

TICK_SUBSTEPS = 5  # physics steps per tick: 48 ticks per simulated second
MAX_CATCH_UP_TICKS = 12


SIM_PARAMETERS: tuple[tuple[str, Any, str], ...] = (
    ("real_time_factor", 1.0, "simulated seconds per wall-clock second (> 0); with a value other than 1 "
                              "run this node and magma_node with use_sim_time:=true"),
    ("camera_rate_hz", 10.0, "camera frames per simulated second"),
    ("command_timeout_s", 0.5, "a twist is executed until its stamp is this old (s), then zero; "
                               "older twists are ignored"),
    ("seed", 0, "seed of the first episode"),
    ("instruction", "", "initial task (also set by /magma/instruction)"),
)


def main(argv: list[str] | None = None) -> int:
    """Run the simulator node until Ctrl-C or SIGTERM (exit 0)."""
    import rclpy
    from rclpy.executors import ExternalShutdownException
    from rclpy.signals import SignalHandlerOptions

    from ..ros.script_help import parameter_help, wants_help

    argv = list(argv) if argv is not None else sys.argv
    if wants_help(argv):
        print(parameter_help("magma_sim", (__doc__ or "").strip(), SIM_PARAMETERS,
                             "magma_sim --ros-args -p seed:=3 -p instruction:='reach the red cube'"))
        return 0
    signal.signal(signal.SIGTERM, _interrupt)  # stop between ticks, never inside a publish
    rclpy.init(args=argv, signal_handler_options=SignalHandlerOptions.NO)
    node = None
    try:
        node = _make_node()
        rclpy.spin(node)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        if node is not None:
            node.close()
            node.destroy_node()
        if rclpy.ok():
            rclpy.try_shutdown()
    return 0


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def _make_node():
    from geometry_msgs.msg import PoseStamped, TwistStamped
    from rclpy.clock import Clock as RosClock, ClockType
    from rclpy.duration import Duration
    from rclpy.node import Node
    from rclpy.time import Time
    from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
    from rcl_interfaces.msg import ParameterDescriptor
    from rosgraph_msgs.msg import Clock
    from sensor_msgs.msg import Image, JointState
    from std_msgs.msg import Float64, Int64, String

    class SimNode(Node):
        """Steps the world in (scaled) real time and bridges it to topics."""

        def __init__(self) -> None:
            super().__init__("magma_sim")
            values = {name: self.declare_parameter(name, default, ParameterDescriptor(description=text)).value
                      for name, default, text in SIM_PARAMETERS}
            self.rtf = float(values["real_time_factor"])
            self.camera_rate = float(values["camera_rate_hz"])
            self.timeout = float(values["command_timeout_s"])
            seed = int(values["seed"])
            instruction = str(values["instruction"])
            for name, value, low in (("real_time_factor", self.rtf, 0.0), ("camera_rate_hz", self.camera_rate, 0.0),
                                     ("command_timeout_s", self.timeout, 0.0)):
                if not np.isfinite(value) or value <= low:
                    raise ValueError(f"magma_sim: parameter {name} must be > {low}, got {value!r}")
            self.world = SimWorld()
            self.task: Task | None = None
            if instruction:
                self._set_task(instruction)
            reliable_latched = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE,
                                          durability=DurabilityPolicy.TRANSIENT_LOCAL)
            self.pub_image = self.create_publisher(Image, "camera/image_raw", qos_profile_sensor_data)
            self.pub_pose = self.create_publisher(PoseStamped, "sim/ee_pose", 10)
            self.pub_joints = self.create_publisher(JointState, "joint_states", 10)
            self.pub_status = self.create_publisher(String, "sim/status", reliable_latched)
            self.pub_clock = self.create_publisher(Clock, "/clock", 10)
            # only the newest twist matters: a queue of old ones would replay stale motion
            self.create_subscription(TwistStamped, "servo_node/delta_twist_cmds", self._on_twist, 1)
            self.create_subscription(Float64, "magma/gripper_command", self._on_gripper, 10)
            self.create_subscription(String, "magma/instruction", self._on_instruction, reliable_latched)
            self.create_subscription(Int64, "sim/reset", self._on_reset, reliable_latched)
            self.rejected_twists = 0
            self.stale_twists = 0
            self._reset(seed)
            self._wall_start = time.monotonic()
            self._sim_offset = 0.0
            # stepping follows the steady clock (the node's own clock may follow the /clock it publishes)
            self.create_timer(1.0 / (PHYSICS_HZ / TICK_SUBSTEPS) / self.rtf, self._tick,
                              clock=RosClock(clock_type=ClockType.STEADY_TIME))
            self.get_logger().info(f"magma_sim ready: seed {seed}, real-time factor {self.rtf:g}, "
                                   f"camera {self.camera_rate:g} Hz, base frame {BASE_FRAME}")

        # ---- inputs ----
        def _on_twist(self, msg) -> None:
            if msg.header.frame_id != BASE_FRAME:
                self.rejected_twists += 1
                self.get_logger().warning(
                    f"twist in frame {msg.header.frame_id!r} rejected (expected {BASE_FRAME!r}); stopping",
                    throttle_duration_sec=2.0)
                self._twist = (np.zeros(3), np.zeros(3))
                return
            lin, ang = msg.twist.linear, msg.twist.angular
            twist = (np.array([lin.x, lin.y, lin.z]), np.array([ang.x, ang.y, ang.z]))
            if not all(np.all(np.isfinite(v)) for v in twist):
                self.rejected_twists += 1
                self.get_logger().warning("non-finite twist rejected; stopping", throttle_duration_sec=2.0)
                self._twist = (np.zeros(3), np.zeros(3))
                return
            stamp = Time.from_msg(msg.header.stamp)
            age = (self.get_clock().now() - stamp).nanoseconds * 1e-9
            if age > self.timeout:
                self.stale_twists += 1
                self.get_logger().warning(f"twist stamped {age:.2f} s ago ignored (command_timeout_s "
                                          f"{self.timeout:g})", throttle_duration_sec=2.0)
                return
            self._twist = twist
            self._twist_until = stamp + Duration(seconds=self.timeout)

        def _on_gripper(self, msg) -> None:
            if not np.isfinite(msg.data):
                self.get_logger().warning(f"gripper command {msg.data!r} rejected", throttle_duration_sec=2.0)
                return
            self._gripper = float(np.clip(msg.data, 0.0, 1.0))

        def _on_instruction(self, msg) -> None:
            self._set_task(msg.data)

        def _on_reset(self, msg) -> None:
            self._reset(int(msg.data))
            self.get_logger().info(f"episode reset with seed {msg.data}")

        def _set_task(self, instruction: str) -> None:
            try:
                self.task = parse_instruction(instruction)
                self.instruction = instruction
            except TaskError as exc:
                self.task = None
                self.instruction = instruction
                self.get_logger().warning(f"{exc}; /sim/status reports no distance")

        def _reset(self, seed: int) -> None:
            self._sim_offset = getattr(self, "_sim_offset", 0.0) + getattr(self.world, "time", 0.0)
            self.world.reset(seed)
            self.seed = seed
            self._twist = (np.zeros(3), np.zeros(3))
            self._twist_until = None
            self._gripper = 1.0
            self._next_frame = 0.0
            self._publish_frame()

        # ---- stepping ----
        def _tick(self) -> None:
            owed = (time.monotonic() - self._wall_start) * self.rtf - (self._sim_offset + self.world.time)
            tick = TICK_SUBSTEPS / PHYSICS_HZ
            for _ in range(min(MAX_CATCH_UP_TICKS, max(0, int(owed / tick)))):
                fresh = self._twist_until is not None and self.get_clock().now() < self._twist_until
                linear, angular = self._twist if fresh else (np.zeros(3), np.zeros(3))
                self.world.apply(linear, angular, self._gripper, tick)
                self._publish_clock()
                if self.world.time >= self._next_frame:
                    self._next_frame = self.world.time + 1.0 / self.camera_rate
                    self._publish_frame()
            if owed > MAX_CATCH_UP_TICKS * tick * 4:  # too far behind: drop the debt rather than sprint
                self._wall_start += (owed - tick) / self.rtf

        def _publish_frame(self) -> None:
            stamp = self.get_clock().now().to_msg()
            image = self.world.render()
            msg = Image()
            msg.header.stamp, msg.header.frame_id = stamp, "camera"
            msg.height, msg.width = image.shape[:2]
            msg.encoding, msg.is_bigendian, msg.step = "rgb8", 0, image.shape[1] * 3
            msg.data = image.tobytes()
            self.pub_image.publish(msg)
            position, orientation = self.world.ee_pose()
            pose = PoseStamped()
            pose.header.stamp, pose.header.frame_id = stamp, BASE_FRAME
            pose.pose.position.x, pose.pose.position.y, pose.pose.position.z = (float(v) for v in position)
            (pose.pose.orientation.x, pose.pose.orientation.y, pose.pose.orientation.z,
             pose.pose.orientation.w) = (float(v) for v in orientation)
            self.pub_pose.publish(pose)
            names, positions, velocities = self.world.joint_state()
            joints = JointState()
            joints.header.stamp = stamp
            joints.name, joints.position, joints.velocity = list(names), positions.tolist(), velocities.tolist()
            self.pub_joints.publish(joints)
            status = {"seed": self.seed, "time": round(self.world.time, 3), "instruction": None,
                      "distance": None, "success": None, "ee_position": [round(float(v), 4) for v in position],
                      "gripper": self._gripper, "rejected_twists": self.rejected_twists,
                      "stale_twists": self.stale_twists}
            if self.task is not None:
                cube = self.world.cube_position(self.task.colour)
                status.update(instruction=self.instruction, distance=round(self.task.distance(position, cube), 4),
                              success=self.task.succeeded(position, cube))
            self.pub_status.publish(String(data=json.dumps(status)))

        def _publish_clock(self) -> None:
            clock = Clock()
            total = self._sim_offset + self.world.time
            clock.clock.sec, clock.clock.nanosec = int(total), int((total % 1.0) * 1e9)
            self.pub_clock.publish(clock)

        def close(self) -> None:
            self.world.close()

    return SimNode()


if __name__ == "__main__":
    raise SystemExit(main())
