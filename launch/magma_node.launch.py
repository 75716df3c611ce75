"""Launch magma_node with a parameters file and optional overrides.

    ros2 launch magma_ros magma_node.launch.py robot:=bridge_orig backend:=fixed \
        params_file:=/path/to/my_magma_node.yaml image_topic:=/wrist_camera/image_raw

Arguments left empty keep the value from ``params_file`` (default: the package's
config/magma_node.yaml, every parameter with its default and a comment).
"""
import os

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

PACKAGE = "magma_ros"
# launch argument -> what the node parameter of the same name means; set only when non-empty
OVERRIDES = {
    "robot": "robot profile: built-in name or path to a profile YAML",
    "backend": "policy backend: magma, openai, fixed, demo or package.module:function",
    "image_topic": "camera topic (sensor_msgs/Image)",
    "instruction_topic": "instruction topic (std_msgs/String)",
    "estop_topic": "e-stop topic (std_msgs/Bool)",
    "ee_pose_topic": "end-effector pose topic for workspace limits",
    "twist_topic": "TwistStamped output topic (e.g. /servo_node/delta_twist_cmds)",
    "gripper_topic": "gripper command output topic (std_msgs/Float64)",
}


def generate_launch_description() -> LaunchDescription:
    """Declare the arguments; the node is built once they are known."""
    default_params = os.path.join(get_package_share_directory(PACKAGE), "config", "magma_node.yaml")
    arguments = [
        DeclareLaunchArgument("params_file", default_value=default_params,
                              description="magma_node parameters YAML (ros__parameters)"),
        DeclareLaunchArgument("node_name", default_value="magma_node", description="node name"),
        DeclareLaunchArgument("namespace", default_value="", description="node namespace"),
    ]
    arguments += [DeclareLaunchArgument(name, default_value="", description=f"{text}; empty = params_file's value")
                  for name, text in OVERRIDES.items()]
    return LaunchDescription([*arguments, OpaqueFunction(function=_magma_node)])


def _magma_node(context):
    """The Node action, with only the overrides that were given."""
    overrides = {name: LaunchConfiguration(name).perform(context) for name in OVERRIDES}
    overrides = {name: value for name, value in overrides.items() if value}
    parameters = [LaunchConfiguration("params_file").perform(context)]
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
