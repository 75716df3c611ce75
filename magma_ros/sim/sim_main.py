"""``magma_sim``: the simulated Panda as a ROS 2 node (PyBullet, headless).

Subscribes the node's commands and executes them, publishes what a real arm's drivers would:

- in:  ``servo_node/delta_twist_cmds`` geometry_msgs/TwistStamped (``panda_link0``, m/s and rad/s),
       ``magma/gripper_command`` std_msgs/Float64 (1.0 open, 0.0 closed),
       ``magma/instruction`` std_msgs/String (the task whose distance ``sim/status`` reports),
       ``sim/reset`` std_msgs/Int64 (a new episode with this seed),
       ``magma_node/action`` std_msgs/Float64MultiArray (the controller's decoded actions: counted,
       and in lockstep its reply to a camera frame)
- out: ``camera/image_raw`` sensor_msgs/Image (rgb8, 256 x 256), ``sim/ee_pose`` PoseStamped,
       ``joint_states`` JointState, ``sim/status`` std_msgs/String (JSON: seed, time, distance,
       success), ``/clock`` rosgraph_msgs/Clock (simulated time)

Topic names are relative (``/clock`` aside): a namespace moves the whole simulated arm.

A twist is executed until the next one or until its stamp is ``command_timeout_s`` old (then the
arm stops); older twists are ignored. Twists in another frame than the base frame are rejected and
stop the arm. With ``lockstep`` the simulator advances one tick (1/48 s) only after the controller
has had its turn: a twist stamped with that tick's time, and after a camera frame its reply.
"""
from __future__ import annotations

import json
import signal
import sys
import time
from typing import Any, Callable

import numpy as np

from .lockstep import LockstepGate
from .tasks import Task, TaskError, parse_instruction
from .world import BASE_FRAME, PHYSICS_HZ, SimWorld

TICK_SUBSTEPS = 5  # physics steps per tick: 48 ticks per simulated second
TICKS_PER_S = PHYSICS_HZ / TICK_SUBSTEPS
MAX_CATCH_UP_TICKS = 12
SETTLE_S = 1.0  # lockstep: simulated time after a reset with the arm still and no camera frames
CLOCK_REPEAT_S = 0.5  # lockstep: while waiting, /clock is repeated this often (wall clock)


SIM_PARAMETERS: tuple[tuple[str, Any, str], ...] = (
    ("lockstep", False, "advance only when the controller has had its turn (run magma_node with "
                        "use_sim_time:=true); false: run in (scaled) real time"),
    ("lockstep_timeout_s", 10.0, "lockstep: longest wait (wall-clock seconds) for the controller's turn "
                                 "before stepping without it (counted as lockstep_timeouts)"),
    ("reply_topic", "magma_node/action", "the controller's decoded actions (std_msgs/Float64MultiArray): "
                                          "its reply to a camera frame"),
    ("real_time_factor", 1.0, "without lockstep: simulated seconds per wall-clock second (> 0); with a "
                              "value other than 1 run this node and magma_node with use_sim_time:=true"),
    ("camera_rate_hz", 10.0, "camera frames per simulated second (lockstep: at most the controller's "
                             "control rate, so that it answers every frame)"),
    ("command_timeout_s", 0.5, "a twist is executed until its stamp is this old (s), then zero; "
                               "older twists are ignored"),
    ("seed", 0, "seed of the first episode"),
    ("instruction", "", "initial task (also set by /magma/instruction)"),
)


