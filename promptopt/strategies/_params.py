"""Declared hyper-parameter constraints, checked by the Run before the first call."""

from __future__ import annotations

import inspect
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from promptopt.exceptions import ConfigError

__all__ = ["Interval", "NameList", "OneOf", "get_params", "parse_names", "validate_params"]


@dataclass(frozen=True)
class Interval:
    """A number of ``kind`` in [low, high] (either end may be open-ended with None)."""

    kind: type
    low: float | None = None
    high: float | None = None

    def allows(self, value: Any) -> bool:
        if isinstance(value, bool):
            return False
        ok = isinstance(value, (int, float)) if self.kind is float else isinstance(value, self.kind)
        if not ok:
            return False
        return (self.low is None or value >= self.low) and (self.high is None or value <= self.high)

    def __str__(self) -> str:
        kind = "an int" if self.kind is int else "a number"
        if self.low is not None and self.high is not None:
            return f"{kind} in [{self.low}, {self.high}]"
        if self.low is not None:
            return f"{kind} >= {self.low}"
        return f"{kind} <= {self.high}" if self.high is not None else kind


@dataclass(frozen=True)
class OneOf:
    """One of a fixed set of values."""

    options: tuple[Any, ...]

    def allows(self, value: Any) -> bool:
        return value in self.options

    def __str__(self) -> str:
        return "one of " + ", ".join(repr(o) for o in self.options)


def parse_names(value: Any, known: Iterable[str], what: str) -> tuple[str, ...]:
    """Names from a list or a comma-separated string, in order, each once (operators, objectives, ...).

    Raises:
        ValueError: not a string or a list of strings, empty, or a name not in ``known``.
    """
    known = tuple(known)
    if isinstance(value, str):
        names = [v.strip() for v in value.split(",") if v.strip()]
    elif isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value):
        names = [v.strip() for v in value]
    else:
        raise ValueError(f"{what} must be a list of names or a comma-separated string; got {value!r}")
    unknown = [n for n in names if n not in known]
    if not names or unknown:
        raise ValueError(f"unknown or missing {what} {unknown or names}; known: {', '.join(known)}")
    return tuple(dict.fromkeys(names))


@dataclass(frozen=True)
class NameList:
    """A constraint: a non-empty list of ``known`` names, or those names separated by commas."""

    known: tuple[str, ...]
    what: str

    def allows(self, value: Any) -> bool:
        try:
            return bool(parse_names(value, self.known, self.what))
        except ValueError:
            return False

    def __str__(self) -> str:
        return f"a non-empty list of {', '.join(self.known)} (or those names separated by commas)"


def get_params(obj: object) -> dict[str, Any]:
    """The constructor's keyword arguments and their current values (scikit-learn style)."""
    sig = inspect.signature(type(obj).__init__)
    # *args / **kwargs are not hyper-parameters (a strategy without __init__ shows object's)
    named = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    return {name: getattr(obj, name) for name, p in sig.parameters.items() if name != "self" and p.kind in named}


def validate_params(owner: str, params: dict[str, Any], constraints: dict[str, Any]) -> None:
    """Raise one ConfigError naming the parameter, its owner, what is allowed and what came."""
    for name, rule in constraints.items():
        rules: Iterable[Any] = rule if isinstance(rule, (list, tuple)) else (rule,)
        value = params.get(name)
        if not any(r.allows(value) for r in rules):
            allowed = " or ".join(str(r) for r in rules)
            raise ConfigError(f"the {name!r} parameter of {owner} must be {allowed}; got {value!r}")
