"""The ``demo`` backend: a small image + instruction policy trained in the simulator (numpy only).

It was trained by behaviour cloning on scripted demonstrations (``scripts/train_demo_policy.py``)
and answers with 7 action token ids in the same contract as Magma, so everything after the ids
(decoding with the robot profile, safety, the node) is the code a real model uses. The network is a
small CNN with coordinate channels and a spatial soft-argmax (keypoints; during training the first
ones learn where each colour's target is), followed by an MLP that sees the keypoints, the keypoint
of the colour the instruction names, and the instruction's colour word. Inference needs numpy only.
"""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from ..actions.profiles import RobotProfile
from ..actions.tokenizer import ACTION_DIM, LLAMA3_BASE_VOCAB, ActionTokenizer
from .base import PolicyConfigError, PolicyError, Prediction, check_image
from .config import BackendConfig

WEIGHTS_PATH = Path(__file__).with_name("demo_weights.npz")
INPUT_SIZE = 64  # the network sees the camera image averaged down to 64 x 64
# (name, stride, padding) of each convolution, in order; the last one makes the keypoint maps
CONV_LAYERS = (("conv1", 2, 2), ("conv2", 1, 1), ("keypoints", 1, 0))
DENSE_LAYERS = ("fc1", "fc2", "head")
KEYPOINTS = 16  # keypoint maps; the first ones (one per vocabulary word) are trained to find that word's target
OUTPUT_AXES = (0, 1, 2, 6)  # x, y, z (tanh, normalized) and gripper (sigmoid, raw [0, 1]); rotation is 0


