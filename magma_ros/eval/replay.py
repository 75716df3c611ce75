"""``magma-ros replay``: publish a bag's camera and instruction topics into a live ROS graph with
their original timing, while recording what magma_node publishes into a new bag.

The output bag also holds the images and instructions as they were published and any ``copy``
topics of the source (e.g. the teleoperated actions), stamped at their replay time, so that
``magma-ros eval`` can compare the node's outputs with the recorded actions.
"""
from __future__ import annotations

import math
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from rclpy.exceptions import InvalidTopicNameException
from rclpy.node import Node
from rclpy.serialization import deserialize_message, serialize_message
from rclpy.validate_topic_name import validate_topic_name

from ..errors import one_line
from ..interface import IMAGE, INSTRUCTION, SENSOR_PUB_QOS
from ..progress import Progress
from .bag import check_output_bag, open_bag, topic_connections
from .convert import IMAGE_TYPES, INSTRUCTION_TYPES
from .errors import BagError, RosSetupError
from .messages import message_class
from .recorder import BagRecorder, TopicSpec
from .ros_session import RosSession, ros_session


@dataclass(frozen=True)
class ReplayOptions:
    """What to replay, how fast, and what to record."""

    bag: Path
    out: Path
    record_topics: tuple[TopicSpec, ...]
    image_topic: str = IMAGE.absolute
    instruction_topic: str = INSTRUCTION.absolute  # '' = the bag has none (node parameter instead)
    publish_image_topic: str = IMAGE.absolute
    publish_instruction_topic: str = INSTRUCTION.absolute
    copy_topics: tuple[str, ...] = ()
    rate: float = 1.0
    loops: int = 1  # 0 = until Ctrl-C
    restamp: bool = True
    wait_node_s: float = 30.0
    tail_s: float = 2.0
    storage: str = "mcap"
    progress: bool = True


@dataclass
class ReplayResult:
    """What was published and recorded."""

    published: dict[str, int] = field(default_factory=dict)
    recorded: dict[str, int] = field(default_factory=dict)
    passes: int = 0
    max_late_s: float = 0.0  # worst delay of a publish behind its scheduled time
    interrupted: bool = False


def replay(options: ReplayOptions, ros_args: tuple[str, ...] = (), log: TextIO | None = None) -> ReplayResult:
    """Replay the bag through the live graph and record the node's outputs; see the module docstring."""
    log = log or sys.stderr
    opts = options
    if not (opts.rate > 0 and math.isfinite(opts.rate)):
        raise BagError(f"--rate must be a finite number > 0, got {opts.rate}")
    check_output_bag(opts.out)
    for option, topic in (("--publish-image-topic", opts.publish_image_topic),
                          ("--publish-instruction-topic", opts.publish_instruction_topic)):
        try:
            validate_topic_name(topic)
        except InvalidTopicNameException as exc:
            raise RosSetupError(f"{option} {topic!r}: {one_line(exc)}") from None
    recorded_names = {t.name for t in opts.record_topics}
    clashes = sorted(recorded_names & ({opts.publish_image_topic, opts.publish_instruction_topic}
                                       | set(opts.copy_topics)))
    if clashes:
        raise BagError(f"topic(s) {', '.join(clashes)} would be both replayed and recorded")
    with open_bag(opts.bag) as reader:
        image_conns = topic_connections(reader, opts.bag, opts.image_topic, IMAGE_TYPES, "image")
        conns = {opts.image_topic: image_conns}
        if opts.instruction_topic:
            conns[opts.instruction_topic] = topic_connections(reader, opts.bag, opts.instruction_topic,
                                                              INSTRUCTION_TYPES, "instruction")
        for topic in opts.copy_topics:
            conns[topic] = topic_connections(reader, opts.bag, topic, [c.msgtype for c in reader.connections
                                                                        if c.topic == topic], "copied")
        types = {topic: cs[0].msgtype for topic, cs in conns.items()}
        frames = sum(int(c.msgcount) for c in image_conns)
        with ros_session("magma_replay", ros_args) as session:
            return _run(session, reader, [c for cs in conns.values() for c in cs], types, frames, opts, log)


