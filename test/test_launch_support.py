"""What the launch files compute from their arguments (magma_ros.ros.launch_support), without launch."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

from magma_ros.ros.launch_support import (
    LaunchArgumentError,
    magma_overrides,
    moveit_parameters,
    parse_action,
    parse_bool,
    parse_xacro_args,
    servo_parameters,
)

REPO = Path(__file__).resolve().parents[1]


def test_overrides_keep_only_given_arguments_and_type_the_action():
    given = {"robot": "wx250s", "backend": "", "fixed_action": "0.01, 0, 0, 0, 0, 0, 1", "twist_topic": "cmd"}
    assert magma_overrides(given) == {"robot": "wx250s", "fixed_action": [0.01, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0],
                                      "twist_topic": "cmd"}
    assert parse_action("[1, 2, 3, 4, 5, 6, 7]") == [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0]


@pytest.mark.parametrize("text", ["[1, 2]", "[1, 2, 3, 4, 5, 6, .nan]", "[a, b, c, d, e, f, g]", "{x: 1}", "[1, [2"])
def test_bad_fixed_action_is_named(text):
    with pytest.raises(LaunchArgumentError, match="fixed_action: expected 7"):
        parse_action(text)


def test_booleans_and_xacro_arguments():
    assert parse_bool("use_sim_time", "True") is True and parse_bool("use_sim_time", "false") is False
    with pytest.raises(LaunchArgumentError, match="use_sim_time: expected true or false, got 'yes'"):
        parse_bool("use_sim_time", "yes")
    assert parse_xacro_args("robot_model:=wx250s  robot_name:=arm1") == {"robot_model": "wx250s", "robot_name": "arm1"}
    with pytest.raises(LaunchArgumentError, match="xacro_args: expected name:=value items, got 'robot_model=wx250s'"):
        parse_xacro_args("robot_model=wx250s")


def test_wx250s_servo_file_is_loaded_as_the_moveit_servo_namespace():
    params = servo_parameters(str(REPO / "config/servo/wx250s.yaml"))
    servo = params["moveit_servo"]
    assert set(params) == {"moveit_servo"}
    assert servo["command_in_type"] == "speed_units" and servo["planning_frame"] == "wx250s/base_link"
    assert servo["cartesian_command_in_topic"] == "~/delta_twist_cmds"
    assert servo["command_out_topic"] == "/wx250s/arm_controller/joint_trajectory"


def test_servo_file_errors_name_the_argument(tmp_path):
    with pytest.raises(LaunchArgumentError, match="servo_params: .*nope.yaml does not exist"):
        servo_parameters(str(tmp_path / "nope.yaml"))
    other = tmp_path / "other.yaml"
    other.write_text("a: 1\n")
    with pytest.raises(LaunchArgumentError, match="not a MoveIt Servo parameter file"):
        servo_parameters(str(other))


def moveit_package(root: Path) -> Path:
    config = root / "config"
    config.mkdir(parents=True)
    (config / "arm.urdf").write_text("<robot name='arm'/>")
    (config / "arm.srdf").write_text("<robot name='arm'><group name='g'/></robot>")
    (config / "kinematics.yaml").write_text("g:\n  kinematics_solver: kdl_kinematics_plugin/KDLKinematicsPlugin\n")
    (config / "joint_limits.yaml").write_text("/**:\n  ros__parameters:\n    robot_description_planning:\n"
                                              "      joint_limits: {j1: {max_velocity: 1.0}}\n")
    return root


def test_moveit_parameters_as_moveit_servo_launch_files_pass_them(tmp_path):
    share = moveit_package(tmp_path / "arm_moveit_config")
    params = moveit_parameters(str(share), "config/arm.urdf", str(share / "config/arm.srdf"), "config/kinematics.yaml",
                               "config/joint_limits.yaml")
    assert params == [{"robot_description": "<robot name='arm'/>"},
                      {"robot_description_semantic": "<robot name='arm'><group name='g'/></robot>"},
                      {"robot_description_kinematics":
                       {"g": {"kinematics_solver": "kdl_kinematics_plugin/KDLKinematicsPlugin"}}},
                      {"robot_description_planning": {"joint_limits": {"j1": {"max_velocity": 1.0}}}}]


@pytest.mark.parametrize("index, name", [(0, "robot_description_file"), (1, "semantic_file"), (2, "kinematics_file"),
                                         (3, "joint_limits_file")])
def test_missing_moveit_file_names_the_argument(tmp_path, index, name):
    share = moveit_package(tmp_path / "arm_moveit_config")
    files = ["config/arm.urdf", "config/arm.srdf", "config/kinematics.yaml", "config/joint_limits.yaml"]
    files[index] = "config/missing.file"
    with pytest.raises(LaunchArgumentError, match=f"{name}: .*missing.file does not exist"):
        moveit_parameters(str(share), *files)


def xacro_package(root: Path) -> tuple[Path, list[str]]:
    share = moveit_package(root)
    (share / "config/arm.urdf.xacro").write_text(
        '<robot name="$(arg robot_name)" xmlns:xacro="http://www.ros.org/wiki/xacro">'
        '<xacro:arg name="robot_name" default="arm"/><link name="$(arg robot_name)/base_link"/></robot>')
    return share, ["config/arm.urdf.xacro", "config/arm.srdf", "config/kinematics.yaml", "config/joint_limits.yaml"]


def test_xacro_descriptions_are_expanded_with_the_xacro_arguments(tmp_path):
    share, files = xacro_package(tmp_path / "arm_moveit_config")
    urdf = moveit_parameters(str(share), *files, xacro_args="robot_name:=wx250s")[0]["robot_description"]
    assert 'link name="wx250s/base_link"' in urdf


def test_xacro_description_without_xacro_installed_says_so(tmp_path, monkeypatch):
    share, files = xacro_package(tmp_path / "arm_moveit_config")
    monkeypatch.setitem(sys.modules, "xacro", None)  # import xacro raises ImportError
    with pytest.raises(LaunchArgumentError, match="robot_description_file: .*arm.urdf.xacro needs xacro"):
        moveit_parameters(str(share), *files)
