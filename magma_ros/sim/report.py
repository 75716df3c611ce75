"""Demo artefacts: a PNG strip of camera frames with the commanded motion, and a command plot."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from .camera import project
from .world import SimConfig

ARROW_SECONDS = 1.0  # an arrow shows where the commanded velocity would take the gripper in this time


@dataclass
class Frame:
    """One recorded camera frame and what was commanded when it was taken."""

    time: float  # seconds since the instruction was sent
    image: np.ndarray  # H x W x 3 uint8
    ee_position: np.ndarray | None  # base frame, m
    linear: np.ndarray  # commanded m/s, base frame
    distance: float | None


@dataclass
class CommandSample:
    """One command as published by the node."""

    time: float
    linear: np.ndarray
    angular: np.ndarray


def frame_strip(frames: Sequence[Frame], path: Path, config: SimConfig, count: int = 8) -> Path:
    """Up to ``count`` evenly spaced frames side by side, each with the commanded motion as an arrow."""
    from PIL import Image, ImageDraw

    if not frames:
        raise ValueError("no camera frames were recorded")
    picks = [frames[int(i)] for i in np.linspace(0, len(frames) - 1, min(count, len(frames)))]
    size = config.image_size
    strip = Image.new("RGB", (size * len(picks), size + 18), "white")
    draw = ImageDraw.Draw(strip)
    for i, frame in enumerate(picks):
        strip.paste(Image.fromarray(frame.image), (i * size, 0))
        if frame.ee_position is not None and np.any(frame.linear):
            start, end = project(np.stack([frame.ee_position, frame.ee_position + frame.linear * ARROW_SECONDS]),
                                 config)
            offset = np.array([i * size, 0])
            a, b = start + offset, end + offset
            draw.line([tuple(a), tuple(b)], fill=(255, 200, 0), width=3)
            draw.ellipse([b[0] - 4, b[1] - 4, b[0] + 4, b[1] + 4], fill=(255, 200, 0))
        label = f"t = {frame.time:.1f} s" + (f",  {100 * frame.distance:.1f} cm to go"
                                             if frame.distance is not None else "")
        draw.text((i * size + 4, size + 3), label, fill="black")
    path.parent.mkdir(parents=True, exist_ok=True)
    strip.save(path)
    return path


def command_plot(commands: Sequence[CommandSample], gripper: Sequence[tuple[float, float]],
                 distance: Sequence[tuple[float, float]], path: Path, title: str) -> Path:
    """Commanded linear/angular velocity, gripper command and distance to target over time."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(4, 1, figsize=(8, 9), sharex=True)
    t = np.array([c.time for c in commands])
    lin = np.array([c.linear for c in commands]).reshape(-1, 3)
    ang = np.array([c.angular for c in commands]).reshape(-1, 3)
    for k, name in enumerate("xyz"):
        axes[0].step(t, lin[:, k], where="post", label=f"linear.{name}")
        axes[1].step(t, ang[:, k], where="post", label=f"angular.{name}")
    axes[0].set_ylabel("m/s")
    axes[1].set_ylabel("rad/s")
    if gripper:
        g = np.array(gripper)
        axes[2].step(g[:, 0], g[:, 1], where="post", color="k")
    axes[2].set_ylabel("gripper (1 open)")
    axes[2].set_ylim(-0.1, 1.1)
    if distance:
        d = np.array(distance)
        axes[3].plot(d[:, 0], 100 * d[:, 1], color="tab:red")
    axes[3].set_ylabel("distance to target (cm)")
    axes[3].set_xlabel("time since instruction (s)")
    for ax in axes[:2]:
        ax.legend(loc="upper right", fontsize=8)
    for ax in axes:
        ax.grid(alpha=0.3)
    fig.suptitle(title)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path
