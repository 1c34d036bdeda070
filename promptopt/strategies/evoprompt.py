"""EvoPrompt: an LLM as the crossover and mutation operators of a GA or a differential evolution.

Guo et al., "Connecting Large Language Models with Evolutionary Algorithms
Yields Powerful Prompt Optimizers", ICLR 2024 (arXiv:2309.08532); structure
and defaults checked against the authors' code (github.com/beeevita/EvoPrompt).
The instruction evolves; the prompt's other fields stay the seed's.

* ``evoprompt-ga`` — each iteration makes ``population_size`` children. For
  each, two parents are drawn by roulette wheel (probability proportional to
  fitness), and one optimizer call, following a worked example, first crosses
  the two instructions over and then mutates the result, ending with the child
  between ``<prompt>`` and ``</prompt>`` (the paper's Figure 1). The
  ``population_size`` fittest of parents and children survive (the reference
  code's ``topk``).
* ``evoprompt-de`` — each iteration visits every member as the *base*. Two
  other members are the donors; the parts where their instructions differ are
  found here (a word-level diff, :func:`differing_parts`), and only those parts
  are shown to the optimizer, which mutates them, puts them into the current
  best instruction and crosses the result over with the base (the paper's
  Figure 2, whose first step, finding the differences, the LLM did itself). The
  child replaces the base when it is fitter; the best is updated as soon as a
  child beats it (as the reference code does).

The initial population is the seed and ``population_size - 1`` paraphrases of
it from the optimizer (one call; the paper starts from manual prompts and their
paraphrases, "para_topk"); duplicates and unusable replies are dropped, so it
may start smaller. Fitness is accuracy on a score set of ``n_score`` training
examples drawn once (the reference code scores on 100 development examples; our
dev split is the Run's selection split). New bests are scored on dev as they are
found (``score_incumbents``), so a run the budget stops keeps them.

Defaults are the reference code's: population 10, 10 iterations, optimizer
temperature 0.5, roulette parents and top-N survival (GA), the best as the
third donor (DE). Template text is our own, with the paper's steps.

Cost drivers: ``population_size`` optimizer calls and ``population_size``
new prompts per iteration, each scored on ``n_score`` examples, plus n_dev
target calls per new best. Needs only generation from the optimizer; in
``choice`` answer mode the target model must also score log-probabilities.

On a set of tasks the shared system prompt evolves (``ctx.text``): the score set
is drawn evenly from every task and the requests speak of system prompts.
"""

from __future__ import annotations

import re
from abc import abstractmethod
from collections.abc import Sequence
from difflib import SequenceMatcher
from typing import TYPE_CHECKING, Any, ClassVar

from promptopt.strategies._base import Scalable, Spend, StepPlan, Strategy
from promptopt.strategies._edits import split
from promptopt.strategies._params import Interval, OneOf
from promptopt.strategies._parsing import clean_prompt_text, parse_tagged
from promptopt.strategies._plum_search import Search
from promptopt.strategies._selection import roulette, top_k
from promptopt.strategies._task_sets import worded

if TYPE_CHECKING:
    from promptopt.context import Context
    from promptopt.prompt import Prompt

__all__ = ["EvoPromptDE", "EvoPromptGA", "de_request", "differing_parts", "final_instruction"]

PARAPHRASE_PROMPT = """Say this instruction in other words, keeping what it asks for. Reply with the new \
instruction only.

Instruction: {instruction}

New instruction:"""

GA_PROMPT = """Make a better instruction in two steps: cross two instructions over into one, then change \
that one a little. Give the final instruction between <prompt> and </prompt>.

Instruction 1: Summarize the article in one sentence.
Instruction 2: Write a short headline that gives the main point of the text.
Step 1, crossed over: Give the main point of the article in one short sentence.
Step 2, changed: <prompt>State the central point of the article in a single short sentence.</prompt>

Instruction 1: {first}
Instruction 2: {second}
Step 1, crossed over:"""