def downsample(image: np.ndarray, size: int = INPUT_SIZE) -> np.ndarray:
    """Average ``image`` (H x W x 3 uint8, sides multiples of ``size``) down to size x size uint8."""
    h, w = image.shape[:2]
    if h % size or w % size:
        raise ValueError(f"demo policy: image sides must be multiples of {size}, got {w}x{h}")
    blocks = image.reshape(size, h // size, size, w // size, 3).astype(np.float32)
    return np.rint(blocks.mean(axis=(1, 3))).astype(np.uint8)


def instruction_features(instruction: str, vocabulary: tuple[str, ...]) -> np.ndarray:
    """One-hot of the single vocabulary word (a colour) the instruction names."""
    words = set(instruction.lower().replace(",", " ").replace(".", " ").split())
    if "reach" not in words or words & {"pick", "lift", "grasp", "push"}:
        raise PolicyError(f"demo policy: instruction {instruction!r}: it was trained for reaching only "
                          f"('reach the <colour> cube')")
    hits = [i for i, word in enumerate(vocabulary) if word in words]
    if len(hits) != 1:
        raise PolicyError(f"demo policy: instruction {instruction!r} must name exactly one of "
                          f"{', '.join(vocabulary)} (it was trained on 'reach the <colour> cube')")
    out = np.zeros(len(vocabulary), np.float32)
    out[hits[0]] = 1.0
    return out


def network_input(small: np.ndarray) -> np.ndarray:
    """uint8 size x size x 3 -> float32 size x size x 5 (RGB centred, then x and y coordinates)."""
    size = small.shape[0]
    ramp = np.linspace(-1.0, 1.0, size, dtype=np.float32)
    xs = np.broadcast_to(ramp[None, :, None], (size, size, 1))
    ys = np.broadcast_to(ramp[:, None, None], (size, size, 1))
    return np.concatenate([small.astype(np.float32) / 255.0 - 0.5, xs, ys], axis=2)


class DemoNetwork:
    """The forward pass in numpy; weights as exported by the training script."""

    def __init__(self, weights: dict[str, np.ndarray]) -> None:
        self.w = {k: np.asarray(v, dtype=np.float32) for k, v in weights.items()}

    def __call__(self, x: np.ndarray, instruction: np.ndarray) -> np.ndarray:
        """(size, size, 5) input and instruction one-hot -> 4 outputs (x, y, z normalized; gripper)."""
        for name, stride, pad in CONV_LAYERS:
            x = _conv2d(x, self.w[f"{name}_w"], self.w[f"{name}_b"], stride, pad)
            if name != "keypoints":
                x = np.maximum(x, 0.0)
        xs, ys = _spatial_soft_argmax(x, float(self.w["temperature"]))
        k = instruction.shape[0]
        target = np.array([xs[:k] @ instruction, ys[:k] @ instruction], np.float32)
        h = np.concatenate([xs, ys, target, instruction])
        for name in DENSE_LAYERS:
            h = h @ self.w[f"{name}_w"] + self.w[f"{name}_b"]
            if name != "head":
                h = np.maximum(h, 0.0)
        return np.concatenate([np.tanh(h[:3]), 1.0 / (1.0 + np.exp(-h[3:]))])


def shape_problem(weights: dict[str, np.ndarray], n_words: int) -> str:
    """What is wrong with the weight shapes for this architecture, or an empty string."""
    expected = {"conv1_w": (5, 5, 5, 16), "conv1_b": (16,), "conv2_w": (3, 3, 16, 32), "conv2_b": (32,),
                "keypoints_w": (1, 1, 32, KEYPOINTS), "keypoints_b": (KEYPOINTS,),
                "fc1_w": (2 * KEYPOINTS + 2 + n_words, 128), "fc1_b": (128,), "fc2_w": (128, 128), "fc2_b": (128,),
                "head_w": (128, 4), "head_b": (4,), "temperature": ()}
    for name, shape in expected.items():
        if name not in weights:
            return f"{name} missing"
        if weights[name].shape != shape:
            return f"{name} has shape {weights[name].shape}, expected {shape}"
    return ""


class DemoPolicy:
    """Image + instruction -> 7 action token ids (``vocab_size - bin``, 256 bins over [-1, 1])."""

    vocab_size = LLAMA3_BASE_VOCAB

    def __init__(self, weights_path: Path = WEIGHTS_PATH) -> None:
        try:
            with np.load(weights_path, allow_pickle=False) as data:
                arrays = {k: data[k] for k in data.files}
        except (OSError, ValueError) as exc:
            raise PolicyConfigError(f"demo policy: cannot load weights {weights_path}: {exc}") from None
        missing = [k for k in ("vocabulary", "q01", "q99", "mask", "temperature") if k not in arrays]
        if missing:
            raise PolicyConfigError(f"demo policy: {weights_path} lacks {', '.join(missing)}")
        self.vocabulary = tuple(str(w) for w in arrays.pop("vocabulary"))
        self.stats = {k: arrays.pop(k) for k in ("q01", "q99", "mask")}
        problem = shape_problem(arrays, len(self.vocabulary))
        if problem:
            raise PolicyConfigError(f"demo policy: {weights_path} does not fit this network: {problem}")
        self.network = DemoNetwork(arrays)
        self.tokenizer = ActionTokenizer(self.vocab_size)

    def normalized(self, image: np.ndarray, instruction: str) -> np.ndarray:
        """The 7 normalized values (before token encoding) for one image and instruction."""
        check_image(image)
        onehot = instruction_features(instruction, self.vocabulary)
        try:
            small = downsample(image)
        except ValueError as exc:
            raise PolicyError(str(exc)) from None
        out = self.network(network_input(small), onehot)
        values = np.zeros(ACTION_DIM)
        values[list(OUTPUT_AXES)] = out
        return values

    def predict(self, image: np.ndarray, instruction: str) -> Prediction:
        """7 action token ids for the image and instruction."""
        start = time.perf_counter()
        ids = self.tokenizer.normalized_to_ids(self.normalized(image, instruction))
        return Prediction(token_ids=ids, text="demo", timings={"inference": time.perf_counter() - start})

    def close(self) -> None:
        """Nothing to release."""


def create(config: BackendConfig, profile: RobotProfile) -> DemoPolicy:
    """Factory for ``backend: demo``. ``model`` may name another ``.npz`` weights file; the profile
    must carry the normalization statistics the weights were trained with (``sim_panda``)."""
    path = Path(config.model).expanduser() if config.model.endswith(".npz") else WEIGHTS_PATH
    policy = DemoPolicy(path)
    ours = profile.stats
    same = (np.allclose(policy.stats["q01"], ours.q01, atol=1e-6)
            and np.allclose(policy.stats["q99"], ours.q99, atol=1e-6)
            and np.array_equal(policy.stats["mask"].astype(bool), np.asarray(ours.mask)))
    if not same:
        raise PolicyConfigError(f"demo policy: robot profile {profile.name!r} ({profile.source}) does not carry the "
                                f"normalization statistics the demo weights were trained with; use robot sim_panda")
    return policy


def _conv2d(x: np.ndarray, w: np.ndarray, b: np.ndarray, stride: int, pad: int) -> np.ndarray:
    """x: H x W x Cin, w: kh x kw x Cin x Cout -> H' x W' x Cout (cross-correlation, as in torch)."""
    kh, kw, cin, cout = w.shape
    if pad:
        x = np.pad(x, ((pad, pad), (pad, pad), (0, 0)))
    windows = sliding_window_view(x, (kh, kw), axis=(0, 1))[::stride, ::stride]  # H' W' Cin kh kw
    ho, wo = windows.shape[:2]
    cols = windows.transpose(0, 1, 3, 4, 2).reshape(ho * wo, kh * kw * cin)
    return (cols @ w.reshape(kh * kw * cin, cout) + b).reshape(ho, wo, cout)


def _spatial_soft_argmax(maps: np.ndarray, temperature: float) -> tuple[np.ndarray, np.ndarray]:
    """H x W x C maps -> expected x and y coordinates in [-1, 1] of each map."""
    h, w, c = maps.shape
    logits = maps.reshape(h * w, c) / temperature
    logits = logits - logits.max(axis=0, keepdims=True)
    p = np.exp(logits)
    p /= p.sum(axis=0, keepdims=True)
    xs = np.tile(np.linspace(-1.0, 1.0, w, dtype=np.float32), h)
    ys = np.repeat(np.linspace(-1.0, 1.0, h, dtype=np.float32), w)
    return (xs @ p).astype(np.float32), (ys @ p).astype(np.float32)
