"""Controllers for the in-process loop: any policy backend, the scripted expert, and zero action."""
from __future__ import annotations

import numpy as np

from ..actions.profiles import RobotProfile
from ..actions.twist import Twist, delta_to_twist
from ..policy.base import Policy
from ..safety.conversion import ActionConverter
from ..safety.limits import DEFAULT_MOTION_LIMITS, SafetyLimits
from ..safety.rules import clamp_twist
from .expert import expert_action
from .tasks import parse_instruction
from .world import SimWorld


class PolicyController:
    """A policy backend as magma_node runs it: predict, decode with the profile (safety's
    ActionConverter), clamp the twist to the profile's per-step limits and the node's default speeds.
    The node's acceleration limit and watchdog are not modelled (actions arrive in lockstep)."""

    needs_image = True

    def __init__(self, policy: Policy, profile: RobotProfile) -> None:
        self.policy = policy
        self.converter = ActionConverter(profile, policy.vocab_size)
        self.limits = SafetyLimits.from_profile(profile, profile.control_rate_hz, **DEFAULT_MOTION_LIMITS)

    def reset(self) -> None:
        """New episode: the gripper convention starts over."""
        self.converter.reset()

    def act(self, image: np.ndarray, instruction: str, world: SimWorld, dt: float) -> tuple[Twist, float]:
        """Predict, decode and clamp one step."""
        action = self.converter.action(self.policy.predict(image, instruction))
        twist, gripper = self.converter.command(action, dt)
        return clamp_twist(twist, self.limits), gripper


class ExpertController:
    """The scripted expert (reads the true cube position: an upper baseline)."""

    needs_image = False

    def reset(self) -> None:
        """Stateless."""

    def act(self, image: np.ndarray, instruction: str, world: SimWorld, dt: float) -> tuple[Twist, float]:
        """The expert's step toward the instruction's target."""
        task = parse_instruction(instruction)
        action = expert_action(task, world.ee_position(), world.cube_position(task.colour), world.finger_opening())
        return delta_to_twist(action, dt), float(action[6])


class ZeroController:
    """Never moves, gripper open (the lower baseline: success only if the arm starts at the target)."""

    needs_image = False

    def reset(self) -> None:
        """Stateless."""

    def act(self, image: np.ndarray, instruction: str, world: SimWorld, dt: float) -> tuple[Twist, float]:
        """Zero motion."""
        return Twist.zero(), 1.0
