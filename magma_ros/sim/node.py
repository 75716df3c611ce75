"""The ``magma_sim`` node: the simulated world bridged to the package's topics.

It keeps the episode (seed, task, counters), the current command and simulated time, and turns
the world's state into messages; :mod:`.stepping` advances it, in real time or in lockstep.
"""
from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np
from rclpy.node import Node

from ..interface import (
    CLOCK,
    EE_POSE,
    GRIPPER,
    IMAGE,
    INSTRUCTION,
    JOINT_STATES,
    NODE_ACTION,
    SENSOR_PUB_QOS,
    SIM_NODE_NAME,
    SIM_RESET,
    SIM_STATUS,
    TWIST,
    message_class,
)
from ..options import declare_options
from . import messages
from .lockstep import LockstepGate
from .parameters import SIM_PARAMETERS, SimSettings
from .tasks import Task, TaskError, parse_instruction
from .world import BASE_FRAME, PHYSICS_HZ, SimWorld

TICK_SUBSTEPS = 5  # physics steps per tick: 48 ticks per simulated second
TICKS_PER_S = PHYSICS_HZ / TICK_SUBSTEPS
SETTLE_S = 1.0  # lockstep: simulated time after a reset with the arm still and no camera frames


class SimNode(Node):
    """Steps the world and bridges it to topics. Simulated time is a whole number of ticks since
    start (across episodes)."""

    def __init__(self) -> None:
        super().__init__(SIM_NODE_NAME)
        self.settings = SimSettings.from_values(declare_options(self, SIM_PARAMETERS, read_only_all=True))
        self.lockstep = self.settings.lockstep
        self.world = SimWorld()
        self.gate = LockstepGate()
        self.task: Task | None = None
        self.instruction = ""
        if self.settings.instruction:
            self._set_task(self.settings.instruction)
        self.pub_image = self.create_publisher(messages.Image, IMAGE.name, SENSOR_PUB_QOS.profile())
        self.pub_pose = self.create_publisher(messages.PoseStamped, EE_POSE.name, EE_POSE.qos.profile())
        self.pub_joints = self.create_publisher(messages.JointState, JOINT_STATES.name, JOINT_STATES.qos.profile())
        self.pub_status = self.create_publisher(messages.String, SIM_STATUS.name, SIM_STATUS.qos.profile())
        self.pub_clock = self.create_publisher(messages.Clock, CLOCK.name, CLOCK.qos.profile())
        # only the newest twist matters: a queue of old ones would replay stale motion
        # (twist and gripper are subscribed before the reply, so that their callbacks run first)
        self.create_subscription(message_class(TWIST.type), TWIST.name, self._on_twist,
                                 replace(TWIST.qos, depth=1).profile())
        self.create_subscription(message_class(GRIPPER.type), GRIPPER.name, self._on_gripper, GRIPPER.qos.profile())
        self.create_subscription(message_class(NODE_ACTION.type), self.settings.reply_topic, self._on_reply,
                                 NODE_ACTION.qos.profile())
        self.create_subscription(message_class(INSTRUCTION.type), INSTRUCTION.name, self._on_instruction,
                                 INSTRUCTION.qos.profile())
        self.create_subscription(message_class(SIM_RESET.type), SIM_RESET.name, self._on_reset,
                                 SIM_RESET.qos.profile())
        self.rejected_twists = 0
        self.stale_twists = 0
        self.frames_resent = 0
        self._last_image: Any = None
        self.ticks = 0
        self.episodes = -1  # resets applied (the first is the start)
        self.pending_reset: int | None = None
        self.settle_ticks = 0
        self.reset(self.settings.seed)
        if not self.lockstep:
            self.publish_frame()
        self.get_logger().info(
            f"magma_sim ready: seed {self.settings.seed}, "
            f"{'lockstep' if self.lockstep else f'real-time factor {self.settings.real_time_factor:g}'}, "
            f"camera {self.settings.camera_rate_hz:g} Hz, base frame {BASE_FRAME}")

    # ---- time ----
    def now_ns(self) -> int:
        """Simulated time of the current tick (ns)."""
        return int(round(self.ticks * 1e9 / TICKS_PER_S))

    def _stamp_now(self) -> Any:
        return messages.time_msg(self.now_ns()) if self.lockstep else self.get_clock().now().to_msg()

    def _clock_ns(self) -> int:
        """The time twists are judged against: the tick in lockstep, else this node's clock."""
        return self.now_ns() if self.lockstep else self.get_clock().now().nanoseconds

    # ---- inputs ----
    def _on_twist(self, msg: Any) -> None:
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
        timeout = self.settings.command_timeout_s
        if age > timeout:
            self.stale_twists += 1
            self.get_logger().warning(f"twist stamped {age:.2f} s ago ignored (command_timeout_s "
                                      f"{timeout:g})", throttle_duration_sec=2.0)
            return
        self._twist = twist
        self._twist_until = stamp + int(timeout * 1e9)

    def _on_gripper(self, msg: Any) -> None:
        if not np.isfinite(msg.data):
            self.get_logger().warning(f"gripper command {msg.data!r} rejected", throttle_duration_sec=2.0)
            return
        self._gripper = float(np.clip(msg.data, 0.0, 1.0))

    def _on_reply(self, msg: Any) -> None:
        self.gate.on_reply()
        if not self.settle_ticks:  # a late answer to a frame from before the reset is not this episode's
            self.actions += 1

    def _on_instruction(self, msg: Any) -> None:
        self._set_task(msg.data)

    def _on_reset(self, msg: Any) -> None:
        if self.lockstep:  # between ticks, never while the controller has its turn
            self.pending_reset = int(msg.data)
        else:
            self.reset(int(msg.data))
            self.publish_frame()
        self.get_logger().info(f"episode reset with seed {msg.data}")

    def _set_task(self, instruction: str) -> None:
        self.instruction = instruction
        try:
            self.task = parse_instruction(instruction)
        except TaskError as exc:
            self.task = None
            self.get_logger().warning(f"{exc}; {SIM_STATUS.absolute} reports no distance")

    def reset(self, seed: int) -> None:
        """Start an episode: the world from ``seed``, no command, gripper open, counters at zero."""
        self.world.reset(seed)
        self.seed = seed
        self.episodes += 1
        self.actions = 0
        self._twist = (np.zeros(3), np.zeros(3))
        self._twist_until: int | None = None
        self._gripper = 1.0
        self.next_frame = 0.0
        self.settle_ticks = int(round(SETTLE_S * TICKS_PER_S)) if self.lockstep else 0
        self.gate.on_reset()

    # ---- world and outputs ----
    def step_world(self) -> None:
        """One tick of physics with the current command."""
        fresh = self._twist_until is not None and self._clock_ns() < self._twist_until
        linear, angular = self._twist if fresh else (np.zeros(3), np.zeros(3))
        self.world.apply(linear, angular, self._gripper, TICK_SUBSTEPS / PHYSICS_HZ)
        self.ticks += 1

    def publish_frame(self, image: bool = True) -> None:
        """Pose, joint states, status and (with ``image``) a camera frame, all with one stamp."""
        stamp = self._stamp_now()
        position, orientation = self.world.ee_pose()
        self.pub_pose.publish(messages.pose_msg(stamp, BASE_FRAME, position, orientation))
        self.pub_joints.publish(messages.joint_state_msg(stamp, *self.world.joint_state()))
        self.pub_status.publish(messages.status_msg(self._status(position)))
        if image:
            self._last_image = messages.image_msg(stamp, self.world.render())
            self.pub_image.publish(self._last_image)

    def resend_frame(self) -> None:
        """Publish the last camera frame again, same stamp (camera frames are best effort: one can be
        lost; magma_node ignores a frame whose stamp it has already seen)."""
        if self._last_image is not None:
            self.frames_resent += 1
            self.pub_image.publish(self._last_image)

    def _status(self, position: np.ndarray) -> dict[str, Any]:
        status = {"seed": self.seed, "episode": self.episodes, "time": round(self.world.time, 3), "instruction": None,
                  "distance": None, "success": None, "ee_position": [round(float(v), 4) for v in position],
                  "gripper": self._gripper, "actions": self.actions, "rejected_twists": self.rejected_twists,
                  "stale_twists": self.stale_twists, "lockstep": self.lockstep,
                  "lockstep_timeouts": self.gate.timeouts, "frames_resent": self.frames_resent}
        if self.task is not None:
            cube = self.world.cube_position(self.task.colour)
            status.update(instruction=self.instruction, distance=round(self.task.distance(position, cube), 4),
                          success=self.task.succeeded(position, cube))
        return status

    def publish_clock(self) -> None:
        """/clock at the current tick."""
        self.pub_clock.publish(messages.clock_msg(self.now_ns()))

    def close(self) -> None:
        """Disconnect the physics."""
        self.world.close()
