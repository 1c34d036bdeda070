"""The :class:`Context` a strategy searches through.

Everything a strategy does that costs money or leaves a trace goes through
here: evaluating prompts (target model), proposing text (optimizer model),
losses (log-probabilities of gold answers), randomness and the record of
candidates. Budget checks, caching, retries and logging therefore live in one
place, and a strategy never counts its own calls.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Coroutine, Mapping, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Literal, TypeVar

from promptopt import events
from promptopt._loop import LoopThread
from promptopt._set_run import per_task_fields
from promptopt.backends._base import Backend, missing_tokenizer
from promptopt.budget import Meter
from promptopt.evaluator import EvalResult, Evaluator, LossResult
from promptopt.exceptions import BudgetExhausted
from promptopt.history import Candidate, History
from promptopt.prompt import Prompt
from promptopt.tasks._base import Task
from promptopt.tasks._set import TaskSet
from promptopt.tokenizer import Tokenizer
from promptopt.types import Example, Message, Request, Role

if TYPE_CHECKING:
    from promptopt.selector import PromptSelector

__all__ = ["Context", "FrontEntry", "Selection"]

T = TypeVar("T")


@dataclass(frozen=True)
class FrontEntry:
    """One candidate of a strategy's Pareto front with its objective values (e.g. accuracy, tokens)."""

    prompt: Prompt
    objectives: Mapping[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"prompt_id": self.prompt.id, "prompt": self.prompt.to_dict(), "objectives": dict(self.objectives)}


@dataclass(frozen=True)
class Selection:
    """How the Run picks the final prompt among candidates scored on all of dev.

    ``pick`` gets them in the order they appeared (the seed first) and returns one.
    """

    rule: str
    pick: Callable[[Sequence[Candidate]], Candidate]


