"""Simulator tasks: which instructions exist, where their target is, and when they succeed."""
from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

CUBE_HALF_SIZE = 0.02  # metres
CUBE_COLOURS: dict[str, tuple[float, float, float, float]] = {
    "red": (0.85, 0.10, 0.10, 1.0),
    "green": (0.10, 0.70, 0.15, 1.0),
    "blue": (0.10, 0.25, 0.90, 1.0),
}
REACH_HEIGHT = 0.03  # the target is this far above the cube centre (fingertips just over the top)
SUCCESS_RADIUS = 0.04  # metres from the target
REACH_VERBS = ("reach", "touch", "go to", "move to")
INSTRUCTIONS: tuple[str, ...] = tuple(f"reach the {colour} cube" for colour in CUBE_COLOURS)


class TaskError(ValueError):
    """An instruction the simulator has no task for."""


@dataclass(frozen=True)
class Task:
    """Reach the cube of one colour with the gripper."""

    colour: str

    def target(self, cube_position: np.ndarray) -> np.ndarray:
        """The point the grasp frame must reach, given the cube centre."""
        return np.asarray(cube_position, dtype=np.float64) + np.array([0.0, 0.0, REACH_HEIGHT])

    def distance(self, ee_position: np.ndarray, cube_position: np.ndarray) -> float:
        """Metres from the end effector to the target."""
        return float(np.linalg.norm(np.asarray(ee_position) - self.target(cube_position)))

    def succeeded(self, ee_position: np.ndarray, cube_position: np.ndarray) -> bool:
        """True within ``SUCCESS_RADIUS`` of the target."""
        return self.distance(ee_position, cube_position) < SUCCESS_RADIUS


def parse_instruction(instruction: str) -> Task:
    """``"reach the red cube"`` (also touch / go to / move to) -> ``Task("red")``."""
    words = re.findall(r"[a-z]+", instruction.lower())
    text = " ".join(words)
    colours = [w for w in words if w in CUBE_COLOURS]
    if not any(re.search(rf"\b{verb}\b", text) for verb in REACH_VERBS) or len(set(colours)) != 1 \
            or "cube" not in words:
        raise TaskError(f"instruction {instruction!r}: expected '<reach|touch|go to|move to> the "
                        f"<{'|'.join(CUBE_COLOURS)}> cube'")
    return Task(colours[0])
