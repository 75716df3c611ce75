"""The node's own parameters (robot, topics, rates, safety) as one table, and their validation.

Pure Python: ``params.py`` turns the table into ROS parameter declarations. Backend parameters
come from ``magma_ros.policy.config.BACKEND_OPTIONS`` and are not repeated here; default topic
names come from ``magma_ros.interface``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

from .. import interface
from ..actions.profiles import RobotProfile, builtin_profile_names, load_profile
from ..options import Option, defaults
from ..policy.config import BACKEND_OPTIONS, BackendConfig
from ..safety.limits import DEFAULT_MOTION_LIMITS, SafetyConfigError, SafetyLimits, WatchdogTiming


class SettingsError(ValueError):
    """A node parameter with an invalid value."""


IMAGE_AGE_PERIODS = 2.0  # max_image_age_s -1: frames up to this many control periods old are used


NODE_PARAMETERS: tuple[Option, ...] = (
    Option("robot", "bridge_orig", f"robot profile: built-in name ({', '.join(builtin_profile_names())}) or path "
           "to a profile YAML", read_only=True),
    Option("image_topic", interface.IMAGE.name, "camera topic (sensor_msgs/Image); with compressed_image, "
           "sensor_msgs/CompressedImage on <image_topic>/compressed", read_only=True),
    Option("compressed_image", False, "subscribe to <image_topic>/compressed (JPEG/PNG, needs OpenCV)",
           read_only=True),
    Option("instruction_topic", interface.INSTRUCTION.name, "instruction topic (std_msgs/String, reliable, "
           "transient local)", read_only=True),
    Option("estop_topic", interface.ESTOP.name, "e-stop topic (std_msgs/Bool): true latches a stop until ~/reset",
           read_only=True),
    Option("ee_pose_topic", "", "end-effector pose topic (geometry_msgs/PoseStamped, robot base frame) for "
           "workspace limits; empty = off", read_only=True),
    Option("twist_topic", interface.TWIST.name, "velocity command topic (geometry_msgs/TwistStamped)",
           read_only=True),
    Option("gripper_topic", interface.GRIPPER.name, "gripper command topic (std_msgs/Float64: 1.0 open, "
           "0.0 closed)", read_only=True),
    Option("frame_id", "", "frame_id of published twists; empty = the robot profile's base frame"),
    Option("control_rate_hz", 0.0, "model steps per second (each action is held 1/rate s); 0 = the robot "
           "profile's rate", range=(0.0, 100.0)),
    Option("publish_rate_hz", 50.0, "rate at which the held command (or zero) is republished with fresh stamps",
           range=(1.0, 1000.0), read_only=True),
    Option("enabled_on_start", False, "start enabled (otherwise call ~/enable); ignored by a managed node",
           read_only=True),
    Option("managed", False, "run as a managed (lifecycle) node: load nothing until configure, move only while "
           "active (ros2 lifecycle set <node> configure|activate|deactivate|cleanup|shutdown)", read_only=True),
    Option("disabled_zero_s", 1.0, "when disabled (at start or by ~/enable false), publish zero twists for "
           "this long (s), then nothing until enabled, so another source can command the arm; e-stop "
           "keeps publishing zero", range=(0.1, 1e6)),
    Option("image_timeout_s", 0.5, "stop when no valid image arrived for this long (s)", range=(0.01, 60.0)),
    Option("max_image_age_s", -1.0, "ignore a camera frame stamped more than this long (s) before or after the "
           "node's clock (ROS time: simulated with use_sim_time); -1 = two control periods, 0 = no age check",
           range=(-1.0, 60.0)),
    Option("allow_unstamped_images", False, "take a camera frame stamped 0 as stamped on arrival (a camera "
           "driver that stamps nothing; logged as a warning at start); false: such frames are ignored",
           read_only=True),
    Option("action_timeout_s", 2.0, "stop when the policy produced no action for this long (s)", range=(0.01, 600.0)),
    Option("ee_pose_timeout_s", 0.5, "with ee_pose_topic set, stop when no pose arrived for this long (s)",
           range=(0.01, 60.0)),
    Option("instruction", "", "initial instruction (empty = wait for one on instruction_topic)"),
    Option("max_instruction_chars", 1000, "longest accepted instruction (characters)", range=(1, 100000)),
    *(Option(name, DEFAULT_MOTION_LIMITS[name], help, range=limits) for name, (help, limits) in {
        "max_linear_speed": ("limit on the norm of the linear velocity (m/s); per-axis limits come from the "
                             "profile's max_linear_step", (0.001, 10.0)),
        "max_angular_speed": ("limit on the norm of the angular velocity (rad/s); per-axis limits come from the "
                              "profile's max_angular_step", (0.001, 20.0)),
        "max_linear_accel": ("limit on the change of linear velocity between published commands (m/s^2); stops "
                             "are immediate", (0.001, 1000.0)),
        "max_angular_accel": ("limit on the change of angular velocity between published commands (rad/s^2); "
                              "stops are immediate", (0.001, 1000.0)),
    }.items()),  # the defaults are safety.limits.DEFAULT_MOTION_LIMITS (the simulator's controllers use them too)
    Option("workspace_min", [], "workspace box lower corner [x, y, z] (m, base frame); empty = profile",
           type=list),
    Option("workspace_max", [], "workspace box upper corner [x, y, z] (m, base frame); empty = profile",
           type=list),
)

BACKEND_PARAMETER_NAMES = tuple(option.name for option in BACKEND_OPTIONS)


@dataclass(frozen=True)
class NodeSettings:
    """Every parameter value, validated, with profile defaults resolved."""

    values: Mapping[str, Any]  # every parameter by name, as given (for a change of some of them)
    profile: RobotProfile
    control_rate_hz: float  # resolved: 0 is the profile's rate
    frame_id: str  # resolved: empty is the profile's base frame
    limits: SafetyLimits
    timing: WatchdogTiming
    max_image_age_s: float  # resolved: -1 is two control periods; 0 = no age check
    image_topic: str
    compressed_image: bool
    instruction_topic: str
    estop_topic: str
    ee_pose_topic: str
    twist_topic: str
    gripper_topic: str
    publish_rate_hz: float
    enabled_on_start: bool
    allow_unstamped_images: bool
    instruction: str
    max_instruction_chars: int
    backend: BackendConfig

    def with_changes(self, changes: Mapping[str, Any]) -> "NodeSettings":
        """These settings with some parameters changed (same profile); raises ``ValueError``
        naming a bad value. Names that are not parameters are ignored."""
        arrays = {p.name for p in NODE_PARAMETERS if p.type is list}
        values = dict(self.values)
        for name, value in changes.items():
            if name in values:
                values[name] = list(value) if name in arrays else value
        return build_settings(values, profile=self.profile)


def default_values() -> dict[str, Any]:
    """Every parameter's default."""
    return defaults(NODE_PARAMETERS + BACKEND_OPTIONS)


