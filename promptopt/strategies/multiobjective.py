"""TAPO-style multi-objective search: an evolutionary loop with Pareto selection and a Pareto front.

After Luo et al., "TAPO: Task-Referenced Adaptation for Prompt Optimization",
ICASSP 2025 (arXiv:2501.06689). TAPO has three parts: *task-aware metric
selection* (an LLM identifies the task type and chooses the metrics that matter
for it, among similarity to reference answers, diversity, perplexity and
complexity), a *multi-metric evaluation* that aggregates them into one score
``S(P) = Σ w_i · M_i(P)`` with task-dependent weights, and an *evolutionary loop*
that mutates prompts with an LLM (PromptBreeder-style mutation prompts) and
keeps them by tournament selection.

What is built here, and where it differs:

* **Metrics are objectives the user names** (``objectives``, default
  ``accuracy,length``; see :mod:`promptopt.strategies._objectives`), measured
  from the target model (accuracy, margin, loss, output length) and its
  tokenizer (prompt length). No LLM picks them and no other model scores
  them (TAPO's similarity and perplexity come from embedding and GPT-2
  models); the default pair can be measured for every task in both answer modes.
* **No weighted sum**: candidates are compared by Pareto dominance (NSGA-II,
  Deb et al., 2002: non-dominated sorting, crowding distance, crowded binary
  tournament for parents, survival by front then crowding), so there are no
  weights to set, and the whole front is handed to the Run (``Result.front``).
  A named rule then picks the final prompt (``select``, below).
* **Variation by edits**: each child is one of Plum's edit operators on one
  parent (delete, swap, paraphrase by the optimizer model, add) or, with
  probability ``crossover_prob``, a one-point crossover of two parents; TAPO
  rewrites whole prompts with an LLM. Deletions reach the short end of the front
  without an optimizer call.

The loop: the seed and ``population_size - 1`` one-edit neighbours; then
``n_generations`` times, ``population_size`` children, all scored, and NSGA-II
survival back to ``population_size``. Objectives are measured on a score set of
``n_score`` training examples drawn once. Each generation, the population's
non-dominated members are scored on all of dev (once each, with every
objective), and the front over the dev-scored candidates goes to the Run
(``ctx.set_front``), each entry with its objective values on dev, so a run the
budget stops still has its front and its pick.

``select`` (the final pick, among candidates scored on dev):

* ``best-accuracy`` — the highest dev accuracy (ties: shorter, then older);
* ``knee`` — the front member with the largest sum of objectives normalised to
  [0, 1] over the front (in two dimensions the point farthest from the line
  joining the front's two ends);
* ``shortest-within:<eps>`` (default ``shortest-within:0.01``) — the shortest
  prompt whose dev accuracy is within ``eps`` of the best (ties: more accurate,
  then older); ``eps = 0`` is best accuracy, ties to the shortest.

Cost drivers: ``population_size`` × (``n_generations`` + 1) prompts, each
scored on ``n_score`` examples (``loss`` as an objective: twice), front members
on dev, and one optimizer call per paraphrase edit. ``margin`` and ``loss``
need a target backend that scores log-probabilities; ``margin`` needs choice
mode and ``output-length`` generate mode.

On a set of tasks the edited field is the shared system prompt whatever
``field`` says, the score set is drawn evenly from every task, ``length`` is
the system prompt's, and ``margin`` / ``output-length`` need every task in
their mode.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from promptopt.context import FrontEntry
from promptopt.strategies._base import Scalable, Spend, StepPlan, Strategy
from promptopt.strategies._edits import LEVELS, Level
from promptopt.strategies._objectives import (
    OBJECTIVE_LIST,
    OBJECTIVES,
    Objective,
    PromptLength,
    check_answer_mode,
    check_capabilities,
    measure,
    non_dominated,
    oriented,
    parse_objectives,
)
from promptopt.strategies._params import Interval, OneOf
from promptopt.strategies._plum_search import Search, operator_names
from promptopt.strategies._selection import crowded_tournament, nsga2_survivors
from promptopt.strategies.plum import OPERATOR_LIST, paraphrase_share

if TYPE_CHECKING:
    from promptopt.backends._base import Backend
    from promptopt.context import Context
    from promptopt.history import Candidate
    from promptopt.prompt import Prompt

__all__ = ["MultiObjective", "Rule", "parse_rule", "pick_final"]

_RULE = re.compile(r"(best-accuracy|knee)|shortest-within:(\d+(?:\.\d*)?|\.\d+)")


@dataclass(frozen=True)
class Rule:
    """A final-selection rule: ``best-accuracy``, ``knee`` or ``shortest-within`` with its tolerance."""

    name: str
    tolerance: float = 0.0


def parse_rule(value: Any) -> Rule:
    """The rule a ``select`` string names.

    Raises:
        ValueError: anything but ``best-accuracy``, ``knee`` or ``shortest-within:<number in [0, 1]>``.

    Example:
        >>> parse_rule("shortest-within:0.01")
        Rule(name='shortest-within', tolerance=0.01)
    """
    match = _RULE.fullmatch(value.strip()) if isinstance(value, str) else None
    if match is None or (match.group(2) is not None and float(match.group(2)) > 1):
        raise ValueError(f"unknown selection rule {value!r}")
    return Rule(match.group(1)) if match.group(1) else Rule("shortest-within", float(match.group(2)))


class _RuleConstraint:
    def allows(self, value: Any) -> bool:
        try:
            parse_rule(value)
        except ValueError:
            return False
        return True

    def __str__(self) -> str:
        return "'best-accuracy', 'knee' or 'shortest-within:<tolerance in [0, 1]>' (e.g. 'shortest-within:0.01')"


def pick_final(rule: Rule, rows: Sequence[Mapping[str, float]], objectives: Sequence[Objective]) -> int:
    """The position ``rule`` picks among candidates' dev values (each row has ``accuracy``,
    ``length`` and every objective); ties go to the earlier position.

    Example:
        >>> rows = [{"accuracy": 0.80, "length": 30}, {"accuracy": 0.79, "length": 12},
        ...         {"accuracy": 0.90, "length": 50}]
        >>> objs = parse_objectives("accuracy,length")
        >>> [pick_final(parse_rule(r), rows, objs) for r in ("best-accuracy", "shortest-within:0.2", "knee")]
        [2, 1, 1]
    """
    order = range(len(rows))
    if rule.name == "best-accuracy":
        return min(order, key=lambda k: (-rows[k]["accuracy"], rows[k]["length"], k))
    if rule.name == "shortest-within":
        best = max(row["accuracy"] for row in rows)
        near = [k for k in order if rows[k]["accuracy"] >= best - rule.tolerance - 1e-12]
        return min(near, key=lambda k: (rows[k]["length"], -rows[k]["accuracy"], k))
    return _knee(rows, objectives)


def _knee(rows: Sequence[Mapping[str, float]], objectives: Sequence[Objective]) -> int:
    front = non_dominated(rows, objectives)
    vectors = {k: oriented(rows[k], objectives) for k in front}
    lows = [min(v[m] for v in vectors.values()) for m in range(len(objectives))]
    highs = [max(v[m] for v in vectors.values()) for m in range(len(objectives))]

    def normalised_sum(k: int) -> float:
        return sum((x - lo) / (hi - lo) for x, lo, hi in zip(vectors[k], lows, highs, strict=True) if hi > lo)

    return max(front, key=lambda k: (normalised_sum(k), -k))


class _DevFront:
    """Candidates scored on all of dev with every objective, their front, and the final pick."""

    def __init__(self, ctx: Context, objectives: tuple[Objective, ...], length: PromptLength) -> None:
        self.ctx, self.objectives, self.length = ctx, objectives, length
        extra = tuple(OBJECTIVES[n] for n in ("accuracy", "length") if n not in {o.name for o in objectives})
        self.measured = objectives + extra  # the rules always need dev accuracy and length
        self.rows: dict[str, dict[str, float]] = {}
        self.prompts: dict[str, Prompt] = {}

    def add(self, prompts: Sequence[Prompt]) -> None:
        """Score the new ones on dev with every objective, then hand the Run the front."""
        fresh = list({p.id: p for p in prompts if p.id not in self.rows}.values())
        if not fresh:
            return
        for prompt, row in zip(fresh, measure(self.ctx, fresh, self.ctx.dev, self.measured, self.length), strict=True):
            self.rows[prompt.id], self.prompts[prompt.id] = row, prompt
        ids = list(self.rows)
        front = [ids[k] for k in non_dominated([self.rows[i] for i in ids], self.objectives)]
        self.ctx.set_front([FrontEntry(self.prompts[i], {o.name: self.rows[i][o.name] for o in self.objectives})
                            for i in front])

    def members(self) -> list[Prompt]:
        """The dev-scored prompts, oldest first."""
        return list(self.prompts.values())

    def picker(self, rule: Rule) -> Callable[[Sequence[Candidate]], Candidate]:
        """The Run's final pick: ``rule`` among fully scored candidates this search measured
        (the best dev mean, oldest first, if it measured none of them)."""
        def pick(full: Sequence[Candidate]) -> Candidate:
            known = [c for c in full if c.id in self.rows]
            if not known:
                return max(full, key=lambda c: (c.dev_mean(), -full.index(c)))
            return known[pick_final(rule, [self.rows[c.id] for c in known], self.objectives)]

        return pick


class MultiObjective(Strategy):
    """TAPO-style evolutionary search with Pareto (NSGA-II) selection over named objectives.

    Args:
        objectives: objective names, a list or comma-separated (``accuracy``, ``margin``, ``length``,
            ``output-length``, ``loss``); default ``accuracy,length``.
        select: the final-pick rule: ``best-accuracy``, ``knee`` or ``shortest-within:<eps>``.
        population_size: prompts kept after each generation (NSGA-II's N; 10).
        n_generations: generations at most (10).
        crossover_prob: chance that a child is a crossover of two parents rather than one edit (0.5).
        n_score: score-set size in training examples (100, Plum's).
        level, operators, field, temperature: the edit neighbourhood, as Plum's (see
            :mod:`promptopt.strategies.plum`; on a set of tasks the field is ``"system"``).

    Example:
        >>> MultiObjective(objectives="accuracy,loss").get_params()["select"]
        'shortest-within:0.01'
    """

    name: ClassVar[str] = "multiobjective"
    supports_task_sets: ClassVar[bool] = True
    summary: ClassVar[str] = "TAPO-style evolution with Pareto selection over named objectives (Luo et al., 2025)"
    constraints: ClassVar[dict[str, Any]] = {
        "objectives": OBJECTIVE_LIST, "select": _RuleConstraint(), "population_size": Interval(int, 2),
        "n_generations": Interval(int, 0), "crossover_prob": Interval(float, 0, 1), "n_score": Interval(int, 1),
        "level": OneOf(LEVELS), "operators": OPERATOR_LIST, "field": OneOf(("instruction", "system")),
        "temperature": Interval(float, 0, 2)}
    #: scaled to a budget: the score set first, then the population
    scalable: ClassVar[tuple[Scalable, ...]] = (Scalable("n_score", 10), Scalable("population_size", 2, stage=1))

    def __init__(self, *, objectives: str | tuple[str, ...] = "accuracy,length",
                 select: str = "shortest-within:0.01", population_size: int = 10, n_generations: int = 10,
                 crossover_prob: float = 0.5, n_score: int = 100, level: Level = "phrase",
                 operators: str | tuple[str, ...] = ("delete", "swap", "paraphrase", "add"),
                 field: str = "instruction", temperature: float = 0.7) -> None:
        self.objectives = objectives
        self.select = select
        self.population_size = population_size
        self.n_generations = n_generations
        self.crossover_prob = crossover_prob
        self.n_score = n_score
        self.level = level
        self.operators = operators
        self.field = field
        self.temperature = temperature

    def check_backend(self, backend: Backend, answer_mode: str | None = None) -> None:
        """Also refuse objectives the backend cannot compute (margin and loss need scoring) or the
        answer mode does not have (margin in generate mode, output length in choice mode)."""
        super().check_backend(backend, answer_mode)
        objectives = parse_objectives(self.objectives)
        check_capabilities(objectives, can_score=backend.capabilities.score, model_string=backend.model_string,
                           owner=self.name)
        if answer_mode is not None:
            check_answer_mode(objectives, answer_mode, owner=self.name)

    def finalist_gap(self, n_dev: int) -> int:
        """Candidates are scored on training examples, and on all of dev or not at all."""
        return 0

    def step_plan(self, n_dev: int, n_train: int, *, n_tasks: int = 1) -> StepPlan:
        """One generation: ``population_size`` children (a crossover, or one edit, a paraphrase
        being an optimizer call) measured on the score set, and a new front member measured on
        dev. Before it, the seed and ``population_size - 1`` neighbours are measured."""
        scored, size = min(self.n_score, n_train), self.population_size
        names = {o.name for o in parse_objectives(self.objectives)}
        evaluated = bool(names & {"accuracy", "margin", "output-length"})  # else only losses on the score set

        def measured(prompts: float, on_dev: int, paraphrases: float) -> Spend:
            train = prompts * scored
            return Spend(example_evals=train * evaluated + on_dev * n_dev, optimizer_calls=paraphrases,
                         loss_calls=train + on_dev * n_dev if "loss" in names else 0.0, new_full=on_dev)

        share = paraphrase_share(self.operators)
        return StepPlan("generation", measured(size, 1, size * (1 - self.crossover_prob) * share),
                        paper_steps=self.n_generations, setup=measured(size, 1, (size - 1) * share))

    def optimize(self, ctx: Context) -> Sequence[Prompt]:
        objectives = parse_objectives(self.objectives)
        for mode in dict.fromkeys([ctx.answer_mode, *(ctx.answer_modes[name] for name in ctx.task_names)]):
            check_answer_mode(objectives, mode, owner=self.name)  # on a mixed set, each task's mode
        length = PromptLength(ctx)
        ctx.note("objectives", objectives={o.name: o.direction for o in objectives}, select=self.select,
                 length_measure=length.method)
        front = _DevFront(ctx, objectives, length)
        ctx.select_final_by(self.select, front.picker(parse_rule(self.select)))
        front.add([ctx.seed_prompt])
        field = self.field if ctx.text_field == "instruction" else ctx.text_field  # a set shares only its system
        search = Search(ctx, field=field, level=self.level, operators=operator_names(self.operators),
                        n_score=self.n_score, score_incumbents=False, temperature=self.temperature)
        if search.ready():
            self.evolve(search, objectives, front, length)
        return front.members()

    def evolve(self, search: Search, objectives: tuple[Objective, ...], front: _DevFront,
               length: PromptLength) -> None:
        """NSGA-II generations; each one's non-dominated members join the dev front."""
        ctx = search.ctx
        values: dict[str, dict[str, float]] = {}

        def vectors(prompts: Sequence[Prompt]) -> list[tuple[float, ...]]:
            fresh = list({p.id: p for p in prompts if p.id not in values}.values())
            if fresh:
                values.update(zip((p.id for p in fresh),
                                  measure(ctx, fresh, search.score_set, objectives, length), strict=True))
            return [oriented(values[p.id], objectives) for p in prompts]

        population = [search.seed, *search.neighbours(search.seed, self.population_size - 1)]
        for generation in range(self.n_generations + 1):
            if generation > 0:
                pool = list({p.id: p for p in population + self.offspring(search, population,
                                                                           vectors(population))}.values())
                population = [pool[k] for k in nsga2_survivors(vectors(pool), self.population_size)]
            scores = vectors(population)
            leaders = [population[k] for k in non_dominated([values[p.id] for p in population], objectives)]
            front.add(leaders)
            ctx.note("generation", index=generation, population=[p.id for p in population],
                     front=[p.id for p in leaders], values=[list(v) for v in scores])

    def offspring(self, search: Search, population: list[Prompt], scores: list[tuple[float, ...]]) -> list[Prompt]:
        """``population_size`` new children: a crossover of two crowded-tournament winners with
        probability ``crossover_prob``, else one random edit of one."""
        rng, children = search.ctx.rng, []
        for _ in range(self.population_size):
            first = population[crowded_tournament(scores, rng)]
            child: Prompt | None = None
            if len(population) > 1 and rng.random() < self.crossover_prob:
                second = population[crowded_tournament(scores, rng)]
                child = search.crossover(first, second) if second.id != first.id else None
            else:
                child = next(iter(search.neighbours(first, 1)), None)
            if child is not None and child not in population and child not in children:
                children.append(child)
        return children

