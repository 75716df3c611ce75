"""Launch magma_node with a parameters file and optional overrides.

    ros2 launch magma_ros magma_node.launch.py robot:=bridge_orig backend:=fixed \
        fixed_action:="[0.01,0,0,0,0,0,1]" params_file:=/path/to/my_magma_node.yaml namespace:=arm1

Arguments left empty keep the value from ``params_file`` (default: the package's
config/magma_node.yaml, every parameter with its default and a comment). Topic names are relative,
so ``namespace:=arm1`` moves all of them under /arm1. ``managed:=true`` starts it as a managed
(lifecycle) node; with ``autostart:=true`` the launch then configures and activates it.
"""
from launch.actions import DeclareLaunchArgument, EmitEvent, OpaqueFunction, RegisterEventHandler
from launch.events import matches_action
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import LifecycleNode, Node
from launch_ros.event_handlers import OnStateTransition
from launch_ros.events.lifecycle import ChangeState
from lifecycle_msgs.msg import Transition

from launch import LaunchDescription
from magma_ros.interface import NODE_NAME
from magma_ros.ros.launch_support import (
    MAGMA_OVERRIDES,
    LaunchArgumentError,
    default_params_file,
    magma_overrides,
    parse_bool,
)

PACKAGE = "magma_ros"


def generate_launch_description() -> LaunchDescription:
    """Declare the arguments; the node is built once they are known."""
    arguments = [
        DeclareLaunchArgument("params_file", default_value=default_params_file(),
                              description="magma_node parameters YAML (ros__parameters)"),
        DeclareLaunchArgument("node_name", default_value=NODE_NAME, description="node name"),
        DeclareLaunchArgument("namespace", default_value="", description="namespace of the node and its topics"),
        DeclareLaunchArgument("managed", default_value="false",
                              description="start a managed (lifecycle) node: it loads nothing until configured"),
        DeclareLaunchArgument("autostart", default_value="false",
                              description="with managed:=true, configure and then activate it"),
    ]
    arguments += [DeclareLaunchArgument(name, default_value="", description=f"{text}; empty = params_file's value")
                  for name, text in MAGMA_OVERRIDES.items()]
    return LaunchDescription([*arguments, OpaqueFunction(function=_magma_node)])


def _magma_node(context):
    """The Node (or LifecycleNode) action, with only the overrides that were given."""
    value = {name: LaunchConfiguration(name).perform(context) for name in MAGMA_OVERRIDES}
    managed = parse_bool("managed", LaunchConfiguration("managed").perform(context))
    autostart = parse_bool("autostart", LaunchConfiguration("autostart").perform(context))
    if autostart and not managed:
        raise LaunchArgumentError("autostart: needs managed:=true (an unmanaged node starts by itself)")
    parameters = [LaunchConfiguration("params_file").perform(context)]
    overrides = magma_overrides(value) | ({"managed": True} if managed else {})
    if overrides:
        parameters.append(overrides)
    node = (LifecycleNode if managed else Node)(
        package=PACKAGE,
        executable="magma_node",
        name=LaunchConfiguration("node_name").perform(context),
        namespace=LaunchConfiguration("namespace").perform(context),
        parameters=parameters,
        output="screen",
        emulate_tty=True,
    )
    if not autostart:
        return [node]

    def transition(transition_id: int) -> EmitEvent:
        return EmitEvent(event=ChangeState(lifecycle_node_matcher=matches_action(node), transition_id=transition_id))

    activate_when_inactive = RegisterEventHandler(OnStateTransition(
        target_lifecycle_node=node, start_state="configuring", goal_state="inactive",
        entities=[transition(Transition.TRANSITION_ACTIVATE)]))
    return [node, activate_when_inactive, transition(Transition.TRANSITION_CONFIGURE)]