DE_PROMPT = """Make a better instruction in four steps.
Step 1. Look at the parts where instruction A and instruction B differ (listed below).
Step 2. Change each of those parts a little.
Step 3. Put the changed parts into instruction C where they fit.
Step 4. Mix the result with the base instruction; give the final instruction between <prompt> and </prompt>.

Parts where A and B differ:
"in one sentence" / "as a short headline"
"the article" / "the text"
Instruction C: Summarize the main point of the article for a busy reader.
Base instruction: Tell me what the text is about.
Step 2. "in one sentence" -> "in a single line"; "as a short headline" -> "as a brief title"; \
"the article" -> "the news story"; "the text" -> "the passage"
Step 3. Summarize the main point of the news story in a single line for a busy reader.
Step 4. <prompt>Tell a busy reader what the news story is about in a single line.</prompt>

Parts where A and B differ:
{parts}
Instruction C: {best}
Base instruction: {base}
Step 2."""

INSTRUCTION_TOKENS = 120
EVOLVE_TOKENS = 320
OPERATOR_INIT = "llm-paraphrase"
OPERATOR_GA = "llm-crossover-mutation"
OPERATOR_DE = "llm-differential"


def differing_parts(first: str, second: str) -> list[tuple[str, str]]:
    """The word spans where two instructions differ, in order: a span of ``first`` and what
    stands in its place in ``second`` (either may be empty).

    Example:
        >>> differing_parts("Classify the review as good or bad.", "Classify the tweet as good or bad.")
        [('review', 'tweet')]
    """
    one, two = split(first, "word").pieces, split(second, "word").pieces
    matcher = SequenceMatcher(None, one, two, autojunk=False)
    return [(" ".join(one[i1:i2]), " ".join(two[j1:j2]))
            for tag, i1, i2, j1, j2 in matcher.get_opcodes() if tag != "equal"]


def de_request(base: str, first: str, second: str, best: str, *, text_field: str = "instruction") -> str:
    """The DE optimizer request: only the parts where the donors ``first`` and ``second`` differ,
    the current best and the base (speaking of system prompts when ``text_field`` is ``"system"``).

    Example:
        >>> request = de_request("Label it.", "Label a review now.", "Label a tweet now.", "Say what it is.")
        >>> print(request.split("Parts where A and B differ:")[-1].split("Instruction C:")[0].strip())
        "review" / "tweet"
    """
    parts = differing_parts(first, second)
    listed = "\n".join(f'"{a}" / "{b}"' if a and b else f'"{a or b}" / (nothing)' for a, b in parts)
    return worded(DE_PROMPT, text_field).format(parts=listed or "(none: A and B are the same)", best=best, base=base)


def final_instruction(reply: str, last_step: int) -> str | None:
    """The final instruction in a reply: the last ``<prompt>...</prompt>`` span (as the reference
    code reads it); for a reply that does not close the tag or has none, the text after an opening
    tag, else after the last step's label, else the reply's first line.

    Example:
        >>> final_instruction("Mixed.\\nStep 2, changed: Say the label only.", last_step=2)
        'Say the label only.'
    """
    tagged = parse_tagged(reply, "<prompt>", "</prompt>")
    step = re.search(rf"^\s*Step {last_step}\b[^\n:]*[:.]\s*(.+)$", reply, re.MULTILINE)
    tries = [tagged[-1]] if tagged else [
        reply.rsplit("<prompt>", 1)[1].strip().split("\n")[0] if "<prompt>" in reply else None,
        step.group(1) if step else None,
        next((line for line in reply.splitlines() if line.strip()), None)]
    return next((text for text in map(_clean, tries) if text is not None), None)


def _clean(text: str | None) -> str | None:
    text = text.replace("<prompt>", "").replace("</prompt>", "").strip().strip("*_").strip() if text else ""
    return clean_prompt_text(text) if text else None


def _llm_child(ctx: Context, parents: Sequence[Prompt], reply: str, operator: str, last_step: int) -> Prompt | None:
    """The instruction an optimizer reply holds, in the first parent's other fields, recorded with
    its parents; None (and a ``skip`` event) when there is none, or when it repeats a parent."""
    text = final_instruction(reply, last_step)
    if text is None:
        ctx.skip(operator, "no usable instruction", reply)
        return None
    child = ctx.with_text(parents[0], text)
    if any(child.id == p.id for p in parents):
        ctx.skip(operator, "the reply repeats a parent", reply)
        return None
    ctx.record(child, list({p.id: p for p in parents}.values()), operator)
    return child


