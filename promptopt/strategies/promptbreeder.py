"""PromptBreeder: task prompts and their mutation prompts evolved together by binary tournament.

Fernando et al., "Promptbreeder: Self-Referential Self-Improvement via Prompt
Evolution", ICML 2024 (arXiv:2309.16797). A unit of evolution is a task prompt
(the instruction) and a mutation prompt. The population starts as the seed and
``population_size - 1`` units made by applying a random mutation prompt and
thinking style to the problem description (the seed's instruction). Each
generation pairs every unit with another at random (a *binary tournament*): the
fitter of the pair is mutated by one operator drawn uniformly from
``operators`` (see :mod:`promptopt.strategies._breeder`: direct zero- and
first-order, EDA, EDA rank-and-index, lineage, zero- and first-order
hypermutation of the mutation prompt, Lamarckian), and with probability
``crossover_prob`` its new task prompt is then crossed with that of another
unit chosen by fitness-proportionate selection; the child overwrites the
loser. Fitness is accuracy on a minibatch of ``minibatch_size`` training
examples: a generation's children are scored together on one fresh minibatch
(the paper scores each evaluation on 100 random training examples). The fittest
unit after each generation is an *elite*: it joins its lineage's elite list and,
with ``score_elites``, is scored on all of dev, so a run the budget stops keeps it.

Defaults, scaled from the paper's so that a small budget completes
generations: population 10 (paper 50), minibatches of 10 (paper 100), 20
generations (paper 20-30), crossover probability 0.1 (paper's). With the
default choice-mode budget (1500 target calls), a two-label task and 100 dev
examples, the seed and the first population take about 400 calls, a generation
100, and each new elite's dev score 200: three to nine generations fit. Our own
short lists of mutation prompts (10) and thinking styles (10) stand in for the
paper's 100 and 39.

Where this differs from the paper: one task prompt per unit (the paper evolves
two applied in sequence), so prompt crossover, which in the paper replaces one
task prompt of the pair whole, is a one-point crossover of the two
instructions at phrase level (lineage operator ``crossover``); no few-shot
context, so no context shuffling; lineage elites are per unit as in the paper,
and EDA's near-duplicate filter compares word sequences, not BERT embeddings.

Cost drivers: per generation ``population_size / 2`` children, each one
optimizer call (two for hypermutation) and ``minibatch_size`` evaluations,
plus n_dev target calls per new elite. Needs only generation from the
optimizer; in ``choice`` answer mode the target model must also score log-probabilities.

On a set of tasks the task prompt is the shared system prompt (``ctx.text``;
see :mod:`promptopt.strategies._breeder` for the wording): each minibatch is
drawn evenly from every task, and a working-out names its task and shows the
answer in that task's own mode.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any, ClassVar

from promptopt.strategies._base import Scalable, Spend, StepPlan, Strategy
from promptopt.strategies._breeder import MUTATORS, Breeder, Unit
from promptopt.strategies._edits import split_field
from promptopt.strategies._formatting import shorten
from promptopt.strategies._operators import crossover, note_edit
from promptopt.strategies._params import Interval, NameList, OneOf, parse_names
from promptopt.strategies._selection import roulette
from promptopt.strategies._task_sets import shown_answer, task_namer

if TYPE_CHECKING:
    from promptopt.context import Context
    from promptopt.evaluator import EvalResult
    from promptopt.prompt import Prompt
    from promptopt.types import Example

__all__ = ["PromptBreeder", "mutator_names"]

_LETTER = re.compile(r"[^\W\d_]")
_WORKINGS_KEPT = 3


def mutator_names(value: Any) -> tuple[str, ...]:
    """Operator names from a list or a comma-separated string, in order, each once (ValueError if bad)."""
    return parse_names(value, MUTATORS, "operators")


class PromptBreeder(Strategy):
    """PromptBreeder's self-referential evolution of (task prompt, mutation prompt) units.

    Args:
        population_size: units in the population (10; paper 50).
        n_generations: generations at most (20); each is ``population_size // 2`` tournaments.
        minibatch_size: training examples a generation's children are scored on (10; paper 100).
        operators: mutation operators drawn uniformly, a list or comma-separated (all eight).
        crossover_prob: chance that a child's task prompt is crossed with another unit's (0.1).
        temperature: optimizer sampling temperature (0.7).
        score_elites: score each generation's fittest unit on dev (True; n_dev calls per new elite).

    Example:
        >>> PromptBreeder(operators="first-order,lamarckian").get_params()["minibatch_size"]
        10
    """

    name: ClassVar[str] = "promptbreeder"
    supports_task_sets: ClassVar[bool] = True
    summary: ClassVar[str] = "PromptBreeder: co-evolved task and mutation prompts, binary tournament (Fernando et al.)"
    constraints: ClassVar[dict[str, Any]] = {
        "population_size": Interval(int, 2), "n_generations": Interval(int, 0), "minibatch_size": Interval(int, 1),
        "operators": NameList(tuple(MUTATORS), "operators"), "crossover_prob": Interval(float, 0, 1),
        "temperature": Interval(float, 0, 2), "score_elites": OneOf((True, False))}
    #: scaled to a budget: the minibatch first, then the population
    scalable: ClassVar[tuple[Scalable, ...]] = (Scalable("minibatch_size", 5), Scalable("population_size", 4, stage=1))

    def __init__(self, *, population_size: int = 10, n_generations: int = 20, minibatch_size: int = 10,
                 operators: str | tuple[str, ...] = MUTATORS, crossover_prob: float = 0.1,
                 temperature: float = 0.7, score_elites: bool = True) -> None:
        self.population_size = population_size
        self.n_generations = n_generations
        self.minibatch_size = minibatch_size
        self.operators = operators
        self.crossover_prob = crossover_prob
        self.temperature = temperature
        self.score_elites = score_elites

    def finalist_gap(self, n_dev: int) -> int:
        """Units are scored on training minibatches, and on all of dev or not at all."""
        return 0

    def step_plan(self, n_dev: int, n_train: int, *, n_tasks: int = 1) -> StepPlan:
        """One generation: ``population_size // 2`` tournaments, each child one optimizer call (two
        for a hypermutation) scored on a minibatch, and the elite scored on dev. Before it, the
        first population is made and scored, and its elite scored on dev."""
        batch, elite = min(self.minibatch_size, n_train), 1 if self.score_elites else 0
        names = mutator_names(self.operators)
        calls_per_child = 1 + sum(name.endswith("-hyper") for name in names) / len(names)
        children = self.population_size // 2
        return StepPlan("generation", Spend(example_evals=children * batch + elite * n_dev,
                                            optimizer_calls=children * calls_per_child, new_full=elite),
                        paper_steps=self.n_generations,
                        setup=Spend(example_evals=self.population_size * batch + elite * n_dev,
                                    optimizer_calls=self.population_size - 1, new_full=elite),
                        finish=Spend() if elite else Spend(example_evals=n_dev, new_full=1))

    def optimize(self, ctx: Context) -> Sequence[Prompt]:
        seed = ctx.seed_prompt
        if not ctx.train:
            ctx.note("stop", reason="no training examples to score units on")
            return [seed]
        breeder = Breeder(ctx, ctx.text(seed), self.temperature)
        units = self.initial_units(breeder)
        elite = self.crown(ctx, units)
        for generation in range(1, self.n_generations + 1):
            if breeder.capped:
                break
            children = self.tournaments(breeder, units)
            scored = self.score(ctx, [child for _, child in children])
            for (loser, _), unit in zip(children, scored, strict=True):
                units[loser] = unit
            elite = self.crown(ctx, units)
            ctx.note("generation", index=generation, units=[u.prompt.id for u in units],
                     fitness=[u.fitness for u in units], mutation_prompts=[u.mutation_prompt for u in units])
        return [elite]

    def initial_units(self, breeder: Breeder) -> list[Unit]:
        """The seed and mutants of the problem description, scored; a reply with no instruction
        leaves the seed's task prompt in its unit."""
        ctx, seed = breeder.ctx, breeder.ctx.seed_prompt
        drafts = [Unit(seed, ctx.rng.choice(breeder.mutation_prompts))]  # the seed's unit draws one too
        for _ in range(self.population_size - 1):
            mutant = breeder.initial(seed)
            prompt = ctx.with_text(seed, mutant.instruction) if mutant.instruction else seed
            if prompt.id != seed.id:
                ctx.record(prompt, [seed], "init")
            drafts.append(Unit(prompt, mutant.mutation_prompt))
        return self.score(ctx, drafts)

    def tournaments(self, breeder: Breeder, units: list[Unit]) -> list[tuple[int, Unit]]:
        """Random pairs; the fitter of each (the first of equals) breeds, its child replaces the other."""
        rng, children = breeder.ctx.rng, []
        order = rng.sample(range(len(units)), len(units))
        for first, second in zip(order[0::2], order[1::2], strict=False):  # an odd one out sits out
            winner, loser = (first, second) if units[first].fitness >= units[second].fitness else (second, first)
            child = self.breed(breeder, units, winner)
            if breeder.capped:
                break
            if child is not None:
                children.append((loser, child))
        return children

    def breed(self, breeder: Breeder, units: Sequence[Unit], winner: int) -> Unit | None:
        """A mutated copy of ``units[winner]`` (and, sometimes, crossed over); None if the reply was unusable."""
        ctx, parent = breeder.ctx, units[winner]
        allowed = breeder.applicable(mutator_names(self.operators), parent, units)
        if not allowed:
            return None
        operator = ctx.rng.choice(allowed)
        mutant = breeder.mutate(operator, parent, units)
        if mutant.instruction is None:
            return None
        prompt = ctx.with_text(parent.prompt, mutant.instruction)
        ctx.record(prompt, mutant.parents, operator)
        ctx.note("breed", prompt_id=prompt.id, operator=operator, winner=parent.prompt.id,
                 mutation_prompt=mutant.mutation_prompt,
                 mutation_prompt_changed=mutant.mutation_prompt != parent.mutation_prompt)
        if len(units) > 1 and ctx.rng.random() < self.crossover_prob:
            prompt = self.cross(ctx, prompt, [u for k, u in enumerate(units) if k != winner])
        return Unit(prompt, mutant.mutation_prompt, elites=parent.elites)

    @staticmethod
    def cross(ctx: Context, prompt: Prompt, others: Sequence[Unit]) -> Prompt:
        """A one-point phrase-level crossover with a unit drawn by fitness-proportionate selection;
        ``prompt`` itself when the child would equal a parent or have no letter."""
        other = others[roulette([u.fitness for u in others], ctx.rng)[0]].prompt
        longest = max(len(split_field(p, ctx.text_field, "phrase")) for p in (prompt, other))
        if longest == 0:
            return prompt
        edited = crossover(prompt, other, ctx.text_field, "phrase", ctx.rng.randrange(longest))
        child = edited.prompt
        if child.id in (prompt.id, other.id) or not _LETTER.search(ctx.text(child)):
            return prompt
        if ctx.record(child, [prompt, other], "crossover"):
            note_edit(ctx, child, [edited.edit], operator="crossover")
        return child

    def score(self, ctx: Context, units: Sequence[Unit]) -> list[Unit]:
        """The units with their fitness and correct working-outs on one fresh training minibatch."""
        if not units:
            return []
        minibatch = ctx.sample_across_tasks(ctx.train, self.minibatch_size, lambda ex: ex.id)
        results = {r.prompt.id: r for r in ctx.evaluate([u.prompt for u in units], minibatch)}
        return [replace(u, fitness=results[u.prompt.id].mean,
                        workings=_workings(ctx, results[u.prompt.id], minibatch)) for u in units]

    def crown(self, ctx: Context, units: list[Unit]) -> Prompt:
        """Mark the fittest unit (the first of equals) as an elite of its lineage; score it on dev."""
        best = max(range(len(units)), key=lambda k: (units[k].fitness, -k))
        unit = units[best]
        if not unit.elites or unit.elites[-1].id != unit.prompt.id:
            units[best] = replace(unit, elites=(*unit.elites, unit.prompt))
        ctx.note("elite", prompt_id=unit.prompt.id, fitness=unit.fitness)
        if self.score_elites:
            ctx.evaluate([unit.prompt])
        return unit.prompt


def _workings(ctx: Context, result: EvalResult, examples: Sequence[Example]) -> tuple[str, ...]:
    """Up to three correct working-outs: the input and what the model answered (its reply in
    generate mode, the chosen label in choice mode); on a set of tasks each names its task."""
    inputs = {ex.id: ex.input for ex in examples}
    task_of = task_namer(ctx)
    found = []
    for res in result.examples:
        if res.score < 1.0 or res.answer is None:
            continue
        task = f"Task: {task_of(res.example_id)}\n" if task_of else ""
        answer = shown_answer(ctx, res)
        found.append(f"{task}Input: {shorten(inputs[res.example_id])}\nAnswer: {shorten(answer, 200)}")
    return tuple(found[:_WORKINGS_KEPT])
