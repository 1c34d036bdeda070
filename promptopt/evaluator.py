"""Turns (prompts × examples) into backend batches, parses replies and scores them.

Two answer modes:

* ``generate`` — the model replies; the task parses the reply and the metric scores it.
* ``choice`` — for tasks with a closed answer set: each option's verbalizer is
  scored with the backend's ``score`` (summed log-probability of its tokens) and
  the most likely option is the answer. Needs a backend that can score.

Results keep the numbers behind the verdict: every option's log-probability and
token count in choice mode (and the margin of the gold option over the best
wrong one), the reply's token count in generate mode. :meth:`Evaluator.aloss`
gives the gold continuation's mean per-token cross-entropy, for loss-based search.

Every (prompt, example) pair is evaluated at most once per Evaluator: repeated
requests within a run are answered from memory and cost nothing.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal, NamedTuple

from promptopt.backends._base import Backend
from promptopt.exceptions import CapabilityError, ConfigError, DataError
from promptopt.prompt import Prompt
from promptopt.tasks._base import Task
from promptopt.tasks._set import TaskSet, task_means
from promptopt.types import Example, Request, ScoreRequest

__all__ = ["AnswerMode", "EvalResult", "Evaluator", "ExampleLoss", "ExampleResult", "LossResult", "check_answer_mode",
           "resolve_answer_mode", "resolve_answer_modes"]

AnswerMode = Literal["generate", "choice"]


class ExampleResult(NamedTuple):
    """One prompt on one example: what the model said, the parsed answer, the score,
    and the metric's textual verdict (``feedback``, e.g. "expected 42, got 41") for
    reflective strategies.

    The numbers behind it: in choice mode ``logprobs`` and ``label_tokens`` hold each
    option's summed log-probability and token count, in the task's option order, and
    ``margin`` the best gold option's log-probability minus the best wrong option's
    (positive when the answer is right; None where an example has no wrong or no gold
    option). In generate mode ``completion_tokens`` is the reply's length.

    Immutable like the other results, but a named tuple rather than a frozen dataclass:
    one is built per evaluated example, and a named tuple is built in C, about 4x faster
    than a frozen dataclass with these nine fields (bench/README.md, "overhead").
    """

    example_id: str
    output: str
    answer: str | None
    score: float
    feedback: str = ""
    logprobs: tuple[float, ...] = ()
    label_tokens: tuple[int, ...] = ()
    margin: float | None = None
    completion_tokens: int = 0


@dataclass(frozen=True)
class EvalResult:
    """One prompt on a set of examples.

    On a set of tasks, ``tasks`` names each example's task (in the order of ``examples``)
    and :attr:`mean` is the mean of the per-task means; on one task it is empty.
    """

    prompt: Prompt
    examples: tuple[ExampleResult, ...]
    tasks: tuple[str, ...] = ()

    @property
    def mean(self) -> float:
        if self.tasks:
            means = self.per_task
            return sum(means.values()) / len(means)
        return sum(e.score for e in self.examples) / len(self.examples) if self.examples else 0.0

    @property
    def per_task(self) -> dict[str, float]:
        """Each task's mean score (on a set of tasks; empty on one task)."""
        scores = {e.example_id: e.score for e in self.examples}
        return task_means(scores, dict(zip(scores, self.tasks, strict=True))) if self.tasks else {}

    @property
    def errors(self) -> tuple[ExampleResult, ...]:
        return tuple(e for e in self.examples if e.score < 1.0)

    @property
    def mean_margin(self) -> float | None:
        """Mean gold-minus-best-wrong log-probability over the examples that have one (choice mode)."""
        margins = [e.margin for e in self.examples if e.margin is not None]
        return sum(margins) / len(margins) if margins else None


@dataclass(frozen=True)
class ExampleLoss:
    """The gold continuation's cross-entropy under one prompt: ``loss`` is the mean over
    its ``n_tokens`` tokens of -log P(token | prompt, earlier tokens), in nats."""

    example_id: str
    loss: float
    n_tokens: int


@dataclass(frozen=True)
class LossResult:
    """One prompt's gold-continuation losses on a set of examples."""

    prompt: Prompt
    examples: tuple[ExampleLoss, ...]

    @property
    def mean(self) -> float:
        """Mean of the per-example losses (each example weighs the same, whatever its length)."""
        return sum(e.loss for e in self.examples) / len(self.examples) if self.examples else 0.0