def _run(session: RosSession, reader: Any, connections: list[Any], types: dict[str, str], frames: int,
         opts: ReplayOptions, log: TextIO) -> ReplayResult:
    node = session.node
    publishers = {opts.image_topic: node.create_publisher(message_class(types[opts.image_topic]),
                                                          opts.publish_image_topic, SENSOR_PUB_QOS.profile())}
    if opts.instruction_topic:
        publishers[opts.instruction_topic] = node.create_publisher(
            message_class(types[opts.instruction_topic]), opts.publish_instruction_topic, INSTRUCTION.qos.profile())
    _wait_for_node(session, opts)
    record = list(opts.record_topics) + [TopicSpec(opts.publish_image_topic, types[opts.image_topic])]
    if opts.instruction_topic:
        record.append(TopicSpec(opts.publish_instruction_topic, types[opts.instruction_topic]))
    recorder = BagRecorder(node, opts.out, opts.storage, record, on_error=session.stop)
    result = ReplayResult(published={opts.publish_image_topic: 0, opts.publish_instruction_topic: 0})
    try:
        for topic in opts.copy_topics:
            recorder.add_topic(topic, types[topic])
        _wait_for_matches(session, publishers.values(), opts.wait_node_s)
        image_class = message_class(types[opts.image_topic])
        progress = Progress(frames * opts.loops, "replay", enabled=opts.progress, stream=log)
        images = 0
        while not session.stop.is_set() and (opts.loops == 0 or result.passes < opts.loops):
            start_wall, first_ns = time.monotonic(), None
            for conn, t_ns, raw in reader.messages(connections=connections):
                first_ns = t_ns if first_ns is None else first_ns
                due = start_wall + (t_ns - first_ns) / 1e9 / opts.rate
                if session.stop.wait(max(0.0, due - time.monotonic())):
                    break
                result.max_late_s = max(result.max_late_s, time.monotonic() - due)
                if conn.topic == opts.image_topic:
                    publishers[conn.topic].publish(_restamped(raw, image_class, node) if opts.restamp else raw)
                    result.published[opts.publish_image_topic] += 1
                    images += 1
                    progress.update(images)
                elif conn.topic == opts.instruction_topic:
                    publishers[conn.topic].publish(raw)
                    result.published[opts.publish_instruction_topic] += 1
                else:
                    recorder.write(conn.topic, raw)
                    result.published[conn.topic] = result.published.get(conn.topic, 0) + 1
            else:
                result.passes += 1
        progress.close()
        result.interrupted = session.stop.is_set()
        session.wait(opts.tail_s / opts.rate if not result.interrupted else 0.0)
    finally:
        recorder.close()
    result.recorded = dict(recorder.counts)
    return result


def _restamped(raw: bytes, msg_class: Any, node: Node) -> Any:
    """The image with ``header.stamp`` set to now, as a live camera would stamp it."""
    msg = deserialize_message(raw, msg_class)
    msg.header.stamp = node.get_clock().now().to_msg()
    return serialize_message(msg)


def _wait_for_node(session: RosSession, opts: ReplayOptions) -> None:
    """Wait until another node subscribes to the image topic and the recorded topics have publishers."""
    node = session.node
    deadline = time.monotonic() + opts.wait_node_s
    own = node.get_name()

    def others(infos: list[Any]) -> list[Any]:
        return [i for i in infos if i.node_name != own]

    while not others(node.get_subscriptions_info_by_topic(opts.publish_image_topic)):
        if time.monotonic() > deadline or session.stop.is_set():
            raise BagError(f"no subscriber on {opts.publish_image_topic} after {opts.wait_node_s:g} s: "
                           f"start magma_node first (or set --publish-image-topic)")
        time.sleep(0.1)
    while not all(node.get_publishers_info_by_topic(t.name) for t in opts.record_topics):
        if time.monotonic() > deadline or session.stop.is_set():
            missing = [t.name for t in opts.record_topics if not node.get_publishers_info_by_topic(t.name)]
            raise BagError(f"no publisher on {', '.join(missing)} after {opts.wait_node_s:g} s "
                           f"(is magma_node running with these topic names?)")
        time.sleep(0.1)


def _wait_for_matches(session: RosSession, publishers: Any, timeout_s: float) -> None:
    """Wait until each publisher reaches the node and our own recorder (two subscriptions)."""
    deadline = time.monotonic() + timeout_s
    for pub in publishers:
        while pub.get_subscription_count() < 2:
            if time.monotonic() > deadline or session.stop.is_set():
                raise BagError(f"{pub.topic_name}: the node and the recorder did not both subscribe within "
                               f"{timeout_s:g} s")
            time.sleep(0.05)
