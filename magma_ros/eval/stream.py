"""One pass over a bag in time order: image frames with their instruction, paired with the
ground-truth (and optionally recorded prediction) actions that follow them.

Pairing rule: a frame takes, from each ground-truth channel, the first message stamped at or after
the frame (in bag order) and no later than ``max_delay_s`` after it. A recorded prediction (a node's
output) belongs to the newest frame waiting for it, as the node acts on the newest image; older
waiting frames are counted as ``no_prediction``. Frames are held only until they
are paired or the delay has passed, so memory stays flat however long the bag is.
"""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Literal

import numpy as np

from ..actions.tokenizer import ACTION_DIM
from ..errors import one_line
from .bag import READ_ERRORS, format_time, message_count, topic_connections
from .convert import (
    ARRAY_TYPES,
    GRIPPER_TYPES,
    IMAGE_TYPES,
    INSTRUCTION_TYPES,
    TWIST_TYPES,
    ConversionError,
    array_to_action,
    gripper_value,
    image_to_rgb,
    instruction_text,
    twist_to_delta,
)
from .errors import BagError

SkipKind = Literal["no_instruction", "stride", "no_ground_truth", "no_prediction", "bad_image",
                   "bad_ground_truth", "bad_prediction", "bad_instruction", "undecodable", "policy_error"]


@dataclass(frozen=True)
class ActionSource:
    """Where 7-vector actions come from: a Float64MultiArray topic, or a TwistStamped topic plus a
    Float64 gripper-command topic (deltas = twist * ``dt``; gripper values are commands in [0, 1])."""

    topic: str
    gripper_topic: str = ""
    dt: float = 0.0

    @property
    def is_twist(self) -> bool:
        """True for the TwistStamped + gripper form."""
        return bool(self.gripper_topic)

    @property
    def gripper_units(self) -> str:
        """``model`` (the policy's raw gripper value) or ``command`` (after the gripper convention)."""
        return "command" if self.is_twist else "model"

    def describe(self) -> dict[str, str]:
        """Topic names for the report."""
        if self.is_twist:
            return {"twist": self.topic, "gripper": self.gripper_topic}
        return {"action": self.topic}


@dataclass
class Frame:
    """An image with its instruction and paired actions."""

    index: int  # position among all image messages of the bag (0-based)
    t_ns: int
    image: np.ndarray
    instruction: str
    episode: int
    truth: np.ndarray = field(default_factory=lambda: np.full(ACTION_DIM, np.nan))
    recorded: np.ndarray | None = None  # recorded prediction (replayed node output), if asked for
    recorded_t_ns: int | None = None
    missing: set[str] = field(default_factory=set)
    invalid: set[str] = field(default_factory=set)  # ground-truth channels whose message for it was invalid


@dataclass(frozen=True)
class Skip:
    """A frame or message that could not be used, with where and why."""

    kind: SkipKind
    topic: str
    t_ns: int
    message: str

    def __str__(self) -> str:
        return f"{self.topic} at t={format_time(self.t_ns)}: {self.message}"


@dataclass
class _Channel:
    topic: str
    key: str  # e.g. "truth" or "recorded:gripper"
    role: str
    convert: Callable[[Any], np.ndarray | float]
    bad_kind: SkipKind


