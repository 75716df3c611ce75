"""What the package's launch files compute from their arguments: magma_node parameter overrides and
the MoveIt parameters for servo_node. Plain values in, plain values out (no launch imports), so the
same rules apply to every launch file and are unit-tested."""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Mapping

import yaml

from ..policy.config import BACKEND_OPTIONS
from .settings import NODE_PARAMETERS

# magma_node parameters that the launch files take as arguments of the same name; a non-empty one
# overrides the parameter. Their descriptions are the parameters'.
OVERRIDDEN_PARAMETERS = ("robot", "backend", "model", "endpoint_url", "api_key_env", "tokenizer", "device",
                         "fixed_action", "image_topic", "instruction_topic", "estop_topic", "ee_pose_topic",
                         "twist_topic", "gripper_topic")
_DECLARED = {option.name: option for option in NODE_PARAMETERS + BACKEND_OPTIONS}
_LAUNCH_FORM = {"fixed_action": ", as 7 numbers like [0.01,0,0,0,0,0,1]"}
# launch argument -> meaning
MAGMA_OVERRIDES: dict[str, str] = {name: _DECLARED[name].description + _LAUNCH_FORM.get(name, "")
                                   for name in OVERRIDDEN_PARAMETERS}


class LaunchArgumentError(ValueError):
    """A launch argument with a value the launch cannot use; the message names the argument."""


def default_params_file() -> str:
    """The installed config/magma_node.yaml: every magma_node parameter with its default."""
    from ament_index_python.packages import get_package_share_directory

    return str(Path(get_package_share_directory("magma_ros")) / "config" / "magma_node.yaml")


def magma_overrides(given: Mapping[str, str]) -> dict[str, Any]:
    """The magma_node parameters set by non-empty ``MAGMA_OVERRIDES`` arguments, typed."""
    overrides: dict[str, Any] = {name: given[name] for name in MAGMA_OVERRIDES if given.get(name)}
    if "fixed_action" in overrides:
        overrides["fixed_action"] = parse_action(overrides["fixed_action"])
    return overrides


def parse_action(text: str) -> list[float]:
    """``[0.01, 0, 0, 0, 0, 0, 1]`` (or without brackets) as 7 finite floats."""
    try:
        value = yaml.safe_load(text if text.lstrip().startswith("[") else f"[{text}]")
        action = [float(v) for v in value]
    except (yaml.YAMLError, TypeError, ValueError):
        raise LaunchArgumentError(f"fixed_action: expected 7 numbers like [0.01,0,0,0,0,0,1], got {text!r}") from None
    if len(action) != 7 or not all(math.isfinite(v) for v in action):
        raise LaunchArgumentError(f"fixed_action: expected 7 finite numbers, got {text!r}")
    return action


def parse_bool(name: str, text: str) -> bool:
    """A launch argument that must be true or false."""
    if text.strip().lower() not in ("true", "false"):
        raise LaunchArgumentError(f"{name}: expected true or false, got {text!r}")
    return text.strip().lower() == "true"


def servo_parameters(path: str) -> dict[str, Any]:
    """A MoveIt Servo parameter YAML as the ``moveit_servo`` namespace (how moveit_servo's launch files pass it)."""
    data = _load_yaml("servo_params", Path(path))
    if not isinstance(data, dict) or "command_in_type" not in data:
        raise LaunchArgumentError(f"servo_params: {path} is not a MoveIt Servo parameter file (no command_in_type)")
    if data["command_in_type"] != "speed_units":
        raise LaunchArgumentError(f"servo_params: {path} has command_in_type {data['command_in_type']!r}; magma_node "
                                  "publishes m/s and rad/s, so it must be speed_units")
    return {"moveit_servo": data}


def moveit_parameters(share_dir: str, robot_description: str, semantic: str, kinematics: str, joint_limits: str,
                      xacro_args: str = "") -> list[dict[str, Any]]:
    """robot_description, robot_description_semantic, robot_description_kinematics and
    robot_description_planning (joint limits) from a MoveIt config package's files, as moveit_servo's
    launch files pass them. Relative paths are taken in ``share_dir``; ``.xacro`` files are expanded
    with ``xacro_args`` (``name:=value ...``)."""
    mappings = parse_xacro_args(xacro_args)
    files = {"robot_description_file": robot_description, "semantic_file": semantic,
             "kinematics_file": kinematics, "joint_limits_file": joint_limits}
    paths = {name: _resolve(share_dir, name, value) for name, value in files.items()}
    urdf = _read_description("robot_description_file", paths["robot_description_file"], mappings)
    srdf = _read_description("semantic_file", paths["semantic_file"], mappings)
    kinematics_data = _unwrap("robot_description_kinematics",
                              _load_yaml("kinematics_file", paths["kinematics_file"]))
    limits = _unwrap("robot_description_planning", _load_yaml("joint_limits_file", paths["joint_limits_file"]))
    return [{"robot_description": urdf}, {"robot_description_semantic": srdf},
            {"robot_description_kinematics": kinematics_data}, {"robot_description_planning": limits}]


def parse_xacro_args(text: str) -> dict[str, str]:
    """``a:=1 b:=x`` as a dict."""
    mappings = {}
    for item in text.split():
        name, sep, value = item.partition(":=")
        if not sep or not name:
            raise LaunchArgumentError(f"xacro_args: expected name:=value items, got {item!r}")
        mappings[name] = value
    return mappings


def _resolve(share_dir: str, name: str, value: str) -> Path:
    if not value:
        raise LaunchArgumentError(f"{name}: empty (give a path, absolute or relative to the MoveIt config package)")
    path = Path(value) if Path(value).is_absolute() else Path(share_dir) / value
    if not path.is_file():
        raise LaunchArgumentError(f"{name}: {path} does not exist")
    return path


def _read_description(name: str, path: Path, mappings: dict[str, str]) -> str:
    if path.suffix != ".xacro":
        return path.read_text(encoding="utf-8")
    try:
        import xacro
    except ImportError:
        raise LaunchArgumentError(f"{name}: {path} needs xacro (apt install ros-$ROS_DISTRO-xacro)") from None
    return xacro.process_file(str(path), mappings=mappings).toprettyxml(indent="  ")


def _load_yaml(name: str, path: Path) -> Any:
    if not path.is_file():
        raise LaunchArgumentError(f"{name}: {path} does not exist")
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise LaunchArgumentError(f"{name}: {path} is not valid YAML: {exc}") from None


def _unwrap(key: str, data: Any) -> Any:
    """Plain MoveIt YAML, or a ROS parameter file (``/**: ros__parameters: {key: ...}``) holding ``key``."""
    if isinstance(data, dict) and len(data) == 1:
        inner = next(iter(data.values()))
        if isinstance(inner, dict) and "ros__parameters" in inner:
            data = inner["ros__parameters"]
    if isinstance(data, dict) and set(data) == {key}:
        data = data[key]
    if not isinstance(data, dict):
        raise LaunchArgumentError(f"{key}: expected a mapping, got {type(data).__name__}")
    return data
