"""magma_node driving MoveIt Servo on a robot with a MoveIt config package (hardware or Gazebo).

    ros2 launch magma_ros servo_robot.launch.py moveit_config_package:=my_arm_moveit_config \
        robot_name:=my_arm servo_params:=/path/to/my_arm_servo.yaml robot:=/path/to/my_arm.yaml \
        backend:=openai endpoint_url:=http://gpu-box:8000 image_topic:=/camera/color/image_raw

Starts servo_node (package moveit_servo) with the Servo YAML as its ``moveit_servo`` parameters and
robot_description, robot_description_semantic, robot_description_kinematics and
robot_description_planning (joint limits) read from the MoveIt config package, the way
moveit_servo's own launch files pass them; magma_node with ``params_file`` and the backend and topic
overrides of magma_node.launch.py; and, with ``gripper_bridge:=true``, interbotix_gripper_bridge.
The robot's drivers, controllers and robot_state_publisher are not started here: bring them up
first (for a WidowX 250 s see the README, "Installing").

File arguments are paths relative to the MoveIt config package's share directory, or absolute;
``.xacro`` files are expanded with ``xacro_args``. Defaults follow the MoveIt Setup Assistant
layout: config/<robot_name>.urdf.xacro, config/<robot_name>.srdf, config/kinematics.yaml,
config/joint_limits.yaml. ``use_sim_time`` is false; pass true under Gazebo (then /clock must run).
"""
from ament_index_python.packages import get_package_share_directory
from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

from launch import LaunchDescription
from magma_ros.interface import NODE_NAME
from magma_ros.ros.launch_support import (
    MAGMA_OVERRIDES,
    LaunchArgumentError,
    default_params_file,
    magma_overrides,
    moveit_parameters,
    parse_bool,
    servo_parameters,
)

PACKAGE = "magma_ros"
ARGUMENTS = {  # name: (default, description)
    "moveit_config_package": (None, "MoveIt config package of the robot (required)"),
    "robot_name": ("", "robot name for the default MoveIt file names config/<robot_name>.urdf.xacro and .srdf"),
    "robot_description_file": ("", "URDF or xacro; empty = config/<robot_name>.urdf.xacro"),
    "semantic_file": ("", "SRDF or xacro; empty = config/<robot_name>.srdf"),
    "kinematics_file": ("config/kinematics.yaml", "MoveIt kinematics YAML"),
    "joint_limits_file": ("config/joint_limits.yaml", "MoveIt joint limits YAML (robot_description_planning)"),
    "xacro_args": ("", "xacro arguments for .xacro files, e.g. 'robot_model:=wx250s robot_name:=wx250s'"),
    "servo_params": (None, "MoveIt Servo parameter YAML with command_in_type speed_units (required; "
                           "config/servo/wx250s.yaml for a WidowX 250 s)"),
    "planning_group": ("", "planning_group_name for Servo (Jazzy and later); empty = not set"),
    "namespace": ("", "namespace of servo_node, magma_node, the gripper bridge and their topics"),
    "use_sim_time": ("false", "true under Gazebo (needs /clock)"),
    "params_file": ("", "magma_node parameters YAML; empty = the package's config/magma_node.yaml"),
    "enabled_on_start": ("false", "start magma_node enabled (otherwise call ~/enable)"),
    "gripper_bridge": ("false", "also start interbotix_gripper_bridge"),
    "gripper_bridge_mode": ("pwm", "gripper bridge mode: pwm, position or forward_position"),
    "gripper_output_topic": ("", "gripper bridge output topic; empty = its mode's default"),
}


def generate_launch_description() -> LaunchDescription:
    """Declare the arguments; the nodes are built once they are known."""
    arguments = [DeclareLaunchArgument(name, description=text) if default is None else
                 DeclareLaunchArgument(name, default_value=default, description=text)
                 for name, (default, text) in ARGUMENTS.items()]
    arguments += [DeclareLaunchArgument(name, default_value="", description=f"magma_node {text}; empty = params_file's")
                  for name, text in MAGMA_OVERRIDES.items()]
    return LaunchDescription([*arguments, OpaqueFunction(function=_nodes)])


def _nodes(context):
    value = {name: LaunchConfiguration(name).perform(context) for name in [*ARGUMENTS, *MAGMA_OVERRIDES]}
    use_sim_time = {"use_sim_time": parse_bool("use_sim_time", value["use_sim_time"])}
    share = get_package_share_directory(value["moveit_config_package"])
    robot_name = value["robot_name"]
    if not robot_name and not (value["robot_description_file"] and value["semantic_file"]):
        raise LaunchArgumentError("robot_name: needed for the default robot_description_file and semantic_file")
    moveit = moveit_parameters(share, value["robot_description_file"] or f"config/{robot_name}.urdf.xacro",
                               value["semantic_file"] or f"config/{robot_name}.srdf", value["kinematics_file"],
                               value["joint_limits_file"], value["xacro_args"])
    servo = [servo_parameters(value["servo_params"]), *moveit, use_sim_time]
    if value["planning_group"]:
        servo.append({"planning_group_name": value["planning_group"]})
    magma = [value["params_file"] or default_params_file(),
             {**magma_overrides(value), **use_sim_time,
              "enabled_on_start": parse_bool("enabled_on_start", value["enabled_on_start"])}]
    namespace = value["namespace"]
    nodes = [
        Node(package="moveit_servo", executable="servo_node", name="servo_node", namespace=namespace,
             parameters=servo, output="screen"),
        Node(package=PACKAGE, executable="magma_node", name=NODE_NAME, namespace=namespace,
             parameters=magma, output="screen", emulate_tty=True),
    ]
    if parse_bool("gripper_bridge", value["gripper_bridge"]):
        bridge = {"mode": value["gripper_bridge_mode"], **use_sim_time}
        if value["gripper_output_topic"]:
            bridge["output_topic"] = value["gripper_output_topic"]
        if value["gripper_topic"]:
            bridge["input_topic"] = value["gripper_topic"]
        nodes.append(Node(package=PACKAGE, executable="interbotix_gripper_bridge", name="gripper_bridge",
                          namespace=namespace, parameters=[bridge], output="screen"))
    return nodes
