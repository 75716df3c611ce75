"""The demo-learn report's figures: the training loss curve and a strip of frames of a learned episode."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ..commands.sim_record import ORIGIN_NS
from ..interface import IMAGE, TELEOP_TWIST


def loss_figure(metrics: Path, path: Path) -> Path:
    """Training loss (and validation loss, when finetune logs one) per optimizer step, from its metrics.jsonl."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    train: list[tuple[float, float]] = []
    val: list[tuple[float, float]] = []
    for number, line in enumerate(metrics.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        row = json.loads(line)
        if "step" not in row:
            continue
        if "loss" in row:
            train.append((row["step"], row["loss"]))
        if isinstance(row.get("val"), dict) and isinstance(row["val"].get("loss"), (int, float)):
            val.append((row["step"], row["val"]["loss"]))
    if not train:
        raise ValueError(f"{metrics}: no training loss recorded")
    fig, ax = plt.subplots(figsize=(7, 3.5))
    ax.plot(*zip(*train), label="training loss")
    if val:
        ax.plot(*zip(*val), "o-", label="validation loss")
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("cross-entropy (action tokens)")
    ax.set_yscale("log")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def frames_figure(bags: Path, episode: tuple[str, int], path: Path) -> Path:
    """Eight frames of the recorded episode (instruction, seed), each with the commanded motion."""
    from ..commands.sim_record import bag_name
    from ..eval.bag import open_bag
    from ..eval.convert import image_to_rgb
    from ..sim.episode import EpisodeResult
    from ..sim.report import Frame, frame_strip
    from ..sim.world import SimConfig

    instruction, seed = episode
    bag = bags / bag_name(EpisodeResult(instruction=instruction, seed=seed, success=True, steps=0, final_distance=0.0))
    frames: list[Frame] = []
    with open_bag(bag) as reader:
        connections = [c for c in reader.connections if c.topic in (IMAGE.absolute, TELEOP_TWIST.absolute)]
        for conn, t_ns, raw in reader.messages(connections=connections):
            msg = reader.deserialize(raw, conn.msgtype)
            if conn.topic == IMAGE.absolute:
                frames.append(Frame(time=(t_ns - ORIGIN_NS) / 1e9, image=image_to_rgb(msg, conn.msgtype),
                                    ee_position=None, linear=np.zeros(3), distance=None))
            elif frames:
                linear = msg.twist.linear
                frames[-1].linear = np.array([linear.x, linear.y, linear.z])
    return frame_strip(frames, path, SimConfig(image_size=frames[0].image.shape[0]) if frames else SimConfig())
