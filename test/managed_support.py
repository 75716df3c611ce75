"""Policy doubles for the managed-node and debug-view tests, loaded by the node as
``-p backend:=managed_support:<factory>``."""
from __future__ import annotations

import threading
import time
import weakref

import numpy as np

from magma_ros.policy.base import Prediction, check_image

SLOW_S = 1.0  # each model call of the slow double
created: list[weakref.ref] = []  # every policy made by ``tracked`` in this process


class ConstantPolicy:
    """The same action (robot units) for every frame, after ``delay_s``; records whether it was
    closed during a call."""

    vocab_size = 128000

    def __init__(self, action, delay_s: float = 0.0) -> None:
        self.action = np.asarray(action, dtype=float)
        self.delay_s = delay_s
        self.closed = False
        self.closed_during_call = False
        self.called = threading.Event()  # set when a call starts
        self._calls = 0

    def predict(self, image: np.ndarray, instruction: str) -> Prediction:
        check_image(image)
        self._calls += 1
        self.called.set()
        try:
            time.sleep(self.delay_s)
            return Prediction(action=self.action, text="constant")
        finally:
            self._calls -= 1

    def close(self) -> None:
        self.closed_during_call = self._calls > 0
        self.closed = True


def slow(config, profile) -> ConstantPolicy:
    """``fixed_action`` after SLOW_S seconds per call: an inference is in flight most of the time."""
    return ConstantPolicy(config.fixed_action, SLOW_S)


def tracked(config, profile) -> ConstantPolicy:
    """``fixed_action`` at once; a weak reference to each policy is kept in ``created``."""
    policy = ConstantPolicy(config.fixed_action)
    created.append(weakref.ref(policy))
    return policy


def tracked_slow(config, profile) -> ConstantPolicy:
    """``tracked``, SLOW_S seconds per call."""
    policy = ConstantPolicy(config.fixed_action, SLOW_S)
    created.append(weakref.ref(policy))
    return policy
