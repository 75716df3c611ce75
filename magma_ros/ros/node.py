"""magma_node: camera + instruction in, safe TwistStamped and gripper commands out.

The node only wires things up: the frame/instruction/inference turn is ``safety.NodeCore`` (no
ROS; its inference thread runs the policy on the newest frame), whose actions the
``safety.SafetySupervisor`` judges; the supervisor's command is republished at ``publish_rate_hz``
by a thread of its own (``periodic.PeriodicThread``, monotonic deadlines; an rclpy timer on the
ROS clock instead with use_sim_time, so that republishing follows simulated time). Every callback
is guarded: an exception is logged, counted (``internal_errors``) and faults the node, which then
commands zero.
"""
from __future__ import annotations

import time
from dataclasses import replace
from typing import Any, Callable

from diagnostic_msgs.msg import DiagnosticArray
from geometry_msgs.msg import PoseStamped
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
from rclpy.node import Node
from sensor_msgs.msg import CompressedImage, Image
from std_msgs.msg import Bool, Float64, Float64MultiArray, String
from std_srvs.srv import SetBool, Trigger

from ..image_msgs import compressed_to_rgb, image_to_rgb
from ..interface import (
    ACTION,
    COMPRESSED_SUFFIX,
    DIAGNOSTICS,
    EE_POSE,
    ENABLE,
    ESTOP,
    GRIPPER,
    IMAGE,
    INSTRUCTION,
    NODE_NAME,
    RESET,
)
from ..policy.base import Policy
from ..policy.registry import create_policy
from ..safety.frames import FrameGate
from ..safety.node_core import NodeCore, TurnOutputs
from ..safety.node_stats import NodeStats
from ..safety.supervisor import SafetySupervisor
from .command_output import CommandOutput
from .debug_views import DebugViews
from .diagnostics import build_diagnostics, node_values
from .node_clock import DIAGNOSTICS_PERIOD_S, RosClock
from .node_errors import ErrorReporter, service_failed
from .node_parameters import watch_parameters
from .params import declare_parameters
from .settings import NodeSettings, build_settings

THROTTLE_S = 2.0  # bad-input warnings are logged at most this often per kind
CLOSE_WAIT_S = 0.5  # at shutdown, how long to wait for an inference in progress (after the final zero)


