"""PromptQuine and TAPruning: prune an in-context prompt unit by unit, keep what scores best.

Wang et al., "Evolving Prompts In-Context: An Open-ended, Self-replicating
Perspective", ICML 2025; loops and defaults checked against the authors' code
(github.com/jianyu-cs/PromptQuine, ``modules/TAPruner.py`` and
``modules/PromptQuinePruner.py``). Both start from an in-context prompt: the
seed, with ``n_demos`` training examples added as demonstrations when it has
none. The prompt's removable units are the target model's tokens
(``unit="token"``, via ``ctx.tokenizer``, re-joined with ``detokenize``) or
spans (``"word"``, ``"phrase"``, ``"sentence"``) of every non-empty text field
(instruction, system, demonstrations; never the template).

* ``tapruning`` — threshold-accepting hill climbing: in order (or shuffled,
  ``shuffle_order``) each remaining unit is removed on its own; the removal
  stays when the pruned prompt's fitness is at least ``threshold`` times the
  best fitness seen so far. Passes repeat on the pruned prompt until one
  removes nothing. The result is the best-fitness prompt seen, the latest
  (most pruned) of equals, so it is never worse on its fitness than the start.
* ``promptquine`` — a generational genetic algorithm over removal masks of the
  start prompt: a population of ``population_size`` copies of the start; each
  generation ``reproduction_size`` children, each from a tournament winner (the
  best of 20% of the population drawn with replacement) with 1-4 more units
  removed, scored together; then the ``population_size`` fittest of the
  youngest ``reproduction_size`` members survive (older ones die whatever
  their fitness: the reference's regularized evolution). It stops after
  ``max_candidates`` children or once the population's mean length is at most
  ``min_length`` units. With ``successive_halving`` a child is scored on the
  first half of the score set, and on the second only when it reaches the
  weakest member's fitness. The finalists are the top ``rerank_percent``% of
  all candidates by fitness, which the Run scores on dev (the reference
  re-ranks them on validation data).

Fitness is accuracy on the *score set*, ``n_score`` training examples (not the
demonstrations), or with ``fitness="loss"`` ``exp(-loss)`` of the gold
continuation (the geometric-mean probability of its tokens, in (0, 1] like
accuracy, so the threshold's ratio keeps its meaning). With ``record_both``
the other signal is measured too (a ``signals`` event per candidate). Every
new best is scored on all of dev as found (``score_incumbents``). See
docs/design-notes.md ("Loss-based strategies") for where this differs from
the reference. Both need the target model's log-probabilities and tokenizer.
"""

from __future__ import annotations

import math
from abc import abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, ClassVar

from promptopt.prompt import Demo
from promptopt.strategies._base import Scalable, Spend, StepPlan, Strategy
from promptopt.strategies._loss_signals import Signal, SignalMeter
from promptopt.strategies._params import Interval, OneOf
from promptopt.strategies._pruning import (
    PRUNE_UNITS,
    PruneSpace,
    PruneUnit,
    age_survivors,
    draw_removal,
    successive_halving,
    threshold_accepts,
)
from promptopt.strategies._selection import tournament
from promptopt.strategies.fewshot import round_robin_by_label

if TYPE_CHECKING:
    from promptopt.context import Context
    from promptopt.prompt import Prompt
    from promptopt.types import Example

__all__ = ["PromptQuine", "TAPruning"]

_COMMON: dict[str, Any] = {
    "fitness": OneOf(("accuracy", "loss")), "unit": OneOf(PRUNE_UNITS), "n_demos": Interval(int, 0),
    "n_score": Interval(int, 1), "record_both": OneOf((True, False)), "score_incumbents": OneOf((True, False)),
}


@dataclass(frozen=True)
class Member:
    """A pruned prompt: the start's units it lacks, its fitness and the examples that rests on."""

    prompt: Prompt
    removed: frozenset[int]
    fitness: float
    n_scored: int