def _missing_pairs(prompts: Sequence[Prompt], examples: Sequence[Example],
                   memo: Mapping[tuple[str, str], object]) -> list[list[tuple[Prompt, Example]]]:
    """Per distinct prompt, the (prompt, example) pairs not yet in ``memo``; prompts with none left out."""
    unique = list({p.id: p for p in prompts}.values())
    chunks = ([(p, ex) for ex in examples if (p.id, ex.id) not in memo] for p in unique)
    return [c for c in chunks if c]


def _has_labels(task: Task) -> bool:
    return task.labels is not None or any(task.choices(ex) for ex in task.splits.dev[:1])


def check_answer_mode(task: Task, requested: str | None) -> None:
    """The checks that need no backend, so bad input fails before anything is opened."""
    if requested not in (None, "auto", "generate", "choice"):
        raise ConfigError(f"--answer-mode (answer_mode=) must be auto, generate or choice; got {requested!r}")
    if requested == "choice" and not _has_labels(task):
        raise ConfigError(f"task {task.name!r} has no closed label set, so choice mode cannot "
                          "apply; use --answer-mode generate")


def resolve_answer_mode(task: Task, backend: Backend, requested: str | None) -> AnswerMode:
    """``choice`` when the task has labels and the backend can score, else ``generate``.

    An explicit request wins; asking for ``choice`` where it is impossible is an error.
    On a set of tasks: ``choice`` when every searched task resolves to it, else ``generate`` (what
    the default budget and the ``auto`` replacement rule go by; see :func:`resolve_answer_modes`).
    """
    if isinstance(task, TaskSet):  # the searched tasks' modes; unseen tasks do not shape the search
        modes = resolve_answer_modes(task, backend, requested)
        return "choice" if all(modes[name] == "choice" for name in task.member_names) else "generate"
    check_answer_mode(task, requested)
    if requested is None or requested == "auto":
        return "choice" if _has_labels(task) and backend.capabilities.score else "generate"
    if requested == "choice" and not backend.capabilities.score:
        raise CapabilityError(f"choice mode needs a backend that can score log-probabilities; "
                              f"{backend.model_string} cannot; use --answer-mode generate")
    return requested  # type: ignore[return-value]


def resolve_answer_modes(task: Task, backend: Backend, requested: str | None) -> dict[str, AnswerMode]:
    """Each task's answer mode by name: a set's members and unseen tasks (each resolved as a task
    alone, from its own request, else ``requested``), or the one task's."""
    if not isinstance(task, TaskSet):
        return {task.name: resolve_answer_mode(task, backend, requested)}
    return {m.name: resolve_answer_mode(m.task, backend, m.answer_mode or requested)
            for m in (*task.members, *task.unseen)}


