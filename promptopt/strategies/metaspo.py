"""MetaSPO: a system prompt meta-learned over a set of tasks, with their user prompts tuned inside.

Choi et al., 2025, "System Prompt Optimization with Meta-Learning" (arXiv:2505.09666). A
bilevel search: the system prompt should work with whatever user prompt a task comes
with, so it is learned while each task's user prompt (its instruction) is being
optimised beneath it. Each iteration, as the reference code runs it
(github.com/Dozi01/MetaSPO, ``src/methods/metaspo/metaspo.py``):

1. **inner loop**, for every task: ``n_user_candidates`` (3) times, the optimizer
   analyses the errors of the task's best user prompt (``errors_per_user``, 3, shown)
   and rewrites it; every rewrite is scored on the task's training examples under the
   current system prompt, and the task keeps its ``user_top_k`` (3) best user prompts;
2. **outer loop**: ``n_system_candidates`` (9) times, the optimizer analyses the errors of
   every task's best user prompt under the current system prompt (``errors_per_task``, 2,
   from each task, shuffled together) and writes a new system prompt; each candidate is
   scored with every task's kept user prompts, and one replaces the current system prompt
   when its mean of per-task means (each task: the mean over its user prompts) is higher.

The training examples are ``examples_per_task`` (50) per task, drawn once (the reference's
``train_size``); the optimizer samples at temperature 1.0 and the loop runs ``iterations``
(3) times, the reference's defaults. The analysis and the rewrite are APO's critique and
edit meta-prompts (``apo.critique``, ``apo.edit_from_critique``): the same two steps, our
wording. Errors shown to the optimizer name their task.

What the Run scores, and the user of the result gets, is the system prompt alone: each task
keeps its own seed instruction, as a new task would come with its own user prompt. Every
system prompt that was accepted is offered as it is found and returned (newest first), and
the Run picks among them and the seed on dev. The tuned user prompts are a means, recorded
in ``metaspo_user_prompts`` events with their training scores (and the seed instruction's,
under the same system prompt); they are not in the Result. A candidate carrying a task's
tuned instruction is asked on that task's examples only: on a set, a candidate's non-empty
instruction replaces the member's own (``TaskSet.prompt_for``).

Where this departs from the reference, and why:

* the meta score is the mean over tasks of each task's mean over its user prompts, so every
  task weighs the same (the paper's objective is an expectation over tasks); the reference
  pools every (task, user prompt) pair, which weighs a task by how many user prompts it keeps
  (the same number when every task keeps as many);
* the system prompt's rewrite is shown the errors beside the analysis, as APO's edit is (the
  reference's system writer reads the analysis alone);
* a task whose best user prompt makes no error on its training examples gets no rewrite
  (nothing to analyse), and when no task has one, no system prompt is proposed;
* a rewrite equal to a prompt already held is dropped, as a ``skip`` event, not scored again;
* scores are the task's own metric (the reference's metrics are per task too).

Events: ``metaspo_inner`` (per task: the rewrites proposed, the user prompts kept with their
scores), ``metaspo_outer`` (each system prompt tried with its meta score, the one kept) and,
at the end, ``metaspo_user_prompts``. Each optimizer reply is a critique, a rewrite listed
there, or a ``skip``.

Needs a set of at least two tasks (``min_tasks``): on one task there is nothing to
meta-learn across, and the Run refuses before any call.

Cost drivers, per iteration on k tasks of n = ``examples_per_task`` examples: inner loop
k · ``n_user_candidates`` · (2 optimizer calls + n evaluations); outer loop
``n_system_candidates`` · (2 optimizer calls + k · ``user_top_k`` · n evaluations). On a budget
too small for that, a run shrinks ``examples_per_task``, then ``n_system_candidates``,
``n_user_candidates`` and ``user_top_k`` (``scalable``); ``iterations`` is kept.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, ClassVar

from promptopt.prompt import Prompt
from promptopt.strategies._base import Scalable, Spend, StepPlan, Strategy
from promptopt.strategies._formatting import format_results
from promptopt.strategies._params import Interval
from promptopt.strategies._task_sets import describe_task, task_namer
from promptopt.strategies.apo import critique, edit_from_critique
from promptopt.tasks._set import TaskSet

if TYPE_CHECKING:
    from promptopt.context import Context
    from promptopt.evaluator import EvalResult, ExampleResult
    from promptopt.types import Example

__all__ = ["MetaSPO", "meta_score"]

USER_DESCRIPTION = ('the instruction (user prompt) of the task "{task}": {description}; it is asked after '
                    'this system prompt: "{system}"')
SYSTEM_DESCRIPTION = "{tasks}\nEach task's instruction now:\n{instructions}"


def meta_score(scores: dict[str, list[float]]) -> float:
    """The mean over tasks of each task's mean score over its user prompts.

    Example:
        >>> meta_score({"a": [1.0, 0.0], "b": [1.0]})
        0.75
    """
    means = [sum(v) / len(v) for v in scores.values() if v]
    return sum(means) / len(means) if means else 0.0


class MetaSPO(Strategy):
    """Bilevel system-prompt optimisation over a set of tasks (MetaSPO), with the reference code's defaults.

    Args:
        iterations: inner-then-outer loop iterations.
        n_system_candidates: system prompts proposed per outer loop.
        n_user_candidates: user prompts proposed per task per inner loop.
        user_top_k: user prompts each task keeps.
        examples_per_task: training examples per task every prompt is scored on (drawn once).
        errors_per_task: errors of each task shown when a system prompt is written.
        errors_per_user: errors shown when a task's user prompt is rewritten.
        temperature: optimizer sampling temperature.

    Example:
        >>> MetaSPO().get_params()["n_system_candidates"]
        9
    """

    name: ClassVar[str] = "metaspo"
    supports_task_sets: ClassVar[bool] = True
    min_tasks: ClassVar[int] = 2
    summary: ClassVar[str] = ("bilevel meta-learning of a system prompt over a set of tasks: each task's user "
                              "prompt tuned inside, system prompts written from errors across tasks "
                              "(Choi et al., 2025)")
    constraints: ClassVar[dict[str, Any]] = {
        "iterations": Interval(int, 0), "n_system_candidates": Interval(int, 0),
        "n_user_candidates": Interval(int, 0), "user_top_k": Interval(int, 1),
        "examples_per_task": Interval(int, 1), "errors_per_task": Interval(int, 1),
        "errors_per_user": Interval(int, 1), "temperature": Interval(float, 0, 2),
    }
    #: scaled to a budget: each task's examples first, then the proposals of both loops and the user
    #: prompts a system prompt is scored with (two, so it is still judged across user prompts)
    scalable: ClassVar[tuple[Scalable, ...]] = (
        Scalable("examples_per_task", 10), Scalable("n_system_candidates", 2, stage=1),
        Scalable("n_user_candidates", 1, stage=1), Scalable("user_top_k", 2, stage=1))

    def __init__(self, *, iterations: int = 3, n_system_candidates: int = 9, n_user_candidates: int = 3,
                 user_top_k: int = 3, examples_per_task: int = 50, errors_per_task: int = 2,
                 errors_per_user: int = 3, temperature: float = 1.0) -> None:
        self.iterations = iterations
        self.n_system_candidates = n_system_candidates
        self.n_user_candidates = n_user_candidates
        self.user_top_k = user_top_k
        self.examples_per_task = examples_per_task
        self.errors_per_task = errors_per_task
        self.errors_per_user = errors_per_user
        self.temperature = temperature

    def optimize(self, ctx: Context) -> Sequence[Prompt]:
        # the Run refuses fewer than ``min_tasks`` tasks before any call (``check_task_count``)
        bilevel = _Bilevel(ctx, self)
        accepted = [ctx.seed_prompt]
        for iteration in range(self.iterations):
            bilevel.inner_loop(iteration)
            if bilevel.outer_loop(iteration):
                accepted.append(bilevel.system_prompt)
                ctx.offer(accepted[::-1])
        bilevel.note_user_prompts()
        return accepted[::-1]

    def finalist_gap(self, n_dev: int) -> int:
        """Candidates are scored on training examples: an accepted system prompt may lack all of dev."""
        return n_dev

    def step_plan(self, n_dev: int, n_train: int, *, n_tasks: int = 1) -> StepPlan:
        """The costliest iteration (inner and outer loop) on ``n_tasks`` tasks (two, the fewest it
        searches, when fewer are given) sharing the ``n_train`` training examples equally; each task's
        seed prompt is scored once first, and each accepted system prompt on dev at the end. Kept user
        prompts carry over, so a system prompt is scored with the most of them in the last iteration."""
        tasks = max(n_tasks, self.min_tasks)
        n = min(self.examples_per_task, max(1, n_train // tasks))
        kept = min(self.user_top_k, 1 + self.iterations * self.n_user_candidates)
        inner = tasks * self.n_user_candidates
        evals = inner * n + self.n_system_candidates * tasks * kept * n
        return StepPlan("iteration", Spend(example_evals=evals,
                                           optimizer_calls=2 * (inner + self.n_system_candidates)),
                        paper_steps=self.iterations, setup=Spend(example_evals=tasks * n),
                        finish=Spend(example_evals=self.iterations * n_dev, new_full=self.iterations))


class _Bilevel:
    """The current system prompt and, per task, the user prompts kept under it with their results."""

    def __init__(self, ctx: Context, strategy: MetaSPO) -> None:
        assert isinstance(ctx.task, TaskSet)
        self.ctx, self.strategy = ctx, strategy
        self.system = ctx.text(ctx.seed_prompt)
        self.seeds = {m.name: m.task.seed_prompt.instruction for m in ctx.task.members}
        self.descriptions = {m.name: m.task.description or m.name for m in ctx.task.members}
        by_task: dict[str, list[Example]] = {name: [] for name in ctx.task_names}
        for ex in ctx.train:
            by_task[ctx.task_of(ex.id)].append(ex)
        self.examples = {name: ctx.sample(exs, strategy.examples_per_task) for name, exs in by_task.items()}
        self.by_id = {ex.id: ex for exs in self.examples.values() for ex in exs}
        # by task and prompt: the prompt of a task that keeps its seed instruction is the same for every task
        self.results: dict[tuple[str, str], EvalResult] = {}
        ctx.record(ctx.seed_prompt, operator="seed")
        self.users = {name: [self.seeds[name]] for name in ctx.task_names}
        for name in ctx.task_names:
            self._score(self.system, name, self.users[name])

    @property
    def system_prompt(self) -> Prompt:
        return self.candidate(self.system)

    def candidate(self, system: str) -> Prompt:
        """The prompt the Run scores: the seed with ``system`` as its system prompt."""
        return self.ctx.with_text(self.ctx.seed_prompt, system)

    # -- prompts and scores -------------------------------------------------------------------
    def prompt(self, system: str, task: str, instruction: str) -> Prompt:
        """The candidate a task's examples are asked with: the system prompt alone when the task keeps
        its seed instruction (so it is the very prompt the Run scores), else with the instruction."""
        if instruction == self.seeds[task]:
            return self.candidate(system)
        return self.candidate(system).with_instruction(instruction)

    def _score(self, system: str, task: str, instructions: Sequence[str]) -> list[float]:
        prompts = [self.prompt(system, task, i) for i in instructions]
        results = self.ctx.evaluate(prompts, self.examples[task])
        for res in results:
            self.results[task, res.prompt.id] = res
        return [r.mean for r in results]

    def result(self, system: str, task: str, instruction: str) -> EvalResult:
        """The scores of ``system`` with ``instruction`` on ``task``'s examples (scored before)."""
        return self.results[task, self.prompt(system, task, instruction).id]

    def _errors(self, task: str, instruction: str) -> list[ExampleResult]:
        return list(self.result(self.system, task, instruction).errors)

    # -- inner loop: each task's user prompts -------------------------------------------------
    def inner_loop(self, iteration: int) -> None:
        for task in self.ctx.task_names:
            best, proposed = self.users[task][0], []
            for _ in range(self.strategy.n_user_candidates):
                new = self._rewrite_user(task, best)
                if new is None:
                    continue
                if new in self.users[task]:
                    self.ctx.skip("user-rewrite", "a user prompt the task already holds", new)
                    continue
                proposed.append(new)
                self.ctx.record(self.prompt(self.system, task, new), [self.prompt(self.system, task, best)],
                                "user-rewrite")
                self.users[task].append(new)
                self._score(self.system, task, [new])
            self._keep_best(task)
            self.ctx.note("metaspo_inner", iteration=iteration, task=task, proposed=proposed,
                          user_prompts=self._shown(task))

    def _rewrite_user(self, task: str, instruction: str) -> str | None:
        errors = self._errors(task, instruction)
        if not errors:
            return None
        shown = format_results(self.ctx.sample(errors, self.strategy.errors_per_user), self.by_id,
                               task_of=task_namer(self.ctx))
        description = USER_DESCRIPTION.format(task=task, description=self.descriptions[task], system=self.system)
        return self._critique_and_edit(instruction, shown, description)

    def _critique_and_edit(self, text: str, errors: str, description: str) -> str | None:
        temperature = self.strategy.temperature
        reasons = critique(self.ctx, text, errors, description=description, n=1, temperature=temperature)
        if not reasons:
            return None
        edits = edit_from_critique(self.ctx, text, errors, reasons[0], description=description, n=1,
                                   temperature=temperature)
        return edits[0] if edits else None

    def _keep_best(self, task: str) -> None:
        scores = {i: self.result(self.system, task, i).mean for i in self.users[task]}
        ranked = sorted(self.users[task], key=lambda i: -scores[i])  # stable: the earlier of equals first
        self.users[task] = ranked[: self.strategy.user_top_k]

    def _shown(self, task: str) -> list[dict[str, Any]]:
        return [{"instruction": i, "score": self.result(self.system, task, i).mean}
                for i in self.users[task]]

    # -- outer loop: the system prompt -------------------------------------------------------
    def outer_loop(self, iteration: int) -> bool:
        """Propose system prompts from the current one's errors across tasks; keep the best by the
        mean of per-task means over the kept user prompts. True when the system prompt changed."""
        proposals = []
        for _ in range(self.strategy.n_system_candidates):  # all from the current one, as the reference
            new = self._rewrite_system()
            if new is None:
                continue
            if new == self.system or new in proposals:
                self.ctx.skip("system-rewrite", "the current system prompt or one proposed already", new)
            else:
                proposals.append(new)
        best, best_score, tried = self.system, self._meta_score(self.system), []
        for system in proposals:
            self._record_system(system)
            score = meta_score({t: self._score(system, t, self.users[t]) for t in self.ctx.task_names})
            tried.append({"prompt_id": self.candidate(system).id, "meta_score": score})
            if score > best_score:
                best, best_score = system, score
        changed = best != self.system
        self.system = best
        for task in self.ctx.task_names:
            self._keep_best(task)
        self.ctx.note("metaspo_outer", iteration=iteration, candidates=tried, system_id=self.system_prompt.id,
                      meta_score=best_score, changed=changed)
        return changed

    def _record_system(self, system: str) -> None:
        """A proposed system prompt, and each pairing of it with a task's kept user prompt."""
        candidate = self.candidate(system)
        self.ctx.record(candidate, [self.system_prompt], "system-rewrite")
        for task in self.ctx.task_names:
            for instruction in self.users[task]:
                if instruction != self.seeds[task]:
                    self.ctx.record(self.prompt(system, task, instruction),
                                    [candidate, self.prompt(self.system, task, instruction)], "with-user-prompt")

    def _meta_score(self, system: str) -> float:
        return meta_score({t: [self.result(system, t, i).mean for i in self.users[t]]
                           for t in self.ctx.task_names})

    def _rewrite_system(self) -> str | None:
        errors = []
        for task in self.ctx.task_names:
            errors += self.ctx.sample(self._errors(task, self.users[task][0]), self.strategy.errors_per_task)
        if not errors:
            return None
        self.ctx.rng.shuffle(errors)
        instructions = "\n".join(f'- {t}: "{self.users[t][0]}"' for t in self.ctx.task_names)
        description = SYSTEM_DESCRIPTION.format(tasks=describe_task(self.ctx), instructions=instructions)
        shown = format_results(errors, self.by_id, task_of=task_namer(self.ctx))
        return self._critique_and_edit(self.system, shown, description)

    # -- the record ---------------------------------------------------------------------------
    def note_user_prompts(self) -> None:
        """Each task's tuned user prompts under the final system prompt, with the seed instruction's
        score beside them when it was scored there (nothing is spent for it)."""
        tasks = {}
        for task in self.ctx.task_names:
            seed = self.results.get((task, self.prompt(self.system, task, self.seeds[task]).id))
            tasks[task] = {"user_prompts": self._shown(task), "seed_score": None if seed is None else seed.mean}
        self.ctx.note("metaspo_user_prompts", system_id=self.system_prompt.id, tasks=tasks)
