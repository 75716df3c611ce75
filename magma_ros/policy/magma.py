"""The ``magma`` backend: Magma-8B (or a model in the same format) on this machine's GPU."""
from __future__ import annotations

import functools
import time

import numpy as np

from ..actions.profiles import RobotProfile
from .action_decoding import PreparedAction
from .base import Prediction, check_image
from .config import BackendConfig
from .vlm import VLMRunner

PILLOW_TOLERANCE = 2  # largest difference from Pillow's resize, in uint8 levels, that torch's resize may have


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
    """``image`` (H x W x 3 uint8) resized to ``size`` = (width, height) with Pillow's bicubic
    filter, or torch's equivalent where that stays within ``PILLOW_TOLERANCE`` of Pillow (no copy
    if already that size; the result may be a strided view). What inference and fine-tuning
    (``magma_ros.train``) both use.

    torch's antialiased uint8 bicubic (``F.interpolate(..., "bicubic", antialias=True)``) is
    Pillow's filter (a = -0.5, support widened by the reduction, the first pass rounded to uint8)
    but with 16-bit instead of Pillow's 22-bit fixed-point coefficients: about 0.5% of the values
    differ from ``Image.resize(BICUBIC)`` by 1, a few by 2. It is about 7x faster (a 640 x 480
    frame to 256 x 256: 0.4 ms against 2.7 ms). Pillow resamples width first or height first
    depending on the sizes (its version decides); ``torch_pass_order`` finds, once per size
    change, the torch order that agrees with it, and Pillow itself is used where neither does.
    """
    width, height = size
    if image.shape[1] == width and image.shape[0] == height:
        return image
    order = torch_pass_order(image.shape[1], image.shape[0], width, height)
    if order is None:
        return _pillow_bicubic(image, width, height)
    return _torch_bicubic(image, width, height, order)


@functools.lru_cache(maxsize=16)
def torch_pass_order(in_width: int, in_height: int, width: int, height: int) -> str | None:
    """The order of torch's two resampling passes that reproduces Pillow's resize from
    ``in_width`` x ``in_height`` to ``width`` x ``height`` to within ``PILLOW_TOLERANCE``:
    ``"wh"`` (width first: one torch call) or ``"hw"`` (height first: two calls); ``None`` if
    neither does. Judged once per size change on a fixed test card of random black and white
    3-pixel squares (sharp edges show a wrong order most: 10 to 20 levels off)."""
    squares = np.random.default_rng(0).integers(0, 2, (in_height // 3 + 1, in_width // 3 + 1, 3), dtype=np.uint8)
    card = np.ascontiguousarray((squares * 255).repeat(3, axis=0).repeat(3, axis=1)[:in_height, :in_width])
    want = _pillow_bicubic(card, width, height).astype(np.int16)
    for order in ("wh", "hw"):
        got = _torch_bicubic(card, width, height, order).astype(np.int16)
        if int(np.abs(got - want).max()) <= PILLOW_TOLERANCE:
            return order
    return None


def _pillow_bicubic(image: np.ndarray, width: int, height: int) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.fromarray(image, mode="RGB").resize((width, height), Image.BICUBIC))


def _torch_bicubic(image: np.ndarray, width: int, height: int, order: str) -> np.ndarray:
    import torch.nn.functional as F

    from .magma_native.processing import channels_first

    pixels = channels_first(np.ascontiguousarray(image))[None]  # a channels-last view: torch's fast case
    if order == "hw":  # height alone first, then width alone, each pass rounded to uint8 as Pillow does
        pixels = F.interpolate(pixels, size=(height, image.shape[1]), mode="bicubic", antialias=True)
    resized = F.interpolate(pixels, size=(height, width), mode="bicubic", antialias=True)
    return resized[0].permute(1, 2, 0).numpy()  # an H x W x 3 view of the 3 x H x W result: no copy


def create(config: BackendConfig, profile: RobotProfile) -> MagmaPolicy:
    """Factory for ``backend: magma``: load, check and warm up the model, then wrap it."""
    return MagmaPolicy(VLMRunner.load(config), profile, config.temperature)
