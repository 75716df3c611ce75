"""UNTESTED HERE (no Gazebo or MoveIt in this environment): magma_node driving MoveIt Servo on a real
robot description, in Gazebo or on hardware.

    ros2 launch magma_ros servo_robot.launch.py robot:=/path/to/my_arm.yaml \
        servo_params:=/path/to/my_arm_servo.yaml camera_topic:=/camera/color/image_raw \
        backend:=openai endpoint_url:=http://gpu-box:8000

What you bring: a robot profile YAML whose base_frame is Servo's planning frame, a MoveIt config
(robot_description, robot_description_semantic, kinematics) already running (e.g. from your
robot's moveit_config launch, with Gazebo's ros2_control), and a Servo parameter file whose
command_in_type is "speed_units" and whose cartesian_command_in_topic is
/servo_node/delta_twist_cmds. This file starts Servo and magma_node; a gripper driver has to
subscribe /magma/gripper_command (std_msgs/Float64, 1.0 open, 0.0 closed).
"""
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node


def generate_launch_description() -> LaunchDescription:
    arg = LaunchConfiguration
    return LaunchDescription([
        DeclareLaunchArgument("robot", description="robot profile name or YAML path"),
        DeclareLaunchArgument("servo_params", description="MoveIt Servo parameter YAML (speed_units)"),
        DeclareLaunchArgument("camera_topic", default_value="/camera/image_raw"),
        DeclareLaunchArgument("backend", default_value="openai"),
        DeclareLaunchArgument("endpoint_url", default_value=""),
        DeclareLaunchArgument("model", default_value="microsoft/Magma-8B"),
        DeclareLaunchArgument("use_sim_time", default_value="true", description="true under Gazebo"),
        Node(package="moveit_servo", executable="servo_node", name="servo_node", output="screen",
             parameters=[arg("servo_params"), {"use_sim_time": arg("use_sim_time")}]),
        Node(package="magma_ros", executable="magma_node", name="magma_node", output="screen",
             parameters=[{"robot": arg("robot"), "backend": arg("backend"), "endpoint_url": arg("endpoint_url"),
                          "model": arg("model"), "image_topic": arg("camera_topic"),
                          "use_sim_time": arg("use_sim_time"), "enabled_on_start": False}]),
    ])
