"""GEPA: reflective prompt evolution with Pareto-based candidate selection.

Agrawal et al., "GEPA: Reflective Prompt Evolution Can Outperform Reinforcement
Learning" (arXiv:2507.19457), Algorithms 1 and 2. The search keeps a pool of
candidates scored on every example of a Pareto set (here the dev split, or a
seeded subset of it). Each iteration:

1. **select**: draw a parent from the Pareto front, the candidates that are best
   on at least one Pareto example (dominated ones removed), with probability
   proportional to how many examples each leads (Algorithm 2);
2. **reflect**: run the parent on a minibatch of training examples and show the
   optimizer model the instruction and, per example, the input, the model's
   output and the metric's feedback; it writes a new instruction (Section 3.2);
3. **gate**: score the child on the same minibatch and keep it only if its
   total is strictly higher than the parent's; only then is it scored on the
   whole Pareto set and added to the pool (Algorithm 1);
4. **merge** (GEPA+Merge, off by default): after an accepted child, at most
   ``max_merge_invocations`` times, combine two front candidates from different
   lineages sentence by sentence against their common ancestor (see
   :func:`~promptopt.strategies._pareto.merge_instructions`), keep the merge if it
   scores at least as well as both parents on a small stratified Pareto subsample,
   then score it on the whole Pareto set (Section 3.3).

It stops at ``max_iterations`` or when the budget is spent, and returns the
front sorted by mean Pareto score. Single-instruction prompts: only the
instruction is rewritten (system text, demos and template are kept).

Cost drivers: per iteration ``minibatch_size`` target evaluations for the parent
(free when repeated) and again for the child, one optimizer call, and for each
accepted child one evaluation per Pareto example (``n_pareto``). Needs only
generation from the optimizer; in ``choice`` answer mode the target must score
log-probabilities.

On a set of tasks it rewrites the shared system prompt (``ctx.text``): every
epoch of minibatches and the Pareto subset (``n_pareto``) take examples from
the tasks in turn, the reflection asks for a system prompt and names each
example's task (an example's answer is shown in its own task's mode), and the
merge combines system prompts sentence by sentence.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from promptopt.evaluator import EvalResult
from promptopt.prompt import Prompt
from promptopt.strategies._base import Spend, StepPlan, Strategy
from promptopt.strategies._formatting import shorten
from promptopt.strategies._params import Interval, OneOf
from promptopt.strategies._pareto import ParetoPool, merge_instructions
from promptopt.strategies._parsing import clean_prompt_text, parse_tagged
from promptopt.strategies._task_sets import answer_mode_of, describe_task, task_namer, worded

if TYPE_CHECKING:
    from promptopt.context import Context
    from promptopt.types import Example

__all__ = ["GEPA"]

REFLECT_PROMPT = """You are improving the instruction that an assistant follows for a task.
Task: {description}

The assistant was given this instruction:
```
{instruction}
```

Here is how it did on some examples: the input, what the assistant answered, and feedback on the answer.

{examples}

Study the feedback. Work out what the assistant got wrong, and what general rules or facts about \
this task would have led it to the right answers, including details specific to these inputs. \
Then write a new, complete instruction for the assistant that fixes these mistakes and keeps what \
already works.