class _EvoPrompt(Strategy):
    """What the GA and the DE share: the initial population, the score set, the parameters."""

    constraints: ClassVar[dict[str, Any]] = {
        "population_size": Interval(int, 2), "max_iterations": Interval(int, 0), "n_score": Interval(int, 1),
        "temperature": Interval(float, 0, 2), "score_incumbents": OneOf((True, False))}
    #: scaled to a budget: the score set first, then the population (two parents for the GA's crossover)
    scalable: ClassVar[tuple[Scalable, ...]] = (Scalable("n_score", 10), Scalable("population_size", 2, stage=1))

    def __init__(self, *, population_size: int = 10, max_iterations: int = 10, n_score: int = 100,
                 temperature: float = 0.5, score_incumbents: bool = True) -> None:
        self.population_size = population_size
        self.max_iterations = max_iterations
        self.n_score = n_score
        self.temperature = temperature
        self.score_incumbents = score_incumbents

    def finalist_gap(self, n_dev: int) -> int:
        """Candidates are scored on training examples, and on all of dev or not at all."""
        return 0

    def step_plan(self, n_dev: int, n_train: int, *, n_tasks: int = 1) -> StepPlan:
        """One iteration: ``population_size`` children, one optimizer call each, scored on the score
        set, and a new best scored on dev. Before it, the seed and its paraphrases are scored."""
        scored, size = min(self.n_score, n_train), self.population_size
        best = 1 if self.score_incumbents else 0  # the new best of a batch, scored on dev as found
        return StepPlan("iteration", Spend(example_evals=size * scored + best * n_dev, optimizer_calls=size,
                                           new_full=best),
                        paper_steps=self.max_iterations,
                        setup=Spend(example_evals=size * scored + best * n_dev, optimizer_calls=size - 1,
                                    new_full=best),
                        finish=Spend() if best else Spend(example_evals=n_dev, new_full=1))

    def optimize(self, ctx: Context) -> Sequence[Prompt]:
        search = Search(ctx, field=ctx.text_field, level="word", operators=(), n_score=self.n_score,
                        score_incumbents=self.score_incumbents, temperature=self.temperature)
        if search.ready():
            population = self.initial_population(search)
            if population is not None:
                self.evolve(search, population)
        return [search.best]

    def initial_population(self, search: Search) -> list[Prompt] | None:
        """The seed and its paraphrases, scored; None when the optimizer's cap refused them."""
        ctx, seed = search.ctx, search.seed
        replies = ctx.propose_within_cap(worded(PARAPHRASE_PROMPT, ctx.text_field).format(instruction=ctx.text(seed)),
                                         n=self.population_size - 1, temperature=self.temperature,
                                         max_tokens=INSTRUCTION_TOKENS)
        if replies is None:
            return None
        population = [seed]
        for reply in replies:
            child = _llm_child(ctx, [seed], reply, OPERATOR_INIT, last_step=0)
            if child is not None and child not in population:
                population.append(child)
        self.note_population(search, population, 0)
        return population

    def propose(self, search: Search, request: str) -> str | None:
        """One optimizer reply, or None once its call cap refuses."""
        replies = search.ctx.propose_within_cap(request, temperature=self.temperature, max_tokens=EVOLVE_TOKENS)
        return replies[0] if replies else None

    @staticmethod
    def note_population(search: Search, population: Sequence[Prompt], index: int) -> None:
        fitness = search.score(population)
        search.ctx.note("generation", index=index, population=[p.id for p in population], fitness=fitness)

    @abstractmethod
    def evolve(self, search: Search, population: list[Prompt]) -> None:
        """``max_iterations`` generations (the budget or the optimizer's cap may stop them)."""


