"""The package's ROS interface in one place: every topic and service, its message type and its QoS.

magma_node, magma_sim, the demo, the recorder, replay, eval defaults and the tests take names from
here; nothing else spells a topic. Default names are relative (a namespace moves a whole arm),
except the graph-wide ``/clock`` and ``/diagnostics``; ``~/...`` names are private to the node.
Pure Python: ``rclpy`` and message packages are imported only by :meth:`Qos.profile` and
:func:`message_class`.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Qos:
    """A keep-last QoS: history depth, reliability and durability (``latched`` = transient local)."""

    depth: int
    reliable: bool
    latched: bool = False

    def profile(self) -> Any:
        """The ``rclpy.qos.QoSProfile`` of this spec."""
        from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy

        return QoSProfile(depth=self.depth, history=HistoryPolicy.KEEP_LAST,
                          reliability=ReliabilityPolicy.RELIABLE if self.reliable else ReliabilityPolicy.BEST_EFFORT,
                          durability=DurabilityPolicy.TRANSIENT_LOCAL if self.latched else DurabilityPolicy.VOLATILE)


# Camera in: best effort, newest frame only (as sensor drivers publish; accepts any publisher).
SENSOR_QOS = Qos(depth=1, reliable=False)
# Instructions, simulator status and reset: the latest one is kept for late joiners.
LATCHED_QOS = Qos(depth=1, reliable=True, latched=True)
# E-stop and poses in, commands, actions and diagnostics out: reliable, volatile.
RELIABLE_QOS = Qos(depth=10, reliable=True)
# A publisher of recorded or simulated camera frames: best effort, a few frames of slack.
SENSOR_PUB_QOS = Qos(depth=5, reliable=False)


@dataclass(frozen=True)
class Topic:
    """A topic of the interface: default name, message type (``pkg/msg/Name``), QoS, meaning."""

    name: str
    type: str
    qos: Qos
    description: str

    @property
    def absolute(self) -> str:
        """The name in the root namespace (as bags record it); ``~/x`` is magma_node's."""
        if self.name.startswith("~/"):
            return f"/{NODE_NAME}/{self.name[2:]}"
        return self.name if self.name.startswith("/") else "/" + self.name


@dataclass(frozen=True)
class Service:
    """A service of the interface: name and type (``pkg/srv/Name``)."""

    name: str
    type: str
    description: str


NODE_NAME = "magma_node"
SIM_NODE_NAME = "magma_sim"

# magma_node in
IMAGE = Topic("camera/image_raw", "sensor_msgs/msg/Image", SENSOR_QOS, "camera frames (rgb8, bgr8, mono8, ...)")
COMPRESSED_SUFFIX = "/compressed"  # with compressed_image: sensor_msgs/CompressedImage on <image topic>/compressed
COMPRESSED_IMAGE_TYPE = "sensor_msgs/msg/CompressedImage"
INSTRUCTION = Topic("magma/instruction", "std_msgs/msg/String", LATCHED_QOS, "task instruction")
ESTOP = Topic("magma/estop", "std_msgs/msg/Bool", RELIABLE_QOS, "true latches a stop until ~/reset")
EE_POSE = Topic("sim/ee_pose", "geometry_msgs/msg/PoseStamped", RELIABLE_QOS,
                "end-effector pose in the base frame (the simulator's; off by default on the node)")
# magma_node out
TWIST = Topic("servo_node/delta_twist_cmds", "geometry_msgs/msg/TwistStamped", RELIABLE_QOS,
              "end-effector velocity commands (MoveIt Servo's input)")
GRIPPER = Topic("magma/gripper_command", "std_msgs/msg/Float64", RELIABLE_QOS, "1.0 open, 0.0 closed")
ACTION = Topic("~/action", "std_msgs/msg/Float64MultiArray", RELIABLE_QOS,
               "each decoded 7-DoF action, after the commands it caused")
NODE_ACTION = Topic(f"{NODE_NAME}/action", ACTION.type, RELIABLE_QOS, "magma_node's ~/action seen from outside")
DIAGNOSTICS = Topic("/diagnostics", "diagnostic_msgs/msg/DiagnosticArray", RELIABLE_QOS, "node health, 1 Hz")
DEBUG_IMAGE = Topic("~/debug_image", "sensor_msgs/msg/Image", RELIABLE_QOS,
                    "the frame the model saw, annotated with what it wants (only while subscribed)")
MARKERS = Topic("~/markers", "visualization_msgs/msg/MarkerArray", RELIABLE_QOS,
                "commanded motion arrow at the end effector and the workspace box (only while subscribed)")
TRANSITION_EVENT = Topic("~/transition_event", "lifecycle_msgs/msg/TransitionEvent", RELIABLE_QOS,
                         "lifecycle transitions (managed node only)")
ENABLE = Service("~/enable", "std_srvs/srv/SetBool", "enable or disable motion")
RESET = Service("~/reset", "std_srvs/srv/Trigger", "clear a latched e-stop or fault")
CHANGE_STATE = Service("~/change_state", "lifecycle_msgs/srv/ChangeState",
                       "lifecycle transition: configure, activate, ... (managed node only)")
GET_STATE = Service("~/get_state", "lifecycle_msgs/srv/GetState", "lifecycle state (managed node only)")
# simulator
CLOCK = Topic("/clock", "rosgraph_msgs/msg/Clock", RELIABLE_QOS, "simulated time")
JOINT_STATES = Topic("joint_states", "sensor_msgs/msg/JointState", RELIABLE_QOS, "simulated arm joints")
SIM_STATUS = Topic("sim/status", "std_msgs/msg/String", LATCHED_QOS, "episode status as JSON")
SIM_RESET = Topic("sim/reset", "std_msgs/msg/Int64", LATCHED_QOS, "start a new episode with this seed")
# bags
TELEOP_ACTION = Topic("teleop/action", "std_msgs/msg/Float64MultiArray", RELIABLE_QOS,
                      "ground-truth 7-DoF actions in sample and user bags")
TELEOP_TWIST = Topic("teleop/twist", TWIST.type, RELIABLE_QOS, "the same actions as twists, in sample bags")
TELEOP_GRIPPER = Topic("teleop/gripper", GRIPPER.type, RELIABLE_QOS,
                       "the same actions' gripper commands, in sample bags")

TOPICS = (IMAGE, INSTRUCTION, ESTOP, EE_POSE, TWIST, GRIPPER, ACTION, NODE_ACTION, DIAGNOSTICS, DEBUG_IMAGE, MARKERS,
          TRANSITION_EVENT, CLOCK, JOINT_STATES, SIM_STATUS, SIM_RESET, TELEOP_ACTION, TELEOP_TWIST, TELEOP_GRIPPER)
SERVICES = (ENABLE, RESET, CHANGE_STATE, GET_STATE)


def message_class(type_name: str) -> Any:
    """The Python class of ``pkg/msg/Name`` (or ``pkg/srv/Name``), imported on demand."""
    package, kind, name = type_name.split("/")
    return getattr(importlib.import_module(f"{package}.{kind}"), name)