Write only the new instruction, between ``` marks."""

# Room for a detailed instruction, not for rambling; the paper does not bound the reply.
REFLECT_TOKENS = 400
# Pareto examples a merged candidate is first tested on (the reference implementation's default).
MERGE_SUBSAMPLE = 5
_FENCE_LANG = ("text", "txt", "markdown", "md", "plaintext", "instruction")


class GEPA(Strategy):
    """Genetic-Pareto reflective prompt evolution (GEPA), with the paper's defaults.

    Args:
        minibatch_size: training examples per reflection and acceptance test
            (3 in the paper's experiments and the reference implementation).
        n_pareto: Pareto-set size, a seeded subset of dev; None uses all of dev
            (the paper splits its training data into feedback and Pareto sets).
        max_iterations: iterations to run; None runs until the budget is spent (or,
            our addition, until a whole epoch of minibatches was already perfect,
            which would otherwise loop for free).
        skip_perfect_score: skip a parent that is already perfect on its minibatch
            (nothing to reflect on; the reference implementation's default).
        use_merge: also run the system-aware merge (GEPA+Merge); off by default,
            as plain GEPA is the paper's main configuration.
        max_merge_invocations: accepted merges at most (the reference implementation's default: 5).
        temperature: optimizer sampling temperature (not given in the paper).

    Example:
        >>> GEPA(minibatch_size=4).get_params()["minibatch_size"]
        4
    """

    name: ClassVar[str] = "gepa"
    supports_task_sets: ClassVar[bool] = True
    summary: ClassVar[str] = ("reflective prompt evolution: rewrite from metric feedback, accept only "
                              "minibatch improvements, Pareto-front parents (Agrawal et al., 2025)")
    constraints: ClassVar[dict[str, Any]] = {
        "minibatch_size": Interval(int, 1), "n_pareto": (Interval(int, 1), OneOf((None,))),
        "max_iterations": (Interval(int, 0), OneOf((None,))), "skip_perfect_score": OneOf((True, False)),
        "use_merge": OneOf((True, False)), "max_merge_invocations": Interval(int, 0),
        "temperature": Interval(float, 0, 2),
    }

    def __init__(self, *, minibatch_size: int = 3, n_pareto: int | None = None,
                 max_iterations: int | None = None, skip_perfect_score: bool = True,
                 use_merge: bool = False, max_merge_invocations: int = 5, temperature: float = 0.7) -> None:
        self.minibatch_size = minibatch_size
        self.n_pareto = n_pareto
        self.max_iterations = max_iterations
        self.skip_perfect_score = skip_perfect_score
        self.use_merge = use_merge
        self.max_merge_invocations = max_merge_invocations
        self.temperature = temperature

    def optimize(self, ctx: Context) -> Sequence[Prompt]:
        pareto_set = self.pareto_set(ctx)
        pool = ParetoPool([ex.id for ex in pareto_set])
        pool.add(ctx.seed_prompt, _scores(ctx.evaluate([ctx.seed_prompt], pareto_set)[0]))
        if not ctx.train:
            ctx.note("stop", reason="no training examples to reflect on")
            return pool.finalists()
        sampler = _EpochSampler(ctx.train, self.minibatch_size, ctx.rng,
                                order=lambda items: ctx.sample_across_tasks(items, len(items), lambda ex: ex.id))
        merges = _MergeSchedule()
        perfect_streak = 0
        for iteration in itertools.islice(itertools.count(), self.max_iterations):
            ctx.note("iteration", index=iteration,
                     front={pool.prompts[k].id: n for k, n in pool.lead_counts().items()})
            if merges.due(self.use_merge) and self.merge(ctx, pool, pareto_set, merges):
                continue
            outcome = self.reflect(ctx, pool, sampler.next(), pareto_set)
            merges.after(outcome == "accepted", self.max_merge_invocations)
            perfect_streak = perfect_streak + 1 if outcome == "perfect" else 0
            if perfect_streak >= sampler.batches_per_epoch:  # a whole epoch with nothing to fix
                ctx.note("stop", reason="every minibatch of an epoch was already perfect")
                break
        return pool.finalists()

    def step_plan(self, n_dev: int, n_train: int, *, n_tasks: int = 1) -> StepPlan:
        """One iteration whose child is accepted: parent and child on a training minibatch, one
        reflection, the child on the Pareto set (all of dev unless ``n_pareto`` is smaller). Merges
        (``use_merge``) are not counted."""
        pareto = n_dev if self.n_pareto is None else min(self.n_pareto, n_dev)
        return StepPlan("iteration", Spend(example_evals=2 * min(self.minibatch_size, n_train) + pareto,
                                           optimizer_calls=1, new_full=1 if pareto == n_dev else 0),
                        paper_steps=self.max_iterations)

    def finalist_gap(self, n_dev: int) -> int:
        """Candidates are scored on the Pareto set, ``n_pareto`` of the dev examples."""
        return 0 if self.n_pareto is None else max(0, n_dev - self.n_pareto)

    def pareto_set(self, ctx: Context) -> list[Example]:
        """The dev split, or a seeded subset of ``n_pareto`` dev examples."""
        if self.n_pareto is None or self.n_pareto >= len(ctx.dev):
            return list(ctx.dev)
        return ctx.sample_across_tasks(ctx.dev, self.n_pareto, lambda ex: ex.id)

    # -- reflective mutation (Algorithm 1) ---------------------------------------------------
    def reflect(self, ctx: Context, pool: ParetoPool, minibatch: Sequence[Example],
                pareto_set: Sequence[Example]) -> str:
        """One reflective mutation; returns accepted / rejected / perfect / skipped."""
        k = pool.select(ctx.rng)
        parent = pool.prompts[k]
        before = ctx.evaluate([parent], minibatch)[0]
        if self.skip_perfect_score and all(e.score >= 1.0 for e in before.examples):
            ctx.note("perfect", parent=parent.id)
            return "perfect"
        text = self.propose_instruction(ctx, parent, before, minibatch)
        if text is None:
            return "skipped"
        child = ctx.with_text(parent, text)
        ctx.record(child, [parent], "reflect")
        if pool.index(child) is not None:
            ctx.note("reject", prompt_id=child.id, parent=parent.id, reason="already in the pool")
            return "rejected"
        after = ctx.evaluate([child], minibatch)[0]
        old, new = _total(before), _total(after)
        if new <= old:  # strict improvement on the same minibatch, or the child is dropped
            ctx.note("reject", prompt_id=child.id, parent=parent.id, minibatch=old, child_minibatch=new)
            return "rejected"
        scores = _scores(ctx.evaluate([child], pareto_set)[0])
        pool.add(child, scores, parents=[k])
        ctx.note("accept", prompt_id=child.id, parent=parent.id, minibatch=old, child_minibatch=new,
                 pareto_mean=pool.mean(len(pool) - 1))
        return "accepted"

    def propose_instruction(self, ctx: Context, parent: Prompt, result: EvalResult,
                            minibatch: Sequence[Example]) -> str | None:
        """Ask the optimizer for a new instruction from the parent's outputs and feedback."""
        reply = ctx.propose(worded(REFLECT_PROMPT, ctx.text_field).format(
            description=describe_task(ctx), instruction=ctx.text(parent),
            examples=_format_feedback(result, minibatch, show_output=lambda i: answer_mode_of(ctx, i) == "generate",
                                      task_of=task_namer(ctx))),
            temperature=self.temperature, max_tokens=REFLECT_TOKENS)[0]
        text, how = _parse_instruction(reply)
        if text is None:
            ctx.skip("reflect", f"no usable instruction ({how})", reply)
            return None
        if text == ctx.text(parent):
            ctx.skip("reflect", "instruction unchanged", reply)
            return None
        return text

    # -- system-aware merge (GEPA+Merge) -----------------------------------------------------
    def merge(self, ctx: Context, pool: ParetoPool, pareto_set: Sequence[Example],
              merges: _MergeSchedule) -> bool:
        """Try one merge; True when a merge was tested (accepted or not), so the
        iteration's reflective mutation is skipped as in the reference implementation."""
        merges.last_accepted = False
        found = self.find_merge(ctx, pool, merges)
        if found is None:
            return False
        i, j, child = found
        ids = set(pool.merge_subsample(i, j, ctx.rng, MERGE_SUBSAMPLE))
        subsample = [ex for ex in pareto_set if ex.id in ids]
        parent_best = max(sum(pool.scores_by_id(p)[x] for x in ids) for p in (i, j))
        new = _total(ctx.evaluate([child], subsample)[0])
        if new < parent_best:
            ctx.note("reject", prompt_id=child.id, operator="merge", subsample=new, parents_best=parent_best)
            return True
        pool.add(child, _scores(ctx.evaluate([child], pareto_set)[0]), parents=[i, j])
        merges.accepted()
        ctx.note("accept", prompt_id=child.id, operator="merge", subsample=new, parents_best=parent_best,
                 pareto_mean=pool.mean(len(pool) - 1))
        return True

    def find_merge(self, ctx: Context, pool: ParetoPool,
                   merges: _MergeSchedule) -> tuple[int, int, Prompt] | None:
        """Two front candidates with a common ancestor whose merge is new, recorded; or None."""
        for _ in range(10):
            triplet = pool.merge_triplet(ctx.rng, merges.tried)
            if triplet is None:
                return None
            merges.tried.add(triplet)
            i, j, a = triplet
            # the merge reads each prompt's instruction sentences: give it the text under search there
            text = merge_instructions(*(Prompt(ctx.text(pool.prompts[k])) for k in (a, i, j)))
            child = ctx.with_text(pool.prompts[i], text) if text else None
            if child is not None and pool.index(child) is None:
                ctx.record(child, [pool.prompts[i], pool.prompts[j]], "merge")
                ctx.note("merge", prompt_id=child.id, parents=[pool.prompts[i].id, pool.prompts[j].id],
                         ancestor=pool.prompts[a].id)
                return i, j, child
        return None


@dataclass
class _MergeSchedule:
    """When to merge, as in the reference engine: a merge becomes due after each
    accepted reflective child (while fewer than ``max_merge_invocations`` merges
    were accepted) and is tried at the start of the next iteration."""

    due_count: int = 0
    accepted_count: int = 0
    last_accepted: bool = False
    tried: set[tuple[int, int, int]] = field(default_factory=set)

    def due(self, use_merge: bool) -> bool:
        return use_merge and self.due_count > 0 and self.last_accepted

    def after(self, accepted: bool, max_invocations: int) -> None:
        self.last_accepted = accepted
        if accepted and self.accepted_count < max_invocations:
            self.due_count += 1

    def accepted(self) -> None:
        self.due_count -= 1
        self.accepted_count += 1


class _EpochSampler:
    """Minibatches that go through the training set in a fresh seeded order each
    epoch (the reference implementation's default batch sampler); ``order``, if
    given, draws that order instead of ``rng`` (on a set of tasks the tasks take turns in it)."""

    def __init__(self, items: Sequence[Example], size: int, rng: random.Random,
                 order: Callable[[Sequence[Example]], list[Example]] | None = None) -> None:
        self.items, self.size, self.rng = list(items), min(size, len(items)), rng
        self.order = order or (lambda items: self.rng.sample(items, len(items)))
        self.batches_per_epoch = -(-len(self.items) // self.size)
        self._queue: list[Example] = []

    def next(self) -> list[Example]:
        if len(self._queue) < self.size:
            order = self.order(self.items)
            # top the last batch up with the next epoch's first examples, never a repeat in one batch
            self._queue += [ex for ex in order if ex not in self._queue[: self.size]]
        batch, self._queue = self._queue[: self.size], self._queue[self.size:]
        return batch


def _total(result: EvalResult) -> float:
    return sum(e.score for e in result.examples)


def _scores(result: EvalResult) -> dict[str, float]:
    return {e.example_id: e.score for e in result.examples}


def _format_feedback(result: EvalResult, examples: Sequence[Example], *, show_output: Callable[[str], bool],
                     task_of: Callable[[str], str] | None = None) -> str:
    """Numbered blocks: input, the model's answer (raw output where ``show_output(example id)``,
    i.e. in generate mode), feedback; with ``task_of`` (on a set of tasks) each names its task."""
    by_id = {ex.id: ex for ex in examples}
    blocks = []
    for n, res in enumerate(result.examples, 1):
        answer = shorten(res.output, 400) if show_output(res.example_id) else str(res.answer)
        feedback = res.feedback or ("correct" if res.score >= 1.0 else f"score {res.score:.2f}")
        head = f"Example {n} (task {task_of(res.example_id)})" if task_of else f"Example {n}"
        blocks.append(f"{head}\nInput: {shorten(by_id[res.example_id].input, 300)}\n"
                      f"Assistant's answer: {answer or '(nothing)'}\nFeedback: {feedback}")
    return "\n\n".join(blocks)


def _parse_instruction(reply: str) -> tuple[str | None, str]:
    """The instruction in the first ``` block, else between <START>/<END>, else the whole reply."""
    fenced = parse_tagged(reply, "```", "```")
    if fenced:
        first, _, rest = fenced[0].partition("\n")
        text, how = (rest if first.strip().lower() in _FENCE_LANG and rest.strip() else fenced[0]), "fenced"
    else:
        tagged = parse_tagged(reply)
        text, how = (tagged[0], "tagged") if tagged else (_untagged(reply), "loose")
    return clean_prompt_text(text), how


def _untagged(reply: str) -> str:
    for mark in ("```", "<START>", "<END>"):
        reply = reply.replace(mark, "")
    return reply
