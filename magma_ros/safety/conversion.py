"""A policy's ``Prediction`` -> the 7-DoF action in robot units -> a twist and a gripper command."""
from __future__ import annotations

import numpy as np

from ..actions.decoder import ActionDecoder
from ..actions.gripper import GripperConverter
from ..actions.profiles import RobotProfile
from ..actions.rotation import load as load_rotations
from ..actions.tokenizer import ActionTokenizer
from ..actions.twist import Twist, delta_to_twist
from ..policy.base import Prediction
from .rules import check_action


class ActionConverter:
    """Decodes predictions with one robot profile; holds the gripper convention's state."""

    def __init__(self, profile: RobotProfile, vocab_size: int) -> None:
        self.profile = profile
        self.decoder = ActionDecoder(profile.stats, ActionTokenizer(vocab_size=vocab_size))
        self.gripper = GripperConverter(profile.gripper)
        self._checked: np.ndarray | None = None  # the latest action() result: command() need not check it again
        load_rotations()  # at start-up, not in the first action's control period

    def action(self, prediction: Prediction) -> np.ndarray:
        """Token ids are decoded with the profile's statistics; an ``action`` is already in robot
        units. Raises ``ValueError`` (ActionTokenError, UnsafeActionError) for unusable output.
        The result is checked and read-only."""
        if prediction.token_ids is not None:
            values = self.decoder.decode_ids(prediction.token_ids)
        else:
            values = prediction.action
        checked = check_action(values).copy()  # a copy: never freeze or alias the policy's own array
        checked.flags.writeable = False
        self._checked = checked
        return checked

    def command(self, action: np.ndarray, control_period_s: float) -> tuple[Twist, float]:
        """The twist for one control period and the gripper command in [0, 1] (1 open). ``action`` is
        checked unless it is the (read-only) array the latest ``action()`` call returned."""
        checked = action if action is self._checked else check_action(action)
        return delta_to_twist(checked, control_period_s), self.gripper(float(checked[6]))

    def reset(self) -> None:
        """Forget gripper history (a new instruction starts a new episode)."""
        self.gripper.reset()
