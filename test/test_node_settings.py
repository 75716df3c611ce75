"""magma_node's settings (magma_ros.ros.settings): typed, and each default declared once. No rclpy."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

import magma_ros
from magma_ros.ros import settings as settings_module
from magma_ros.ros.settings import NODE_PARAMETERS, NodeSettings, build_settings, default_values
from magma_ros.safety.limits import DEFAULT_MOTION_LIMITS

ROS_DIR = Path(magma_ros.__file__).parent / "ros"


def test_motion_limit_parameters_take_their_defaults_from_the_safety_layer():
    """The defaults are DEFAULT_MOTION_LIMITS' own values, not equal numbers typed again."""
    options = {option.name: option for option in NODE_PARAMETERS}
    for name, value in DEFAULT_MOTION_LIMITS.items():
        assert options[name].default is value, f"{name}: a second copy of its default"


def test_no_option_of_the_package_declares_a_motion_limit_by_its_own_literal():
    """Nowhere in magma_ros is an ``Option("max_linear_speed", 0.25, ...)`` written out: the four
    motion-limit options are made from DEFAULT_MOTION_LIMITS."""
    copies = []
    for path in Path(magma_ros.__file__).parent.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "Option" and node.args:
                name = node.args[0]
                if isinstance(name, ast.Constant) and name.value in DEFAULT_MOTION_LIMITS:
                    copies.append(f"{path.name}:{node.lineno} {name.value}")
    assert copies == []


def test_the_node_reads_no_setting_by_a_string_key():
    """``settings["twist_topic"]`` is gone: the node code has no subscript with a string key on its
    settings, and NodeSettings does not offer one."""
    found = []
    for path in ROS_DIR.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Subscript) and isinstance(node.slice, ast.Constant) \
                    and isinstance(node.slice.value, str):
                target = ast.unparse(node.value)
                if target in ("s", "settings") or target.endswith(".settings"):
                    found.append(f"{path.name}:{node.lineno} {ast.unparse(node)}")
    assert found == []
    settings = build_settings(default_values())
    with pytest.raises(TypeError):
        settings["twist_topic"]


def test_typed_settings_carry_every_value_the_node_reads():
    values = default_values() | {"twist_topic": "/arm/cmd", "compressed_image": False, "max_instruction_chars": 42,
                                 "instruction": "pick", "backend": "fixed", "ee_pose_topic": "/arm/pose"}
    settings = build_settings(values)
    assert (settings.twist_topic, settings.max_instruction_chars, settings.instruction) == ("/arm/cmd", 42, "pick")
    assert settings.backend.backend == "fixed"
    assert settings.ee_pose_topic == "/arm/pose" and settings.timing.use_ee_pose
    assert settings.frame_id == settings.profile.base_frame  # empty frame_id: the profile's


def test_a_change_is_validated_against_the_whole():
    settings = build_settings(default_values())
    changed = settings.with_changes({"max_linear_speed": 0.1, "not_a_parameter": 1})
    assert changed.limits.max_linear_speed == 0.1
    assert settings.limits.max_linear_speed == DEFAULT_MOTION_LIMITS["max_linear_speed"]
    with pytest.raises(ValueError, match="max_linear_speed"):
        settings.with_changes({"max_linear_speed": 50.0})
    assert isinstance(changed, NodeSettings)
    assert settings_module.SettingsError.__mro__[1] is ValueError
