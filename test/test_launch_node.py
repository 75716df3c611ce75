"""The launch file, imported against a minimal stand-in for the launch / launch_ros API (ROS launch
is not installed here), and the shipped parameters file it points at."""
from __future__ import annotations

import importlib.util
import sys
import types
from pathlib import Path

import pytest
import yaml

from magma_ros.ros.settings import build_settings, default_values

REPO = Path(__file__).resolve().parents[1]
LAUNCH_FILE = REPO / "launch" / "magma_node.launch.py"
PARAMS_FILE = REPO / "config" / "magma_node.yaml"


class Recorded:
    """Any launch action: remembers what it was built with."""

    def __init__(self, *args, **kwargs):
        self.args, self.kwargs = args, kwargs


class LaunchConfiguration:
    def __init__(self, name):
        self.name = name

    def perform(self, context):
        return context.launch_configurations[self.name]


class Context:
    def __init__(self, configurations):
        self.launch_configurations = configurations


@pytest.fixture
def launch_module(monkeypatch):
    """Import the launch file with fake launch, launch_ros and ament_index_python modules."""
    fakes = {
        "launch": types.ModuleType("launch"),
        "launch.actions": types.ModuleType("launch.actions"),
        "launch.substitutions": types.ModuleType("launch.substitutions"),
        "launch_ros": types.ModuleType("launch_ros"),
        "launch_ros.actions": types.ModuleType("launch_ros.actions"),
        "ament_index_python": types.ModuleType("ament_index_python"),
        "ament_index_python.packages": types.ModuleType("ament_index_python.packages"),
    }
    fakes["launch"].LaunchDescription = type("LaunchDescription", (Recorded,), {})
    fakes["launch.actions"].DeclareLaunchArgument = type("DeclareLaunchArgument", (Recorded,), {})
    fakes["launch.actions"].OpaqueFunction = type("OpaqueFunction", (Recorded,), {})
    fakes["launch.substitutions"].LaunchConfiguration = LaunchConfiguration
    fakes["launch_ros.actions"].Node = type("Node", (Recorded,), {})
    looked_up = []

    def share(package):
        looked_up.append(package)
        return str(REPO)  # the source tree has the share/ layout: config/, launch/

    fakes["ament_index_python.packages"].get_package_share_directory = share
    for name, module in fakes.items():
        monkeypatch.setitem(sys.modules, name, module)
    spec = importlib.util.spec_from_file_location("magma_node_launch", LAUNCH_FILE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.looked_up = looked_up
    return module


def arguments(description) -> dict[str, str]:
    return {a.args[0]: a.kwargs["default_value"] for a in description.args[0]
            if type(a).__name__ == "DeclareLaunchArgument"}


def build_node(description, **given):
    configurations = dict(arguments(description), **given)
    opaque = [a for a in description.args[0] if type(a).__name__ == "OpaqueFunction"]
    assert len(opaque) == 1
    nodes = opaque[0].kwargs["function"](Context(configurations))
    assert len(nodes) == 1
    return nodes[0].kwargs


def test_launch_arguments_and_default_params_file(launch_module):
    description = launch_module.generate_launch_description()
    args = arguments(description)
    assert launch_module.looked_up == ["magma_ros"]
    assert {"params_file", "robot", "backend", "image_topic", "twist_topic", "gripper_topic", "instruction_topic",
            "estop_topic", "ee_pose_topic", "node_name", "namespace"} <= set(args)
    assert Path(args["params_file"]) == PARAMS_FILE and PARAMS_FILE.is_file()
    assert all(a.kwargs.get("description") for a in description.args[0] if type(a).__name__ == "DeclareLaunchArgument")


def test_node_defaults_use_only_the_params_file(launch_module):
    node = build_node(launch_module.generate_launch_description())
    assert node["package"] == "magma_ros" and node["executable"] == "magma_node"
    assert node["name"] == "magma_node" and node["namespace"] == ""
    assert node["parameters"] == [str(PARAMS_FILE)]


def test_arguments_override_parameters_and_topics(launch_module, tmp_path):
    mine = tmp_path / "mine.yaml"
    node = build_node(launch_module.generate_launch_description(), params_file=str(mine), robot="google_robot",
                      backend="fixed", image_topic="/wrist/image_raw", twist_topic="/arm/twist", node_name="vla")
    assert node["parameters"] == [str(mine), {"robot": "google_robot", "backend": "fixed",
                                              "image_topic": "/wrist/image_raw", "twist_topic": "/arm/twist"}]
    assert node["name"] == "vla"


def test_params_file_lists_every_parameter_with_its_default_and_a_comment():
    data = yaml.safe_load(PARAMS_FILE.read_text())
    values = data["/**"]["ros__parameters"]
    defaults = default_values()
    assert set(values) == set(defaults), set(values) ^ set(defaults)
    for name, default in defaults.items():
        assert values[name] == default, name
    lines = {line.split(":")[0].strip(): line for line in PARAMS_FILE.read_text().splitlines()
             if ":" in line and not line.lstrip().startswith("#")}
    for name in defaults:
        assert "#" in lines[name], f"{name} has no comment"
    build_settings(values)  # and it validates


def test_docs_parameter_table_lists_every_parameter_with_its_default():
    readme = (REPO / "README.md").read_text()
    node_part = readme[readme.index("\n## magma_node\n"):]
    table = node_part[node_part.index("\n### Parameters\n"):]
    table = table[:table.index("\n### ", 1)]
    rows = {line.split("|")[1].strip().strip("`"): line for line in table.splitlines() if line.startswith("| `")}
    for name, default in default_values().items():
        assert name in rows, f"{name} missing from the README's magma_node parameter table"
        shown = "[]" if isinstance(default, list) else ('""' if default == "" else
                                                        str(default).lower() if isinstance(default, bool) else str(default))
        assert f"`{shown}`" in rows[name], (name, rows[name])
