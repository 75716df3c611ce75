"""Errors raised by the action contract. All are ``ValueError``: bad input, not bugs."""


class ActionContractError(ValueError):
    """Base class: input that does not satisfy the action contract."""


class StatsError(ActionContractError):
    """Normalization statistics that are missing, malformed or inconsistent."""


class ActionTokenError(ActionContractError):
    """A token sequence that does not hold exactly seven action tokens."""


class ProfileError(ActionContractError):
    """A robot profile that cannot be found or fails its schema check."""


class TokenizerError(ActionContractError):
    """A text tokenizer that cannot be loaded or used."""