class _StopRequest:
    """SIGINT/SIGTERM: raise while starting up, afterwards only ask the loop to end."""

    def __init__(self) -> None:
        self.requested = False
        self.interrupt = True

    def __call__(self, signum: int, frame: object) -> None:
        self.requested = True
        if self.interrupt:
            self.interrupt = False
            raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    """Run the simulator node until Ctrl-C or SIGTERM (exit 0)."""
    stop = _StopRequest()
    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    node = None
    try:
        import rclpy
        from rclpy.executors import SingleThreadedExecutor
        from rclpy.signals import SignalHandlerOptions

        from ..options import Option, parameter_help, wants_help

        argv = list(argv) if argv is not None else sys.argv
        if wants_help(argv):
            print(parameter_help("magma_sim", (__doc__ or "").strip(), [Option(*p) for p in SIM_PARAMETERS],
                                 "magma_sim --ros-args -p seed:=3 -p instruction:='reach the red cube'"))
            return 0
        rclpy.init(args=argv, signal_handler_options=SignalHandlerOptions.NO)
        node = _make_node()
        executor = SingleThreadedExecutor()
        executor.add_node(node)
        stop.interrupt = False  # from here on a signal only ends the loop
        node.run(executor, lambda: stop.requested)
    except KeyboardInterrupt:
        pass
    except Exception as exc:  # noqa: BLE001 - rclpy's ExternalShutdownException ends the loop like a signal
        if type(exc).__name__ != "ExternalShutdownException":
            raise
    finally:
        stop.interrupt = False  # never interrupt the shutdown itself
        if node is not None:
            node.close()
            node.destroy_node()
        if "rclpy" in sys.modules and sys.modules["rclpy"].ok():
            sys.modules["rclpy"].try_shutdown()
        for signum in (signal.SIGINT, signal.SIGTERM):  # a late signal must not kill the exit
            signal.signal(signum, signal.SIG_IGN)
    return 0


