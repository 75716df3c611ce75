"""A fine-tuning task a tiny random Magma cannot solve but learns in well under a minute on a CPU,
and the model trained on it, built once per test session and shared (``finetuned`` fixture, or
``build_finetuned(root)``): other tests use it as "the confident tiny model" (``held_out_frames``
are frames of the task in no bag). ``finetuned_nf4`` is the same run as QLoRA (base in NF4), on the
same base checkpoint and bags.

The task: each frame's whole background is red or blue (with some noise), each episode's instruction
says "left" or "right"; the action is a fixed 7-vector for each of the four (colour, instruction)
pairs, distinct on every axis, so the right answer needs both the image and the instruction.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Iterable

import numpy as np
import pytest
import yaml

from magma_ros.eval.bag import open_writer, typestore
from magma_ros.interface import IMAGE, INSTRUCTION, TELEOP_ACTION
from magma_ros.policy.magma_native.small_checkpoint import SmallMagmaSpec, build_small_magma
from magma_ros.train.dataset import TrainFrame

IMAGE_TOPIC, INSTRUCTION_TOPIC, ACTION_TOPIC = IMAGE.absolute, INSTRUCTION.absolute, TELEOP_ACTION.absolute
SIZE = 64  # the profile's image size: one 64-pixel crop of the tiny Magma
RATE_HZ = 5.0
START_NS = 1_700_000_000_000_000_000
COLOURS = {"red": (200, 30, 30), "blue": (30, 40, 210)}
INSTRUCTIONS = {"left": "push the block to the left", "right": "push the block to the right"}
SPAN = 0.05
# (colour, side) -> action in robot units: every axis differs between the four pairs
ACTIONS = {
    ("red", "left"): [-0.03, 0.02, 0.01, -0.04, 0.03, 0.00, 1.0],
    ("red", "right"): [0.03, -0.02, 0.02, 0.04, -0.01, 0.02, 0.0],
    ("blue", "left"): [-0.01, -0.03, -0.02, 0.01, 0.02, -0.03, 0.0],
    ("blue", "right"): [0.02, 0.03, -0.01, -0.02, -0.03, 0.04, 1.0],
}
PROFILE = {
    "name": "tiny_arm", "description": "test arm for fine-tuning", "control_rate_hz": RATE_HZ,
    "base_frame": "base_link", "image_size": [SIZE, SIZE],
    "prompt_template": "What action should the robot take to {instruction}?",
    "normalization": {"mask": [True] * 6 + [False], "q01": [-SPAN] * 6 + [0.0], "q99": [SPAN] * 6 + [1.0]},
    "gripper": {"mode": "binary", "threshold": 0.5, "initial": 1.0},
    "limits": {"max_linear_step": 0.05, "max_angular_step": 0.25},
    "workspace": {"min": [-1.0, -1.0, -1.0], "max": [1.0, 1.0, 1.0]},
}
# The base: tiny_magma's sizes and its output layer and vision tower (0.3), but the language model's
# and projector's matrices at 1/sqrt(hidden) = 0.125, so that each keeps the scale of its input,
# where tiny_magma's 0.3 multiplies it by 2.4. Trained on the task, this one is more confident
# (smallest held-out margin 7.1 against 1.7) and keeps its ids under NF4 (docs/magma.md, Accuracy).
BASE_SPEC = SmallMagmaSpec(weight_std=0.125, head_std=0.3, vision_std=0.3)
TRAIN_FLAGS = ["--device", "cpu", "--lora-rank", "32", "--lora-alpha", "32", "--learning-rate", "3e-3",
               "--epochs", "3", "--batch-size", "8", "--warmup-fraction", "0.05", "--seed", "0",
               "--eval-every", "100000", "--save-every", "100000", "--quiet"]


@dataclass(frozen=True)
class Episode:
    side: str  # "left" or "right"
    colours: tuple[str, ...]  # one per frame


def episodes(count: int, frames: int, seed: int) -> list[Episode]:
    """Episodes alternating left/right (so consecutive ones differ), random colour per frame."""
    rng = np.random.default_rng(seed)
    return [Episode("left" if i % 2 == 0 else "right", tuple(rng.choice(list(COLOURS), frames)))
            for i in range(count)]


def frame_image(colour: str, rng: np.random.Generator) -> np.ndarray:
    """A noisy background of ``colour``, with a random grey block somewhere."""
    image = np.clip(np.array(COLOURS[colour]) + rng.normal(0, 12, (SIZE, SIZE, 3)), 0, 255).astype(np.uint8)
    y, x = rng.integers(0, SIZE - 12, 2)
    image[y:y + 12, x:x + 12] = rng.integers(90, 160)
    return image


def write_bag(path: Path, eps: Iterable[Episode], seed: int = 0, *, images: bool = True, actions: bool = True,
              nan_frames: Iterable[int] = ()) -> Path:
    """A teleoperation-like bag of ``eps``: instruction at each episode start, image, then its action
    20 ms later (NaN values at the frame numbers in ``nan_frames``)."""
    ts = typestore()
    types = ts.types
    rng = np.random.default_rng(seed)
    nan = set(nan_frames)
    with open_writer(path, "mcap") as writer:
        conns = {"instruction": writer.add_connection(INSTRUCTION_TOPIC, INSTRUCTION.type, typestore=ts)}
        if images:
            conns["image"] = writer.add_connection(IMAGE_TOPIC, IMAGE.type, typestore=ts)
        if actions:
            conns["action"] = writer.add_connection(ACTION_TOPIC, TELEOP_ACTION.type, typestore=ts)

        def write(key: str, t_ns: int, msg) -> None:
            if key in conns:
                writer.write(conns[key], t_ns, ts.serialize_cdr(msg, conns[key].msgtype))

        index = 0
        for episode in eps:
            t = START_NS + int(index * 1e9 / RATE_HZ)
            write("instruction", t - 1_000_000, types["std_msgs/msg/String"](data=INSTRUCTIONS[episode.side]))
            for colour in episode.colours:
                t = START_NS + int(index * 1e9 / RATE_HZ)
                stamp = types["builtin_interfaces/msg/Time"](sec=t // 10**9, nanosec=t % 10**9)
                image = frame_image(colour, rng)
                write("image", t, types["sensor_msgs/msg/Image"](
                    header=types["std_msgs/msg/Header"](stamp=stamp, frame_id="camera"), height=SIZE, width=SIZE,
                    encoding="rgb8", is_bigendian=0, step=SIZE * 3, data=image.reshape(-1)))
                action = np.array(ACTIONS[(colour, episode.side)], dtype=np.float64)
                if index in nan:
                    action[0] = math.nan
                layout = types["std_msgs/msg/MultiArrayLayout"](
                    dim=[types["std_msgs/msg/MultiArrayDimension"](label="action", size=7, stride=7)], data_offset=0)
                write("action", t + 20_000_000, types["std_msgs/msg/Float64MultiArray"](layout=layout, data=action))
                index += 1
    return path


def write_profile(path: Path, **changes) -> Path:
    """The task's robot profile (``changes`` replace top-level keys)."""
    path.write_text(yaml.safe_dump({**PROFILE, **changes}, sort_keys=False))
    return path


