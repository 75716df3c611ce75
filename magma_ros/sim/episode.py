"""In-process closed loop: image -> controller -> twist + gripper -> simulated arm, in lockstep.

Used by ``magma-ros sim-eval``, by demonstration collection and by the tests. The ROS closed
loop (``magma_sim`` + ``magma_node``) runs the same world; this loop skips DDS and runs as fast
as the CPU allows.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from ..actions.twist import Twist
from .tasks import Task, parse_instruction
from .world import SimWorld


class Controller(Protocol):
    """Chooses each step's command: a twist held for one control period and a gripper opening."""

    needs_image: bool  # False for controllers that read the world's state instead of the camera

    def reset(self) -> None:
        """Forget per-episode state."""
        ...

    def act(self, image: np.ndarray, instruction: str, world: SimWorld, dt: float) -> tuple[Twist, float]:
        """The twist (base frame, m/s and rad/s) and gripper command (1 open, 0 closed) for this step."""
        ...


@dataclass
class StepRecord:
    """One control step: what was commanded and where the arm then was."""

    twist: Twist
    gripper: float
    distance: float
    ee_position: np.ndarray
    image: np.ndarray | None = None  # the image the controller saw, when recorded


@dataclass
class EpisodeResult:
    """Outcome of one seeded episode."""

    instruction: str
    seed: int
    success: bool
    steps: int
    final_distance: float
    records: list[StepRecord] = field(default_factory=list)


def run_episode(world: SimWorld, instruction: str, seed: int, controller: Controller, *,
                control_rate_hz: float, max_steps: int, record_images: bool = False) -> EpisodeResult:
    """Reset with ``seed`` and run until the task succeeds or ``max_steps`` control steps pass."""
    task = parse_instruction(instruction)
    dt = 1.0 / control_rate_hz
    world.reset(seed)
    controller.reset()
    render = controller.needs_image or record_images
    records: list[StepRecord] = []
    distance = _distance(world, task)
    success = task.succeeded(world.ee_position(), world.cube_position(task.colour))
    while not success and len(records) < max_steps:
        image = world.render() if render else np.zeros((1, 1, 3), np.uint8)
        twist, gripper = controller.act(image, instruction, world, dt)
        world.apply(twist.linear, twist.angular, gripper, dt)
        distance = _distance(world, task)
        records.append(StepRecord(twist=twist, gripper=gripper, distance=distance, ee_position=world.ee_position(),
                                  image=image if record_images else None))
        success = task.succeeded(world.ee_position(), world.cube_position(task.colour))
    return EpisodeResult(instruction=instruction, seed=seed, success=success, steps=len(records),
                         final_distance=distance, records=records)


def _distance(world: SimWorld, task: Task) -> float:
    return task.distance(world.ee_position(), world.cube_position(task.colour))