class PruneSearch:
    """One run's state: the start prompt, the score set, fitness, and the best seen so far."""

    def __init__(self, ctx: Context, strategy: _Pruning) -> None:
        self.ctx, self.kind, self.score_incumbents = ctx, strategy.fitness, strategy.score_incumbents
        lead: Signal = "accuracy" if strategy.fitness == "accuracy" else "loss"
        self.meter = SignalMeter(ctx, lead=lead, record_both=strategy.record_both)
        self.start, demo_ids = _in_context(ctx, strategy.n_demos)
        self.score_set = ctx.sample([ex for ex in ctx.train if ex.id not in demo_ids], strategy.n_score)
        self.unit = strategy.unit
        self.best: Member | None = None

    def space(self, prompt: Prompt) -> PruneSpace:
        tokenizer = self.ctx.tokenizer if self.unit == "token" else None
        return PruneSpace(prompt, self.unit, tokenizer)

    def fitness(self, prompts: Sequence[Prompt], examples: Sequence[Example]) -> list[float]:
        """Accuracy, or ``exp(-loss)``, of each prompt on ``examples``."""
        measured = self.meter.measure(prompts, examples)
        if self.kind == "accuracy":
            return [float(m.accuracy or 0.0) for m in measured]
        return [math.exp(-(m.loss or 0.0)) for m in measured]

    def offer(self, members: Sequence[Member]) -> None:
        """Keep the best fully scored member (ties: the later one); score a strictly better one on dev."""
        for member in members:
            if member.n_scored < len(self.score_set):
                continue
            better = self.best is None or member.fitness > self.best.fitness
            if better or (self.best is not None and member.fitness == self.best.fitness):
                self.best = member
            if better:
                self.ctx.note("incumbent", prompt_id=member.prompt.id, fitness=member.fitness)
                if self.score_incumbents:
                    self.ctx.evaluate([member.prompt])

    def child(self, parent: Prompt, prompt: Prompt, removed: Sequence[str]) -> Prompt:
        if self.ctx.record(prompt, [parent], "prune"):
            self.ctx.note("prune", prompt_id=prompt.id, parent=parent.id, unit=self.unit, removed=list(removed))
        return prompt


def _in_context(ctx: Context, n_demos: int) -> tuple[Prompt, set[str]]:
    """The seed if it has demonstrations, else the seed with ``n_demos`` training examples as demonstrations
    (labels in turn), and the ids of those examples."""
    seed = ctx.seed_prompt
    if seed.demos or n_demos == 0:
        return seed, set()
    labelled = ctx.task.labels is not None
    chosen = round_robin_by_label(ctx.sample(ctx.train, len(ctx.train)),
                                  lambda ex: ex.target if labelled else None, n_demos)
    start = replace(seed, demos=tuple(Demo(ex.input, ctx.task.gold_text(ex)) for ex in chosen))
    ctx.record(start, [seed], "demos")
    return start, {ex.id for ex in chosen}