class Evaluator:
    """Scores prompts on examples of one task, or a set of tasks, through one (wrapped) backend.

    On a :class:`~promptopt.tasks.TaskSet` each example goes to its task: its answer mode
    (``modes``, by task name; ``mode`` for a task not in it), its rendering with the task's
    own seed prompt under the candidate's system text, its parser and metric.
    """

    def __init__(self, task: Task, backend: Backend, mode: AnswerMode,
                 modes: Mapping[str, AnswerMode] | None = None) -> None:
        self.task, self.backend, self.mode = task, backend, mode
        self._set = task if isinstance(task, TaskSet) else None
        self._modes = dict(modes or {})
        #: each task's answer mode, by name (a set's members and unseen tasks)
        self.modes: dict[str, AnswerMode] = {task.name: mode} if self._set is None else {
            m.name: self._modes.get(m.name, mode) for m in (*self._set.members, *self._set.unseen)}
        self._memo: dict[tuple[str, str], ExampleResult] = {}
        self._loss_memo: dict[tuple[str, str], ExampleLoss] = {}

    async def aevaluate(self, prompts: Sequence[Prompt], examples: Sequence[Example]) -> list[EvalResult]:
        """Evaluate every prompt on every example.

        Each prompt's missing pairs go out as one batch: all batches at once on a
        backend that serves requests concurrently, one after another on one that
        does not (keeping each prompt's requests together lets llama.cpp reuse the
        prompt across labels). If the budget refuses a batch, the ones that fit
        are still completed and remembered before :class:`BudgetExhausted` is raised.
        """
        chunks = _missing_pairs(prompts, examples, self._memo)
        await self._send(chunks, self._achunk)
        tasks = self.task_names(examples)
        return [EvalResult(p, tuple(self._memo[(p.id, ex.id)] for ex in examples), tasks) for p in prompts]

    def task_names(self, examples: Sequence[Example]) -> tuple[str, ...]:
        """Each example's task on a set of tasks; empty on one task (see :class:`EvalResult`)."""
        return tuple(self._set.member_of(ex).name for ex in examples) if self._set is not None else ()

    def _routed(self, pairs: Sequence[tuple[Prompt, Example]]) -> list[tuple[Task, Prompt, Example]]:
        """Each pair with the task that asks it and the prompt it is asked with (on a set: the
        member's seed prompt under the candidate's system text)."""
        if self._set is None:
            return [(self.task, p, ex) for p, ex in pairs]
        task_set = self._set
        return [(task_set.member_of(ex).task, task_set.prompt_for(p, ex), ex) for p, ex in pairs]

    def mode_of(self, example: Example) -> AnswerMode:
        """The answer mode of the example's task."""
        if self._set is None:
            return self.mode
        return self._modes.get(self._set.member_of(example).name, self.mode)

    async def _send(self, chunks: list[list[tuple[Prompt, Example]]],
                    send: Callable[[list[tuple[Prompt, Example]]], Awaitable[None]]) -> None:
        """All chunks at once on a backend that serves requests concurrently, else one after another."""
        if self.backend.capabilities.max_concurrency <= 1:
            for chunk in chunks:
                await send(chunk)
            return
        outcomes = await asyncio.gather(*(send(c) for c in chunks), return_exceptions=True)
        for outcome in outcomes:
            if isinstance(outcome, BaseException):
                raise outcome

    async def _achunk(self, pairs: list[tuple[Prompt, Example]]) -> None:
        if self._set is not None:  # a set's tasks may answer in both modes: one batch per mode
            for mode in ("generate", "choice"):
                part = [(p, ex) for p, ex in pairs if self.mode_of(ex) == mode]
                if part:
                    await self._achunk_in(mode, part)
            return
        await self._achunk_in(self.mode, pairs)

    async def _achunk_in(self, mode: AnswerMode, pairs: list[tuple[Prompt, Example]]) -> None:
        results = await (self._agenerate(pairs) if mode == "generate" else self._achoose(pairs))
        for (p, ex), res in zip(pairs, results, strict=False):
            self._memo[(p.id, ex.id)] = res

    async def aloss(self, prompts: Sequence[Prompt], examples: Sequence[Example]) -> list[LossResult]:
        """The gold continuation's loss (:meth:`Task.gold_text`) for every prompt on every example.

        Needs a backend that can score. Memoized like :meth:`aevaluate`; each prompt's
        missing pairs go out as one batch, so a budget stop keeps whole prompts.
        """
        await self._send(_missing_pairs(prompts, examples, self._loss_memo), self._aloss_chunk)
        return [LossResult(p, tuple(self._loss_memo[(p.id, ex.id)] for ex in examples)) for p in prompts]

    async def _aloss_chunk(self, pairs: list[tuple[Prompt, Example]]) -> None:
        to_send = []
        for p, ex in pairs:
            known = self._from_choice(p, ex)
            if known is None:
                to_send.append((p, ex))
            else:
                self._loss_memo[(p.id, ex.id)] = known
        routed = self._routed(to_send)
        requests = [ScoreRequest(task.render(q, ex), task.gold_text(ex)) for task, q, ex in routed]
        for (task, _, ex), (p, _), lp in zip(routed, to_send, await self.backend.ascore(requests) if requests else [],
                                             strict=True):
            if not lp.n_tokens:  # a loss of 0 would read as a perfect prompt
                raise DataError(f"example {ex.id!r} of task {task.name!r} has an empty gold continuation, so "
                                "its loss is undefined; give every example a non-empty target")
            self._loss_memo[(p.id, ex.id)] = ExampleLoss(ex.id, -lp.logprob / lp.n_tokens, lp.n_tokens)

    def _from_choice(self, prompt: Prompt, example: Example) -> ExampleLoss | None:
        """The loss a choice-mode evaluation already measured: the gold text is one option's text,
        scored after the same rendered prompt (no call, nothing counted twice)."""
        result = self._memo.get((prompt.id, example.id))
        if result is None or not result.logprobs:
            return None
        task = self._routed([(prompt, example)])[0][0]
        gold = task.gold_text(example)
        for label, lp, n in zip(task.choices(example) or (), result.logprobs, result.label_tokens, strict=False):
            if task.verbalize(label) == gold and n:
                return ExampleLoss(example.id, -lp / n, n)
        return None

    def known_loss(self, prompt: Prompt, example: Example) -> ExampleLoss | None:
        """The loss already computed for this pair, if any."""
        return self._loss_memo.get((prompt.id, example.id))

    def calls_for(self, examples: Sequence[Example]) -> int:
        """Target calls one prompt needs on ``examples``: one per example, or one per label in choice mode."""
        if self._set is not None:
            return sum(1 if self.mode_of(ex) == "generate" else len(self.task.choices(ex) or ()) for ex in examples)
        if self.mode == "generate":
            return len(examples)
        return sum(len(self.task.choices(ex) or ()) for ex in examples)

    def known(self, prompt: Prompt, example: Example) -> ExampleResult | None:
        """The result already computed for this pair, if any."""
        return self._memo.get((prompt.id, example.id))

    async def _agenerate(self, pairs: Sequence[tuple[Prompt, Example]]) -> list[ExampleResult]:
        routed = self._routed(pairs)
        requests = [Request(task.render(p, ex), max_tokens=task.max_tokens, temperature=0.0)
                    for task, p, ex in routed]
        completions = await self.backend.agenerate(requests)
        out = []
        for (task, _, ex), c in zip(routed, completions, strict=False):
            answer = task.parse(c.text)
            out.append(ExampleResult(ex.id, c.text, answer, *_judged(task, answer, ex),
                                     completion_tokens=c.completion_tokens))
        return out

    async def _achoose(self, pairs: Sequence[tuple[Prompt, Example]]) -> list[ExampleResult]:
        routed = self._routed(pairs)
        options = [task.choices(ex) or () for task, _, ex in routed]
        requests = [ScoreRequest(task.render(p, ex), task.verbalize(label))
                    for (task, p, ex), labels in zip(routed, options, strict=False) for label in labels]
        answers = iter(await self.backend.ascore(requests))
        out = []
        for (task, _, ex), labels in zip(routed, options, strict=False):
            scored = [next(answers) for _ in labels]
            logprobs = tuple(s.logprob for s in scored)
            # Highest log-probability wins; ties go to the earlier label (stable, deterministic).
            best = labels[max(range(len(labels)), key=logprobs.__getitem__)] if labels else None
            text = " ".join(f"{label}={lp:.3f}" for lp, label in zip(logprobs, labels, strict=True))
            out.append(ExampleResult(ex.id, text, best, *_judged(task, best, ex),
                                     logprobs=logprobs, label_tokens=tuple(s.n_tokens for s in scored),
                                     margin=_margin(task, ex, labels, logprobs)))
        return out


def _judged(task: Task, answer: str | None, example: Example) -> tuple[float, str]:
    """The metric's score and the feedback; the metric runs once where the task keeps the default
    feedback (which would run it again: ~0.3 us an evaluation)."""
    score = task.metric(answer, example)
    if type(task).feedback is Task.feedback:
        return score, task.verdict(answer, example, score)
    return score, task.feedback(answer, example)


def _margin(task: Task, example: Example, labels: Sequence[str], logprobs: Sequence[float]) -> float | None:
    """Best gold option's log-probability minus the best wrong option's (gold: the metric gives it 1)."""
    right = [task.metric(label, example) >= 1.0 for label in labels]
    gold = [lp for ok, lp in zip(right, logprobs, strict=True) if ok]
    wrong = [lp for ok, lp in zip(right, logprobs, strict=True) if not ok]
    return max(gold) - max(wrong) if gold and wrong else None