class FrameStream:
    """Iterate a bag's frames and skips in time order (see the module docstring for pairing)."""

    def __init__(self, reader: Any, bag: str | Path, *, image_topic: str, instruction_topic: str | None,
                 instruction: str | None, truth: ActionSource, recorded: ActionSource | None = None,
                 max_delay_s: float = 1.0, every: int = 1) -> None:
        if every < 1:
            raise BagError(f"--every must be >= 1, got {every}")
        if not max_delay_s > 0:
            raise BagError(f"--max-delay must be > 0, got {max_delay_s}")
        self.reader, self.bag = reader, bag
        self.image_topic, self.instruction_topic, self.fixed_instruction = image_topic, instruction_topic, instruction
        self.max_delay_ns = int(max_delay_s * 1e9)
        self.every = every
        self._types: dict[str, str] = {}
        conns = self._check(image_topic, IMAGE_TYPES, "image")
        self.total_images = message_count(conns)
        if instruction_topic:
            conns += self._check(instruction_topic, INSTRUCTION_TYPES, "instruction")
        self.channels: list[_Channel] = []
        for prefix, source, role, bad in (("truth", truth, "ground-truth", "bad_ground_truth"),
                                          ("recorded", recorded, "prediction", "bad_prediction")):
            if source is None:
                continue
            if source.is_twist:
                conns += self._check(source.topic, TWIST_TYPES, f"{role} twist")
                conns += self._check(source.gripper_topic, GRIPPER_TYPES, f"{role} gripper")
                dt = source.dt
                self.channels.append(_Channel(source.topic, f"{prefix}:arm", role,
                                              lambda m, dt=dt: twist_to_delta(m, dt), bad))
                self.channels.append(_Channel(source.gripper_topic, f"{prefix}:gripper", role, gripper_value, bad))
            else:
                conns += self._check(source.topic, ARRAY_TYPES, role)
                self.channels.append(_Channel(source.topic, f"{prefix}:all", role, array_to_action, bad))
        self.connections = list({id(c): c for c in conns}.values())
        self.images_seen = 0
        self.last_t_ns: int | None = None

    def _check(self, topic: str, types: tuple[str, ...], role: str) -> list[Any]:
        conns = topic_connections(self.reader, self.bag, topic, types, role)
        self._types[topic] = conns[0].msgtype
        return conns

    def __iter__(self) -> Iterator[Frame | Skip]:
        """Frames (paired, in time order) and skips, as they are decided."""
        pending: deque[Frame] = deque()
        instruction, episode = self.fixed_instruction, 0 if self.fixed_instruction else -1
        messages = self.reader.messages(connections=self.connections)
        while True:
            try:
                conn, t_ns, raw = next(messages)
            except StopIteration:
                break
            except READ_ERRORS as exc:
                where = f" after t={format_time(self.last_t_ns)}" if self.last_t_ns is not None else ""
                raise BagError(f"bag {self.bag}: read failed{where}: {one_line(exc)} "
                               f"(truncated or corrupt)") from None
            self.last_t_ns = t_ns
            topic = conn.topic
            try:
                msg = self.reader.deserialize(raw, conn.msgtype)
            except Exception as exc:  # noqa: BLE001 - rosbags raises several types for malformed CDR
                if topic == self.image_topic:
                    self.images_seen += 1
                yield Skip("undecodable", topic, t_ns, f"cannot deserialize {conn.msgtype}: {exc}")
                continue
            if topic == self.image_topic:
                yield from self._on_image(msg, t_ns, instruction, episode, pending)
            if topic == self.instruction_topic:
                text = instruction_text(msg)
                if not text:
                    yield Skip("bad_instruction", topic, t_ns, "empty instruction; following frames have none")
                    instruction = None
                elif text != instruction:
                    instruction, episode = text, episode + 1
            for channel in self.channels:
                if channel.topic == topic:
                    yield from self._on_action(channel, msg, t_ns, pending)
            yield from self._flush(pending, t_ns)
        yield from self._flush(pending, None)

    def _on_image(self, msg: Any, t_ns: int, instruction: str | None, episode: int,
                  pending: deque[Frame]) -> Iterator[Skip]:
        index = self.images_seen
        self.images_seen += 1
        if instruction is None:
            yield Skip("no_instruction", self.image_topic, t_ns,
                       f"frame {index} has no instruction yet (instruction topic {self.instruction_topic})")
            return
        if index % self.every:
            yield Skip("stride", self.image_topic, t_ns, f"frame {index} skipped by --every {self.every}")
            return
        try:
            image = image_to_rgb(msg, self._types[self.image_topic])
        except ConversionError as exc:
            yield Skip("bad_image", self.image_topic, t_ns, f"frame {index}: {exc}")
            return
        pending.append(Frame(index, t_ns, image, instruction, episode, missing={c.key for c in self.channels}))

    def _on_action(self, channel: _Channel, msg: Any, t_ns: int, pending: deque[Frame]) -> Iterator[Skip]:
        waiting = [f for f in pending if channel.key in f.missing and f.t_ns <= t_ns]
        if not waiting:
            return
        try:
            value = channel.convert(msg)
        except ConversionError as exc:
            yield Skip(channel.bad_kind, channel.topic, t_ns, f"{channel.role} message: {exc}")
            if channel.key.startswith("truth"):  # that message was these frames' action: never pair a later one
                for frame in waiting:
                    frame.missing.discard(channel.key)
                    frame.invalid.add(channel.key)
            return
        prefix, part = channel.key.split(":")
        if prefix == "recorded":
            # The node acts on the newest image: the output belongs to the newest waiting frame, and
            # older frames still waiting for it were skipped by the node.
            skipped = {id(f) for f in waiting[:-1]}
            for frame in waiting[:-1]:
                yield Skip("no_prediction", self.image_topic, frame.t_ns,
                           f"frame {frame.index}: no output on {channel.topic} for it (a newer frame was used)")
            if skipped:
                kept = [f for f in pending if id(f) not in skipped]
                pending.clear()
                pending.extend(kept)
            waiting = waiting[-1:]
        for frame in waiting:
            frame.missing.discard(channel.key)
            if prefix == "recorded":
                if frame.recorded is None:
                    frame.recorded = np.full(ACTION_DIM, np.nan)
                target = frame.recorded
                frame.recorded_t_ns = max(frame.recorded_t_ns or 0, t_ns)
            else:
                target = frame.truth
            if part == "all":
                target[:] = value
            elif part == "arm":
                target[:6] = value
            else:
                target[6] = value

    def _flush(self, pending: deque[Frame], now_ns: int | None) -> Iterator[Frame | Skip]:
        """Emit paired frames in order; give up on frames older than the delay (or all at the end)."""
        while pending:
            frame = pending[0]
            if not frame.missing and frame.invalid:
                pending.popleft()
                topics = sorted({c.topic for c in self.channels if c.key in frame.invalid})
                yield Skip("no_ground_truth", self.image_topic, frame.t_ns,
                           f"frame {frame.index}: its message on {', '.join(topics)} was invalid")
                continue
            if not frame.missing:
                yield pending.popleft()
                continue
            if now_ns is not None and now_ns - frame.t_ns <= self.max_delay_ns:
                return
            pending.popleft()
            lacking = sorted({c.topic for c in self.channels if c.key in frame.missing})
            kind: SkipKind = ("no_ground_truth" if any(c.key.startswith("truth") and c.key in frame.missing
                                                       for c in self.channels) else "no_prediction")
            reason = "bag ended" if now_ns is None else f"none within {self.max_delay_ns / 1e9:g} s"
            yield Skip(kind, self.image_topic, frame.t_ns,
                       f"frame {frame.index}: no message on {', '.join(lacking)} at or after it ({reason})")