class _Pruning(Strategy):
    """What TAPruning and PromptQuine share: the start prompt, the score set, fitness."""

    needs_score: ClassVar[bool] = True
    needs_tokenizer: ClassVar[bool] = True
    fitness: str
    unit: PruneUnit
    n_demos: int
    n_score: int
    record_both: bool
    score_incumbents: bool

    def uses_tokenizer(self) -> bool:
        """Pruning by token needs the model's tokenizer; by word, phrase or sentence it does not."""
        return self.unit == "token"

    def _set_common(self, *, fitness: str, unit: PruneUnit, n_demos: int, n_score: int, record_both: bool,
                    score_incumbents: bool) -> None:
        self.fitness = fitness
        self.unit = unit
        self.n_demos = n_demos
        self.n_score = n_score
        self.record_both = record_both
        self.score_incumbents = score_incumbents

    def finalist_gap(self, n_dev: int) -> int:
        """Candidates are scored on training examples, and on all of dev or not at all."""
        return 0

    def optimize(self, ctx: Context) -> Sequence[Prompt]:
        search = PruneSearch(ctx, self)
        n_units = len(search.space(search.start))
        if not search.score_set or not n_units:
            ctx.note("stop", reason=f"nothing to prune: {len(search.score_set)} score-set examples, {n_units} units")
            return [search.start]
        start = Member(search.start, frozenset(), search.fitness([search.start], search.score_set)[0],
                       len(search.score_set))
        search.offer([start])
        finalists = self.run(search, start)
        ctx.note("finalists", prompt_ids=[m.prompt.id for m in finalists], fitness=[m.fitness for m in finalists])
        return [m.prompt for m in finalists]

    def measured(self, n_prompts: float, n_train: int) -> Spend:
        """What measuring ``n_prompts`` prompts' fitness on the score set costs (with ``record_both``
        the other signal too)."""
        n = n_prompts * min(self.n_score, max(0, n_train - self.n_demos))
        both = self.record_both
        return Spend(example_evals=n if self.fitness == "accuracy" or both else 0.0,
                     loss_calls=n if self.fitness == "loss" or both else 0.0)

    def start_plan(self, n_dev: int, n_train: int) -> Spend:
        """The start prompt (the seed with demonstrations) measured, and scored on dev as the first best."""
        best = 1 if self.score_incumbents else 0
        start = self.measured(1, n_train)
        return Spend(example_evals=start.example_evals + best * n_dev, loss_calls=start.loss_calls, new_full=best)

    @abstractmethod
    def run(self, search: PruneSearch, start: Member) -> list[Member]:
        """The algorithm's loop; returns the finalists, best first (the budget raises)."""


class TAPruning(_Pruning):
    """Threshold-accepting pruning (TAPruning), with the reference code's defaults.

    Args:
        threshold: a removal stays when fitness >= threshold × the best fitness so far (0.96).
        shuffle_order: try units in a seeded random order instead of left to right (the reference
            prunes in order by default).
        fitness: ``"accuracy"`` (the reference's default) or ``"loss"`` (``exp(-loss)``).
        unit: ``"token"`` (the target model's tokens), ``"word"``, ``"phrase"`` or ``"sentence"``.
        n_demos: training examples made demonstrations when the seed has none (the reference: 1-shot).
        n_score: training examples fitness is measured on.
        record_both: also measure the signal that is not the fitness.
        score_incumbents: score each new best on all of dev as it is found.

    Example:
        >>> TAPruning().threshold
        0.96
    """

    name: ClassVar[str] = "tapruning"
    summary: ClassVar[str] = "threshold-accepting token pruning of an in-context prompt (Wang et al., 2025)"
    constraints: ClassVar[dict[str, Any]] = {**_COMMON, "threshold": Interval(float, 0, 1),
                                             "shuffle_order": OneOf((True, False))}

    def __init__(self, *, threshold: float = 0.96, shuffle_order: bool = False, fitness: str = "accuracy",
                 unit: PruneUnit = "token", n_demos: int = 1, n_score: int = 16, record_both: bool = True,
                 score_incumbents: bool = True) -> None:
        self.threshold = threshold
        self.shuffle_order = shuffle_order
        self._set_common(fitness=fitness, unit=unit, n_demos=n_demos, n_score=n_score, record_both=record_both,
                         score_incumbents=score_incumbents)

    def step_plan(self, n_dev: int, n_train: int, *, n_tasks: int = 1) -> StepPlan:
        """One removal tried: the pruned prompt measured on the score set. Its sweeps go on until
        one removes nothing, so the count of steps depends on the prompt's length (None here); an
        accepted removal only needs to come near the best, so new bests for dev are rare (none counted)."""
        return StepPlan("removal", self.measured(1, n_train), paper_steps=None, setup=self.start_plan(n_dev, n_train))

    def run(self, search: PruneSearch, start: Member) -> list[Member]:
        current, record = start.prompt, start.fitness
        for sweep in range(1, len(search.space(current)) + 1):  # each sweep that prunes removes a unit
            space, latest = search.space(current), current
            removed: set[int] = set()
            order = list(range(len(space)))
            if self.shuffle_order:
                search.ctx.rng.shuffle(order)
            for position in order:
                candidate = space.build(removed | {position})
                if candidate.id == latest.id:  # the unit rendered as nothing: removing it changes nothing
                    removed.add(position)
                    continue
                search.child(latest, candidate, [space.field(position)])
                value = search.fitness([candidate], search.score_set)[0]
                accepted = threshold_accepts(value, record, self.threshold)
                search.ctx.note("threshold", prompt_id=candidate.id, fitness=value, best=record, accepted=accepted)
                if accepted:
                    removed.add(position)
                    latest, record = candidate, max(record, value)
                    search.offer([Member(candidate, frozenset(), value, len(search.score_set))])
            search.ctx.note("sweep", index=sweep, prompt_id=latest.id, removed=len(removed))
            if not removed:
                break
            current = latest
        return [search.best] if search.best is not None else [start]


