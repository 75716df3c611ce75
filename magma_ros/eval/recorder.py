"""Record ROS 2 topics into a rosbag2 bag without ros2cli: raw (serialized) rclpy subscriptions
written with the ``rosbags`` writer. Imports rclpy; used by ``magma-ros record`` and ``replay``."""
from __future__ import annotations

import queue
import threading
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy

from ..interface import DIAGNOSTICS, GRIPPER, IMAGE, INSTRUCTION, NODE_ACTION, TWIST, Qos
from .errors import BagError
from .messages import message_class

NODE_OUTPUTS = (TWIST, GRIPPER, NODE_ACTION, DIAGNOSTICS)  # what magma_node publishes (issue 3)
NODE_INPUTS = (IMAGE, INSTRUCTION)
# The same by their names in the root namespace.
NODE_OUTPUT_TOPICS: dict[str, str] = {t.absolute: t.type for t in NODE_OUTPUTS}
NODE_INPUT_TOPICS: dict[str, str] = {t.absolute: t.type for t in NODE_INPUTS}
KNOWN_TOPICS = {**NODE_OUTPUT_TOPICS, **NODE_INPUT_TOPICS}
RECORD_DEPTH = 100  # messages a recording subscription queues


@dataclass(frozen=True)
class TopicSpec:
    """A topic to record; ``msgtype`` like ``std_msgs/msg/Float64`` ('' = look it up in the graph).
    A relative ``name`` is resolved by the recording node, in its namespace, as a node's own topics are."""

    name: str
    msgtype: str = ""

    @classmethod
    def parse(cls, text: str) -> "TopicSpec":
        """``/name`` or ``/name:pkg/msg/Type`` (a known magma topic needs no type)."""
        name, _, msgtype = text.partition(":")
        if not name.startswith("/") or any(c.isspace() for c in name):
            raise BagError(f"topic {text!r}: expected an absolute topic name like /camera/image_raw[:pkg/msg/Type]")
        if msgtype and msgtype.count("/") != 2:
            raise BagError(f"topic {text!r}: message type must look like pkg/msg/Type")
        return cls(name, msgtype or KNOWN_TOPICS.get(name, ""))


def resolve_names(node: Node, topics: list[TopicSpec]) -> list[TopicSpec]:
    """The topics by the names ``node`` subscribes to: relative names in its namespace, remappings applied."""
    return [TopicSpec(node.resolve_topic_name(t.name), t.msgtype) for t in topics]


def resolve_types(node: Node, topics: list[TopicSpec], timeout_s: float) -> list[TopicSpec]:
    """Fill in missing types from the ROS graph, waiting up to ``timeout_s`` for the topics to appear."""
    deadline = time.monotonic() + timeout_s
    while True:
        graph = dict(node.get_topic_names_and_types())
        resolved = [t if t.msgtype else TopicSpec(t.name, (graph.get(t.name) or [""])[0]) for t in topics]
        missing = [t.name for t in resolved if not t.msgtype]
        if not missing:
            return resolved
        if time.monotonic() > deadline:
            raise BagError(f"no type for topic(s) {', '.join(missing)}: not seen in the ROS graph after "
                           f"{timeout_s:g} s (give it as NAME:pkg/msg/Type)")
        time.sleep(0.1)


def wait_for_publishers(node: Node, names: list[str], timeout_s: float, stop: threading.Event) -> list[str]:
    """Wait up to ``timeout_s`` (or until ``stop``) for every topic of ``names`` to have a publisher
    in the ROS graph; returns those that still have none."""
    deadline = time.monotonic() + timeout_s
    while True:
        silent = [name for name in names if node.count_publishers(name) == 0]
        if not silent or time.monotonic() > deadline or stop.wait(0.1):
            return silent


