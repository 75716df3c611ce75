"""The recorded (ground-truth) actions of bags, read exactly as ``magma-ros eval`` scores against
them: one :class:`FrameStream` pass per bag, each image frame paired with the action that follows
it, episodes split on instruction change. Used by ``magma-ros stats``."""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from ..errors import one_line
from ..progress import Progress
from .bag import READ_ERRORS, open_bag, topic_connections
from .convert import ARRAY_TYPES, TWIST_TYPES
from .errors import BagError
from .stream import ActionSource, FrameStream, Skip

MAX_EXAMPLES = 3  # skipped messages quoted per kind


@dataclass(frozen=True)
class TruthInput:
    """Which topics hold the frames and their ground truth (eval's input and ground-truth flags)."""

    image_topic: str
    instruction_topic: str | None  # None when ``instruction`` is given
    instruction: str | None
    truth: ActionSource
    max_delay_s: float = 1.0


@dataclass
class RecordedActions:
    """Every ground-truth action eval would score against, with episode count and skips."""

    actions: list[np.ndarray] = field(default_factory=list)
    episodes: int = 0
    images: int = 0
    skips: Counter = field(default_factory=Counter)
    examples: dict[str, list[str]] = field(default_factory=dict)  # a few skips of each kind, as text

    def add_skip(self, skip: Skip) -> None:
        """Count a skipped frame or message; keep the first few of each kind as text."""
        self.skips[skip.kind] += 1
        shown = self.examples.setdefault(skip.kind, [])
        if len(shown) < MAX_EXAMPLES:
            shown.append(str(skip))


def action_times(bag: str | Path, source: ActionSource) -> np.ndarray:
    """Bag times (ns) of the messages on the ground-truth topic (the twist topic in the twist form)."""
    with open_bag(bag) as reader:
        role = "ground-truth twist" if source.is_twist else "ground-truth"
        conns = topic_connections(reader, bag, source.topic, TWIST_TYPES if source.is_twist else ARRAY_TYPES, role)
        try:
            return np.fromiter((t for _, t, _ in reader.messages(connections=conns)), dtype=np.int64)
        except READ_ERRORS as exc:
            raise BagError(f"bag {bag}: read failed: {one_line(exc)} (truncated or corrupt)") from None


def read_recorded_actions(bags: Sequence[str | Path], spec: TruthInput, progress: bool = False) -> RecordedActions:
    """The ground-truth actions of every frame of ``bags`` (``BagError`` if a bag cannot be read
    to its end or lacks a topic)."""
    result = RecordedActions()
    for bag in bags:
        with open_bag(bag) as reader:
            stream = FrameStream(reader, bag, image_topic=spec.image_topic, instruction_topic=spec.instruction_topic,
                                 instruction=spec.instruction, truth=spec.truth, max_delay_s=spec.max_delay_s)
            bar = Progress(stream.total_images, f"stats {Path(bag).name}", enabled=progress)
            episodes: set[int] = set()
            try:
                for item in stream:
                    if isinstance(item, Skip):
                        result.add_skip(item)
                    else:
                        result.actions.append(item.truth.copy())
                        episodes.add(item.episode)
                    bar.update(stream.images_seen)
            finally:
                bar.close()
            result.episodes += len(episodes)
            result.images += stream.images_seen
    return result
