"""Plum: prompt learning with metaheuristics over phrase-level edits.

Pan et al., "Plum: Prompt Learning using Metaheuristic", Findings of ACL 2024
(arXiv:2311.08364); mechanisms and defaults checked against the authors' code
(github.com/research4pan/Plum). Six algorithms search the same neighbourhood:
a candidate's neighbours are ``n_candidates`` prompts, each made by one edit
drawn uniformly from ``operators`` (delete, swap, paraphrase, and add, which
re-inserts a unit this candidate's lineage deleted and is left out while there
is none) on the units (``level``) of one ``field``. A neighbour whose field has
no letter left is dropped. Fitness is accuracy on the *score set*, a seeded
sample of ``n_score`` training examples drawn once (the paper's 100-example
score set); a search stops after ``max_iterations`` iterations, after
``patience`` iterations in a row without improvement, or when the budget is spent.

* ``hill-climb`` — move to the best neighbour when it beats the current prompt.
* ``simulated-annealing`` — as hill climbing, but at iteration ``i`` a best
  neighbour that does not beat the current prompt is still taken with
  probability ``exp(Δ / T_i)``, ``T_i = t_max · exp(-i / decay)``, Δ in
  accuracy points (0-100, as the reference code's percentages).
* ``genetic-mutation`` — a growing population; each iteration a parent is
  picked by tournament, and its best neighbour joins the population.
* ``genetic`` — a population of ``population_size`` (initially copies of the
  seed): ``n_offspring`` one-point crossovers of tournament-picked parents,
  then each member is mutated with probability ``mutation_prob`` (its
  neighbours join), top-``population_size`` survival after each.
* ``tabu`` — hill climbing in which the ``tabu_size`` most recent iteration
  winners (and the seed) are barred from later neighbourhoods.
* ``harmony`` — a harmony memory of the ``memory_size`` best prompts; each new
  harmony takes segment ``j`` of ``n_segments`` from a random member; with
  probability ``hmcr`` the segment is kept (and with ``par`` pitch-adjusted by a
  paraphrase), otherwise it gets one random edit.

The strategy returns the best prompt by score-set accuracy; the Run then picks
by dev score. With ``score_incumbents`` every new best is scored on dev as it
is found, so a run the budget stops still keeps it. See docs/design-notes.md
("Plum") for where this differs from the paper.

On a set of tasks the edited field is the shared system prompt whatever
``field`` says (each task keeps its own instruction), the score set is drawn
evenly from every task, and a paraphrase request speaks of a system prompt.

Parameters every Plum strategy has (defaults: the reference code's):

* ``level``: unit granularity, ``"phrase"`` (Plum's), ``"sentence"`` or ``"word"``;
* ``operators``: edit operators to draw from, a list or comma-separated names
  (default delete, swap, paraphrase, add);
* ``field``: the prompt field edited, ``"instruction"`` (Plum's) or ``"system"``
  (on a set of tasks always ``"system"``);
* ``n_candidates``: neighbours (harmonies) per iteration (m = 10);
* ``max_iterations``: iterations at most (50);
* ``patience``: stop after this many iterations in a row without improvement (7);
* ``n_score``: score-set size in training examples (100);
* ``score_incumbents``: score each new best on dev as it is found (True; n_dev
  target calls per improvement);
* ``temperature``: optimizer sampling temperature for paraphrases (0.7).

Cost drivers: per iteration about ``n_candidates`` new prompts, each scored on
``n_score`` examples (population ``genetic``: ``n_offspring`` plus
``population_size · mutation_prob · n_candidates``), and one optimizer call per
paraphrase edit. Needs only generation from the optimizer; in ``choice`` answer
mode the target model must also score log-probabilities.
"""

from __future__ import annotations

import math
import random
from abc import abstractmethod
from collections import deque
from typing import TYPE_CHECKING, Any, ClassVar