def subscription_qos(node: Node, topic: str) -> QoSProfile:
    """A QoS that matches the topic's current publishers (best effort + volatile when there are none,
    which accepts any publisher)."""
    infos = node.get_publishers_info_by_topic(topic)
    reliable = bool(infos) and all(i.qos_profile.reliability == ReliabilityPolicy.RELIABLE for i in infos)
    latched = bool(infos) and all(i.qos_profile.durability == DurabilityPolicy.TRANSIENT_LOCAL for i in infos)
    return Qos(depth=RECORD_DEPTH, reliable=reliable, latched=latched).profile()


class BagRecorder:
    """Writes every message received on ``topics`` to a new bag.

    Callbacks only queue the serialized bytes; one writer thread owns the bag from open to close
    (sqlite3 connections must stay in their thread, and callbacks must not wait for the disk).
    """

    def __init__(self, node: Node, out: Path, storage: str, topics: list[TopicSpec],
                 on_error: threading.Event | None = None) -> None:
        from .bag import typestore

        self.node, self.out = node, out
        self.counts: Counter[str] = Counter()
        self._store = typestore()
        self._topics: dict[str, str] = {}
        self._queue: queue.SimpleQueue[tuple[Any, ...] | None] = queue.SimpleQueue()
        self._opened = threading.Event()
        self._error: BaseException | None = None
        self._on_error = on_error  # set when writing fails, so that the caller stops early
        self._closed = False
        self._thread = threading.Thread(target=self._run, args=(storage,), name="bag-writer", daemon=True)
        self._thread.start()
        self._opened.wait()
        if self._error is not None:
            raise self._error
        self._subscriptions: list[Any] = []
        for spec in topics:
            if not spec.msgtype:
                raise BagError(f"topic {spec.name}: message type unknown")
            self.add_topic(spec.name, spec.msgtype)
            self._subscriptions.append(self.node.create_subscription(
                message_class(spec.msgtype), spec.name, lambda data, t=spec.name: self.write(t, data),
                subscription_qos(node, spec.name), raw=True))

    def _run(self, storage: str) -> None:
        from .bag import open_writer

        try:
            with open_writer(self.out, storage) as writer:
                self._opened.set()
                connections: dict[str, Any] = {}
                while (item := self._queue.get()) is not None:
                    if item[0] == "topic":
                        _, topic, msgtype = item
                        connections[topic] = writer.add_connection(topic, msgtype, typestore=self._store)
                    else:
                        _, topic, stamp, data = item
                        writer.write(connections[topic], stamp, data)
                        self.counts[topic] += 1
        except BaseException as exc:  # noqa: BLE001 - re-raised in the thread calling close()
            self._error = exc
            if self._on_error is not None:
                self._on_error.set()
        finally:
            self._opened.set()

    def add_topic(self, topic: str, msgtype: str) -> None:
        """Register a topic in the bag (also for messages written directly with ``write``)."""
        if msgtype not in self._store.fielddefs:
            raise BagError(f"topic {topic}: type {msgtype} is not in rosbags' standard type store")
        if topic in self._topics:
            raise BagError(f"topic {topic} is recorded twice")
        self._topics[topic] = msgtype
        self._queue.put(("topic", topic, msgtype))

    def write(self, topic: str, data: bytes, t_ns: int | None = None) -> None:
        """Queue one serialized message, stamped with the node clock unless ``t_ns`` is given."""
        if self._closed or self._error is not None:
            return
        stamp = self.node.get_clock().now().nanoseconds if t_ns is None else t_ns
        self._queue.put(("msg", topic, stamp, bytes(data)))

    def close(self) -> None:
        """Stop receiving, write what is queued and close the bag; raises the writer's error if any."""
        self._closed = True
        for sub in self._subscriptions:
            self.node.destroy_subscription(sub)
        self._subscriptions.clear()
        self._queue.put(None)
        self._thread.join()
        if self._error is not None:
            raise BagError(f"output bag {self.out}: writing failed: {self._error}") from self._error

    def summary(self) -> str:
        """``topic: count`` of messages written per recorded topic."""
        return ", ".join(f"{topic} {self.counts[topic]}" for topic in self._topics)
