"""Search strategies, registered by name.

Third-party strategies plug in through the ``promptopt.strategies`` entry-point
group (the entry point loads a :class:`Strategy` subclass).
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib.metadata import EntryPoint, entry_points
from typing import Any

from promptopt._plugins import load_plugin_class
from promptopt.exceptions import ConfigError, UnknownNameError
from promptopt.strategies._base import Strategy
from promptopt.strategies.ape import APE
from promptopt.strategies.apo import APO
from promptopt.strategies.evoprompt import EvoPromptDE, EvoPromptGA
from promptopt.strategies.fewshot import FewShot
from promptopt.strategies.gepa import GEPA
from promptopt.strategies.metaspo import MetaSPO
from promptopt.strategies.multiobjective import MultiObjective
from promptopt.strategies.opro import OPRO
from promptopt.strategies.plum import (
    GeneticCrossover,
    GeneticMutation,
    HarmonySearch,
    HillClimbing,
    SimulatedAnnealing,
    TabuSearch,
)
from promptopt.strategies.pmpo import PMPO
from promptopt.strategies.prompt_selection import PromptSelection
from promptopt.strategies.promptbreeder import PromptBreeder
from promptopt.strategies.promptquine import PromptQuine, TAPruning
from promptopt.strategies.promptwizard import PromptWizard
from promptopt.strategies.rlprompt import RLPrompt
from promptopt.strategies.sprig import SPRIG

__all__ = ["APE", "APO", "GEPA", "OPRO", "PMPO", "EvoPromptDE", "EvoPromptGA", "FewShot", "GeneticCrossover",
           "GeneticMutation", "HarmonySearch", "HillClimbing", "MultiObjective", "PromptBreeder", "PromptQuine",
           "PromptWizard", "RLPrompt", "SimulatedAnnealing", "Strategy", "StrategyInfo", "TAPruning", "TabuSearch",
           "get_strategy", "list_strategies"]
__all__ += ["PromptSelection"]
__all__ += ["SPRIG", "MetaSPO"]

BUILTIN: dict[str, type[Strategy]] = {cls.name: cls for cls in (APO, OPRO, APE, PromptWizard, GEPA, FewShot)}
BUILTIN |= {cls.name: cls for cls in (HillClimbing, SimulatedAnnealing, GeneticMutation, GeneticCrossover,
                                      TabuSearch, HarmonySearch)}
BUILTIN |= {cls.name: cls for cls in (EvoPromptGA, EvoPromptDE, PromptBreeder, MultiObjective)}
BUILTIN |= {cls.name: cls for cls in (PMPO, PromptQuine, TAPruning, RLPrompt)}
BUILTIN |= {cls.name: cls for cls in (PromptSelection,)}
BUILTIN |= {cls.name: cls for cls in (SPRIG, MetaSPO)}


@dataclass(frozen=True)
class StrategyInfo:
    """What ``promptopt strategies`` shows for one strategy."""

    name: str
    summary: str
    params: dict[str, Any]
    needs_score: bool


def _plugins() -> dict[str, EntryPoint]:
    return {ep.name: ep for ep in entry_points(group="promptopt.strategies") if ep.name not in BUILTIN}


def _load_plugin(ep: EntryPoint) -> type[Strategy]:
    cls: type[Strategy] = load_plugin_class(ep, Strategy, "strategy")
    return cls


def _known_names() -> list[str]:
    return sorted(set(BUILTIN) | set(_plugins()))


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
    if strategy in BUILTIN:
        cls = BUILTIN[strategy]
    elif strategy in (plugins := _plugins()):
        cls = _load_plugin(plugins[strategy])
    else:
        raise UnknownNameError(f"unknown strategy {strategy!r}; known strategies: {', '.join(_known_names())} "
                               "(see `promptopt strategies`)")
    params = dict(params or {})
    known = cls().get_params()
    unknown = sorted(set(params) - set(known))
    if unknown:
        raise ConfigError(f"strategy {strategy!r} has no parameter {unknown[0]!r}; "
                          f"its parameters are: {', '.join(known)}")
    return cls(**params)


def list_strategies() -> list[StrategyInfo]:
    """Every registered strategy with its default hyper-parameters (a broken plugin shows its error)."""
    infos = []
    for name in _known_names():
        try:
            cls = BUILTIN.get(name) or _load_plugin(_plugins()[name])
        except ConfigError as exc:
            infos.append(StrategyInfo(name, f"unavailable: {exc}", {}, False))
            continue
        infos.append(StrategyInfo(name, cls.summary, cls().get_params(), cls.needs_score))
    return infos