from promptopt.strategies._base import Scalable, Spend, StepPlan, Strategy
from promptopt.strategies._edits import LEVELS, Level
from promptopt.strategies._operators import OPERATORS
from promptopt.strategies._params import Interval, NameList, OneOf
from promptopt.strategies._plum_search import Search, improvise, operator_names
from promptopt.strategies._selection import top_k, tournament

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from promptopt.context import Context
    from promptopt.prompt import Prompt

__all__ = ["GeneticCrossover", "GeneticMutation", "HarmonySearch", "HillClimbing", "SimulatedAnnealing",
           "TabuSearch", "anneal_accepts", "paraphrase_share", "temperature", "update_memory"]


#: a constraint: operator names, as a list or a comma-separated string
OPERATOR_LIST = NameList(tuple(OPERATORS), "operators")


_COMMON: dict[str, Any] = {
    "level": OneOf(LEVELS), "operators": OPERATOR_LIST, "field": OneOf(("instruction", "system")),
    "n_candidates": Interval(int, 1), "max_iterations": Interval(int, 0), "patience": Interval(int, 1),
    "n_score": Interval(int, 1), "score_incumbents": OneOf((True, False)), "temperature": Interval(float, 0, 2),
}
_DEFAULT_OPERATORS = ("delete", "swap", "paraphrase", "add")


def paraphrase_share(operators: tuple[str, ...] | str) -> float:
    """The share of random edits that are paraphrases (one optimizer call each): operators are
    drawn uniformly (``add`` is left out while its pool is empty, so early on the share is higher).

    Example:
        >>> paraphrase_share("delete,swap,paraphrase,add")
        0.25
    """
    names = operator_names(operators)
    return names.count("paraphrase") / len(names)


class _Plum(Strategy):
    """What the six share: the edit neighbourhood, the score set, the stopping rules."""

    constraints: ClassVar[dict[str, Any]] = _COMMON
    supports_task_sets: ClassVar[bool] = True
    #: scaled to a budget: the score set first, then the neighbourhood
    scalable: ClassVar[tuple[Scalable, ...]] = (Scalable("n_score", 10), Scalable("n_candidates", 2, stage=1))
    level: Level
    operators: tuple[str, ...] | str
    field: str
    n_candidates: int
    max_iterations: int
    patience: int
    n_score: int
    score_incumbents: bool
    temperature: float

    def _set_common(self, *, level: Level, operators: tuple[str, ...] | str, field: str, n_candidates: int,
                    max_iterations: int, patience: int, n_score: int, score_incumbents: bool,
                    temperature: float) -> None:
        self.level = level
        self.operators = operators
        self.field = field
        self.n_candidates = n_candidates
        self.max_iterations = max_iterations
        self.patience = patience
        self.n_score = n_score
        self.score_incumbents = score_incumbents
        self.temperature = temperature

    def finalist_gap(self, n_dev: int) -> int:
        """Candidates are scored on training examples, and on all of dev or not at all."""
        return 0

    def optimize(self, ctx: Context) -> Sequence[Prompt]:
        field = self.field if ctx.text_field == "instruction" else ctx.text_field  # a set shares only its system
        search = Search(ctx, field=field, level=self.level, operators=operator_names(self.operators),
                        n_score=self.n_score, score_incumbents=self.score_incumbents, temperature=self.temperature)
        if search.ready():
            self.run(search)
        return [search.best]

    def step_plan(self, n_dev: int, n_train: int, *, n_tasks: int = 1) -> StepPlan:
        """One iteration: its new prompts scored on the score set, and a new best scored on dev
        (``patience`` may end the loop before ``max_iterations``). The seed is scored first."""
        children, paraphrases = self.children_per_iteration()
        scored, best = min(self.n_score, n_train), 1 if self.score_incumbents else 0
        return StepPlan("iteration", Spend(example_evals=children * scored + best * n_dev,
                                           optimizer_calls=paraphrases, new_full=best),
                        paper_steps=self.max_iterations, setup=Spend(example_evals=scored),
                        finish=Spend() if best else Spend(example_evals=n_dev, new_full=1))

    def children_per_iteration(self) -> tuple[float, float]:
        """New prompts one iteration makes (``n_candidates`` neighbours) and the paraphrase edits among them."""
        return self.n_candidates, self.n_candidates * paraphrase_share(self.operators)

    @abstractmethod
    def run(self, search: Search) -> None:
        """The algorithm's loop; returns when a stopping rule holds (the budget raises)."""

    def iterations(self) -> range:
        """Iteration numbers, from 1 (the annealing schedule counts from 1, as the reference does)."""
        return range(1, self.max_iterations + 1)

    def out_of_patience(self, search: Search, misses: int) -> bool:
        if misses >= self.patience:
            search.ctx.note("stop", reason=f"no improvement in {misses} iterations (patience {self.patience})")
            return True
        return False


