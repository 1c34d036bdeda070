"""SPRIG: a system prompt assembled from components by edit search, across many tasks.

Zhang et al., 2024, "SPRIG: Improving Large Language Model Performance by System Prompt
Optimization" (arXiv:2410.14826). A system prompt is a list of components (whole
sentences: a role, a style, a chain-of-thought cue, ...), and one system prompt is
searched for a whole set of tasks. Each iteration, as the reference code runs it
(github.com/orange0629/prompting, ``scripts/sprig.py``):

1. draw a minibatch: ``examples_per_task`` training examples of every task (10);
2. for every prompt in the beam, make every one-edit neighbour: **delete** each
   component, **swap** each pair, **paraphrase** each component (the paper's "rephrase",
   10 rewrites each) and **add** each of the ``n_add`` (60) components with the highest
   upper confidence bound at each position;
3. score every candidate on the minibatch (the mean of its per-task means; the reference
   pools the examples, the same number when every task gives as many);
4. credit the components: adding one earns it child minus parent, deleting one earns it
   parent minus child; the UCB ranking of step 2 reads these rewards
   (mean + sqrt(2 ln N / n), components never tried first);
5. keep the ``beam_size`` (10) best as the next beam.

The search starts from the seed (the reference starts from an empty system prompt; the
seed here is the target model's default unless ``system=`` says otherwise) and runs until
the budget ends or, at most, the reference's 5000 iterations (``max_iterations=None``; the
step plan prices it as a loop the budget ends, as 5000 iterations outlast any budget it fits). The beam is offered
to the Run as it changes and returned at the end, so the Run scores it on all of dev.
On one task the same search edits the task's instruction (``ctx.text_field``). Events:
``sprig_iteration`` (beam, candidates, UCB order), ``sprig_paraphrases`` (a component's
rewrites; every other reply is a ``skip``) and ``sprig_beam`` (the kept prompts, the rewards).

Where this departs from the reference, and why:

* the pool is ours (``_sprig_components.py``): a few dozen components in the paper's nine
  categories, not its ~300 (``categories=`` picks some);
* paraphrases come from the optimizer model (``ctx.propose``), not a Pegasus paraphraser;
  like Pegasus's beam search, which gives the same 10 rewrites of a text every time, a
  component is paraphrased once per run;
* parents are scored again on each minibatch and compete with their children, so the beam
  never loses its best (the reference keeps only the children); a component's reward is
  then a paired difference on the same examples (the reference subtracts the parent's score
  on an earlier sample);
* a component already in a prompt is not added to it again: each parent adds the ``n_add``
  components of highest bound it does not hold;
* candidates are scored in chunks of ``EVAL_CHUNK`` and the leaders (the beam, at least
  ``OFFERED`` prompts) are offered after each, so a budget stop keeps the best found even
  when a parent leads a narrow beam; adds come in UCB order, best component first;
* the first iteration adds the ``n_add`` components ranked first, as every later one does
  (the reference adds the whole pool while no component has a reward yet);
* ``substitute`` (a pool component in place of one) is available but off by default, as
  the paper has four operators; the reference's later reward-model filter is not built.

Cost drivers: per iteration and beam prompt of c components, (c + 1) · min(``n_add``, pool)
adds, c deletes, c(c - 1)/2 swaps and up to c · ``n_paraphrases`` paraphrases, each scored
on ``examples_per_task`` examples of every task, plus c · ``n_paraphrases`` optimizer calls
for components not paraphrased before. On a budget too small for that, a run shrinks
``examples_per_task``, then ``beam_size``, ``n_add`` and ``n_paraphrases`` (``scalable``). Needs
only generation (in choice mode, scoring).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from itertools import combinations
from typing import TYPE_CHECKING, Any, ClassVar

from promptopt.strategies._base import Scalable, Spend, StepPlan, Strategy
from promptopt.strategies._edits import Units, split
from promptopt.strategies._operators import (
    PARAPHRASE_PROMPT,
    PARAPHRASE_TOKENS,
    Edit,
    add,
    clean_paraphrase,
    delete,
    note_edit,
    paraphrase,
    swap,
)
from promptopt.strategies._params import Interval, NameList, OneOf, parse_names
from promptopt.strategies._sprig_components import CATEGORIES, components_of
from promptopt.strategies._ucb_arms import UCBArms

if TYPE_CHECKING:
    from promptopt.context import Context
    from promptopt.prompt import Prompt
    from promptopt.types import Example

__all__ = ["EVAL_CHUNK", "REFERENCE_ITERATIONS", "SPRIG", "SPRIG_OPERATORS", "ComponentEdit", "component_edits"]

#: the edit operators SPRIG knows; the paper's four are the default
SPRIG_OPERATORS = ("add", "delete", "swap", "substitute", "paraphrase")
_DEFAULT_OPERATORS = ("add", "delete", "swap", "paraphrase")
#: candidates scored per evaluation call: large enough for a backend to batch, small enough that a
#: budget stop loses little
EVAL_CHUNK = 16
#: leaders offered to the Run at least, whatever the beam: a stop then completes a new one on dev
#: when a parent (the seed, often) leads
OFFERED = 3
#: the parent size (components) the step plan assumes: prompts grow as the search adds
PLAN_COMPONENTS = 3
#: iterations when ``max_iterations`` is None: the reference's count, so a budget without a target cap ends
REFERENCE_ITERATIONS = 5000


@dataclass(frozen=True)
class ComponentEdit:
    """One neighbour of a prompt's components.

    Attributes:
        units: the child's components.
        edit: what changed (operator, positions, components before and after).
        credit: the components the child's score change is credited to, each with a sign:
            +1 for one added (child minus parent), -1 for one removed (parent minus child).
    """

    units: Units
    edit: Edit
    credit: tuple[tuple[str, int], ...] = ()


def component_edits(units: Units, operators: Iterable[str], *, ranked: Sequence[str] = (),
                    paraphrases: Mapping[str, Sequence[str]] | None = None) -> list[ComponentEdit]:
    """Every one-edit neighbour of ``units`` (a prompt's components), in the reference's order:
    deletes, swaps, substitutes, paraphrases, then adds.

    Args:
        units: the parent's components.
        operators: which of :data:`SPRIG_OPERATORS` to apply.
        ranked: the components to add (or substitute), best first; those already present are skipped.
        paraphrases: rewrites of components, by component text.

    Example:
        >>> units = split("Be brief. Think step by step.", "sentence")
        >>> [e.edit.operator for e in component_edits(units, ["delete", "swap"])]
        ['delete', 'delete', 'swap']
    """
    names, pieces = set(operators), units.pieces
    out: list[ComponentEdit] = []
    if "delete" in names:
        out += [ComponentEdit(*delete(units, i), ((pieces[i], -1),)) for i in range(len(pieces))]
    if "swap" in names:
        out += [ComponentEdit(*swap(units, i, j)) for i, j in combinations(range(len(pieces)), 2)]
    fresh = [c for c in ranked if c not in pieces]
    if "substitute" in names:
        for i, old in enumerate(pieces):
            for new in fresh:
                child, edit = _replaced(units, i, new)
                out.append(ComponentEdit(child, replace(edit, operator="substitute"), ((new, 1), (old, -1))))
    if "paraphrase" in names:
        for i, old in enumerate(pieces):
            out += [ComponentEdit(*_replaced(units, i, new)) for new in (paraphrases or {}).get(old, ())
                    if new != old and new not in pieces]
    if "add" in names:
        out += [ComponentEdit(*add(units, position, new), ((new, 1),))
                for new in fresh for position in range(len(pieces) + 1)]
    return out


def _replaced(units: Units, index: int, new: str) -> tuple[Units, Edit]:
    done = paraphrase(units, index, lambda _old: new)
    if done is None:
        raise ValueError(f"component {index} is already {new!r}")
    return done


class SPRIG(Strategy):
    """Edit search over system-prompt components with UCB-ranked additions (SPRIG), with the
    reference code's defaults.

    Args:
        beam_size: prompts kept after each iteration.
        examples_per_task: training examples of each task in an iteration's minibatch.
        n_add: components (highest upper confidence bound first) tried at every position.
        n_paraphrases: optimizer rewrites asked for per component.
        operators: edit operators, a list or comma-separated names of :data:`SPRIG_OPERATORS`.
        categories: component categories of the pool (``_sprig_components.CATEGORIES``).
        exploration: weight of the UCB bonus (1: the reference's sqrt(2 ln N / n)).
        max_iterations: iterations; None runs until the budget ends, at most the reference's
            :data:`REFERENCE_ITERATIONS` (5000).
        temperature: optimizer sampling temperature for paraphrases.

    Example:
        >>> SPRIG(beam_size=2).get_params()["n_add"]
        60
    """

    name: ClassVar[str] = "sprig"
    supports_task_sets: ClassVar[bool] = True
    summary: ClassVar[str] = ("system prompt built from a component pool: add / delete / swap / paraphrase "
                              "edits, UCB-ranked components, beam over tasks (Zhang et al., 2024)")
    constraints: ClassVar[dict[str, Any]] = {
        "beam_size": Interval(int, 1), "examples_per_task": Interval(int, 1), "n_add": Interval(int, 0),
        "n_paraphrases": Interval(int, 1), "operators": NameList(SPRIG_OPERATORS, "operators"),
        "categories": NameList(CATEGORIES, "categories"), "exploration": Interval(float, 0),
        "max_iterations": (Interval(int, 0), OneOf((None,))), "temperature": Interval(float, 0, 2),
    }
    #: scaled to a budget: the minibatch first, then the beam and what each of its prompts tries together
    scalable: ClassVar[tuple[Scalable, ...]] = (
        Scalable("examples_per_task", 5), Scalable("beam_size", 1, stage=1), Scalable("n_add", 2, stage=1),
        Scalable("n_paraphrases", 1, stage=1))

    def __init__(self, *, beam_size: int = 10, examples_per_task: int = 10, n_add: int = 60,
                 n_paraphrases: int = 10, operators: tuple[str, ...] | str = _DEFAULT_OPERATORS,
                 categories: tuple[str, ...] | str = CATEGORIES, exploration: float = 1.0,
                 max_iterations: int | None = None, temperature: float = 0.7) -> None:
        self.beam_size = beam_size
        self.examples_per_task = examples_per_task
        self.n_add = n_add
        self.n_paraphrases = n_paraphrases
        self.operators = operators
        self.categories = categories
        self.exploration = exploration
        self.max_iterations = max_iterations
        self.temperature = temperature

    def optimize(self, ctx: Context) -> Sequence[Prompt]:
        search = _Search(ctx, self)
        beam = [ctx.seed_prompt]
        iterations = REFERENCE_ITERATIONS if self.max_iterations is None else self.max_iterations
        for iteration in range(iterations):
            minibatch = ctx.sample_across_tasks(ctx.train, self.examples_per_task * len(ctx.task_names),
                                                lambda ex: ex.id)
            ranked = search.arms.ranked()
            children = search.neighbours(beam, ranked)
            ctx.note("sprig_iteration", index=iteration, beam=[p.id for p in beam], candidates=len(children),
                     examples=len(minibatch), ucb_order=ranked)
            if not children:  # nothing left to try (e.g. swaps alone on one component)
                break
            beam = search.select(beam, children, minibatch)
            ctx.note("sprig_beam", index=iteration, beam=[{"prompt_id": p.id, "score": search.scores[p.id]}
                                                          for p in beam], arms=search.arms.table())
        return beam

    def finalist_gap(self, n_dev: int) -> int:
        """Candidates are scored on training minibatches: a leader may lack all of dev."""
        return n_dev

    def step_plan(self, n_dev: int, n_train: int, *, n_tasks: int = 1) -> StepPlan:
        """One iteration with a full beam of parents of ``PLAN_COMPONENTS`` components, each prompt
        scored on a minibatch of ``examples_per_task`` examples of each of the ``n_tasks`` tasks (all
        ``n_train`` when there are fewer); the beam is scored on dev at the end."""
        c, names = PLAN_COMPONENTS, parse_names(self.operators, SPRIG_OPERATORS, "operators")
        pool = min(self.n_add, len(components_of(parse_names(self.categories, CATEGORIES, "categories"))))
        per_parent = {"add": (c + 1) * pool, "delete": c, "swap": c * (c - 1) // 2, "substitute": c * pool,
                      "paraphrase": c * self.n_paraphrases}
        children = self.beam_size * sum(per_parent[name] for name in names)
        examples = min(self.examples_per_task * n_tasks, n_train)
        optimizer = self.beam_size * c * self.n_paraphrases if "paraphrase" in names else 0
        return StepPlan("iteration", Spend(example_evals=(self.beam_size + children) * examples,
                                           optimizer_calls=optimizer),
                        paper_steps=self.max_iterations,
                        finish=Spend(example_evals=self.beam_size * n_dev, new_full=self.beam_size))


@dataclass(frozen=True)
class _Child:
    prompt: Prompt
    parent: Prompt
    change: ComponentEdit


class _Search:
    """One run's state: each candidate's components, the components' rewards, the paraphrases made."""

    def __init__(self, ctx: Context, strategy: SPRIG) -> None:
        self.ctx, self.strategy = ctx, strategy
        self.operators = parse_names(strategy.operators, SPRIG_OPERATORS, "operators")
        pool = components_of(parse_names(strategy.categories, CATEGORIES, "categories"))
        seed = ctx.seed_prompt
        self.units: dict[str, Units] = {seed.id: split(ctx.text(seed), "sentence")}
        # ties between components never tried are broken in a seeded order, not the pool's; the seed's
        # own sentences come last, as a parent holding them cannot add them
        self.arms = UCBArms([*ctx.sample(pool, len(pool)), *self.units[seed.id].pieces], c=strategy.exploration)
        self.arm_of: dict[str, str] = {}  # a paraphrase is credited to the component it rewrote
        self.paraphrases: dict[str, tuple[str, ...]] = {}
        self.can_propose = True
        self.scores: dict[str, float] = {}
        ctx.record(seed, operator="seed")

    # -- candidates ------------------------------------------------------------------------
    def neighbours(self, beam: Sequence[Prompt], ranked: Sequence[str]) -> list[_Child]:
        """Every one-edit neighbour of the beam's prompts, each adding the first ``n_add`` of the
        ``ranked`` components it does not hold. Two edits may make the same prompt (it is scored
        once); each is credited, as in the reference."""
        out = []
        for parent in beam:
            units = self.units[parent.id]
            fresh = [c for c in ranked if c not in units.pieces][: self.strategy.n_add]
            for change in component_edits(units, self.operators, ranked=fresh,
                                          paraphrases=self._paraphrases(units.pieces)):
                child = self.ctx.with_text(parent, change.units.join())
                self.units.setdefault(child.id, change.units)
                if self.ctx.record(child, [parent], change.edit.operator):
                    note_edit(self.ctx, child, [replace(change.edit, field=self.ctx.text_field)])
                out.append(_Child(child, parent, change))
        return out

    def _paraphrases(self, components: Sequence[str]) -> dict[str, tuple[str, ...]]:
        if "paraphrase" not in self.operators:
            return {}
        for component in components:
            if component not in self.paraphrases and self.can_propose:
                self.paraphrases[component] = self._ask_paraphrases(component)
        return {c: self.paraphrases[c] for c in components if c in self.paraphrases}

    def _ask_paraphrases(self, component: str) -> tuple[str, ...]:
        replies = self.ctx.propose_within_cap(PARAPHRASE_PROMPT.format(unit=component),
                                              n=self.strategy.n_paraphrases, temperature=self.strategy.temperature,
                                              max_tokens=PARAPHRASE_TOKENS)
        if replies is None:  # the optimizer's cap: go on with the edits that need no model
            self.can_propose = False
            return ()
        texts = []
        for reply in replies:  # each reply is a rewrite (listed in the event below) or a logged skip
            text = clean_paraphrase(reply, component)
            if text is None:
                self.ctx.skip("paraphrase", "no usable paraphrase", reply)
            elif text == component:
                self.ctx.skip("paraphrase", "the component unchanged", reply)
            else:
                texts.append(text)
                self.arm_of.setdefault(text, self.arm_of.get(component, component))
        self.ctx.note("sprig_paraphrases", component=component, rewrites=texts)
        return tuple(dict.fromkeys(texts))

    # -- scoring and selection ----------------------------------------------------------------
    def select(self, beam: Sequence[Prompt], children: Sequence[_Child], minibatch: Sequence[Example]) -> list[Prompt]:
        """The next beam: the best of parents and children on ``minibatch`` (parents win ties)."""
        ctx = self.ctx
        for parent, res in zip(beam, ctx.evaluate(beam, minibatch), strict=True):
            self.scores[parent.id] = res.mean
        made: dict[str, list[_Child]] = {}
        for child in children:
            made.setdefault(child.prompt.id, []).append(child)
        pool = list(beam)
        self._credit([c for p in beam for c in made.pop(p.id, [])])  # an edit that gives back a parent
        fresh = [edits[0].prompt for edits in made.values()]
        for start in range(0, len(fresh), EVAL_CHUNK):
            chunk = fresh[start:start + EVAL_CHUNK]
            for prompt, res in zip(chunk, ctx.evaluate(chunk, minibatch), strict=True):
                self.scores[prompt.id] = res.mean
                self._credit(made[prompt.id])
            pool += chunk
            ctx.offer(self._best(pool, max(self.strategy.beam_size, OFFERED)))
        ctx.offer(self._best(pool, max(self.strategy.beam_size, OFFERED)))
        return self._best(pool, self.strategy.beam_size)

    def _best(self, pool: Sequence[Prompt], k: int) -> list[Prompt]:
        order = sorted(range(len(pool)), key=lambda i: (-self.scores[pool[i].id], i))
        return [pool[i] for i in order[:k]]

    def _credit(self, children: Sequence[_Child]) -> None:
        """Each edit's components earn the child's score minus its parent's (sign per component)."""
        for child in children:
            delta = self.scores[child.prompt.id] - self.scores[child.parent.id]
            for component, sign in child.change.credit:
                self.arms.update(self.arm_of.get(component, component), sign * delta)
