"""Step sizes scaled to the budget.

The papers' defaults size one step of a search for thousands of calls: a population
of ten each scored on a hundred training examples, a beam of four with eight
successors each. A smaller budget buys less than one such step, and the run would
end before its search has begun. Each strategy names the parameters that set what
one step costs (:attr:`Strategy.scalable`), each with the smallest value that still
runs the algorithm as meant; :func:`scale_to_fit` shrinks those the user left at
their defaults until a test of the whole plan (``fits``, which the estimate supplies)
passes, or every one of them is at its minimum.

Shrinking goes stage by stage: the parameters of the first stage (score-set sizes,
mostly) shrink together, in proportion to their values, down to their minimums,
before the second stage (population, beam, proposals) starts. Within a stage the
largest factor that fits wins, so a parameter is never made smaller than needed.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

from promptopt.strategies._base import Scalable, Strategy

__all__ = ["Scaling", "describe_changes", "explicit_params", "scale_to_fit"]


def describe_changes(changes: Mapping[str, Sequence[int]]) -> str:
    """Scaled parameters in one line, e.g. ``n_score 100→20, population_size 10→6`` (empty when none)."""
    return ", ".join(f"{name} {before}→{after}" for name, (before, after) in changes.items())


@dataclass(frozen=True)
class Scaling:
    """A strategy after scaling, and what changed.

    Attributes:
        strategy: the strategy to run (the one given when nothing changed).
        changes: parameter name -> (value before, value after), for each one changed.
        fits: whether the plan passed the test (when False, every parameter that could
            shrink is at its minimum, or there was none).
        kept: the strategy's scalable parameters left alone because they were set explicitly.
    """

    strategy: Strategy
    changes: Mapping[str, tuple[int, int]] = field(default_factory=dict)
    fits: bool = True
    kept: tuple[str, ...] = ()

    @property
    def short(self) -> bool:
        """Parameters were scaled and even at their smallest the plan does not fit: the run warns."""
        return bool(self.changes) and not self.fits

    def describe(self) -> str:
        """The changes in one line, e.g. ``n_score 100→20, population_size 10→6`` (empty when none)."""
        return describe_changes(self.changes)

    def to_config(self) -> dict[str, Any]:
        """What a run's configuration records: nothing when nothing changed (so earlier run ids
        stay), else ``{"scaled_to_budget": {name: [before, after]}}``."""
        if not self.changes:
            return {}
        return {"scaled_to_budget": {name: list(pair) for name, pair in self.changes.items()}}


def explicit_params(strategy: str | Strategy, strategy_params: Mapping[str, Any] | None) -> frozenset[str]:
    """The parameters a user set explicitly: for a strategy given by name, the keys of its
    ``strategy_params`` (even when a value equals the default); for an instance, whose constructor
    arguments are not recorded, each parameter whose value differs from its class default.

    Example:
        >>> from promptopt.strategies import APO
        >>> sorted(explicit_params("apo", {"beam_size": 4})), sorted(explicit_params(APO(rounds=2), None))
        (['beam_size'], ['rounds'])
    """
    if not isinstance(strategy, Strategy):
        return frozenset(strategy_params or {})
    try:
        defaults = type(strategy)().get_params()
    except TypeError:  # a class whose constructor requires arguments: nothing is known to be a default
        return frozenset(strategy.get_params())
    return frozenset(name for name, value in strategy.get_params().items()
                     if name not in defaults or value != defaults[name])


def scale_to_fit(strategy: Strategy, fits: Callable[[Strategy], bool], explicit: Collection[str] = ()) -> Scaling:
    """Shrink ``strategy``'s scalable parameters not in ``explicit`` until ``fits`` holds.

    Args:
        strategy: the strategy as configured (not changed: a scaled copy is returned).
        fits: whether a strategy's plan fits the budget.
        explicit: parameters set explicitly, never changed.

    Returns:
        The :class:`Scaling`: the strategy unchanged when it already fits or nothing can
        shrink; else a copy with the largest values that fit, or every free parameter at its
        minimum when none do.
    """
    declared = type(strategy).scalable
    kept = tuple(s.name for s in declared if s.name in explicit)
    if fits(strategy):
        return Scaling(strategy, kept=kept)
    params = strategy.get_params()
    free = [s for s in declared if s.name not in explicit and _whole(params.get(s.name))
            and params[s.name] > s.minimum]
    values: dict[str, int] = {}
    tried = strategy
    for stage in sorted({s.stage for s in free}):
        group = [s for s in free if s.stage == stage]
        for shrunk in _shrinkings(group, params):
            values.update(shrunk)
            tried = _rebuilt(strategy, values)
            if fits(tried):
                return Scaling(tried, _changes(params, values), True, kept)
    return Scaling(tried, _changes(params, values), False, kept)


def _whole(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _shrinkings(group: list[Scalable], params: Mapping[str, Any]) -> Iterator[dict[str, int]]:
    """The group's values at each factor below 1 where one of them changes, largest first, down
    to the factor that puts every one at its minimum: ``max(minimum, floor(default · factor))``."""
    factors = sorted({Fraction(v, params[s.name]) for s in group for v in range(s.minimum, params[s.name])},
                     reverse=True)
    for factor in factors:
        yield {s.name: max(s.minimum, math.floor(params[s.name] * factor)) for s in group}


def _rebuilt(strategy: Strategy, values: Mapping[str, int]) -> Strategy:
    return type(strategy)(**{**strategy.get_params(), **values})


def _changes(params: Mapping[str, Any], values: Mapping[str, int]) -> dict[str, tuple[int, int]]:
    return {name: (params[name], value) for name, value in values.items() if value != params[name]}