class MagmaNode(Node):
    """The magma_node ROS node. Pass ``policy`` to use an already-built backend (tests, the
    simulator); otherwise one is created from the backend parameters. ``clock`` (seconds) drives
    every safety decision; by default the monotonic clock, or ROS time with use_sim_time."""

    def __init__(self, policy: Policy | None = None, *, node_name: str = NODE_NAME,
                 clock: Callable[[], float] | None = None, **node_kwargs: Any) -> None:
        super().__init__(node_name, **node_kwargs)
        try:
            self._init_clock(clock)
            self._setup(build_settings(declare_parameters(self)), policy)
        except BaseException:
            if getattr(self, "_owns_policy", False) and getattr(self, "policy", None) is not None:
                self.policy.close()
            self.destroy_node()
            raise

    def _init_clock(self, clock: Callable[[], float] | None) -> None:
        """The safety clock: ``clock``, else simulated seconds with use_sim_time (holds and timeouts
        follow the simulator), else the monotonic clock (immune to wall-clock jumps)."""
        self.ros_clock = RosClock(self)
        self._now = clock or (self.ros_clock.seconds if self.get_parameter("use_sim_time").value else time.monotonic)

    def _setup(self, settings: NodeSettings, policy: Policy | None) -> None:
        """Load the policy (unless given) and create everything the node runs with ``settings``."""
        s = self.settings = settings
        self.profile = s.profile
        self._owns_policy = policy is None
        self.policy = policy if policy is not None else self._create_policy()
        self.supervisor = SafetySupervisor(s.limits, s.timing, self._now, enabled=s.enabled_on_start)
        self.stats = NodeStats(self._now)
        self.commands = CommandOutput(self, s.twist_topic, self.supervisor, self.stats, lambda: self.settings.frame_id,
                                      self.ros_clock.stamp, self.publish_diagnostics)
        self._publish_command, self._publish_lock = self.commands.publish, self.commands.lock
        self.errors = ErrorReporter(self.get_logger(), self.stats, self.supervisor, self._publish_command,
                                    lambda: self.commands.closed)
        self._guard = self.errors.guard
        inputs, control, services = (MutuallyExclusiveCallbackGroup() for _ in range(3))
        self.gripper_pub = self.create_publisher(Float64, s.gripper_topic, GRIPPER.qos.profile())
        self.action_pub = self.create_publisher(Float64MultiArray, ACTION.name, ACTION.qos.profile())
        self.diag_pub = self.create_publisher(DiagnosticArray, DIAGNOSTICS.name, DIAGNOSTICS.qos.profile())
        self.views = DebugViews(self)
        # only new, recent frames reach the model (a frame published again is not a new one)
        frames = FrameGate(self.ros_clock.time_ns, s.max_image_age_s, s.allow_unstamped_images)
        self.core = NodeCore(self.policy, self.profile, self.supervisor, frames, self.stats, self._now, TurnOutputs(
            command_now=self._publish_command, gripper=lambda value: self.gripper_pub.publish(Float64(data=value)),
            action=lambda action: self.action_pub.publish(Float64MultiArray(data=[float(v) for v in action])),
            show=self.views.show, warn=lambda text: self.get_logger().warning(text, throttle_duration_sec=THROTTLE_S),
            ignored=lambda text: self.get_logger().warning(text, throttle_duration_sec=THROTTLE_S),
            info=self.get_logger().info), lambda exc: self.errors.report("the inference thread", exc))
        image_topic, image_type, on_image = ((s.image_topic.rstrip("/") + COMPRESSED_SUFFIX, CompressedImage,
                                              self._on_compressed) if s.compressed_image else
                                             (s.image_topic, Image, self._on_image))
        subscriptions = [(image_type, image_topic, "image", on_image, IMAGE),
                         (String, s.instruction_topic, "instruction", self._on_instruction, INSTRUCTION),
                         (Bool, s.estop_topic, "e-stop", self._on_estop, ESTOP)]
        if s.ee_pose_topic:
            subscriptions.append((PoseStamped, s.ee_pose_topic, "ee_pose", self._on_ee_pose, EE_POSE))
        for msg_type, topic, where, callback, entry in subscriptions:
            self.create_subscription(msg_type, topic, self._guard(where, callback), entry.qos.profile(),
                                     callback_group=inputs)
        for srv_type, name, on_call in ((SetBool, ENABLE.name, self._on_enable), (Trigger, RESET.name, self._on_reset)):
            self.create_service(srv_type, name, self._guard(name, on_call, service_failed), callback_group=services)
        self._post_set = watch_parameters(self, self._guard, lambda: self.settings, self._apply_settings)
        if s.allow_unstamped_images:
            self.get_logger().warning("allow_unstamped_images: camera frames stamped 0 are taken as stamped on "
                                      "arrival; their age cannot be checked")
        self.core.start()
        if s.instruction:
            self.core.set_instruction(s.instruction, s.max_instruction_chars)
        if self.get_parameter("use_sim_time").value:
            self.create_timer(s.timing.publish_period_s, self._guard("publish timer", self._on_publish_timer),
                              callback_group=control)
            self.ros_clock.watch(self._guard, lambda: self.supervisor.timing.publish_period_s,
                                 self._publish_command, self.publish_diagnostics)
        else:
            self.commands.run_periodically(s.timing.publish_period_s, self._on_publish_timer, self.errors.report)
        self.create_timer(DIAGNOSTICS_PERIOD_S, self._guard("diagnostics", self.publish_diagnostics),
                          callback_group=inputs)
        self.get_logger().info(
            f"robot {self.profile.name} ({s.control_rate_hz:g} Hz), backend {self._backend_name()}, image "
            f"{image_topic}, commands {s.twist_topic} in {s.frame_id} at {s.publish_rate_hz:g} Hz, "
            f"{'enabled' if self.supervisor.enabled else 'disabled (call ~/enable)'}")

    def _create_policy(self) -> Policy:
        """The backend of the parameters; a remote endpoint knows this robot by its node name unless
        robot_id says otherwise."""
        config = self.settings.backend
        return create_policy(replace(config, robot_id=config.robot_id or self.get_fully_qualified_name()), self.profile)

    def _backend_name(self) -> str:
        return self.settings.backend.backend if self._owns_policy else type(self.policy).__name__

    # --- inputs --------------------------------------------------------------------------------
    def _on_image(self, msg: Image) -> None:
        self.core.accept_image(msg.header.stamp.sec, msg.header.stamp.nanosec, lambda: image_to_rgb(msg))

    def _on_compressed(self, msg: CompressedImage) -> None:
        self.core.accept_image(msg.header.stamp.sec, msg.header.stamp.nanosec, lambda: compressed_to_rgb(msg))

    def _on_instruction(self, msg: String) -> None:
        self.stats.count("instructions_received")
        self.core.set_instruction(msg.data, self.settings.max_instruction_chars)

    def _on_estop(self, msg: Bool) -> None:
        self.supervisor.estop(bool(msg.data))
        if msg.data:
            self._publish_command()  # stop now, not at the next tick

    def _on_ee_pose(self, msg: PoseStamped) -> None:
        p = msg.pose.position
        self.core.accept_ee_pose(msg.header.frame_id, self.settings.frame_id, (p.x, p.y, p.z))

    # --- outputs -------------------------------------------------------------------------------
    def _on_publish_timer(self) -> None:
        self.stats.tick_times.append(self._now())
        self._publish_command()

    def publish_diagnostics(self) -> None:
        """Publish the state, last fault, rates, latency and counters on /diagnostics."""
        command, core = self.commands.last, self.core
        values = node_values(self.supervisor, self.stats, command, instruction=core.instruction,
                             backend=self._backend_name(), control_rate_hz=self.settings.control_rate_hz,
                             images_dropped=core.worker.dropped, frames=core.frames)
        self.diag_pub.publish(build_diagnostics(
            self.ros_clock.stamp(), f"{self.get_name()}: safety", self.profile.name,
            command.state if command else self.supervisor.state, command.reason if command else "starting", values))

    # --- services and parameters ---------------------------------------------------------------
    def _on_enable(self, request: SetBool.Request, response: SetBool.Response) -> SetBool.Response:
        self.supervisor.set_enabled(request.data)
        command = self._publish_command()
        if command is None:
            return service_failed(request, response, "shutting down")
        response.success = True
        response.message = f"{'enabled' if request.data else 'disabled'}; state {command.state.value}: {command.reason}"
        self.get_logger().info(response.message)
        return response

    def _on_reset(self, request: Trigger.Request, response: Trigger.Response) -> Trigger.Response:
        response.success, response.message = self.supervisor.reset()
        self._publish_command()
        self.get_logger().info(f"reset: {response.message}")
        return response

    def _apply_settings(self, settings: NodeSettings) -> None:
        """A validated parameter change, applied before it is acknowledged: limits, rates and
        timeouts bind the next published command (the held action is re-clamped and its hold cut
        to a new period)."""
        with self._publish_lock:  # no command computed under the old limits goes out after this
            previous, self.settings = self.settings, settings
            self.supervisor.configure(settings.limits, settings.timing)
            self.core.frames.configure(settings.max_image_age_s)
        if settings.instruction != previous.instruction:
            if settings.instruction:
                self.core.set_instruction(settings.instruction, settings.max_instruction_chars)
            else:
                self.core.clear_instruction(None, "instruction parameter cleared")

    # --- shutdown ------------------------------------------------------------------------------
    def close(self) -> None:
        """Command a final zero twist, stop inference (waiting at most CLOSE_WAIT_S for a model
        call in progress), release an owned policy, destroy the node."""
        if self.commands.closed:
            return
        self.supervisor.set_enabled(False)
        self.commands.close()
        self.core.close()
        self.commands.stop_loop()
        self.commands.publish_final()
        if not self.core.stop(timeout=CLOSE_WAIT_S):
            self.get_logger().warning("inference still running at shutdown; not waiting for it")
        if self._owns_policy:
            try:
                self.policy.close()
            except Exception as exc:  # noqa: BLE001 - shutting down regardless
                self.get_logger().warning(f"closing the backend failed: {type(exc).__name__}: {exc}")
        self.destroy_node()

    def destroy_node(self):
        """Stop the publish thread first: it must not publish through a destroyed node."""
        if getattr(self, "commands", None) is not None:
            self.commands.stop_loop()
        return super().destroy_node()
