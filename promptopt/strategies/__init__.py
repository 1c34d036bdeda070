"""Search strategies, registered by name.

Third-party strategies plug in through the ``promptopt.strategies`` entry-point
group (the entry point loads a :class:`Strategy` subclass).
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import Any

from promptopt.exceptions import ConfigError, UnknownNameError
from promptopt.strategies._base import Strategy
from promptopt.strategies.apo import APO

__all__ = ["APO", "Strategy", "StrategyInfo", "get_strategy", "list_strategies"]

BUILTIN: dict[str, type[Strategy]] = {cls.name: cls for cls in (APO,)}


@dataclass(frozen=True)
class StrategyInfo:
    """What ``promptopt strategies`` shows for one strategy."""

    name: str
    summary: str
    params: dict[str, Any]
    needs_score: bool


def _registry() -> dict[str, type[Strategy]]:
    found = dict(BUILTIN)
    for ep in entry_points(group="promptopt.strategies"):
        found.setdefault(ep.name, ep.load())
    return found


def get_strategy(strategy: str | Strategy, params: dict[str, Any] | None = None) -> Strategy:
    """A strategy instance from a registered name (with hyper-parameters) or an instance.

    Raises:
        UnknownNameError: the name is not registered (the message lists the known ones).
        ConfigError: a hyper-parameter name the strategy does not have.
    """
    if isinstance(strategy, Strategy):
        if params:
            raise ConfigError("strategy parameters were given alongside a Strategy instance; "
                              "set them on the instance instead")
        return strategy
    registry = _registry()
    cls = registry.get(strategy)
    if cls is None:
        raise UnknownNameError(f"unknown strategy {strategy!r}; known strategies: {', '.join(sorted(registry))} "
                               "(see `promptopt strategies`)")
    params = dict(params or {})
    known = cls().get_params()
    unknown = sorted(set(params) - set(known))
    if unknown:
        raise ConfigError(f"strategy {strategy!r} has no parameter {unknown[0]!r}; "
                          f"its parameters are: {', '.join(known)}")
    return cls(**params)


def list_strategies() -> list[StrategyInfo]:
    """Every registered strategy with its default hyper-parameters."""
    return [StrategyInfo(name, cls.summary, cls().get_params(), cls.needs_score)
            for name, cls in sorted(_registry().items())]
