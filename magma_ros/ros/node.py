"""magma_node: camera + instruction in, safe TwistStamped and gripper commands out.

The node only wires things up: images and instructions go to an inference thread running the
policy; predictions are decoded (``safety.ActionConverter``) and judged by the
``safety.SafetySupervisor``, whose command is republished at ``publish_rate_hz`` by a thread of
its own (``periodic.PeriodicThread``, monotonic deadlines; an rclpy timer on the ROS clock instead
with use_sim_time, so that republishing follows simulated time). Every callback is guarded: an
exception is logged, counted (``internal_errors``) and faults the node, which then commands zero.
"""
from __future__ import annotations

import math
import threading
import time
import traceback
from dataclasses import replace
from typing import Any, Callable, TypeVar

from builtin_interfaces.msg import Time
from geometry_msgs.msg import PoseStamped, TwistStamped
from rcl_interfaces.msg import SetParametersResult
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
from rclpy.clock import JumpThreshold
from rclpy.duration import Duration
from rclpy.node import Node
from rclpy.parameter import Parameter
from sensor_msgs.msg import CompressedImage, Image
from std_msgs.msg import Bool, Float64, Float64MultiArray, String
from std_srvs.srv import SetBool, Trigger
from diagnostic_msgs.msg import DiagnosticArray

from ..policy.base import Policy
from ..policy.registry import create_policy
from ..safety.conversion import ActionConverter
from ..safety.frames import NO_CLOCK, REPEATED, FrameGate
from ..safety.supervisor import Command, SafetyState, SafetySupervisor
from .debug_views import DebugViews
from .diagnostics import NodeStats, build_diagnostics
from ..image_msgs import ImageError, compressed_to_rgb, image_to_rgb
from ..interface import (ACTION, COMPRESSED_SUFFIX, DIAGNOSTICS, EE_POSE, ENABLE, ESTOP, GRIPPER, IMAGE, INSTRUCTION,
                         NODE_NAME, RESET, TWIST)
from .inference import Frame, InferenceWorker
from .params import declare_parameters
from .periodic import PeriodicThread
from .settings import NODE_PARAMETERS, NodeSettings, SettingsError, build_settings

THROTTLE_S = 2.0  # bad-input warnings are logged at most this often per kind
DIAGNOSTICS_PERIOD_S = 1.0
FINAL_ACK_TIMEOUT_S = 1.0  # how long shutdown waits for subscribers to acknowledge the final zero twist
CLOSE_WAIT_S = 0.5  # at shutdown, how long to wait for an inference in progress (after the final zero)
INTERNAL = "internal"  # fault source of an exception in the node's own code: cleared by ~/reset
T = TypeVar("T")