class HillClimbing(_Plum):
    """Plum's hill climbing: take the best neighbour while it beats the current prompt.

    Its parameters are the common ones (see the module docstring).

    Example:
        >>> HillClimbing(n_candidates=4).get_params()["n_candidates"]
        4
    """

    name: ClassVar[str] = "hill-climb"
    summary: ClassVar[str] = "Plum hill climbing over phrase edits (Pan et al., 2024)"

    def __init__(self, *, level: Level = "phrase", operators: tuple[str, ...] | str = _DEFAULT_OPERATORS,
                 field: str = "instruction", n_candidates: int = 10, max_iterations: int = 50, patience: int = 7,
                 n_score: int = 100, score_incumbents: bool = True, temperature: float = 0.7) -> None:
        self._set_common(level=level, operators=operators, field=field, n_candidates=n_candidates,
                         max_iterations=max_iterations, patience=patience, n_score=n_score,
                         score_incumbents=score_incumbents, temperature=temperature)

    def run(self, search: Search) -> None:
        current, misses = search.seed, 0
        for i in self.iterations():
            children = search.neighbours(current, self.n_candidates)
            best = search.fittest(children)
            if best is not None and search.fitness(best) > search.fitness(current):
                current, misses = best, 0
            else:
                current, misses = self.not_better(search, current, best, i), misses + 1
            search.ctx.note("step", index=i, current=current.id, fitness=search.fitness(current))
            if self.out_of_patience(search, misses):
                return

    def not_better(self, search: Search, current: Prompt, best: Prompt | None, iteration: int) -> Prompt:
        """Where the search goes when the best neighbour does not beat ``current``: nowhere."""
        return current


def temperature(iteration: int, t_max: float, decay: float) -> float:
    """The annealing temperature at ``iteration`` (from 1): ``t_max · exp(-iteration / decay)``."""
    return t_max * math.exp(-iteration / decay)


def anneal_accepts(delta: float, iteration: int, rng: random.Random, *, t_max: float, decay: float) -> bool:
    """Whether a neighbour ``delta`` accuracy points from the current prompt (<= 0) is taken:
    with probability ``exp(delta / T)`` at the iteration's temperature T."""
    return rng.random() < math.exp(delta / temperature(iteration, t_max, decay))