def build_settings(values: Mapping[str, Any], profile: RobotProfile | None = None) -> NodeSettings:
    """Validate ``values`` (all parameters); ``profile`` skips reloading ``robot``. Raises
    ``SettingsError`` / ``ProfileError`` / ``PolicyConfigError`` with the parameter's name."""
    for p in NODE_PARAMETERS:
        value = values[p.name]
        if p.range is not None and not p.range[0] <= value <= p.range[1]:
            raise SettingsError(f"{p.name}: must be in [{p.range[0]}, {p.range[1]}], got {value!r}")
    if profile is None:
        profile = load_profile(values["robot"])
    rate = float(values["control_rate_hz"]) or profile.control_rate_hz
    if rate > float(values["publish_rate_hz"]):
        raise SettingsError(f"control_rate_hz ({rate:g}) must not exceed publish_rate_hz "
                         f"({values['publish_rate_hz']:g})")
    for name in ("workspace_min", "workspace_max"):
        if len(values[name]) not in (0, 3):
            raise SettingsError(f"{name}: expected [] (profile) or [x, y, z], got {list(values[name])}")
    max_image_age_s = float(values["max_image_age_s"])
    if -1.0 < max_image_age_s < 0.0:
        raise SettingsError(f"max_image_age_s: must be -1 (two control periods), 0 (no age check) or a "
                            f"positive age in seconds, got {max_image_age_s!r}")
    if max_image_age_s < 0.0:
        max_image_age_s = IMAGE_AGE_PERIODS / rate
    if values["compressed_image"]:
        _require_opencv()
    if len(values["instruction"]) > values["max_instruction_chars"]:
        raise SettingsError(f"instruction: longer than max_instruction_chars ({values['max_instruction_chars']})")
    try:
        limits = SafetyLimits.from_profile(
            profile, rate, max_linear_speed=float(values["max_linear_speed"]),
            max_angular_speed=float(values["max_angular_speed"]), max_linear_accel=float(values["max_linear_accel"]),
            max_angular_accel=float(values["max_angular_accel"]),
            workspace_min=list(values["workspace_min"]), workspace_max=list(values["workspace_max"]))
        timing = WatchdogTiming(
            control_period_s=1.0 / rate, publish_period_s=1.0 / float(values["publish_rate_hz"]),
            image_timeout_s=float(values["image_timeout_s"]), action_timeout_s=float(values["action_timeout_s"]),
            ee_pose_timeout_s=float(values["ee_pose_timeout_s"]), use_ee_pose=bool(values["ee_pose_topic"]),
            disabled_zero_s=float(values["disabled_zero_s"]))
    except SafetyConfigError as exc:
        raise SettingsError(str(exc)) from None
    backend = BackendConfig.from_mapping({name: _backend_value(values[name]) for name in BACKEND_PARAMETER_NAMES})
    return NodeSettings(
        values=dict(values), profile=profile, control_rate_hz=rate, frame_id=values["frame_id"] or profile.base_frame,
        limits=limits, timing=timing, max_image_age_s=max_image_age_s, image_topic=str(values["image_topic"]),
        compressed_image=bool(values["compressed_image"]), instruction_topic=str(values["instruction_topic"]),
        estop_topic=str(values["estop_topic"]), ee_pose_topic=str(values["ee_pose_topic"]),
        twist_topic=str(values["twist_topic"]), gripper_topic=str(values["gripper_topic"]),
        publish_rate_hz=float(values["publish_rate_hz"]), enabled_on_start=bool(values["enabled_on_start"]),
        allow_unstamped_images=bool(values["allow_unstamped_images"]), instruction=str(values["instruction"]),
        max_instruction_chars=int(values["max_instruction_chars"]), backend=backend)


def _backend_value(value: Any) -> Any:
    return tuple(value) if isinstance(value, list) else value


def _require_opencv() -> None:
    """compressed_image decodes with OpenCV: fail at start-up, not on the first frame."""
    try:
        import cv2  # noqa: F401 - imported to fail early when OpenCV is missing
    except ImportError:
        raise SettingsError("compressed_image: needs OpenCV (pip install 'magma_ros[compressed]' "
                            "or the python3-opencv package)") from None