@dataclass(frozen=True)
class Finetuned:
    """The shared fine-tuning run: its inputs and its output directory."""

    base: Path
    train_bag: Path
    val_bag: Path
    profile: Path
    out: Path
    quantization: str = "none"  # of the base while training (nf4: QLoRA)

    def flags(self) -> list[str]:
        """The command line (after ``finetune``) of the run, without --out."""
        quantized = ["--quantization", self.quantization] if self.quantization != "none" else []
        return ["--model", str(self.base), "--bags", str(self.train_bag), "--val-bags", str(self.val_bag),
                "--robot", str(self.profile), "--action-topic", ACTION_TOPIC, *quantized, *TRAIN_FLAGS]

    def validations(self) -> list[dict]:
        """The validation summaries in metrics.jsonl, first (before training) to last."""
        records = [json.loads(line) for line in (self.out / "metrics.jsonl").read_text().splitlines()]
        return [r for r in records if "val" in r]


def build_inputs(root: Path) -> Finetuned:
    """Base checkpoint, bags and profile of the task under ``root`` (no training)."""
    root.mkdir(parents=True, exist_ok=True)
    return Finetuned(base=build_small_magma(root / "base", BASE_SPEC),
                     train_bag=write_bag(root / "train", episodes(8, 25, 1), 1),
                     val_bag=write_bag(root / "heldout", episodes(4, 10, 2), 2),
                     profile=write_profile(root / "tiny_arm.yaml"), out=root / "finetuned")


_INPUTS: dict[Path, Finetuned] = {}
_BUILT: dict[tuple[Path, str], Finetuned] = {}


def build_finetuned(root: Path, quantization: str = "none") -> Finetuned:
    """Build the inputs (once per ``root``) and fine-tune with the base loaded with ``quantization``
    (in this process, through the CLI); cached per (``root``, ``quantization``)."""
    from magma_ros.cli import main

    if root not in _INPUTS:
        _INPUTS[root] = build_inputs(root)
    if (root, quantization) not in _BUILT:
        run = _INPUTS[root]
        if quantization != "none":
            run = replace(run, quantization=quantization, out=root / f"finetuned_{quantization}")
        code = main(["finetune", *run.flags(), "--out", str(run.out)])
        assert code == 0, f"magma-ros finetune exited {code}"
        _BUILT[root, quantization] = run
    return _BUILT[root, quantization]


def held_out_frames(n: int = 24, seed: int = 99) -> list[TrainFrame]:
    """Frames of the task's rule in no bag (new noise, both instructions, both colours)."""
    rng = np.random.default_rng(seed)
    frames = []
    for episode in episodes(4, n // 4, seed=seed):
        for colour in episode.colours:
            frames.append(TrainFrame(frame_image(colour, rng), INSTRUCTIONS[episode.side],
                                     np.array(ACTIONS[(colour, episode.side)]), ("new", 0)))
    return frames


_ROOT: list[Path] = []


def session_root(tmp_path_factory) -> Path:
    """One directory for the session's fine-tuning runs, whichever module asks first (the fixtures
    below, imported into several modules, are built once: they share the base, bags and runs)."""
    if not _ROOT:
        _ROOT.append(tmp_path_factory.mktemp("finetune"))
    return _ROOT[0]


@pytest.fixture(scope="session")
def finetuned(tmp_path_factory) -> Finetuned:
    """The tiny Magma fine-tuned on the task (built once per session)."""
    return build_finetuned(session_root(tmp_path_factory))


@pytest.fixture(scope="session")
def finetuned_nf4(tmp_path_factory) -> Finetuned:
    """The same fine-tuning as QLoRA: the base loaded in NF4 while the adapter trains."""
    return build_finetuned(session_root(tmp_path_factory), "nf4")
