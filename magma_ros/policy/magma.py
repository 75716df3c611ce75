"""The ``magma`` backend: Magma-8B (or a model in the same format) on this machine's GPU."""
from __future__ import annotations

import time

import numpy as np

from ..actions.profiles import RobotProfile
from .action_decoding import PreparedAction
from .base import Prediction, check_image
from .config import BackendConfig
from .vlm import VLMRunner


class MagmaPolicy:
    """Camera image + instruction -> 7 action token ids through a loaded ``VLMRunner``."""

    def __init__(self, runner: VLMRunner, profile: RobotProfile, temperature: float = 0.0) -> None:
        self.runner = runner
        self.profile = profile
        self.temperature = float(temperature)
        self.vocab_size = runner.vocab_size

    def predict(self, image: np.ndarray, instruction: str) -> Prediction:
        """Resize to the profile's image size, prompt with the profile's template, decode 7 ids."""
        t0 = time.perf_counter()
        prepared = frame_inputs(self.runner, image, instruction, self.profile, self.temperature)
        t1 = time.perf_counter()
        ids = self.runner.decode_actions([prepared])[0]
        timings = {"inference": time.perf_counter() - t0, "preprocess": prepared.preprocess_s,
                   "generate": time.perf_counter() - t1}
        return Prediction(token_ids=ids, text=self.runner.decode(ids), timings=timings)

    def close(self) -> None:
        """Release the model."""
        self.runner.close()


def frame_inputs(runner: VLMRunner, image: np.ndarray, instruction: str, profile: RobotProfile,
                 temperature: float = 0.0) -> PreparedAction:
    """The model input for one frame: the image resized to the profile's size, the profile's prompt
    template, the chat template and the model's image processing. What ``predict`` sends and what
    fine-tuning trains on (``magma_ros.train``): one function, so training sees what inference sees."""
    check_image(image)
    return runner.prepare_action(resize_image(image, profile.image_size), profile.prompt(instruction), temperature)


def resize_image(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """``image`` resized to ``size`` = (width, height) with bicubic filtering (no copy if already that size)."""
    width, height = size
    if image.shape[1] == width and image.shape[0] == height:
        return image
    from PIL import Image

    return np.asarray(Image.fromarray(image, mode="RGB").resize((width, height), Image.BICUBIC))


def create(config: BackendConfig, profile: RobotProfile) -> MagmaPolicy:
    """Factory for ``backend: magma``: load, check and warm up the model, then wrap it."""
    return MagmaPolicy(VLMRunner.load(config), profile, config.temperature)
