"""Validation on held-out frames with the evaluator's own metrics (``eval.metrics``): the model
predicts through the ``magma`` backend's path (``frame_inputs`` + constrained decoding), the
ground truth is encoded with the profile, the gripper compared as commands per episode."""
from __future__ import annotations

import time
from typing import Any, Sequence

import numpy as np

from ..actions.decoder import ActionDecoder
from ..actions.gripper import GripperConverter
from ..actions.profiles import RobotProfile
from ..actions.tokenizer import ACTION_DIM, ActionTokenizer
from ..eval.metrics import MetricsAccumulator
from ..policy.magma import frame_inputs
from ..policy.vlm import VLMRunner
from .dataset import TrainFrame


def predict_ids(runner: VLMRunner, frames: Sequence[TrainFrame], profile: RobotProfile,
                batch_size: int) -> np.ndarray:
    """(frames, 7) greedy action ids, decoded in batches as ``magma-ros serve`` batches requests."""
    out = []
    for start in range(0, len(frames), batch_size):
        chunk = frames[start:start + batch_size]
        prepared = [frame_inputs(runner, f.image, f.instruction, profile) for f in chunk]
        out.extend(runner.decode_actions(prepared))
    return np.asarray(out, dtype=np.int64).reshape(-1, ACTION_DIM)


def validate(runner: VLMRunner, frames: Sequence[TrainFrame], profile: RobotProfile,
             batch_size: int) -> dict[str, Any]:
    """The evaluator's summary (all-7-bins-exact rate, per-axis NRMSE, gripper agreement, ...)
    of the model's predictions on ``frames``."""
    decoder = ActionDecoder(profile.stats, ActionTokenizer(runner.vocab_size))
    stats = profile.stats
    metrics = MetricsAccumulator(np.asarray(stats.q99) - np.asarray(stats.q01), ACTION_DIM)
    t0 = time.perf_counter()
    ids = predict_ids(runner, frames, profile, batch_size)
    latency = (time.perf_counter() - t0) / max(len(frames), 1)
    episode, pred_gripper, true_gripper = None, GripperConverter(profile.gripper), GripperConverter(profile.gripper)
    for frame, pred_ids in zip(frames, ids):
        if frame.episode != episode:
            episode = frame.episode
            pred_gripper.reset()
            true_gripper.reset()
        predicted = decoder.decode_ids(pred_ids)
        metrics.add(predicted, frame.action, pred_ids, decoder.encode(frame.action), pred_gripper(predicted[6]),
                    true_gripper(frame.action[6]), latency)
    summary = metrics.summary()
    summary.pop("latency_s", None)
    return summary
