"""Error types raised by dicelib and the checks that raise them: every message names the bad value and what is accepted."""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from typing import Any, Callable


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


def check_device(device: Any) -> Any:
    """Return `device` (a name or torch.device) if it is cpu, or cuda this machine has (None: the default); else a DiceError."""
    if device is None:
        return None
    import torch

    try:
        kind = torch.device(device).type
    except (RuntimeError, TypeError):
        raise DiceError(f"device {device!r} is not allowed; expected cpu, cuda or cuda:N") from None
    if kind == "mps" and torch.backends.mps.is_available():
        return device
    if kind not in ("cpu", "cuda"):
        raise DiceError(f"device {str(device)!r} is not allowed; expected cpu, cuda or cuda:N")
    if kind == "cuda" and not torch.cuda.is_available():
        raise DiceError(f"device {str(device)!r} is not available: this machine has no CUDA GPU; use cpu")
    return device


# --- the params of the pipeline's stages ------------------------------------------------------
# A stage declares once, next to its code, a StageParams: a Rule per notebook parameter (what it
# accepts, in words and as a test) and Relations between parameters. Its notebook checks every
# parameter with one call at the top, so a bad value in params.yaml stops the run before any work
# with a DiceError naming the key, the value and what is allowed.


def is_int(value: Any) -> bool:
    """Return True for an integer (numpy integers too), False for a bool."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def is_number(value: Any) -> bool:
    """Return True for a finite real number (numpy scalars too), False for a bool, NaN, inf or an int too large for a float."""
    if not isinstance(value, numbers.Real) or isinstance(value, bool):
        return False
    try:
        return math.isfinite(value)
    except OverflowError:
        return False


@dataclass(frozen=True)
class Rule:
    """What one parameter accepts: `allowed` says it in words, `accepts(value)` tests it."""

    allowed: str
    accepts: Callable[[Any], bool]


def integer(lo: int) -> Rule:
    """Return the rule "an int >= lo" (bools rejected)."""
    return Rule(f"an int >= {lo}", lambda v: is_int(v) and v >= lo)


def number(lo: float | None = None, hi: float | None = None, *, open_lo: bool = False, open_hi: bool = False) -> Rule:
    """Return the rule "a finite number" within the bounds given (open or closed; bools rejected)."""
    def accepts(v: Any) -> bool:
        return is_number(v) and (lo is None or (v > lo if open_lo else v >= lo)) and \
            (hi is None or (v < hi if open_hi else v <= hi))

    if lo is not None and hi is not None:
        allowed = f"a number in {'(' if open_lo else '['}{lo:g}, {hi:g}{')' if open_hi else ']'}"
    elif lo is not None:
        allowed = f"a number {'>' if open_lo else '>='} {lo:g}"
    elif hi is not None:
        allowed = f"a number {'<' if open_hi else '<='} {hi:g}"
    else:
        allowed = "a finite number"
    return Rule(allowed, accepts)


def choice(names: tuple[str, ...] | list[str]) -> Rule:
    """Return the rule "one of `names`"."""
    return Rule(f"one of {', '.join(map(repr, names))}", lambda v: isinstance(v, str) and v in names)


def string() -> Rule:
    """Return the rule "a non-empty string"."""
    return Rule("a non-empty string", lambda v: isinstance(v, str) and v.strip() != "")


def boolean() -> Rule:
    """Return the rule "true or false" (a bool; the strings papermill and argparse pass are not bools)."""
    return Rule("true or false", lambda v: isinstance(v, bool))


def optional(rule: Rule) -> Rule:
    """Return `rule` that also accepts None (papermill passes the string None as None)."""
    return Rule(f"None or {rule.allowed}", lambda v: v is None or rule.accepts(v))


def list_of(item: Rule, length: int | None = None) -> Rule:
    """Return the rule "a non-empty list (of exactly `length` items), each item `item.allowed`"."""
    size = "a non-empty list" if length is None else f"a list of {length} items"
    return Rule(f"{size}, each {item.allowed}",
                lambda v: isinstance(v, list) and len(v) >= 1 and (length is None or len(v) == length)
                and all(item.accepts(x) for x in v))


@dataclass(frozen=True)
class Relation:
    """A condition between parameters: `accepts(*values of keys)`, `allowed` in words."""

    keys: tuple[str, ...]
    allowed: str
    accepts: Callable[..., bool]


def check_params(group: str, values: dict[str, Any], rules: dict[str, Rule], relations: tuple[Relation, ...] = ()) -> None:
    """Raise a DiceError naming `group`, the key, the value and what is allowed, at the first bad parameter.

    `values` must hold exactly the keys of `rules`: a parameter without a rule (or a rule whose
    parameter is not passed) is a mistake in the caller, reported as such.
    """
    if set(values) != set(rules):
        raise DiceError(f"{group}: parameters checked {sorted(values)} differ from those with rules {sorted(rules)}")
    for key, rule in rules.items():
        if not rule.accepts(values[key]):
            raise DiceError(f"{group}: parameter {key} = {values[key]!r} is not allowed; expected {rule.allowed}")
    for rel in relations:
        if not rel.accepts(*(values[k] for k in rel.keys)):
            given = ", ".join(f"{k} = {values[k]!r}" for k in rel.keys)
            raise DiceError(f"{group}: parameters {given} are not allowed together; expected {rel.allowed}")


@dataclass(frozen=True)
class StageParams:
    """The rules of one pipeline stage's parameters (`group`: its params.yaml group)."""

    group: str
    rules: dict[str, Rule]
    relations: tuple[Relation, ...] = ()

    def check(self, **values: Any) -> None:
        """Raise a DiceError at the first parameter (or relation) the rules do not accept."""
        check_params(self.group, values, self.rules, self.relations)
