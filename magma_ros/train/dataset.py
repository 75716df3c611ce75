"""Training frames from bags, read exactly as ``magma-ros eval`` reads them (``eval.stream.FrameStream``:
the same topics, pairing rule and episode split on instruction change), each image resized once to
the profile's image size; the split into training and validation episodes; the statistics check."""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..actions.profiles import RobotProfile
from ..actions.tokenizer import AXIS_NAMES
from ..errors import UserError
from ..eval.bag import open_bag
from ..eval.errors import BagError
from ..eval.stream import ActionSource, Frame, FrameStream, Skip
from ..policy.magma import resize_image

CLIPPED_WARN_FRACTION = 0.05  # q01/q99 of the data itself clip about 2% per axis


@dataclass(frozen=True)
class BagInput:
    """Where frames come from in each bag (the options ``magma-ros eval`` takes)."""

    image_topic: str
    instruction_topic: str | None
    instruction: str | None
    truth: ActionSource
    max_delay_s: float = 1.0


@dataclass(frozen=True)
class TrainFrame:
    """One (image, instruction, action) example; ``episode`` is (bag, episode index in that bag)."""

    image: np.ndarray  # H x W x 3 uint8, already at the profile's image size
    instruction: str
    action: np.ndarray  # 7 floats, robot units
    episode: tuple[str, int]


@dataclass
class FrameSet:
    """The frames read from some bags, with the skips counted by kind."""

    frames: list[TrainFrame] = field(default_factory=list)
    skipped: Counter[str] = field(default_factory=Counter)

    @property
    def episodes(self) -> list[tuple[str, int]]:
        """Episode keys in reading order."""
        return list(dict.fromkeys(f.episode for f in self.frames))

    def describe_skips(self) -> str:
        """e.g. ``bad_ground_truth 3, no_ground_truth 1`` ('' when nothing was skipped)."""
        return ", ".join(f"{k} {v}" for k, v in sorted(self.skipped.items()) if v and k != "stride")


def read_frames(bags: list[Path], source: BagInput, profile: RobotProfile) -> FrameSet:
    """Every paired frame of ``bags``. A bag that cannot be read or yields no frame is a UserError
    naming it; unusable frames and actions (e.g. NaN values) are skipped and counted."""
    result = FrameSet()
    for bag in bags:
        before = len(result.frames)
        own: Counter[str] = Counter()
        try:
            with open_bag(bag) as reader:
                stream = FrameStream(reader, bag, image_topic=source.image_topic,
                                     instruction_topic=source.instruction_topic, instruction=source.instruction,
                                     truth=source.truth, max_delay_s=source.max_delay_s)
                for item in stream:
                    if isinstance(item, Skip):
                        own[item.kind] += 1
                    else:
                        result.frames.append(_train_frame(item, str(bag), profile))
                images = stream.images_seen
        except BagError as exc:
            raise UserError(str(exc)) from None
        result.skipped.update(own)
        if len(result.frames) == before:
            counts = ", ".join(f"{k} {v}" for k, v in sorted(own.items()) if v) or "nothing to pair"
            what = f"{images} image(s) on {source.image_topic}" if images else f"no image on {source.image_topic}"
            raise UserError(f"bag {bag}: no training frame ({what}; {counts})")
    return result


def _train_frame(frame: Frame, bag: str, profile: RobotProfile) -> TrainFrame:
    return TrainFrame(resize_image(frame.image, profile.image_size), frame.instruction,
                      np.asarray(frame.truth, dtype=np.float64).copy(), (bag, frame.episode))


def split_by_episode(frames: FrameSet, fraction: float, seed: int) -> tuple[FrameSet, FrameSet]:
    """(training, validation): a ``fraction`` of the episodes, chosen with ``seed``, held out whole."""
    episodes = frames.episodes
    if fraction <= 0:
        return frames, FrameSet()
    held = max(1, int(round(fraction * len(episodes))))
    if held >= len(episodes):
        raise UserError(f"--val-fraction {fraction:g}: the bags hold {len(episodes)} episode(s), too few to hold "
                        "whole episodes out; record more episodes, give --val-bags, or --val-fraction 0")
    order = np.random.default_rng(seed).permutation(len(episodes))
    validation = {episodes[i] for i in order[:held]}
    train = FrameSet([f for f in frames.frames if f.episode not in validation], frames.skipped)
    return train, FrameSet([f for f in frames.frames if f.episode in validation])


def clipped_fractions(frames: list[TrainFrame], profile: RobotProfile) -> np.ndarray:
    """Per axis, the fraction of actions outside the profile's q01..q99 (clipped by the encoding;
    0 on unmasked axes)."""
    actions = np.stack([f.action for f in frames])
    stats = profile.stats
    outside = (actions < np.asarray(stats.q01)) | (actions > np.asarray(stats.q99))
    return np.where(np.asarray(stats.mask), outside.mean(axis=0), 0.0)


def coverage_warning(frames: list[TrainFrame], profile: RobotProfile) -> str | None:
    """A one-line warning when the profile's statistics clip more than ``CLIPPED_WARN_FRACTION`` of
    some axis's actions, else None."""
    fractions = clipped_fractions(frames, profile)
    if not np.any(fractions > CLIPPED_WARN_FRACTION):
        return None
    shown = ", ".join(f"{name} {value:.3f}" for name, value in zip(AXIS_NAMES, fractions))
    return (f"the statistics of profile {profile.name} ({profile.source}) do not cover the data: clipped fraction "
            f"per axis {shown} (compute them from your bags: magma-ros stats)")