class SimulatedAnnealing(HillClimbing):
    """Plum's simulated annealing: hill climbing that sometimes takes a neighbour that is no better.

    Args:
        t_max: starting temperature, in accuracy points (the reference code's 10).
        decay: iterations for the temperature to fall by a factor e (the reference code's K = 5).

    The other parameters are the common ones (see the module docstring).

    Example:
        >>> round(temperature(5, t_max=10.0, decay=5.0), 3)
        3.679
    """

    name: ClassVar[str] = "simulated-annealing"
    summary: ClassVar[str] = "Plum simulated annealing over phrase edits (Pan et al., 2024)"
    constraints: ClassVar[dict[str, Any]] = {**_COMMON, "t_max": Interval(float, 0), "decay": Interval(float, 0)}

    def __init__(self, *, t_max: float = 10.0, decay: float = 5.0, level: Level = "phrase",
                 operators: tuple[str, ...] | str = _DEFAULT_OPERATORS, field: str = "instruction",
                 n_candidates: int = 10, max_iterations: int = 50, patience: int = 7, n_score: int = 100,
                 score_incumbents: bool = True, temperature: float = 0.7) -> None:
        self.t_max = t_max
        self.decay = decay
        self._set_common(level=level, operators=operators, field=field, n_candidates=n_candidates,
                         max_iterations=max_iterations, patience=patience, n_score=n_score,
                         score_incumbents=score_incumbents, temperature=temperature)

    def not_better(self, search: Search, current: Prompt, best: Prompt | None, iteration: int) -> Prompt:
        if best is None or self.t_max == 0 or self.decay == 0:
            return current
        delta = 100 * (search.fitness(best) - search.fitness(current))
        taken = anneal_accepts(delta, iteration, search.ctx.rng, t_max=self.t_max, decay=self.decay)
        search.ctx.note("anneal", index=iteration, delta=delta, accepted=taken,
                        temperature=temperature(iteration, self.t_max, self.decay))
        return best if taken else current


class TabuSearch(HillClimbing):
    """Plum's tabu search: hill climbing whose recent iteration winners may not come back.

    Args:
        tabu_size: how many recent winners (the seed first) are barred (the reference code's 5).

    The other parameters are the common ones (see the module docstring).

    Example:
        >>> TabuSearch().tabu_size
        5
    """

    name: ClassVar[str] = "tabu"
    summary: ClassVar[str] = "Plum tabu search over phrase edits (Pan et al., 2024)"
    constraints: ClassVar[dict[str, Any]] = {**_COMMON, "tabu_size": Interval(int, 1)}

    def __init__(self, *, tabu_size: int = 5, level: Level = "phrase",
                 operators: tuple[str, ...] | str = _DEFAULT_OPERATORS, field: str = "instruction",
                 n_candidates: int = 10, max_iterations: int = 50, patience: int = 7, n_score: int = 100,
                 score_incumbents: bool = True, temperature: float = 0.7) -> None:
        self.tabu_size = tabu_size
        self._set_common(level=level, operators=operators, field=field, n_candidates=n_candidates,
                         max_iterations=max_iterations, patience=patience, n_score=n_score,
                         score_incumbents=score_incumbents, temperature=temperature)

    def run(self, search: Search) -> None:
        current, misses = search.seed, 0
        tabu: deque[str] = deque([current.id], maxlen=self.tabu_size)
        for i in self.iterations():
            children = [c for c in search.neighbours(current, self.n_candidates) if c.id not in tabu]
            best = search.fittest(children)
            if best is None:  # every neighbour barred or unusable: draw again (no patience spent)
                continue
            tabu.append(best.id)
            if search.fitness(best) > search.fitness(current):
                current, misses = best, 0
            else:
                misses += 1
            search.ctx.note("tabu", index=i, winner=best.id, current=current.id, tabu=list(tabu))
            if self.out_of_patience(search, misses):
                return


class GeneticMutation(_Plum):
    """Plum's genetic algorithm without crossover: tournament parent, best neighbour joins.

    Args:
        tournament_size: candidates drawn per tournament (the reference's 5 for this variant).

    The other parameters are the common ones (see the module docstring).

    Example:
        >>> GeneticMutation().tournament_size
        5
    """

    name: ClassVar[str] = "genetic-mutation"
    summary: ClassVar[str] = "Plum genetic algorithm, mutation only (Pan et al., 2024)"
    constraints: ClassVar[dict[str, Any]] = {**_COMMON, "tournament_size": Interval(int, 1)}

    def __init__(self, *, tournament_size: int = 5, level: Level = "phrase",
                 operators: tuple[str, ...] | str = _DEFAULT_OPERATORS, field: str = "instruction",
                 n_candidates: int = 10, max_iterations: int = 50, patience: int = 7, n_score: int = 100,
                 score_incumbents: bool = True, temperature: float = 0.7) -> None:
        self.tournament_size = tournament_size
        self._set_common(level=level, operators=operators, field=field, n_candidates=n_candidates,
                         max_iterations=max_iterations, patience=patience, n_score=n_score,
                         score_incumbents=score_incumbents, temperature=temperature)

    def run(self, search: Search) -> None:
        population, misses = [search.seed], 0
        for i in self.iterations():
            fitness = [search.fitness(p) for p in population]
            parent = population[tournament(fitness, search.ctx.rng, self.tournament_size)]
            best = search.fittest(search.neighbours(parent, self.n_candidates))
            misses = 0 if best is not None and search.fitness(best) > max(fitness) else misses + 1
            if best is not None:
                population.append(best)
            search.ctx.note("generation", index=i, parent=parent.id, child=best.id if best else None,
                            size=len(population))
            if self.out_of_patience(search, misses):
                return


