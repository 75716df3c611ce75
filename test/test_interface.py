"""magma_ros/interface.py: every declared name is a valid ROS name with an importable message type,
the QoS specs build the profiles the node always used, and a running magma_node uses the interface's
names, types and QoS by default (and the safety layer's default motion limits)."""
from __future__ import annotations

import pytest

from magma_ros import interface
from magma_ros.interface import (
    ACTION,
    COMPRESSED_IMAGE_TYPE,
    DIAGNOSTICS,
    ENABLE,
    ESTOP,
    GRIPPER,
    IMAGE,
    INSTRUCTION,
    LATCHED_QOS,
    NODE_ACTION,
    NODE_NAME,
    RELIABLE_QOS,
    RESET,
    SENSOR_PUB_QOS,
    SENSOR_QOS,
    SERVICES,
    TOPICS,
    TWIST,
)

NAMESPACE = "interface_test"  # the in-process node's; keeps it apart from nodes of other test modules


@pytest.mark.parametrize("topic", TOPICS, ids=lambda t: t.name)
def test_topic_name_is_valid_and_its_type_imports(topic) -> None:
    from rclpy.validate_topic_name import validate_topic_name

    validate_topic_name(topic.name)  # raises InvalidTopicNameException
    cls = interface.message_class(topic.type)
    assert f"{cls.__module__.split('.')[0]}/msg/{cls.__name__}" == topic.type
    assert hasattr(cls, "get_fields_and_field_types"), f"{topic.type} is not a ROS message class"
    assert topic.description and topic.qos in (SENSOR_QOS, LATCHED_QOS, RELIABLE_QOS, SENSOR_PUB_QOS)


@pytest.mark.parametrize("service", SERVICES, ids=lambda s: s.name)
def test_service_name_is_valid_and_its_type_imports(service) -> None:
    from rclpy.validate_topic_name import validate_topic_name

    validate_topic_name(service.name, is_service=True)
    cls = interface.message_class(service.type)
    assert hasattr(cls, "Request") and hasattr(cls, "Response"), f"{service.type} is not a ROS service class"
    assert service.description


def test_names_and_types_are_unique_and_complete() -> None:
    names = [t.name for t in TOPICS]
    assert len(names) == len(set(names))
    declared = {value for value in vars(interface).values() if isinstance(value, interface.Topic)}
    assert declared == set(TOPICS), "a Topic missing from interface.TOPICS"
    assert interface.message_class(COMPRESSED_IMAGE_TYPE).__name__ == "CompressedImage"


def test_absolute_names() -> None:
    assert IMAGE.absolute == "/" + IMAGE.name and DIAGNOSTICS.absolute == DIAGNOSTICS.name
    assert ACTION.absolute == NODE_ACTION.absolute == f"/{NODE_NAME}/{ACTION.name[2:]}"


def test_qos_specs_build_the_profiles_the_node_used() -> None:
    from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy

    def profile(depth: int, reliability: ReliabilityPolicy, durability: DurabilityPolicy) -> QoSProfile:
        return QoSProfile(depth=depth, history=HistoryPolicy.KEEP_LAST, reliability=reliability, durability=durability)

    assert SENSOR_QOS.profile() == profile(1, ReliabilityPolicy.BEST_EFFORT, DurabilityPolicy.VOLATILE)
    assert LATCHED_QOS.profile() == profile(1, ReliabilityPolicy.RELIABLE, DurabilityPolicy.TRANSIENT_LOCAL)
    assert RELIABLE_QOS.profile() == profile(10, ReliabilityPolicy.RELIABLE, DurabilityPolicy.VOLATILE)
    assert SENSOR_PUB_QOS.profile() == profile(5, ReliabilityPolicy.BEST_EFFORT, DurabilityPolicy.VOLATILE)


@pytest.fixture(scope="module")
def node():
    """magma_node with every default but the backend, in a namespace of its own."""
    import rclpy

    from magma_ros.policy.fixed import FixedPolicy
    from magma_ros.ros.node import MagmaNode

    context = rclpy.Context()
    rclpy.init(context=context)
    magma = MagmaNode(FixedPolicy([0.0] * 7), namespace=NAMESPACE, context=context)
    try:
        yield magma
    finally:
        magma.close()
        context.shutdown()


def test_node_default_topic_parameters_are_the_interface_names(node) -> None:
    defaults = {"image_topic": IMAGE, "instruction_topic": INSTRUCTION, "estop_topic": ESTOP, "twist_topic": TWIST,
                "gripper_topic": GRIPPER}
    assert {name: node.get_parameter(name).value for name in defaults} == {n: t.name for n, t in defaults.items()}
    assert node.get_parameter("ee_pose_topic").value == ""  # off by default; the simulator publishes EE_POSE
    assert node.get_name() == NODE_NAME


def in_namespace(name: str) -> str:
    if name.startswith("/"):
        return name
    return f"/{NAMESPACE}/{NODE_NAME}/{name[2:]}" if name.startswith("~/") else f"/{NAMESPACE}/{name}"


def test_node_endpoints_use_interface_names_types_and_qos(node) -> None:
    published = dict(node.get_publisher_names_and_types_by_node(NODE_NAME, f"/{NAMESPACE}"))
    subscribed = dict(node.get_subscriber_names_and_types_by_node(NODE_NAME, f"/{NAMESPACE}"))
    services = dict(node.get_service_names_and_types_by_node(NODE_NAME, f"/{NAMESPACE}"))
    for endpoints, topics, info in ((published, (TWIST, GRIPPER, ACTION, DIAGNOSTICS),
                                     node.get_publishers_info_by_topic),
                                    (subscribed, (IMAGE, INSTRUCTION, ESTOP), node.get_subscriptions_info_by_topic)):
        for topic in topics:
            name = in_namespace(topic.name)
            assert endpoints.get(name) == [topic.type], (name, endpoints)
            qos = [i.qos_profile for i in info(name) if i.node_name == NODE_NAME]
            expected = topic.qos.profile()
            assert [(q.reliability, q.durability) for q in qos] == [(expected.reliability, expected.durability)], name
    for service in (ENABLE, RESET):
        assert services.get(in_namespace(service.name)) == [service.type], services


def test_node_default_motion_limits_are_the_safety_layer_defaults(node) -> None:
    """The simulator's in-process controllers clamp with safety.limits.DEFAULT_MOTION_LIMITS (they may
    not import the ROS layer): the node's parameter defaults must be the same numbers."""
    from magma_ros.safety.limits import DEFAULT_MOTION_LIMITS

    assert {name: node.get_parameter(name).value for name in DEFAULT_MOTION_LIMITS} == DEFAULT_MOTION_LIMITS
