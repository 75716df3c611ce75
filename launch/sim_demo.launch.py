"""The simulated closed loop: magma_sim (PyBullet Panda) + magma_node with the demo policy.

    ros2 launch magma_ros sim_demo.launch.py instruction:="reach the blue cube" seed:=4

Arguments: instruction, seed, backend (demo), robot (sim_panda), real_time_factor (1.0; with another
value also pass use_sim_time:=true to both nodes), namespace (both nodes and their topics).
Without ros2 launch (pip venv), ``python -m magma_ros.demo`` starts the same two processes.
"""
from launch.actions import DeclareLaunchArgument
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

from launch import LaunchDescription
from magma_ros.interface import EE_POSE, NODE_NAME, SIM_NODE_NAME


def generate_launch_description() -> LaunchDescription:
    arg = LaunchConfiguration
    return LaunchDescription([
        DeclareLaunchArgument("instruction", default_value="reach the red cube", description="task for both nodes"),
        DeclareLaunchArgument("seed", default_value="3", description="episode seed of the simulator"),
        DeclareLaunchArgument("backend", default_value="demo", description="magma_node's policy backend"),
        DeclareLaunchArgument("robot", default_value="sim_panda", description="magma_node's robot profile"),
        DeclareLaunchArgument("real_time_factor", default_value="1.0", description="simulated s per wall-clock s"),
        DeclareLaunchArgument("namespace", default_value="", description="namespace of both nodes and their topics"),
        Node(package="magma_ros", executable="magma_sim", name=SIM_NODE_NAME, namespace=arg("namespace"),
             output="screen", parameters=[{"seed": arg("seed"), "instruction": arg("instruction"),
                                           "real_time_factor": arg("real_time_factor")}]),
        Node(package="magma_ros", executable="magma_node", name=NODE_NAME, namespace=arg("namespace"),
             output="screen", parameters=[{"robot": arg("robot"), "backend": arg("backend"), "enabled_on_start": True,
                                           "ee_pose_topic": EE_POSE.name, "instruction": arg("instruction")}]),
    ])