def _make_node():
    from geometry_msgs.msg import PoseStamped, TwistStamped
    from rclpy.node import Node
    from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
    from rcl_interfaces.msg import ParameterDescriptor
    from rosgraph_msgs.msg import Clock
    from sensor_msgs.msg import Image
    from sensor_msgs.msg import JointState
    from std_msgs.msg import Float64, Float64MultiArray, Int64, String

    class SimNode(Node):
        """Steps the world, in (scaled) real time or in lockstep with the controller, and bridges it
        to topics. Simulated time is a whole number of ticks since start (across episodes)."""

        def __init__(self) -> None:
            super().__init__("magma_sim")
            values = {name: self.declare_parameter(name, default, ParameterDescriptor(description=text)).value
                      for name, default, text in SIM_PARAMETERS}
            self.lockstep = bool(values["lockstep"])
            self.lockstep_timeout = float(values["lockstep_timeout_s"])
            self.rtf = float(values["real_time_factor"])
            self.camera_rate = float(values["camera_rate_hz"])
            self.timeout = float(values["command_timeout_s"])
            seed = int(values["seed"])
            instruction = str(values["instruction"])
            for name, value in (("real_time_factor", self.rtf), ("camera_rate_hz", self.camera_rate),
                                ("command_timeout_s", self.timeout), ("lockstep_timeout_s", self.lockstep_timeout)):
                if not np.isfinite(value) or value <= 0.0:
                    raise ValueError(f"magma_sim: parameter {name} must be > 0, got {value!r}")
            self.world = SimWorld()
            self.gate = LockstepGate()
            self.task: Task | None = None
            self.instruction = ""
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
            # (twist and gripper are subscribed before the reply, so that their callbacks run first)
            self.create_subscription(TwistStamped, "servo_node/delta_twist_cmds", self._on_twist, 1)
            self.create_subscription(Float64, "magma/gripper_command", self._on_gripper, 10)
            self.create_subscription(Float64MultiArray, str(values["reply_topic"]), self._on_reply, 10)
            self.create_subscription(String, "magma/instruction", self._on_instruction, reliable_latched)
            self.create_subscription(Int64, "sim/reset", self._on_reset, reliable_latched)
            self.rejected_twists = 0
            self.stale_twists = 0
            self._ticks = 0
            self.episodes = -1  # resets applied (the first is the start)
            self._pending_reset: int | None = None
            self._settle_ticks = 0
            self._reset(seed)
            if not self.lockstep:
                self._publish_frame()
            self.get_logger().info(
                f"magma_sim ready: seed {seed}, "
                f"{'lockstep' if self.lockstep else f'real-time factor {self.rtf:g}'}, "
                f"camera {self.camera_rate:g} Hz, base frame {BASE_FRAME}")

        # ---- time ----
        def _now_ns(self) -> int:
            """Simulated time of the current tick (ns)."""
            return int(round(self._ticks * 1e9 / TICKS_PER_S))

        def _stamp_now(self):
            from builtin_interfaces.msg import Time as TimeMsg

            if self.lockstep:
                ns = self._now_ns()
                return TimeMsg(sec=ns // 1_000_000_000, nanosec=ns % 1_000_000_000)
            return self.get_clock().now().to_msg()

        def _clock_ns(self) -> int:
            """The time twists are judged against: the tick in lockstep, else this node's clock."""
            return self._now_ns() if self.lockstep else self.get_clock().now().nanoseconds

        # ---- inputs ----
        def _on_twist(self, msg) -> None:
            stamp = msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec
            now = self._clock_ns()
            if self.lockstep:
                self.gate.on_twist(stamp, now)
                if self.gate.foreign_stamps == 1 and not self.gate.engaged:
                    self.get_logger().warning("twist stamps are not on the simulated clock: run the controller "
                                              "with use_sim_time:=true for lockstep")
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
            age = (now - stamp) * 1e-9
            if age > self.timeout:
                self.stale_twists += 1
                self.get_logger().warning(f"twist stamped {age:.2f} s ago ignored (command_timeout_s "
                                          f"{self.timeout:g})", throttle_duration_sec=2.0)
                return
            self._twist = twist
            self._twist_until = stamp + int(self.timeout * 1e9)

        def _on_gripper(self, msg) -> None:
            if not np.isfinite(msg.data):
                self.get_logger().warning(f"gripper command {msg.data!r} rejected", throttle_duration_sec=2.0)
                return
            self._gripper = float(np.clip(msg.data, 0.0, 1.0))

        def _on_reply(self, msg) -> None:
            self.gate.on_reply()
            if not self._settle_ticks:  # a late answer to a frame from before the reset is not this episode's
                self.actions += 1

        def _on_instruction(self, msg) -> None:
            self._set_task(msg.data)

        def _on_reset(self, msg) -> None:
            if self.lockstep:  # between ticks, never while the controller has its turn
                self._pending_reset = int(msg.data)
            else:
                self._reset(int(msg.data))
                self._publish_frame()
            self.get_logger().info(f"episode reset with seed {msg.data}")

        def _set_task(self, instruction: str) -> None:
            self.instruction = instruction
            try:
                self.task = parse_instruction(instruction)
            except TaskError as exc:
                self.task = None
                self.get_logger().warning(f"{exc}; /sim/status reports no distance")

        def _reset(self, seed: int) -> None:
            self.world.reset(seed)
            self.seed = seed
            self.episodes += 1
            self.actions = 0
            self._twist = (np.zeros(3), np.zeros(3))
            self._twist_until: int | None = None
            self._gripper = 1.0
            self._next_frame = 0.0
            self._settle_ticks = int(round(SETTLE_S * TICKS_PER_S)) if self.lockstep else 0
            self.gate.on_reset()

        # ---- stepping ----
        def run(self, executor, stop: Callable[[], bool]) -> None:
            """Step until ``stop()``: in lockstep, or paced by the steady clock."""
            if self.lockstep:
                self._run_lockstep(executor, stop)
            else:
                self._run_real_time(executor, stop)

        def _run_real_time(self, executor, stop: Callable[[], bool]) -> None:
            tick = 1.0 / TICKS_PER_S
            wall_start = time.monotonic()
            while not stop():
                owed = (time.monotonic() - wall_start) * self.rtf - self._ticks * tick
                for _ in range(min(MAX_CATCH_UP_TICKS, max(0, int(owed / tick)))):
                    self._step_tick()
                if owed > MAX_CATCH_UP_TICKS * tick * 4:  # too far behind: drop the debt rather than sprint
                    wall_start += (owed - tick) / self.rtf
                next_due = wall_start + (self._ticks + 1) * tick / self.rtf
                executor.spin_once(timeout_sec=max(0.0, min(0.05, next_due - time.monotonic())))

        def _run_lockstep(self, executor, stop: Callable[[], bool]) -> None:
            tick = 1.0 / TICKS_PER_S
            free_since: tuple[float, int] | None = None  # (wall, tick) when running without the controller
            while not stop():
                if self._pending_reset is not None:
                    seed, self._pending_reset = self._pending_reset, None
                    self._reset(seed)
                now = self._now_ns()
                self._publish_clock()
                if self._settle_ticks and self._ticks % max(1, int(round(TICKS_PER_S / self.camera_rate))) == 0:
                    self._publish_frame(image=False)  # pose and status keep flowing while settling
                if not self._wait(executor, stop, lambda: self.gate.tick_answered(now)):
                    self.gate.tick_timed_out()
                    self.get_logger().warning(f"lockstep: no command stamped t={now * 1e-9:.3f} s within "
                                              f"{self.lockstep_timeout:g} s; running without the controller")
                if self._settle_ticks:
                    self._settle_ticks -= 1
                    self._ticks += 1
                elif self.world.time >= self._next_frame - 1e-9:
                    expect = self.gate.expects_reply(bool(self.instruction))
                    replies = self.gate.replies
                    self._next_frame = self.world.time + 1.0 / self.camera_rate
                    self._publish_frame()
                    if expect and not self._wait(executor, stop,
                                                 lambda: self.gate.reply_answered(replies)):
                        self.gate.reply_timed_out()
                        self.get_logger().warning(
                            f"lockstep: no reply on the reply topic to the frame at t={now * 1e-9:.3f} s within "
                            f"{self.lockstep_timeout:g} s; frames no longer wait (is camera_rate_hz above the "
                            "controller's control rate, or is its backend failing?)")
                    self._step_world()
                else:
                    self._step_world()
                if self.gate.engaged:
                    free_since = None
                    executor.spin_once(timeout_sec=0.0)
                    continue
                if free_since is None:  # no controller on our clock: real time until it shows up
                    free_since = (time.monotonic(), self._ticks)
                due = free_since[0] + (self._ticks - free_since[1]) * tick
                if time.monotonic() - due > MAX_CATCH_UP_TICKS * tick:  # behind: drop the debt, never sprint
                    free_since = (time.monotonic(), self._ticks)
                executor.spin_once(timeout_sec=0.0)  # inputs are served even when running behind
                while not stop() and not self.gate.engaged and time.monotonic() < due:
                    executor.spin_once(timeout_sec=max(0.0, min(0.05, due - time.monotonic())))

        def _wait(self, executor, stop: Callable[[], bool], done: Callable[[], bool]) -> bool:
            """Spin until ``done()``; False after lockstep_timeout_s (wall clock). /clock is repeated
            meanwhile, in case the controller missed it."""
            start = last_clock = time.monotonic()
            while not done():
                if stop():
                    return True
                now = time.monotonic()
                if now - start > self.lockstep_timeout:
                    return False
                if now - last_clock > CLOCK_REPEAT_S:
                    self._publish_clock()
                    last_clock = now
                executor.spin_once(timeout_sec=0.05)
            return True

        def _step_tick(self) -> None:
            """Real-time mode: one tick of physics, /clock, and a camera frame when one is due."""
            self._step_world()
            self._publish_clock()
            if self.world.time >= self._next_frame:
                self._next_frame = self.world.time + 1.0 / self.camera_rate
                self._publish_frame()

        def _step_world(self) -> None:
            """One tick of physics with the current command."""
            fresh = self._twist_until is not None and self._clock_ns() < self._twist_until
            linear, angular = self._twist if fresh else (np.zeros(3), np.zeros(3))
            self.world.apply(linear, angular, self._gripper, TICK_SUBSTEPS / PHYSICS_HZ)
            self._ticks += 1

        def _publish_frame(self, image: bool = True) -> None:
            stamp = self._stamp_now()
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
            status = {"seed": self.seed, "episode": self.episodes, "time": round(self.world.time, 3), "instruction": None,
                      "distance": None, "success": None, "ee_position": [round(float(v), 4) for v in position],
                      "gripper": self._gripper, "actions": self.actions, "rejected_twists": self.rejected_twists,
                      "stale_twists": self.stale_twists, "lockstep": self.lockstep,
                      "lockstep_timeouts": self.gate.timeouts}
            if self.task is not None:
                cube = self.world.cube_position(self.task.colour)
                status.update(instruction=self.instruction, distance=round(self.task.distance(position, cube), 4),
                              success=self.task.succeeded(position, cube))
            self.pub_status.publish(String(data=json.dumps(status)))
            if image:
                pixels = self.world.render()
                msg = Image()
                msg.header.stamp, msg.header.frame_id = stamp, "camera"
                msg.height, msg.width = pixels.shape[:2]
                msg.encoding, msg.is_bigendian, msg.step = "rgb8", 0, pixels.shape[1] * 3
                msg.data = pixels.tobytes()
                self.pub_image.publish(msg)

        def _publish_clock(self) -> None:
            clock = Clock()
            ns = self._now_ns()
            clock.clock.sec, clock.clock.nanosec = ns // 1_000_000_000, ns % 1_000_000_000
            self.pub_clock.publish(clock)

        def close(self) -> None:
            self.world.close()

    return SimNode()


if __name__ == "__main__":
    raise SystemExit(main())
