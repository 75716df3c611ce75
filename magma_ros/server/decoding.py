"""``/v1/action-tokens``: action token text -> a 7-DoF delta, through the shared action contract."""
from __future__ import annotations

from typing import Sequence

import numpy as np

from ..actions import (
    ActionContractError,
    ActionDecoder,
    ActionTokenizer,
    NormalizationStats,
    TextTokenizer,
    action_to_dict,
    builtin_profiles,
    text_ids_to_action_ids,
)
from ..actions.profiles import RobotProfile
from .errors import ApiError
from .schemas import ActionTokensRequest


class ActionTokenService:
    """Decodes action token text with a known robot profile or client-supplied statistics.

    ``robot_type`` names a built-in profile or one the operator loaded (``profiles``, from
    ``--robot`` names or paths), by its name: a client must not make the server read files by path.
    """

    def __init__(self, text_tokenizer: TextTokenizer, vocab_size: int, profiles: Sequence[RobotProfile] = ()) -> None:
        self.text_tokenizer = text_tokenizer
        self.tokenizer = ActionTokenizer(vocab_size=vocab_size)
        text_tokenizer.prepare_action_range(self.tokenizer.min_action_id, self.tokenizer.max_action_id)  # at start-up
        self.robot_stats = {name: profile.stats for name, profile in builtin_profiles().items()}
        self.robot_stats.update({profile.name: profile.stats for profile in profiles})

    def decode(self, request: ActionTokensRequest) -> dict[str, float]:
        """The request's action in robot units; 422 ``ApiError`` naming the field otherwise."""
        stats = self._stats(request)
        try:
            ids = text_ids_to_action_ids(request.text, self.text_tokenizer, self.tokenizer)
        except ActionContractError as exc:
            raise ApiError(422, str(exc), param="text") from None
        return action_to_dict(ActionDecoder(stats, self.tokenizer).decode_ids(ids))

    def ids_to_text(self, ids: np.ndarray) -> str:
        """The text of action token ids, as the hosted endpoint's chat completions return it."""
        return self.text_tokenizer.decode(np.asarray(ids).tolist())

    def _stats(self, request: ActionTokensRequest) -> NormalizationStats:
        if (request.robot_type is None) == (request.normalization_stats is None):
            raise ApiError(422, "give exactly one of robot_type and normalization_stats", param="robot_type")
        if request.robot_type is not None:
            stats = self.robot_stats.get(request.robot_type)
            if stats is None:
                raise ApiError(422, f"robot_type: unknown robot {request.robot_type!r} "
                                    f"(known: {', '.join(sorted(self.robot_stats))})", param="robot_type")
            return stats
        try:
            return NormalizationStats.from_mapping(request.normalization_stats, "normalization_stats")
        except ActionContractError as exc:
            raise ApiError(422, str(exc), param="normalization_stats") from None