class PromptQuine(_Pruning):
    """PromptQuine's generational genetic algorithm over removal masks, with the reference code's defaults.

    Args:
        population_size: members kept after each generation (30).
        reproduction_size: children per generation, and the age window of survival (50).
        max_candidates: stop after this many children (10000).
        min_length: stop once the population's mean length is at most this many units (15).
        tournament_fraction: share of the population drawn (with replacement) per tournament (0.2).
        successive_halving: score a child on the second half of the score set only when its first
            half reaches the weakest member's fitness.
        rerank_percent: share of all candidates, by fitness, returned as finalists for dev (10).
        fitness: ``"accuracy"`` or ``"loss"`` (``exp(-loss)``).
        unit: ``"token"`` (the target model's tokens), ``"word"``, ``"phrase"`` or ``"sentence"``.
        n_demos: training examples made demonstrations when the seed has none (the reference: 1-shot).
        n_score: training examples fitness is measured on (the reference: 16 for classification).
        record_both: also measure the signal that is not the fitness.
        score_incumbents: score each new best on all of dev as it is found.

    Example:
        >>> PromptQuine().population_size
        30
    """

    name: ClassVar[str] = "promptquine"
    summary: ClassVar[str] = "genetic pruning of an in-context prompt, 1-4 tokens per child (Wang et al., 2025)"
    constraints: ClassVar[dict[str, Any]] = {
        **_COMMON, "population_size": Interval(int, 1), "reproduction_size": Interval(int, 1),
        "max_candidates": Interval(int, 1), "min_length": Interval(int, 0),
        "tournament_fraction": Interval(float, 0, 1), "successive_halving": OneOf((True, False)),
        "rerank_percent": Interval(float, 0, 100)}
    #: scaled to a budget: the children and the population first (the score set is small already), then it
    scalable: ClassVar[tuple[Scalable, ...]] = (
        Scalable("reproduction_size", 4), Scalable("population_size", 4), Scalable("n_score", 8, stage=1))

    def __init__(self, *, population_size: int = 30, reproduction_size: int = 50, max_candidates: int = 10000,
                 min_length: int = 15, tournament_fraction: float = 0.2, successive_halving: bool = True,
                 rerank_percent: float = 10.0, fitness: str = "accuracy", unit: PruneUnit = "token",
                 n_demos: int = 1, n_score: int = 16, record_both: bool = True, score_incumbents: bool = True) -> None:
        self.population_size = population_size
        self.reproduction_size = reproduction_size
        self.max_candidates = max_candidates
        self.min_length = min_length
        self.tournament_fraction = tournament_fraction
        self.successive_halving = successive_halving
        self.rerank_percent = rerank_percent
        self._set_common(fitness=fitness, unit=unit, n_demos=n_demos, n_score=n_score, record_both=record_both,
                         score_incumbents=score_incumbents)

    def step_plan(self, n_dev: int, n_train: int, *, n_tasks: int = 1) -> StepPlan:
        """One generation: ``reproduction_size`` children measured on the score set (successive halving
        spares up to half of it for the weak ones) and a new best scored on dev. A loop that ends
        (``max_candidates`` children) has its top ``rerank_percent``% scored on dev."""
        best = 1 if self.score_incumbents else 0
        children = self.measured(self.reproduction_size, n_train)
        finalists = max(1, math.ceil(self.max_candidates * self.rerank_percent / 100))
        return StepPlan("generation", Spend(example_evals=children.example_evals + best * n_dev,
                                            loss_calls=children.loss_calls, new_full=best),
                        paper_steps=math.ceil(self.max_candidates / self.reproduction_size),
                        setup=self.start_plan(n_dev, n_train),
                        finish=Spend(example_evals=finalists * n_dev, new_full=finalists))

    def run(self, search: PruneSearch, start: Member) -> list[Member]:
        space = search.space(start.prompt)
        population, explored, seen = [start] * self.population_size, 0, [start]
        for generation in range(1, self.max_candidates + 1):
            mean_length = sum(len(space) - len(m.removed) for m in population) / len(population)
            if explored >= self.max_candidates or mean_length <= self.min_length:
                search.ctx.note("stop", reason=f"{explored} children, mean length {mean_length:.1f} units")
                break
            floor = min(m.fitness for m in population)
            children = self.breed(search, space, population, floor)
            if not children:
                search.ctx.note("stop", reason=f"generation {generation} bred no new child")
                break
            explored += len(children)
            seen += children
            members = population + children
            population = [members[k] for k in age_survivors([m.fitness for m in members], self.reproduction_size,
                                                            self.population_size)]
            search.ctx.note("generation", index=generation, n_children=len(children), floor=floor,
                            population=[m.prompt.id for m in population], fitness=[m.fitness for m in population])
        return self.finalists(seen, len(search.score_set))

    def breed(self, search: PruneSearch, space: PruneSpace, population: list[Member], floor: float) -> list[Member]:
        """``reproduction_size`` mutations of tournament winners, scored together (children equal to a
        member of the population are dropped, as in the reference); with successive halving, only those
        reaching ``floor`` on the first half of the score set are scored on the rest."""
        rng, fitness = search.ctx.rng, [m.fitness for m in population]
        size = max(1, int(len(population) * self.tournament_fraction))
        pool = {m.prompt.id for m in population}
        born: list[tuple[Prompt, frozenset[int]]] = []
        for _ in range(self.reproduction_size):
            parent = population[tournament(fitness, rng, size)]
            removal = draw_removal([p for p in range(len(space)) if p not in parent.removed], rng)
            if removal is None:
                continue
            removed = parent.removed | set(removal)
            child = space.build(removed)
            if child.id in pool:
                continue
            search.child(parent.prompt, child, [space.field(p) for p in removal])
            born.append((child, removed))
        return self.score(search, born, floor)

    def score(self, search: PruneSearch, born: Sequence[tuple[Prompt, frozenset[int]]], floor: float) -> list[Member]:
        prompts = [p for p, _ in born]
        if self.successive_halving:
            values, sizes = successive_halving(prompts, search.score_set, search.fitness, floor)
        else:
            values = search.fitness(prompts, search.score_set) if prompts else []
            sizes = [len(search.score_set)] * len(prompts)
        members = [Member(p, removed, v, n) for (p, removed), v, n in zip(born, values, sizes, strict=True)]
        search.offer(members)
        return members

    def finalists(self, seen: Sequence[Member], n_full: int) -> list[Member]:
        """The top ``rerank_percent``% of the candidates scored on all ``n_full`` score-set examples, by
        fitness (at least one, and every one tied with the last), best first, the more pruned of equals first."""
        full = list({m.prompt.id: m for m in seen if m.n_scored == n_full}.values())
        ranked = sorted(full, key=lambda m: (-m.fitness, -len(m.removed)))
        keep = max(1, math.ceil(len(ranked) * self.rerank_percent / 100))
        cut = ranked[keep - 1].fitness
        return [m for m in ranked if m.fitness >= cut]