class Context:
    """Handed to :meth:`Strategy.optimize`.

    Attributes:
        task: the task being optimised.
        train: the optimisation pool (minibatches, error examples, demos).
        dev: the split candidates are scored on; the Run picks the final prompt among
            candidates scored on all of it. With ``select_on="held-out"`` it is drawn from
            the training pool (and left out of ``train``), and the Run makes the final pick
            again among the best of them on the task's dev split, which the strategy never sees.
        seed_prompt: where the search starts.
        rng: the only source of randomness a strategy may use (seeded by the Run).
        answer_mode: ``"generate"`` or ``"choice"`` (on a set of tasks ``"choice"`` only when every
            task answers in choice mode; :attr:`answer_modes` has each task's).
        answer_modes: each task's answer mode, by task name.
        task_names: the tasks searched (a set's members, never its unseen tasks; or the one task).
        text_field: the Prompt field the search rewrites: ``"instruction"`` on one task,
            ``"system"`` on a set of tasks (see :meth:`text`, :meth:`with_text`).
        optimizer_cap_hit: why the optimizer's call cap refused a proposal, once
            it has. A strategy that collects proposals before scoring them may
            catch that :class:`BudgetExhausted` and score what it holds; the Run
            then still reports the cap as what stopped the search.
    """

    def __init__(self, *, task: Task, seed_prompt: Prompt, evaluator: Evaluator, optimizer: Backend,
                 loop: LoopThread, history: History, emit: Callable[[dict[str, Any]], None],
                 seed: int, meter: Meter | None = None) -> None:
        self.task = task
        self.train: tuple[Example, ...] = task.splits.train
        self.dev: tuple[Example, ...] = task.splits.dev
        self.seed_prompt = seed_prompt
        self.rng = random.Random(seed)
        self.answer_mode = evaluator.mode
        self.answer_modes: dict[str, str] = dict(evaluator.modes)
        self.text_field: Literal["instruction", "system"] = "system" if isinstance(task, TaskSet) else "instruction"
        #: the tasks searched: a set's members (never its unseen tasks), or the one task
        self.task_names: tuple[str, ...] = task.member_names if isinstance(task, TaskSet) else (task.name,)
        self._evaluator, self._optimizer, self._loop = evaluator, optimizer, loop
        self._history, self._emit = history, emit
        self.optimizer_cap_hit: str | None = None
        #: seconds spent waiting for model calls and the tokenizer (the rest of a strategy's time is its own)
        self.waiting_seconds = 0.0
        #: set by :meth:`set_front`, :meth:`select_final_by`; read by the Run
        self.front: tuple[FrontEntry, ...] = ()
        self.selection: Selection | None = None
        self.selector: PromptSelector | None = None  # set by :meth:`set_selector`
        #: the strategy's current leaders (:meth:`offer`), best first
        self.offered: tuple[Prompt, ...] = ()
        self._tokenizer: Tokenizer | None = None
        self._meter = meter

    def _spend(self, role: Role) -> AbstractContextManager[None]:
        """The block of one call: token and dollar caps checked once, when it starts (see Meter)."""
        return self._meter.one_call(role) if self._meter is not None else nullcontext()

    def _wait(self, call: Coroutine[Any, Any, T]) -> T:
        """Run ``call`` on the event loop, counting the time as waiting, not strategy compute."""
        started = time.perf_counter()
        try:
            return self._loop.run(call)
        finally:
            self.waiting_seconds += time.perf_counter() - started

    # -- target model -----------------------------------------------------------------------
    def evaluate(self, prompts: Sequence[Prompt], examples: Sequence[Example] | None = None) -> list[EvalResult]:
        """Score each prompt on ``examples`` (default: the whole dev split).

        Pairs evaluated before in this run are free; the rest go out as one batch.
        """
        examples = self.dev if examples is None else examples
        known = self._evaluator.known
        fresh = {p.id for p in prompts if any(known(p, ex) is None for ex in examples)}
        try:
            with self._spend("target"):
                results = self._wait(self._evaluator.aevaluate(prompts, examples))
        except BudgetExhausted:
            self._record_known(prompts, examples)  # keep what finished before the cap
            raise
        for res in {r.prompt.id: r for r in results}.values():
            if res.prompt.id in fresh:  # answers from memory are not a new evaluation
                self._log_evaluation(res, examples)
        return results

    def _record_known(self, prompts: Sequence[Prompt], examples: Sequence[Example]) -> None:
        for prompt in {p.id: p for p in prompts}.values():
            known = [self._evaluator.known(prompt, ex) for ex in examples]
            if all(k is not None for k in known):
                self._log_evaluation(EvalResult(prompt, tuple(k for k in known if k is not None),
                                                self._evaluator.task_names(examples)), examples)

    def _log_evaluation(self, res: EvalResult, examples: Sequence[Example]) -> None:
        self._history.add_dev_scores(res.prompt, {e.example_id: e.score for e in res.examples})
        margin = {} if res.mean_margin is None else {"margin": res.mean_margin}
        self._emit(events.make(events.EVALUATION, prompt_id=res.prompt.id, n=len(res.examples), mean=res.mean,
                               dev=all(ex.id in self._history.dev_ids for ex in examples), **margin,
                               **(per_task_fields(res) if res.tasks else {"task": self.task.name})))

    def loss(self, prompts: Sequence[Prompt], examples: Sequence[Example]) -> list[LossResult]:
        """The gold continuation's loss for each prompt on each example (needs ``score``).

        Each :class:`~promptopt.evaluator.ExampleLoss` is the mean per-token
        cross-entropy of :meth:`Task.gold_text` after the rendered prompt, in nats,
        with its token count. Memoized, cached, metered and budgeted like
        :meth:`evaluate`: one scored continuation is one target call.
        """
        if not examples:  # a mean over nothing would be 0, the best loss there is
            raise ValueError("Context.loss needs at least one example")
        known = self._evaluator.known_loss
        fresh = {p.id for p in prompts if any(known(p, ex) is None for ex in examples)}
        try:
            with self._spend("target"):
                results = self._wait(self._evaluator.aloss(prompts, examples))
        except BudgetExhausted:
            for prompt in {p.id: p for p in prompts if p.id in fresh}.values():
                losses = [known(prompt, ex) for ex in examples]
                if all(x is not None for x in losses):  # finished before the cap
                    self._log_loss(LossResult(prompt, tuple(x for x in losses if x is not None)))
            raise
        for res in {r.prompt.id: r for r in results}.values():
            if res.prompt.id in fresh:
                self._log_loss(res)
        return results

    def _log_loss(self, res: LossResult) -> None:
        self._emit(events.make(events.LOSS, prompt_id=res.prompt.id, n=len(res.examples), mean=res.mean,
                               gold_tokens=sum(e.n_tokens for e in res.examples)))

    @property
    def tokenizer(self) -> Tokenizer:
        """The target model's tokenizer (raises CapabilityError if the backend has none;
        a strategy that needs it declares ``needs_tokenizer`` so the Run checks first)."""
        if self._tokenizer is None:
            backend = self._evaluator.backend
            if not backend.capabilities.tokenize:
                raise missing_tokenizer(backend.model_string)
            self._tokenizer = Tokenizer(backend, self._loop, wait=self._wait)
        return self._tokenizer

    # -- optimizer model --------------------------------------------------------------------
    def propose(self, prompt: str, *, n: int = 1, temperature: float = 0.7, max_tokens: int = 512,
                system: str | None = None) -> list[str]:
        """Ask the optimizer model ``n`` times (distinct samples) and return its replies."""
        messages = ((Message("system", system),) if system else ()) + (Message("user", prompt),)
        seed = self.rng.randrange(2**31)
        requests = [Request(messages, max_tokens=max_tokens, temperature=temperature, seed=seed + i,
                            sample_index=i, role="optimizer") for i in range(n)]
        try:
            with self._spend("optimizer"):
                replies = self._wait(self._optimizer.agenerate(requests))
        except BudgetExhausted as exc:
            if exc.cap == "optimizer_calls":
                self.optimizer_cap_hit = str(exc)
            raise
        self.optimizer_cap_hit = None  # a smaller request fitted after all: the cap did not end proposing
        return [r.text for r in replies]

    def propose_within_cap(self, prompt: str, *, n: int = 1, temperature: float = 0.7, max_tokens: int = 512,
                           system: str | None = None) -> list[str] | None:
        """Like :meth:`propose`, but None once the optimizer's call cap refuses the request.

        For a strategy whose proposals in hand are worth scoring when the
        optimizer runs out; the Run still reports the cap as what stopped the search.
        """
        try:
            return self.propose(prompt, n=n, temperature=temperature, max_tokens=max_tokens, system=system)
        except BudgetExhausted as exc:
            if exc.cap != "optimizer_calls":
                raise
            return None

    # -- bookkeeping ------------------------------------------------------------------------
    def record(self, candidate: Prompt, parents: Sequence[Prompt] = (), operator: str = "") -> bool:
        """Log a candidate with its parents and the operator that made it; False if seen before."""
        cand, new = self._history.add(candidate, tuple(p.id for p in parents), operator)
        if new:
            self._emit(events.make(events.CANDIDATE, prompt_id=cand.id, parents=list(cand.parents),
                                   operator=operator, prompt=candidate.to_dict()))
        return new

    def offer(self, prompts: Sequence[Prompt]) -> None:
        """Hand over the strategy's current leaders, best first (replacing those offered before).

        If the budget stops the search, the Run scores them on all of dev from the
        calls it kept back (``finalist_reserve``), so a stop does not lose candidates
        the strategy holds but has scored only on training examples or part of dev.
        """
        prompts = tuple({p.id: p for p in prompts}.values())
        if [p.id for p in prompts] != [p.id for p in self.offered]:
            self.offered = prompts
            self._emit(events.make(events.OFFER, prompt_ids=[p.id for p in prompts]))

    def set_front(self, front: Sequence[FrontEntry]) -> None:
        """Hand the Run a Pareto front (each candidate with its objective values) for the Result."""
        self.front = tuple(front)
        self._emit(events.make(events.FRONT, entries=[{k: v for k, v in e.to_dict().items() if k != "prompt"}
                                                      for e in self.front]))

    def select_final_by(self, rule: str, pick: Callable[[Sequence[Candidate]], Candidate]) -> None:
        """Declare how the final prompt is picked among fully scored candidates (default: best dev
        mean, ties to the seed); ``rule`` names it in the Result."""
        self.selection = Selection(rule, pick)

    def set_selector(self, selector: PromptSelector) -> None:
        """Hand the Run a fitted per-input prompt selector: it is scored on dev and test
        (each example with the prompt it picks), saved in the run directory and kept in the Result."""
        self.selector = selector
        self._emit(events.make("selector", prompt_ids=[p.id for p in selector.prompts],
                               train_means=[m.train_mean for m in selector.models]))

    def skip(self, operator: str, reason: str, raw: str) -> None:
        """Log optimizer output that could not be used (never a crash)."""
        self._emit(events.make(events.SKIP, operator=operator, reason=reason, raw=raw[:2000]))

    def note(self, kind: str, **data: Any) -> None:
        """Log a strategy-specific event (a round start, a selection, ...); a core kind's fields are checked."""
        self._emit(events.make(kind, **data))

    def sample(self, items: Sequence[T], k: int) -> list[T]:
        """A seeded sample of ``min(k, len(items))`` items."""
        return self.rng.sample(list(items), min(k, len(items)))

    # -- the text under search, and a set's tasks -------------------------------------------
    def text(self, prompt: Prompt) -> str:
        """The text the search rewrites: ``prompt.instruction`` on one task, ``prompt.system`` on a set."""
        return prompt.system if self.text_field == "system" else prompt.instruction

    def with_text(self, prompt: Prompt, text: str) -> Prompt:
        """A copy of ``prompt`` with ``text`` (stripped) as the text under search (:meth:`text`)."""
        if self.text_field == "system":
            return replace(prompt, system=text.strip())
        return replace(prompt, instruction=text.strip())

    def task_of(self, example_id: str) -> str:
        """The name of the task an example (by id) belongs to; the task's name on one task."""
        if isinstance(self.task, TaskSet):
            return self.task.owner(example_id).name
        return self.task.name

    def sample_across_tasks(self, items: Sequence[T], k: int, example_id: Callable[[T], str]) -> list[T]:
        """A seeded sample of ``min(k, len(items))`` items spread evenly over a set's tasks
        (each task gets its share; the remainder, or all of ``k`` when it is below the number of
        tasks, goes to tasks in a seeded random order, so no task is favoured by its place in
        the set); :meth:`sample` on one task.

        ``example_id`` gives an item's example id (``lambda ex: ex.id``, ``lambda r: r.example_id``).
        """
        if not isinstance(self.task, TaskSet):
            return self.sample(items, k)
        groups: dict[str, list[T]] = {}
        for item in items:
            groups.setdefault(self.task_of(example_id(item)), []).append(item)
        pools = [self.rng.sample(group, len(group)) for group in groups.values()]  # each shuffled once
        self.rng.shuffle(pools)  # which tasks get the remainder changes from draw to draw
        picked: list[T] = []
        while len(picked) < min(k, len(items)):
            for pool in pools:
                if pool and len(picked) < k:
                    picked.append(pool.pop())
        return picked