class MagmaNode(Node):
    """The magma_node ROS node. Pass ``policy`` to use an already-built backend (tests, the
    simulator); otherwise one is created from the backend parameters. ``clock`` (seconds) drives
    every safety decision; by default the monotonic clock, or ROS time with use_sim_time."""

    def __init__(self, policy: Policy | None = None, *, node_name: str = NODE_NAME,
                 clock: Callable[[], float] | None = None, **node_kwargs: Any) -> None:
        super().__init__(node_name, **node_kwargs)
        try:
            self._now = clock or self._default_clock()
            self._setup(build_settings(declare_parameters(self)), policy)
        except BaseException:
            if getattr(self, "_owns_policy", False) and hasattr(self, "policy"):
                self.policy.close()
            self.destroy_node()
            raise

    def _default_clock(self) -> Callable[[], float]:
        """Simulated seconds with use_sim_time (holds and timeouts follow the simulator), else the
        monotonic clock (immune to wall-clock jumps)."""
        return self._ros_seconds if self.get_parameter("use_sim_time").value else time.monotonic

    def _ros_seconds(self) -> float:
        """ROS time now (s); -inf while it is negative: the supervisor's clock fault."""
        ns = self._ros_time_ns()
        return -math.inf if ns is None else ns * 1e-9

    def _ros_time_ns(self) -> int | None:
        """ROS time now (ns): simulated with use_sim_time, else system time. None while the last
        /clock was negative (rclpy keeps the time before it: it has no negative time)."""
        if self._clock_negative:
            return None
        try:
            return self.get_clock().now().nanoseconds
        except ValueError:  # a negative time that reached the clock another way: rclpy's Time refuses it
            return None

    def _stamp_now(self) -> Time:
        """A header stamp for now; time 0 while ROS time is negative (see ``_ros_time_ns``)."""
        ns = self._ros_time_ns()
        return Time() if ns is None else Time(sec=ns // 1_000_000_000, nanosec=ns % 1_000_000_000)

    def _setup(self, settings: NodeSettings, policy: Policy | None) -> None:
        """Load the policy (unless given) and create everything the node runs with ``settings``."""
        self._clock_negative = False  # the last /clock message had a negative time
        self._negative_clock_tick = -math.inf  # monotonic times of the last command and diagnostics
        self._negative_clock_diagnostics = -math.inf  # published on a negative /clock
        clock = self._now
        self.settings = settings
        self.profile = self.settings.profile
        self._owns_policy = policy is None
        self.policy = policy if policy is not None else self._create_policy()
        self.converter = ActionConverter(self.profile, self.policy.vocab_size)
        self._convert_lock = threading.Lock()
        self._publish_lock = threading.Lock()
        self.supervisor = SafetySupervisor(self.settings.limits, self.settings.timing, clock,
                                           enabled=self.settings["enabled_on_start"])
        self.stats = NodeStats(clock)
        self._instruction = ""
        self._instruction_version = 0
        self._last_command: Command | None = None
        self._closed = False
        self._publish_loop: PeriodicThread | None = None
        self._jump_handle = None
        self._errors_logged: dict[str, float] = {}  # where -> when its last internal error was logged

        inputs = MutuallyExclusiveCallbackGroup()
        control = MutuallyExclusiveCallbackGroup()
        services = MutuallyExclusiveCallbackGroup()
        s = self.settings
        self.twist_pub = self.create_publisher(TwistStamped, s["twist_topic"], TWIST.qos.profile())
        self.gripper_pub = self.create_publisher(Float64, s["gripper_topic"], GRIPPER.qos.profile())
        self.action_pub = self.create_publisher(Float64MultiArray, ACTION.name, ACTION.qos.profile())
        self.diag_pub = self.create_publisher(DiagnosticArray, DIAGNOSTICS.name, DIAGNOSTICS.qos.profile())
        self.views = DebugViews(self)
        if s["compressed_image"]:
            try:
                import cv2  # noqa: F401  (fail at start-up, not on the first frame)
            except ImportError:
                raise SettingsError("compressed_image: needs OpenCV (pip install 'magma_ros[compressed]' "
                                    "or the python3-opencv package)") from None
            image_topic = s["image_topic"].rstrip("/") + COMPRESSED_SUFFIX
            self.create_subscription(CompressedImage, image_topic, self._guard("image", self._on_compressed),
                                     IMAGE.qos.profile(), callback_group=inputs)
        else:
            image_topic = s["image_topic"]
            self.create_subscription(Image, image_topic, self._guard("image", self._on_image), IMAGE.qos.profile(),
                                     callback_group=inputs)
        self.create_subscription(String, s["instruction_topic"], self._guard("instruction", self._on_instruction),
                                 INSTRUCTION.qos.profile(), callback_group=inputs)
        self.create_subscription(Bool, s["estop_topic"], self._guard("e-stop", self._on_estop), ESTOP.qos.profile(),
                                 callback_group=inputs)
        if s["ee_pose_topic"]:
            self.create_subscription(PoseStamped, s["ee_pose_topic"], self._guard("ee_pose", self._on_ee_pose),
                                     EE_POSE.qos.profile(), callback_group=inputs)
        self.create_service(SetBool, ENABLE.name, self._guard(ENABLE.name, self._on_enable, _service_failed),
                            callback_group=services)
        self.create_service(Trigger, RESET.name, self._guard(RESET.name, self._on_reset, _service_failed),
                            callback_group=services)
        # validate in the on-set callback, apply in the post-set one (rclpy >= Iron; Humble: on-set applies)
        self._post_set = hasattr(self, "add_post_set_parameters_callback")
        self.add_on_set_parameters_callback(self._guard("parameters", self._on_set_parameters, _parameters_failed))
        if self._post_set:
            self.add_post_set_parameters_callback(self._guard("parameters", self._apply_parameters))
        # only new, recent frames reach the model (a frame published again is not a new one)
        self.frames = FrameGate(self._ros_time_ns, self.settings.max_image_age_s, s["allow_unstamped_images"])
        if s["allow_unstamped_images"]:
            self.get_logger().warning("allow_unstamped_images: camera frames stamped 0 are taken as stamped on "
                                      "arrival; their age cannot be checked")
        self.worker = InferenceWorker(self._infer, lambda: self.supervisor.timing.control_period_s,
                                      self._on_inference_error, clock)
        self.worker.start()
        if s["instruction"]:
            self._set_instruction(s["instruction"])
        if self.get_parameter("use_sim_time").value:
            self.create_timer(s.timing.publish_period_s, self._guard("publish timer", self._on_publish_timer),
                              callback_group=control)
            # a /clock that goes back (bag restart, simulator reset) stops the robot at once, not at the next tick
            self._jump_handle = self.get_clock().create_jump_callback(
                JumpThreshold(min_forward=None, min_backward=Duration(nanoseconds=-1), on_clock_change=True),
                post_callback=self._guard("clock jump", self._on_clock_jump))
            self._check_clock_topic()
        else:
            # not an executor timer: its callbacks queue behind the executor's wait-set rebuilds and
            # image takes (jitter measured in bench/node_latency.py; see periodic.py)
            self._publish_loop = PeriodicThread(s.timing.publish_period_s, self._on_publish_timer,
                                                self._on_publish_error)
            self._publish_loop.start()
        self.create_timer(DIAGNOSTICS_PERIOD_S, self._guard("diagnostics", self.publish_diagnostics),
                          callback_group=inputs)
        self.get_logger().info(
            f"robot {self.profile.name} ({self.settings.control_rate_hz:g} Hz), backend "
            f"{s['backend'] if self._owns_policy else type(self.policy).__name__}, image {image_topic}, "
            f"commands {s['twist_topic']} in {self.settings.frame_id} at {s['publish_rate_hz']:g} Hz, "
            f"{'enabled' if self.supervisor.enabled else 'disabled (call ~/enable)'}")

    def _create_policy(self) -> Policy:
        """The backend of the parameters; a remote endpoint knows this robot by its node name unless
        robot_id says otherwise."""
        config = self.settings.backend_config()
        config = replace(config, robot_id=config.robot_id or self.get_fully_qualified_name())
        return create_policy(config, self.profile)

    # --- errors --------------------------------------------------------------------------------
    def _guard(self, where: str, callback: Callable[..., T],
               failed: Callable[..., T] | None = None) -> Callable[..., T | None]:
        """``callback`` for rclpy: an exception is reported (``report_internal_error``) and, for a
        service or parameter callback, ``failed(*args, message)`` makes its reply."""
        def guarded(*args: Any) -> T | None:
            try:
                return callback(*args)
            except Exception as exc:  # noqa: BLE001 - no exception may end the node
                message = self.report_internal_error(where, exc)
                return failed(*args, message) if failed is not None else None
        return guarded

    def report_internal_error(self, where: str, exc: BaseException) -> str:
        """An exception in the node's own code: log it with its traceback, count it, fault the node
        (zero until ~/reset) and command zero now. Returns the one-line message."""
        message = f"internal error in {where}: {type(exc).__name__}: {exc}"
        if self._closed:
            return message
        try:
            self.stats.count("internal_errors")
            self.supervisor.reject(INTERNAL, message + " (call ~/reset)")
            now = time.monotonic()
            if now - self._errors_logged.get(where, -math.inf) >= THROTTLE_S:  # per place, not per call site
                self._errors_logged[where] = now
                self.get_logger().error(message + "\n" + "".join(
                    traceback.format_exception(type(exc), exc, exc.__traceback__)).rstrip())
            self._publish_command()
        except Exception as again:  # noqa: BLE001 - reporting must not raise into rclpy either
            traceback.print_exception(type(again), again, again.__traceback__)
        return message

    # --- inputs --------------------------------------------------------------------------------
    def _on_image(self, msg: Image) -> None:
        self._accept_image(image_to_rgb, msg)

    def _on_compressed(self, msg: CompressedImage) -> None:
        self._accept_image(compressed_to_rgb, msg)

    def _accept_image(self, convert: Callable[[Any], Any], msg: Any) -> None:
        arrived = self._now()
        self.stats.count("images_received")
        rejection = self.frames.admit(msg.header.stamp.sec, msg.header.stamp.nanosec)
        if rejection is not None:  # ignored, not a fault: the image watchdog stops the robot
            self.stats.count(rejection.counter)
            # not logged: repeats (routine: magma_sim resends a frame it fears was lost) and frames
            # without a valid clock (the clock fault is logged)
            if rejection.counter not in (REPEATED, NO_CLOCK):
                self.get_logger().warning(f"image ignored: {rejection.message}", throttle_duration_sec=THROTTLE_S)
            return
        try:
            image = convert(msg)
        except ImageError as exc:
            self._reject("image", "images_rejected", f"image rejected: {exc}")
            return
        self.stats.image_rate.mark()
        epoch = self.supervisor.image_ok()
        self.worker.submit(Frame(image=image, arrived=arrived, epoch=epoch))

    def _on_instruction(self, msg: String) -> None:
        self.stats.count("instructions_received")
        self._set_instruction(msg.data)

    def _set_instruction(self, text: str) -> bool:
        text = text.strip()
        limit = self.settings["max_instruction_chars"]
        if not text:
            self._instruction = ""
            self._reject("instruction", "instructions_rejected", "instruction rejected: empty")
            return False
        if len(text) > limit:
            self._instruction = ""
            self._reject("instruction", "instructions_rejected",
                         f"instruction rejected: {len(text)} characters, more than max_instruction_chars ({limit})")
            return False
        with self._convert_lock:
            self._instruction = text
            self._instruction_version += 1
            self.converter.reset()
            self.supervisor.instruction_ok()  # drops the held action: zero until one for this instruction
        self.get_logger().info(f"instruction: {text!r}")
        self._publish_command()
        return True

    def _on_estop(self, msg: Bool) -> None:
        self.supervisor.estop(bool(msg.data))
        if msg.data:
            self._publish_command()  # stop now, not at the next tick

    def _on_ee_pose(self, msg: PoseStamped) -> None:
        p = msg.pose.position
        position = (p.x, p.y, p.z)
        if msg.header.frame_id != self.settings.frame_id:
            self._reject("ee_pose", "ee_poses_rejected", f"end-effector pose in frame {msg.header.frame_id!r}, "
                         f"expected {self.settings.frame_id!r}")
        elif not all(math.isfinite(v) for v in position):
            self._reject("ee_pose", "ee_poses_rejected", f"end-effector position not finite: {position}")
        else:
            self.supervisor.ee_pose(position)

    def _reject(self, source: str, counter: str, message: str) -> None:
        self.stats.count(counter)
        self.supervisor.reject(source, message)
        self.get_logger().warning(message, throttle_duration_sec=THROTTLE_S)
        self._publish_command()

    # --- inference thread ----------------------------------------------------------------------
    def _infer(self, frame: Frame) -> None:
        with self._convert_lock:
            instruction, version = self._instruction, self._instruction_version
        if not instruction or self._closed:
            return
        started = self._now()
        try:
            prediction = self.policy.predict(frame.image, instruction)
        except Exception as exc:  # noqa: BLE001 - any backend failure is a fault that stops the robot
            self._reject("policy", "policy_errors", f"backend error: {type(exc).__name__}: {exc}")
            return
        inference = self._now() - started
        self.stats.count("predictions")
        self.stats.inference_s.append(inference)
        try:
            with self._convert_lock:  # an instruction change cannot slip in before the action is held
                if version != self._instruction_version or self._closed:
                    return  # the instruction changed while the model ran
                action = self.converter.action(prediction)
                twist, gripper = self.converter.command(action, self.supervisor.timing.control_period_s)
                executed = self.supervisor.action_ok(twist, frame.epoch)
        except ValueError as exc:
            self._reject("policy", "actions_rejected", f"action rejected: {exc}")
            return
        self.stats.action_rate.mark()
        if executed:
            self._publish_command()  # at once, not at the next tick
            self.gripper_pub.publish(Float64(data=float(gripper)))
            self.stats.count("actions_executed")
            self.stats.overhead_s.append(self._now() - frame.arrived - inference)
        # ~/action marks the end of this frame's turn (a lockstep simulator waits for it); then the views
        self.action_pub.publish(Float64MultiArray(data=[float(v) for v in action]))
        self.views.show(frame.image, instruction, twist, gripper, inference)

    def _on_inference_error(self, exc: BaseException) -> None:
        self.report_internal_error("the inference thread", exc)

    # --- outputs -------------------------------------------------------------------------------
    def _on_publish_timer(self) -> None:
        self.stats.tick_times.append(self._now())
        self._publish_command()

    def _on_clock_jump(self, jump: Any) -> None:
        self._publish_command()  # the supervisor sees the jump on this reading and commands zero

    def _check_clock_topic(self) -> None:
        """Put a check for negative times in front of rclpy's own /clock subscription, which raises
        on one (in the executor, on every message: its Time has no negative values). Once per node
        (a managed node sets up again on every configure)."""
        if getattr(self, "_clock_topic_checked", False):
            return
        self._clock_topic_checked = True
        subscription = getattr(getattr(self, "_time_source", None), "_clock_sub", None)
        if subscription is None or not callable(getattr(subscription, "callback", None)):
            self.get_logger().warning("cannot check /clock for negative times in this rclpy: a negative /clock "
                                      "will be reported as an internal error")
            return
        forward = subscription.callback
        subscription.callback = self._guard("/clock", lambda msg: self._on_clock(forward, msg))

    def _on_clock(self, forward: Callable[[Any], None], msg: Any) -> None:
        """A /clock message: a valid time goes on to rclpy; a negative one is a clock fault (the
        supervisor reads -inf), and zero is commanded on it at most once per publish period, and
        diagnostics once per DIAGNOSTICS_PERIOD_S (the ROS time stands still, so their timers do
        not fire)."""
        if msg.clock.sec >= 0:
            self._clock_negative = False
            forward(msg)
            return
        self._clock_negative = True
        now = time.monotonic()
        if now - self._negative_clock_tick >= self.supervisor.timing.publish_period_s:
            self._negative_clock_tick = now
            self._publish_command()
        if now - self._negative_clock_diagnostics >= DIAGNOSTICS_PERIOD_S:  # its timer stands still too
            self._negative_clock_diagnostics = now
            self.publish_diagnostics()

    def _on_publish_error(self, exc: BaseException) -> bool:
        """A failed tick of the publish thread: end the loop once the context is shut down,
        otherwise report it (fault: zero) and keep publishing."""
        if not self.context.ok() or self._closed:
            return False
        self.report_internal_error("the publish thread", exc)
        return True

    def _stop_publish_loop(self) -> None:
        if self._publish_loop is not None and not self._publish_loop.stop():
            self.get_logger().warning("publish thread still busy at shutdown")

    def _publish_command(self, final: bool = False) -> Command | None:
        """Publish the supervisor's command for now with a fresh stamp (nothing once a disabled
        node's stop has been published for disabled_zero_s); after ``close``, only the ``final`` one."""
        with self._publish_lock:
            if self._closed and not final:
                return None
            # stamped before the decision: a twist decided before a clock jump never carries a later stamp
            stamp = self._stamp_now()
            command = self.supervisor.tick()
            self._last_command = command
            if not (command.publish or final):
                return command
            msg = TwistStamped()
            msg.header.stamp = stamp
            msg.header.frame_id = self.settings.frame_id
            (msg.twist.linear.x, msg.twist.linear.y, msg.twist.linear.z) = (float(v) for v in command.twist.linear)
            (msg.twist.angular.x, msg.twist.angular.y, msg.twist.angular.z) = (float(v) for v in command.twist.angular)
            self.twist_pub.publish(msg)
            self.stats.publish_rate.mark()
            self.stats.count("commands_published")
        if command.changed and not final:
            self._log_state(command)
            self.publish_diagnostics()
        return command

    def _log_state(self, command: Command) -> None:
        text = f"state {command.state.value}: {command.reason}"
        if command.state is SafetyState.ACTIVE:
            self.get_logger().info(text)
        elif command.state in (SafetyState.ESTOP, SafetyState.FAULT):
            self.get_logger().error(text)
        else:
            self.get_logger().warning(text)

    def publish_diagnostics(self) -> None:
        """Publish the state, last fault, rates, latency and counters on /diagnostics."""
        command = self._last_command
        state = command.state if command else self.supervisor.state
        reason = command.reason if command else "starting"
        inference = self.stats.inference_s.values()[-20:]
        values: dict[str, object] = {
            "enabled": self.supervisor.enabled,
            "estop_latched": self.supervisor.estop_latched,
            "last_fault": self.supervisor.last_fault,
            "publishing": command.publish if command else True,
            "clock_jumps": self.supervisor.clock_jumps,
            "instruction": self._instruction,
            "backend": self.settings["backend"] if self._owns_policy else type(self.policy).__name__,
            "control_rate_hz": self.settings.control_rate_hz,
            "image_rate_hz": self.stats.image_rate.rate(),
            "action_rate_hz": self.stats.action_rate.rate(),
            "publish_rate_hz": self.stats.publish_rate.rate(),
            "inference_ms_last": 1000.0 * inference[-1] if inference else 0.0,
            "inference_ms_mean": 1000.0 * sum(inference) / len(inference) if inference else 0.0,
            "images_dropped": self.worker.dropped,
            "max_image_age_s": self.frames.max_age_s,
            "last_image_rejection": self.frames.last_rejection,
        }
        values.update(self.stats.counters)
        self.diag_pub.publish(build_diagnostics(self._stamp_now(), f"{self.get_name()}: safety",
                                                self.profile.name, state, reason, values))

    # --- services and parameters ---------------------------------------------------------------
    def _on_enable(self, request: SetBool.Request, response: SetBool.Response) -> SetBool.Response:
        self.supervisor.set_enabled(request.data)
        command = self._publish_command()
        if command is None:
            return _service_failed(request, response, "shutting down")
        response.success = True
        response.message = f"{'enabled' if request.data else 'disabled'}; state {command.state.value}: {command.reason}"
        self.get_logger().info(response.message)
        return response

    def _on_reset(self, request: Trigger.Request, response: Trigger.Response) -> Trigger.Response:
        response.success, response.message = self.supervisor.reset()
        self._publish_command()
        self.get_logger().info(f"reset: {response.message}")
        return response

    def _settings_with(self, params: list[Parameter]) -> NodeSettings:
        """The settings with ``params`` changed; raises ``ValueError`` naming a bad value."""
        values = dict(self.settings.values)
        arrays = {p.name for p in NODE_PARAMETERS if p.type is list}
        for param in params:
            if param.name in values:
                values[param.name] = list(param.value) if param.name in arrays else param.value
        return build_settings(values, profile=self.profile)

    def _on_set_parameters(self, params: list[Parameter]) -> SetParametersResult:
        """Validate a change (and, without a post-set callback API, apply it)."""
        try:
            self._settings_with(params)
        except ValueError as exc:
            return SetParametersResult(successful=False, reason=str(exc))
        if not self._post_set:
            self._apply_parameters(params)
        return SetParametersResult(successful=True)

    def _apply_parameters(self, params: list[Parameter]) -> None:
        """Apply a validated change before it is acknowledged: limits, rates and timeouts bind the
        next published command (the held action is re-clamped and its hold cut to a new period)."""
        settings = self._settings_with(params)
        with self._publish_lock:  # no command computed under the old limits goes out after this
            previous, self.settings = self.settings, settings
            self.supervisor.configure(settings.limits, settings.timing)
            self.frames.configure(settings.max_image_age_s)
        if settings["instruction"] != previous["instruction"]:
            if settings["instruction"]:
                self._set_instruction(settings["instruction"])
            else:
                with self._convert_lock:
                    self._instruction = ""
                    self._instruction_version += 1
                self.supervisor.reject("instruction", "instruction parameter cleared")
                self._publish_command()

    # --- shutdown ------------------------------------------------------------------------------
    def close(self) -> None:
        """Command a final zero twist, stop inference (waiting at most CLOSE_WAIT_S for a model
        call in progress), release an owned policy, destroy the node."""
        if self._closed:
            return
        self.supervisor.set_enabled(False)
        with self._publish_lock:
            self._closed = True  # from here on only the final command below is published
        self._stop_publish_loop()
        try:
            self._publish_command(final=True)
            # reliable subscribers must get it before the node (and its writer) is gone
            if not self.twist_pub.wait_for_all_acked(Duration(seconds=FINAL_ACK_TIMEOUT_S)):
                self.get_logger().warning("final zero twist not acknowledged by every subscriber")
        except Exception as exc:  # noqa: BLE001 - the context may already be shut down
            self.get_logger().warning(f"could not publish the final zero twist: {exc}")
        if not self.worker.stop(timeout=CLOSE_WAIT_S):
            self.get_logger().warning("inference still running at shutdown; not waiting for it")
        if self._owns_policy:
            try:
                self.policy.close()
            except Exception as exc:  # noqa: BLE001 - shutting down regardless
                self.get_logger().warning(f"closing the backend failed: {type(exc).__name__}: {exc}")
        self.destroy_node()

    def destroy_node(self):  # noqa: ANN201 - as rclpy's (None or bool, by version)
        """Stop the publish thread first: it must not publish through a destroyed node."""
        if getattr(self, "_publish_loop", None) is not None:
            self._stop_publish_loop()
        return super().destroy_node()


def _service_failed(request: Any, response: Any, message: str) -> Any:
    """The reply of a std_srvs service whose callback failed."""
    response.success = False
    response.message = message
    return response


def _parameters_failed(params: list[Parameter], message: str) -> SetParametersResult:
    return SetParametersResult(successful=False, reason=message)
