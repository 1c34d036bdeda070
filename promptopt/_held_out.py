"""Picking the final prompt on dev examples the search never saw (``select_on="held-out"``).

By default (``select_on="dev"``) a strategy scores its candidates on dev and
the Run picks the best dev mean there, so a winner is often a winner by chance
on those very examples. With ``"held-out"`` the strategy searches on a split of
the same size drawn from the training pool (its ``ctx.dev``; the rest of train
is its ``ctx.train``) and dev is left to the Run: it scores the seed there
before the search and the search's finalists after it, and the best dev mean
among them wins, ties to the seed.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from promptopt import events
from promptopt._loop import LoopThread
from promptopt.backends import Backend
from promptopt.budget import Budget, Meter
from promptopt.evaluator import AnswerMode, EvalResult, Evaluator
from promptopt.exceptions import BudgetExhausted, ConfigError
from promptopt.history import Candidate, History
from promptopt.prompt import Prompt
from promptopt.tasks import Task
from promptopt.tasks._sampling import hold_out
from promptopt.types import Example

__all__ = ["DevSelection", "HeldOutPlan", "check_train_size", "pick_finalists", "plan_held_out"]


@dataclass(frozen=True)
class HeldOutPlan:
    """The splits of a held-out run and the target calls kept back for its finalists.

    Attributes:
        train: the strategy's ``ctx.train``: the training pool without the search split.
        search: the strategy's ``ctx.dev``, the split it scores candidates on; as large as dev.
        dev: the selection split; only the Run's selection evaluations see it.
        select_top: how many of the best candidates on ``search`` are scored on ``dev``.
        reserve: target calls kept from the search to score ``select_top`` finalists on dev.
    """

    train: tuple[Example, ...]
    search: tuple[Example, ...]
    dev: tuple[Example, ...]
    select_top: int
    reserve: int


def check_train_size(task: Task, *, n_train: int | None, n_dev: int | None) -> None:
    """Raise ConfigError unless the training pool gives a search split as large as dev and keeps some.

    Raises:
        ConfigError: naming ``n_train`` and ``n_dev`` and how to fix them.
    """
    n, have = len(task.splits.dev), len(task.splits.train)
    if have > n:
        return
    raise ConfigError(
        f"select_on='held-out' searches on {n} examples drawn from the training pool (as many as dev: "
        f"n_dev={n_dev}) and leaves the rest to the strategy, so it needs more than {n} training examples; "
        f"task {task.name!r} has {have} (n_train={n_train}). Raise --n-train (or leave it unset for the "
        "whole pool), lower --n-dev, or use --select-on dev")


def plan_held_out(task: Task, target: Backend, mode: AnswerMode, *, seed: int, select_top: int,
                  budget: Budget) -> HeldOutPlan:
    """Draw the search split from train and count the target calls the selection on dev needs.

    Raises:
        ConfigError: the target-call cap cannot pay for the seed on both splits, the
            ``select_top`` finalists on dev and some search (checked before any call).
    """
    search, train = hold_out(task.splits.train, len(task.splits.dev), seed=seed, stratify=task.labels is not None)
    count = Evaluator(task, target, mode).calls_for  # counts only: nothing is sent
    dev_calls, search_calls = count(task.splits.dev), count(search)
    plan = HeldOutPlan(train, search, task.splits.dev, select_top, select_top * dev_calls)
    cap, need = budget.target_calls, dev_calls + search_calls + plan.reserve
    if cap is not None and need >= cap:  # the search itself needs a call or more
        raise ConfigError(
            f"select_on='held-out' needs more than {need} target calls: {dev_calls} to score the seed on the "
            f"{len(plan.dev)} dev examples, {search_calls} to score it on the {len(search)} search examples, "
            f"and {plan.reserve} kept back to score select_top={select_top} finalists on dev; "
            f"budget.target_calls is {cap}. Raise --budget-target-calls, or lower --select-top or --n-dev")
    return plan


def pick_finalists(search: History, *, returned: Sequence[Prompt], offered: Sequence[Prompt], top: int,
                   seed_id: str) -> list[Candidate]:
    """The candidates fully scored on the search split that go on to dev, in the order they are scored.

    The ``top`` best by search mean (ties to the earlier), then those the strategy returned
    or last offered; the seed is left out (it is scored on dev anyway).
    """
    full = {c.id: c for c in search.fully_scored() if c.id != seed_id}
    ranked = sorted(full.values(), key=lambda c: (-c.dev_mean(), c.order))[:top]
    named = [full[p.id] for p in (*returned, *offered) if p.id in full]
    return list({c.id: c for c in (*ranked, *named)}.values())


class DevSelection:
    """The Run's selection on dev: scores the seed and the finalists there and keeps their scores.

    ``history`` holds only candidates scored on dev (the seed first, so it wins
    ties); its ``dev_scores`` are dev scores, which the ``replace_if`` rule reads.
    """

    def __init__(self, plan: HeldOutPlan, *, evaluator: Evaluator, meter: Meter, loop: LoopThread,
                 emit: Callable[[dict[str, Any]], None]) -> None:
        self.plan, self._evaluator, self._meter, self._loop, self._emit = plan, evaluator, meter, loop, emit
        self.history = History(tuple(ex.id for ex in plan.dev))

    def score(self, candidate: Candidate) -> None:
        """Score one candidate on all of dev, within the budget; a refusal is noted (``finalist_unscored``)."""
        self.history.add(candidate.prompt, candidate.parents, candidate.operator)
        try:
            with self._meter.one_call("target"):
                (res,) = self._loop.run(self._evaluator.aevaluate([candidate.prompt], self.plan.dev))
        except BudgetExhausted as exc:
            self._emit(events.make(events.FINALIST_UNSCORED, prompt_id=candidate.id, reason=str(exc)))
            return
        self._log(res)

    def _log(self, res: EvalResult) -> None:
        self.history.add_dev_scores(res.prompt, {e.example_id: e.score for e in res.examples})
        margin = {} if res.mean_margin is None else {"margin": res.mean_margin}
        # dev: False keeps these apart from the search's own scores (the split the strategy saw) in the report
        self._emit(events.make(events.EVALUATION, prompt_id=res.prompt.id, n=len(res.examples), mean=res.mean,
                               dev=False, selection=True, **margin))

    def pick(self, search: History, *, returned: Sequence[Prompt], offered: Sequence[Prompt],
             seed_id: str, own_pick: Candidate | None) -> Candidate | None:
        """Score the finalists on dev and return the best dev mean (ties to the seed).

        ``own_pick`` is the final prompt a strategy's own selection rule chose on the
        search split: then it alone is scored, and it is the pick if dev scored it.
        """
        self._meter.held_back = 0  # the calls kept back were for this
        if own_pick is not None:
            finalists = [] if own_pick.id == seed_id else [own_pick]
        else:
            finalists = pick_finalists(search, returned=returned, offered=offered, top=self.plan.select_top,
                                       seed_id=seed_id)
        for cand in finalists:
            self.score(cand)
        if own_pick is not None and own_pick.id in {c.id for c in self.history.fully_scored()}:
            return self.history.candidates[own_pick.id]
        return self.history.best()