class GeneticCrossover(_Plum):
    """Plum's genetic algorithm with crossover: one-point crossover, mutation, top-N survival.

    Args:
        population_size: prompts kept after each step (the reference's N_p = 10).
        n_offspring: crossover children per iteration (5).
        mutation_prob: chance that each member is mutated in an iteration (0.5).
        tournament_size: candidates drawn per tournament (2).

    The other parameters are the common ones (see the module docstring).

    Example:
        >>> GeneticCrossover().population_size
        10
    """

    name: ClassVar[str] = "genetic"
    summary: ClassVar[str] = "Plum genetic algorithm with crossover (Pan et al., 2024)"
    constraints: ClassVar[dict[str, Any]] = {
        **_COMMON, "population_size": Interval(int, 2), "n_offspring": Interval(int, 0),
        "mutation_prob": Interval(float, 0, 1), "tournament_size": Interval(int, 1)}
    #: scaled to a budget: the score set first, then the population, the crossovers and the neighbours
    #: of a mutating member (one neighbour is one mutation, the classic GA's)
    scalable: ClassVar[tuple[Scalable, ...]] = (
        Scalable("n_score", 10), Scalable("population_size", 2, stage=1), Scalable("n_offspring", 1, stage=1),
        Scalable("n_candidates", 1, stage=1))

    def __init__(self, *, population_size: int = 10, n_offspring: int = 5, mutation_prob: float = 0.5,
                 tournament_size: int = 2, level: Level = "phrase",
                 operators: tuple[str, ...] | str = _DEFAULT_OPERATORS, field: str = "instruction",
                 n_candidates: int = 10, max_iterations: int = 50, patience: int = 7, n_score: int = 100,
                 score_incumbents: bool = True, temperature: float = 0.7) -> None:
        self.population_size = population_size
        self.n_offspring = n_offspring
        self.mutation_prob = mutation_prob
        self.tournament_size = tournament_size
        self._set_common(level=level, operators=operators, field=field, n_candidates=n_candidates,
                         max_iterations=max_iterations, patience=patience, n_score=n_score,
                         score_incumbents=score_incumbents, temperature=temperature)

    def run(self, search: Search) -> None:
        population, misses = [search.seed] * self.population_size, 0
        for i in self.iterations():
            record = max(search.fitness(p) for p in population)
            population = self.survivors(search, population + self.offspring(search, population))
            mutants = [c for member in population if search.ctx.rng.random() < self.mutation_prob
                       for c in search.neighbours(member, self.n_candidates)]
            population = self.survivors(search, population + mutants)
            misses = 0 if search.fitness(population[0]) > record else misses + 1
            search.ctx.note("generation", index=i, population=[p.id for p in population])
            if self.out_of_patience(search, misses):
                return

    def children_per_iteration(self) -> tuple[float, float]:
        """``n_offspring`` crossovers, and the neighbours of the members that mutate."""
        mutants = self.population_size * self.mutation_prob * self.n_candidates
        return self.n_offspring + mutants, mutants * paraphrase_share(self.operators)

    def offspring(self, search: Search, population: list[Prompt]) -> list[Prompt]:
        """``n_offspring`` crossovers of two tournament winners, new prompts only."""
        fitness = [search.fitness(p) for p in population]
        children: list[Prompt] = []
        for _ in range(self.n_offspring):
            first = population[tournament(fitness, search.ctx.rng, self.tournament_size)]
            second = population[tournament(fitness, search.ctx.rng, self.tournament_size)]
            child = search.crossover(first, second)
            if child is not None and child not in population and child not in children:
                children.append(child)
        return children

    def survivors(self, search: Search, prompts: list[Prompt]) -> list[Prompt]:
        """The ``population_size`` fittest, best first (scored here in one batch)."""
        fitness = search.score(prompts)
        return [prompts[k] for k in top_k(fitness, self.population_size)]


