"""The node's own parameters (robot, topics, rates, safety) as one table, and their validation.

Pure Python: ``params.py`` turns the table into ROS parameter declarations. Backend parameters
come from ``magma_ros.policy.config.BACKEND_OPTIONS`` and are not repeated here.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

from ..actions.profiles import RobotProfile, load_profile
from ..policy.config import BACKEND_OPTIONS, BackendConfig
from ..safety.limits import SafetyConfigError, SafetyLimits, WatchdogTiming


class SettingsError(ValueError):
    """A node parameter with an invalid value."""


@dataclass(frozen=True)
class NodeParam:
    """One node parameter: name, default (its type is the parameter type), description, range."""

    name: str
    default: Any
    description: str
    range: tuple[float, float] | None = None  # inclusive
    read_only: bool = False  # fixed after start-up (topics, robot, rates that shape the node)
    array: bool = False  # a list of floats (the default may be empty)


NODE_PARAMETERS: tuple[NodeParam, ...] = (
    NodeParam("robot", "bridge_orig", "robot profile: built-in name (bridge_orig, google_robot) or path to a "
              "profile YAML", read_only=True),
    NodeParam("image_topic", "camera/image_raw", "camera topic (sensor_msgs/Image); with compressed_image, "
              "sensor_msgs/CompressedImage on <image_topic>/compressed", read_only=True),
    NodeParam("compressed_image", False, "subscribe to <image_topic>/compressed (JPEG/PNG, needs OpenCV)",
              read_only=True),
    NodeParam("instruction_topic", "magma/instruction", "instruction topic (std_msgs/String, reliable, "
              "transient local)", read_only=True),
    NodeParam("estop_topic", "magma/estop", "e-stop topic (std_msgs/Bool): true latches a stop until ~/reset",
              read_only=True),
    NodeParam("ee_pose_topic", "", "end-effector pose topic (geometry_msgs/PoseStamped, robot base frame) for "
              "workspace limits; empty = off", read_only=True),
    NodeParam("twist_topic", "servo_node/delta_twist_cmds", "velocity command topic (geometry_msgs/TwistStamped)",
              read_only=True),
    NodeParam("gripper_topic", "magma/gripper_command", "gripper command topic (std_msgs/Float64: 1.0 open, "
              "0.0 closed)", read_only=True),
    NodeParam("frame_id", "", "frame_id of published twists; empty = the robot profile's base frame"),
    NodeParam("control_rate_hz", 0.0, "model steps per second (each action is held 1/rate s); 0 = the robot "
              "profile's rate", (0.0, 100.0)),
    NodeParam("publish_rate_hz", 50.0, "rate at which the held command (or zero) is republished with fresh stamps",
              (1.0, 1000.0), read_only=True),
    NodeParam("enabled_on_start", False, "start enabled (otherwise call ~/enable)", read_only=True),
    NodeParam("disabled_zero_s", 1.0, "when disabled (at start or by ~/enable false), publish zero twists for "
              "this long (s), then nothing until enabled, so another source can command the arm; e-stop "
              "keeps publishing zero", (0.1, 1e6)),
    NodeParam("image_timeout_s", 0.5, "stop when no valid image arrived for this long (s)", (0.01, 60.0)),
    NodeParam("action_timeout_s", 2.0, "stop when the policy produced no action for this long (s)", (0.01, 600.0)),
    NodeParam("ee_pose_timeout_s", 0.5, "with ee_pose_topic set, stop when no pose arrived for this long (s)",
              (0.01, 60.0)),
    NodeParam("instruction", "", "initial instruction (empty = wait for one on instruction_topic)"),
    NodeParam("max_instruction_chars", 1000, "longest accepted instruction (characters)", (1, 100000)),
    NodeParam("max_linear_speed", 0.25, "limit on the norm of the linear velocity (m/s); per-axis limits come "
              "from the profile's max_linear_step", (0.001, 10.0)),
    NodeParam("max_angular_speed", 1.0, "limit on the norm of the angular velocity (rad/s); per-axis limits "
              "come from the profile's max_angular_step", (0.001, 20.0)),
    NodeParam("max_linear_accel", 2.5, "limit on the change of linear velocity between published commands "
              "(m/s^2); stops are immediate", (0.001, 1000.0)),
    NodeParam("max_angular_accel", 10.0, "limit on the change of angular velocity between published commands "
              "(rad/s^2); stops are immediate", (0.001, 1000.0)),
    NodeParam("workspace_min", [], "workspace box lower corner [x, y, z] (m, base frame); empty = profile",
              array=True),
    NodeParam("workspace_max", [], "workspace box upper corner [x, y, z] (m, base frame); empty = profile",
              array=True),
)

BACKEND_PARAMETER_NAMES = tuple(spec.name for spec in BACKEND_OPTIONS)


@dataclass(frozen=True)
class NodeSettings:
    """Every parameter value, validated, with profile defaults resolved."""

    values: Mapping[str, Any]
    profile: RobotProfile
    control_rate_hz: float
    frame_id: str
    limits: SafetyLimits
    timing: WatchdogTiming

    def __getitem__(self, name: str) -> Any:
        return self.values[name]

    def backend_config(self) -> BackendConfig:
        """The backend options among the parameters."""
        return BackendConfig.from_mapping({name: _backend_value(self.values[name]) for name in BACKEND_PARAMETER_NAMES})


def default_values() -> dict[str, Any]:
    """Every parameter's default."""
    values = {p.name: p.default for p in NODE_PARAMETERS}
    values.update({spec.name: spec.default for spec in BACKEND_OPTIONS})
    return values


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
    settings = NodeSettings(values=dict(values), profile=profile, control_rate_hz=rate,
                            frame_id=values["frame_id"] or profile.base_frame, limits=limits, timing=timing)
    settings.backend_config()  # validates the backend options (PolicyConfigError)
    return settings


def _backend_value(value: Any) -> Any:
    return tuple(value) if isinstance(value, list) else value
