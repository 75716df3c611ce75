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
REACH_HEIGHT = 0.03  # the reach target is this far above the cube centre (fingertips just over the top)
SUCCESS_RADIUS = 0.04  # reach: metres from the target
LIFT_HEIGHT = 0.08  # pick: the cube's centre must rise above this (m; it rests at 0.02)
VERBS = {"reach": ("reach", "touch", "go to", "move to"), "pick": ("pick up", "lift")}
INSTRUCTIONS: tuple[str, ...] = tuple(f"reach the {colour} cube" for colour in CUBE_COLOURS)
PICK_INSTRUCTIONS: tuple[str, ...] = tuple(f"pick up the {colour} cube" for colour in CUBE_COLOURS)


class TaskError(ValueError):
    """An instruction the simulator has no task for."""


@dataclass(frozen=True)
class Task:
    """Reach the cube of one colour with the gripper, or pick it up."""

    colour: str
    kind: str = "reach"  # reach | pick

    def target(self, cube_position: np.ndarray) -> np.ndarray:
        """Where the grasp frame has to go: above the cube (reach) or its centre (pick)."""
        lift = REACH_HEIGHT if self.kind == "reach" else 0.0
        return np.asarray(cube_position, dtype=np.float64) + np.array([0.0, 0.0, lift])

    def distance(self, ee_position: np.ndarray, cube_position: np.ndarray) -> float:
        """Metres from the end effector to the target (pick: to the cube, held or not)."""
        return float(np.linalg.norm(np.asarray(ee_position) - self.target(cube_position)))

    def succeeded(self, ee_position: np.ndarray, cube_position: np.ndarray) -> bool:
        """Reach: within ``SUCCESS_RADIUS`` of the target. Pick: the cube is above ``LIFT_HEIGHT``."""
        if self.kind == "pick":
            return float(cube_position[2]) > LIFT_HEIGHT
        return self.distance(ee_position, cube_position) < SUCCESS_RADIUS


def parse_instruction(instruction: str) -> Task:
    """``"reach the red cube"`` (also touch / go to / move to) -> ``Task("red")``;
    ``"pick up the blue cube"`` (also lift) -> ``Task("blue", "pick")``."""
    words = re.findall(r"[a-z]+", instruction.lower())
    text = " ".join(words)
    colours = [w for w in words if w in CUBE_COLOURS]
    kinds = [kind for kind, verbs in VERBS.items() if any(re.search(rf"\b{verb}\b", text) for verb in verbs)]
    if len(kinds) != 1 or len(set(colours)) != 1 or "cube" not in words:
        raise TaskError(f"instruction {instruction!r}: expected '<reach|touch|go to|move to|pick up|lift> the "
                        f"<{'|'.join(CUBE_COLOURS)}> cube'")
    return Task(colours[0], kinds[0])
