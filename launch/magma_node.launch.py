"""Launch magma_node with a parameters file and optional overrides.

    ros2 launch magma_ros magma_node.launch.py robot:=bridge_orig backend:=fixed \
        fixed_action:="[0.01,0,0,0,0,0,1]" params_file:=/path/to/my_magma_node.yaml namespace:=arm1

Arguments left empty keep the value from ``params_file`` (default: the package's
config/magma_node.yaml, every parameter with its default and a comment). Topic names are relative,
so ``namespace:=arm1`` moves all of them under /arm1.
"""
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

from magma_ros.interface import NODE_NAME
from magma_ros.ros.launch_support import MAGMA_OVERRIDES, default_params_file, magma_overrides

PACKAGE = "magma_ros"


def generate_launch_description() -> LaunchDescription:
    """Declare the arguments; the node is built once they are known."""
    arguments = [
        DeclareLaunchArgument("params_file", default_value=default_params_file(),
                              description="magma_node parameters YAML (ros__parameters)"),
        DeclareLaunchArgument("node_name", default_value=NODE_NAME, description="node name"),
        DeclareLaunchArgument("namespace", default_value="", description="namespace of the node and its topics"),
    ]
    arguments += [DeclareLaunchArgument(name, default_value="", description=f"{text}; empty = params_file's value")
                  for name, text in MAGMA_OVERRIDES.items()]
    return LaunchDescription([*arguments, OpaqueFunction(function=_magma_node)])


def _magma_node(context):
    """The Node action, with only the overrides that were given."""
    value = {name: LaunchConfiguration(name).perform(context) for name in MAGMA_OVERRIDES}
    parameters = [LaunchConfiguration("params_file").perform(context)]
    overrides = magma_overrides(value)
    if overrides:
        parameters.append(overrides)
    return [Node(
        package=PACKAGE,
        executable="magma_node",
        name=LaunchConfiguration("node_name").perform(context),
        namespace=LaunchConfiguration("namespace").perform(context),
        parameters=parameters,
        output="screen",
        emulate_tty=True,
    )]
