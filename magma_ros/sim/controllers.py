"""Controllers for the in-process loop: any policy backend, the scripted expert, and zero action."""
from __future__ import annotations

import numpy as np

from ..actions.profiles import RobotProfile
from ..actions.twist import Twist, delta_to_twist
from ..policy.base import Policy
from ..safety.conversion import ActionConverter
from ..safety.limits import DEFAULT_MOTION_LIMITS, SafetyLimits
from ..safety.rules import clamp_twist
from .expert import EXPERT_MAX_STEP, check_perturbation, expert_action
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
    """The scripted expert (reads the true cube position: an upper baseline).

    With ``perturbation`` p > 0, each step is, with probability p, replaced by a random one (every
    axis uniform within the expert's largest step, no rotation, the expert's gripper command): the
    arm leaves the expert's path and the following steps bring it back, so recorded demonstrations
    also show states off that path and the way back from them (DART-style noise injection). What
    the controller returns is what the arm executes, random steps included. The random numbers
    come from ``seed``, so the same episodes in the same order give the same steps."""

    needs_image = False

    def __init__(self, perturbation: float = 0.0, seed: int = 0) -> None:
        self.perturbation = check_perturbation(perturbation)
        self._rng = np.random.default_rng(seed)

    def reset(self) -> None:
        """Stateless (the random numbers run on over episodes)."""

    def act(self, image: np.ndarray, instruction: str, world: SimWorld, dt: float) -> tuple[Twist, float]:
        """The expert's step toward the instruction's target (or, when perturbed, a random step)."""
        task = parse_instruction(instruction)
        action = expert_action(task, world.ee_position(), world.cube_position(task.colour), world.finger_opening())
        if self.perturbation > 0.0 and self._rng.random() < self.perturbation:
            action[:3] = self._rng.uniform(-EXPERT_MAX_STEP, EXPERT_MAX_STEP, 3)
        return delta_to_twist(action, dt), float(action[6])


class ZeroController:
    """Never moves, gripper open (the lower baseline: success only if the arm starts at the target)."""

    needs_image = False

    def reset(self) -> None:
        """Stateless."""

    def act(self, image: np.ndarray, instruction: str, world: SimWorld, dt: float) -> tuple[Twist, float]:
        """Zero motion."""
        return Twist.zero(), 1.0