class EvoPromptGA(_EvoPrompt):
    """EvoPrompt's genetic algorithm: roulette parents, LLM crossover then mutation, top-N survival.

    Args:
        population_size: prompts kept, and children made, per iteration (10).
        max_iterations: iterations at most (10).
        n_score: score-set size in training examples (100).
        temperature: optimizer sampling temperature (0.5).
        score_incumbents: score each new best on dev as it is found (True).

    Example:
        >>> EvoPromptGA().get_params()["population_size"]
        10
    """

    name: ClassVar[str] = "evoprompt-ga"
    supports_task_sets: ClassVar[bool] = True
    summary: ClassVar[str] = "EvoPrompt GA: LLM crossover + mutation, roulette parents, top-N (Guo et al., 2024)"

    def evolve(self, search: Search, population: list[Prompt]) -> None:
        ctx = search.ctx
        for index in range(1, self.max_iterations + 1):
            fitness = search.score(population)
            children: list[Prompt] = []
            stopped = False
            for _ in range(self.population_size):
                first, second = (population[k] for k in roulette(fitness, ctx.rng, k=2))
                reply = self.propose(search, worded(GA_PROMPT, ctx.text_field).format(first=ctx.text(first),
                                                                                      second=ctx.text(second)))
                if reply is None:
                    stopped = True
                    break
                child = _llm_child(ctx, [first, second], reply, OPERATOR_GA, last_step=2)
                if child is not None and child not in population and child not in children:
                    children.append(child)
            population = self.survivors(search, population + children)
            self.note_population(search, population, index)
            if stopped:
                return

    def survivors(self, search: Search, prompts: list[Prompt]) -> list[Prompt]:
        """The ``population_size`` fittest, best first; of equals, the earlier (parents before children)."""
        pool = list({p.id: p for p in prompts}.values())
        return [pool[k] for k in top_k(search.score(pool), self.population_size)]


class EvoPromptDE(_EvoPrompt):
    """EvoPrompt's differential evolution: mutate the donors' differences, add them to the best,
    cross over with the base; a fitter child replaces its base.

    Args:
        population_size: prompts in the population (10).
        max_iterations: iterations at most (10); each visits every member.
        n_score: score-set size in training examples (100).
        temperature: optimizer sampling temperature (0.5).
        score_incumbents: score each new best on dev as it is found (True).

    Example:
        >>> EvoPromptDE(population_size=4).population_size
        4
    """

    name: ClassVar[str] = "evoprompt-de"
    supports_task_sets: ClassVar[bool] = True
    summary: ClassVar[str] = "EvoPrompt DE: LLM mutates the donors' differences onto the best (Guo et al., 2024)"
    #: the base and two donors: a population of three at least
    scalable: ClassVar[tuple[Scalable, ...]] = (Scalable("n_score", 10), Scalable("population_size", 3, stage=1))

    def evolve(self, search: Search, population: list[Prompt]) -> None:
        ctx = search.ctx
        best = population[top_k(search.score(population), 1)[0]]
        for index in range(1, self.max_iterations + 1):
            following = list(population)
            for j, base in enumerate(population):
                first, second = self.donors(ctx, population, j)
                reply = self.propose(search, de_request(ctx.text(base), ctx.text(first), ctx.text(second),
                                                        ctx.text(best), text_field=ctx.text_field))
                if reply is None:
                    self.note_population(search, following, index)
                    return
                child = _llm_child(ctx, [base, first, second, best], reply, OPERATOR_DE, last_step=4)
                if child is not None and search.score([child])[0] > search.fitness(base):
                    following[j] = child
                    best = child if search.fitness(child) > search.fitness(best) else best
            population = following
            self.note_population(search, population, index)

    @staticmethod
    def donors(ctx: Context, population: Sequence[Prompt], base: int) -> tuple[Prompt, Prompt]:
        """Two members other than the base, drawn without replacement (the base itself fills in
        while the population has fewer than three members)."""
        others = [p for k, p in enumerate(population) if k != base]
        if len(others) >= 2:
            first, second = ctx.rng.sample(others, 2)
            return first, second
        return population[base], (others or [population[base]])[0]