class HarmonySearch(_Plum):
    """Plum's harmony search: new prompts assembled segment by segment from a harmony memory.

    Args:
        memory_size: prompts the harmony memory keeps (the reference's N_H = 10).
        n_segments: segments per harmony (ks = 5).
        hmcr: harmony memory considering rate, the chance a segment is kept as taken (0.4).
        par: pitch adjusting rate, the chance a kept segment is paraphrased (0.5).

    The other parameters are the common ones; ``n_candidates`` harmonies are made per iteration.

    Example:
        >>> HarmonySearch().hmcr
        0.4
    """

    name: ClassVar[str] = "harmony"
    summary: ClassVar[str] = "Plum harmony search over phrase edits (Pan et al., 2024)"
    constraints: ClassVar[dict[str, Any]] = {
        **_COMMON, "memory_size": Interval(int, 1), "n_segments": Interval(int, 1),
        "hmcr": Interval(float, 0, 1), "par": Interval(float, 0, 1)}

    def __init__(self, *, memory_size: int = 10, n_segments: int = 5, hmcr: float = 0.4, par: float = 0.5,
                 level: Level = "phrase", operators: tuple[str, ...] | str = _DEFAULT_OPERATORS,
                 field: str = "instruction", n_candidates: int = 10, max_iterations: int = 50, patience: int = 7,
                 n_score: int = 100, score_incumbents: bool = True, temperature: float = 0.7) -> None:
        self.memory_size = memory_size
        self.n_segments = n_segments
        self.hmcr = hmcr
        self.par = par
        self._set_common(level=level, operators=operators, field=field, n_candidates=n_candidates,
                         max_iterations=max_iterations, patience=patience, n_score=n_score,
                         score_incumbents=score_incumbents, temperature=temperature)

    def run(self, search: Search) -> None:
        memory, misses = [search.seed], 0
        for i in self.iterations():
            record = max(search.fitness(p) for p in memory)
            harmonies = [h for _ in range(self.n_candidates)
                         if (h := improvise(search, memory, self.n_segments, self.hmcr, self.par)) is not None]
            fitness = search.score(harmonies)
            misses = 0 if fitness and max(fitness) > record else misses + 1
            if self.out_of_patience(search, misses):
                return
            memory = update_memory(memory, harmonies, self.memory_size, search.score)
            search.ctx.note("memory", index=i, memory=[p.id for p in memory])

    def children_per_iteration(self) -> tuple[float, float]:
        """``n_candidates`` harmonies; a segment is paraphrased when kept and pitch-adjusted, or
        when its random edit is a paraphrase."""
        share = paraphrase_share(self.operators)
        per_segment = self.hmcr * self.par * (share > 0) + (1 - self.hmcr) * share
        return self.n_candidates, self.n_candidates * self.n_segments * per_segment


def update_memory(memory: Sequence[Prompt], harmonies: Sequence[Prompt], size: int,
                  score: Callable[[Sequence[Prompt]], list[float]]) -> list[Prompt]:
    """The ``size`` fittest of the memory and the new harmonies by ``score``, best first; a prompt
    is kept once, and of equal fitness the one already in memory stays first."""
    pool = list({p.id: p for p in [*memory, *harmonies]}.values())
    return [pool[k] for k in top_k(score(pool), size)]
