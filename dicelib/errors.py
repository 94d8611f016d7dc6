"""Error types raised by dicelib: every message names the bad value and what is accepted."""

from __future__ import annotations


class DiceError(ValueError):
    """Base class of dicelib's input errors (a ValueError, so callers may catch either)."""


class InversionFileError(DiceError):
    """A saved inversion is missing, corrupt, foreign or from an unknown format version."""


class MissingWeightsError(DiceError, OSError):
    """A real model's weights are not in the local Hugging Face cache."""


def check_choice(kind: str, value: object, accepted: tuple[str, ...] | list[str]) -> str:
    """Return `value` if it is one of `accepted`, else raise a DiceError naming both."""
    if value not in accepted:
        raise DiceError(f"unknown {kind} {value!r}; expected one of {', '.join(map(repr, accepted))}")
    return value  # type: ignore[return-value]
