"""What one ROS episode of the demo did: outcome, and the frames and commands for its report."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .report import CommandSample, Frame


@dataclass
class EpisodeLog:
    """What one ROS episode did."""

    seed: int
    instruction: str
    success: bool = False
    steps: int = 0  # actions magma_node decoded in this episode (counted by magma_sim)
    duration_s: float = 0.0  # simulated seconds
    wall_s: float = 0.0
    final_distance: float | None = None
    lockstep_timeouts: int = 0  # waits for the controller that gave up (0: the run is reproducible)
    safety_states: list[str] = field(default_factory=list)
    frames: list[Frame] = field(default_factory=list)
    commands: list[CommandSample] = field(default_factory=list)
    gripper: list[tuple[float, float]] = field(default_factory=list)
    distance: list[tuple[float, float]] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        """JSON-ready outcome."""
        return {"seed": self.seed, "instruction": self.instruction, "success": self.success, "steps": self.steps,
                "duration_s": round(self.duration_s, 3), "final_distance_m": self.final_distance,
                "wall_s": round(self.wall_s, 1), "lockstep_timeouts": self.lockstep_timeouts,
                "safety_states": self.safety_states}
