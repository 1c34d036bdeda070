"""What a run would spend, worked out before anything is spent (``--dry-run``).

Besides the caps, the estimate holds the strategy's plan (:meth:`Strategy.step_plan`):
how many full steps of its loop the budget pays for, and how many new candidates
scored on all of dev that leaves the Run to pick from, with a warning when not even
one step fits. :func:`scaled_to_budget` uses the same figures to shrink a strategy's
step (``RunConfig.scale_to_budget``) until one full step and :data:`WANTED_NEW_FULL`
new fully scored candidates fit; the Run and the estimate both call it.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from promptopt._held_out import HeldOutPlan, plan_held_out
from promptopt._set_run import set_config
from promptopt.backends import Backend
from promptopt.budget import Budget
from promptopt.config import DEFAULT_MODEL, RunConfig, config_from_call
from promptopt.evaluator import resolve_answer_mode, resolve_answer_modes
from promptopt.session import Session
from promptopt.strategies import Strategy
from promptopt.strategies._base import Spend, StepPlan
from promptopt.strategies._scaling import Scaling, describe_changes, explicit_params, scale_to_fit
from promptopt.task_options import check_run_inputs
from promptopt.tasks import Task, TaskSet
from promptopt.types import Example

__all__ = ["WANTED_NEW_FULL", "Estimate", "estimate", "scaled_to_budget"]

#: backends that run on this machine and cost nothing per call
LOCAL_BACKENDS = frozenset({"llamacpp", "vllm", "fake"})
#: assumed size of one optimizer call (meta-prompt + reply); strategies cap replies at a few hundred tokens
OPTIMIZER_TOKENS_PER_CALL = 1000
_CHARS_PER_TOKEN = 4  # a rough rule for English text; the estimate needs no tokenizer
#: new candidates scored on all of dev that a budget should leave, besides one full step (see scaled_to_budget)
WANTED_NEW_FULL = 3


@dataclass(frozen=True)
class Estimate:
    """Upper bounds on a run's spend. ``None`` means unbounded (no cap) or unknown (no price).

    The search spends at most its caps; the final test evaluation adds at most
    ``test_target_calls`` (seed and best on every test example).

    The plan fields are planning figures from the strategy's :meth:`~Strategy.step_plan`
    (None when it gives none): ``steps`` is how many full steps of its loop fit the caps
    (after the seed's dev evaluation, the strategy's setup and the calls kept back for
    finalists; None when no cap limits them), ``new_full`` the new candidates scored on all
    of dev that leaves, ``fixed_target_calls`` the target calls spent before step 1 or kept
    back, and ``warnings`` says when not one full step fits, and which cap value would.

    ``answer_mode`` is the run's, or ``"mixed"`` for a set whose tasks answer in different modes
    (a figure to show, as the Result's; not an ``answer_mode`` argument to pass back).

    ``scaled`` holds the parameters the run shrinks to fit its budget (name -> (before, after);
    see :func:`scaled_to_budget`); the plan is the scaled strategy's. ``scaling_short`` is True when
    parameters were scaled and even their smallest values leave less than one full step and
    :data:`WANTED_NEW_FULL` new fully scored candidates (the Result's ``scaling_short`` likewise).
    """

    task: str
    strategy: str
    model: str
    answer_mode: str
    budget: Budget
    calls_per_example: float
    search_target_calls: int | None
    search_optimizer_calls: int | None
    test_target_calls: int
    target_tokens_per_call: int
    tokens: int | None
    usd: float | None
    plan: StepPlan | None = None
    steps: float | None = None
    new_full: int | None = None
    fixed_target_calls: int = 0
    warnings: tuple[str, ...] = ()
    scaled: Mapping[str, tuple[int, int]] = field(default_factory=dict)
    scaling_short: bool = False

    @property
    def target_calls(self) -> int | None:
        return None if self.search_target_calls is None else self.search_target_calls + self.test_target_calls

    @property
    def paper_steps(self) -> int | None:
        """Steps the strategy's paper loop runs (None: until the budget ends, or no plan)."""
        return None if self.plan is None else self.plan.paper_steps

    def target_calls_of(self, spend: Spend) -> float:
        """Target calls ``spend`` costs in this run's answer mode."""
        return spend.example_evals * self.calls_per_example + spend.loss_calls

    def target_calls_for(self, n_steps: float) -> int | None:
        """The ``--budget-target-calls`` that fits ``n_steps`` full steps: the seed on dev, the
        calls kept back for finalists, the strategy's setup and the steps (None without a plan)."""
        if self.plan is None:
            return None
        return math.ceil(self.fixed_target_calls + n_steps * self.target_calls_of(self.plan.per_step))


#: each task's answer mode by name (``resolve_answer_modes``): on a set, members may differ from the run's mode
Modes = Mapping[str, str]


def _tokens_per_call(task: Task, mode: str, modes: Modes | None = None) -> int:
    """Target tokens one call processes with the seed prompt (text length / 4, plus the reply).

    Priced on up to 20 dev examples (of each task, on a set, rendered as the set renders them:
    under its shared system prompt), each in its task's answer mode (a generate reply is the
    task's ``max_tokens``, a label a few tokens) and weighted by its calls (one per label in
    choice mode), as the run spends them."""
    members = [m.name for m in task.members] if isinstance(task, TaskSet) else [task.name]
    sample = _first_of_each(task, task.splits.dev or task.splits.test, members, 20)
    calls = tokens = 0.0
    for ex in sample:
        own = task.member_of(ex).task if isinstance(task, TaskSet) else task
        generate = (modes or {}).get(own.name, mode) == "generate"
        n = 1 if generate else len(task.choices(ex) or ()) or 1
        prompt = sum(len(m.content) for m in task.render(task.seed_prompt, ex)) / _CHARS_PER_TOKEN
        calls, tokens = calls + n, tokens + n * (prompt + (own.max_tokens if generate else 4))  # a label: a few
    return int(tokens / calls) if calls else 0


def _first_of_each(task: Task, examples: Sequence[Example], names: Sequence[str], k: int) -> list[Example]:
    """The first ``k`` examples of each named task (of the one task, when ``task`` is not a set)."""
    if not isinstance(task, TaskSet):
        return list(examples[:k])
    taken: dict[str, int] = dict.fromkeys(names, 0)
    chosen = []
    for ex in examples:
        name = task.member_of(ex).name
        if taken.get(name, k) < k:
            taken[name] += 1
            chosen.append(ex)
    return chosen


def _calls_per_example(task: Task, mode: str, modes: Modes | None = None) -> float:
    counts = _calls_of(task, mode, task.splits.test or task.splits.dev, modes)
    return sum(counts) / len(counts) if counts else 1.0


def _dev_calls(task: Task, mode: str, modes: Modes | None = None) -> list[int]:
    """Target calls per dev example, most first (one, or one per label in choice mode)."""
    return _calls_of(task, mode, task.splits.dev, modes)


def _calls_of(task: Task, mode: str, examples: Sequence[Example], modes: Modes | None = None) -> list[int]:
    """Target calls per example, most first: one, or one per label in choice mode (on a set of
    tasks, in the answer mode of the example's task, as the evaluator routes it)."""
    def calls(ex: Example) -> int:
        own = modes.get(task.member_of(ex).name, mode) if modes and isinstance(task, TaskSet) else mode
        return 1 if own == "generate" else len(task.choices(ex) or ())

    return sorted(map(calls, examples), reverse=True)


def _kept_for_finalists(strat: Strategy, reserve: int | None, dev_calls: list[int],
                        cap: int | None) -> tuple[int, int]:
    """Target calls the Run keeps from the strategy to score finalists on all of dev, and for how
    many finalists (as the Run works them out; none when it keeps nothing)."""
    gap = strat.finalist_gap(len(dev_calls))
    reserve = (1 if (gap or 0) > 0 else 0) if reserve is None else reserve
    need = reserve * sum(dev_calls[: len(dev_calls) if gap is None else gap])
    kept = reserve > 0 and cap is not None and 2 * need <= cap - sum(dev_calls)
    return (need, reserve) if kept else (0, 0)


def _cap_costs(budget: Budget, per_example: float, per_call: int) -> dict[str, tuple[float, Callable[[Spend], float]]]:
    """For each cap set, its value and what a :class:`Spend` costs against it."""
    def target(s: Spend) -> float:
        return s.example_evals * per_example + s.loss_calls

    costs: dict[str, Callable[[Spend], float]] = {
        "target_calls": target, "optimizer_calls": lambda s: s.optimizer_calls,
        "target_tokens": lambda s: target(s) * per_call,
        "tokens": lambda s: target(s) * per_call + s.optimizer_calls * OPTIMIZER_TOKENS_PER_CALL}
    return {name: (cap, cost) for name, cost in costs.items() if (cap := getattr(budget, name)) is not None}


@dataclass(frozen=True)
class _Fit:
    """How many full steps fit under each cap, the cap value that fits one step, and how many of
    the plan's finalists (``StepPlan.finish``) the calls left after its whole loop pay for."""

    steps: dict[str, float]
    one_step: dict[str, int]
    finishers: float = math.inf


def _fit(plan: StepPlan, costs: Mapping[str, tuple[float, Callable[[Spend], float]]], seed: Spend,
         kept: int) -> _Fit:
    steps, one_step, finishers = {}, {}, math.inf
    for name, (cap, cost) in costs.items():
        before = cost(seed) + cost(plan.setup)
        fixed = before + (kept if name == "target_calls" else 0)  # the kept calls are not the steps'
        per_step = cost(plan.per_step)
        steps[name] = max(0.0, (cap - fixed) / per_step) if per_step > 0 else math.inf
        one_step[name] = math.ceil(fixed + per_step)
        # the finish may spend the kept calls too: the Run releases them to score finalists
        if plan.paper_steps is not None and plan.finish.new_full and (each := cost(plan.finish) / plan.finish.new_full):
            finishers = min(finishers, max(0.0, (cap - before - plan.paper_steps * per_step) / each))
    return _Fit(steps, one_step, finishers)


def _new_full(plan: StepPlan, steps: float, finished: int, finalists_kept: int) -> int:
    """New fully scored candidates: the setup's, the whole steps', then the ``finished`` finalists
    of the finish when the whole loop fits (else those the Run completes from the calls it kept)."""
    done = min(steps, plan.paper_steps if plan.paper_steps is not None else math.inf)
    loop_ends = plan.paper_steps is not None and steps >= plan.paper_steps
    count = plan.setup.new_full + math.floor(done) * plan.per_step.new_full
    return int(count + (finished if loop_ends else finalists_kept))


def _finished(plan: StepPlan, fit: _Fit) -> int:
    """The plan's finalists scored on dev once its whole loop has run: those the calls left after it
    (the kept ones included) pay for under every cap. A finish's cost is spread evenly over its
    finalists, though part of it may be paid once (PromptWizard's example selection)."""
    if math.isinf(fit.finishers):
        return int(plan.finish.new_full)
    return int(min(plan.finish.new_full, math.floor(fit.finishers)))


def _warning(est: Estimate, plan: StepPlan, steps: float, fit: _Fit) -> str:
    """One line: the strategy, what fits, what one step costs, and the cap values that fit one step."""
    s = plan.per_step
    paper = "runs until the budget ends" if plan.paper_steps is None else f"runs {plan.paper_steps}"
    parts = [f"{s.example_evals:,.0f} example evaluations"] + (
        [f"{s.loss_calls:,.0f} scored gold continuations"] if s.loss_calls else [])
    fixes = " and ".join(f"--budget-{name.replace('_', '-')} {fit.one_step[name]}"
                         for name, n in fit.steps.items() if n < 1)
    return (f"{est.strategy}: the budget fits {steps:.2f} of one {plan.unit} (the paper's loop {paper}); "
            f"one {plan.unit} costs about {', '.join(parts)} ({est.target_calls_of(s):,.0f} target calls) and "
            f"{s.optimizer_calls:,.0f} optimizer calls, after {est.fixed_target_calls:,} target calls for the seed "
            f"on dev, the strategy's setup and finalists; {fixes} would fit one {plan.unit}{_scaling_note(est)}")


def _scaling_note(est: Estimate) -> str:
    """What scaling to the budget did, for a warning: nothing, or that its smallest values were not enough."""
    if not est.scaling_short:
        return ""
    return (f" (scaled to the budget with every step-size parameter at its smallest: "
            f"{describe_changes(est.scaled)})")


def _short_warning(est: Estimate) -> str:
    """One line for a scaled plan that fits a step but, at its smallest, too few new fully scored candidates."""
    return (f"{est.strategy}: scaled to the budget with every step-size parameter at its smallest "
            f"({describe_changes(est.scaled)}), the budget fits "
            f"{est.steps or 0:.2f} {est.plan.unit if est.plan else 'step'}s and {est.new_full} new candidates "
            f"scored on all of dev, fewer than {WANTED_NEW_FULL}")


def estimate(task: str | Task = "gsm8k", strategy: str | Strategy = "apo", model: str | Backend = DEFAULT_MODEL,
             *, optimizer_model: str | Backend | None = None, budget: Budget | None = None, seed: int = 0,
             answer_mode: str = "auto", strategy_params: Mapping[str, Any] | None = None,
             n_train: int | None = None, n_dev: int | None = 30, n_test: int | None = 50,
             data_dir: str | Path | None = None, offline: bool = False, input_field: str | None = None,
             target_field: str | None = None, metric: str | None = None, labels: Sequence[str] | None = None,
             gold: str | None = None, model_options: Mapping[str, Any] | None = None,
             optimizer_options: Mapping[str, Any] | None = None, select_on: str = "dev", select_top: int = 3,
             scale_to_budget: bool = True,
             config: RunConfig | None = None) -> Estimate:
    """Check a run's configuration and bound what it would spend, without calling any model.

    Takes the arguments of :func:`promptopt.optimize` that change the spend, or a
    whole :class:`RunConfig` as ``config``. Nothing is written (the cache is not opened).
    Costs are known for local backends (0); for others ``usd`` is None.
    """
    arguments = {k: v for k, v in locals().items() if k != "config"}  # RunConfig's fields
    cfg = config_from_call(config, arguments, "estimate")
    strat, task_obj = check_run_inputs(cfg)
    if isinstance(task_obj, TaskSet) and cfg.system is not None:  # priced under the system prompt searched
        task_obj = task_obj.with_system(cfg.system)  # (the model's own default is short, and needs the model)
    with Session(cfg.model, cfg.optimizer_model, budget=Budget(), cache_path=None, model_options=cfg.model_options,
                 optimizer_options=cfg.optimizer_options) as session:
        mode = resolve_answer_mode(task_obj, session.target, cfg.answer_mode)
        modes = resolve_answer_modes(task_obj, session.target, cfg.answer_mode)
        strat.check_backend(session.target, mode)  # a missing capability is found by a dry run too
        held_out = None
        if cfg.select_on == "held-out":  # a cap too small for the selection on dev, too
            held_out = plan_held_out(task_obj, session.target, mode, seed=cfg.seed, select_top=cfg.select_top,
                                     budget=cfg.budget_for(mode))
        names = {session.target.name, session.optimizer.name}
        model_string = session.target.model_string
    budget = cfg.budget_for(mode)
    per_example = _calls_per_example(task_obj, mode, modes)
    test_calls = int(2 * len(task_obj.splits.test) * per_example)
    per_call = _tokens_per_call(task_obj, mode, modes)
    search_target, search_optimizer = budget.target_calls, budget.optimizer_calls
    tokens = None
    if search_target is not None and search_optimizer is not None:
        tokens = (search_target + test_calls) * per_call + search_optimizer * OPTIMIZER_TOKENS_PER_CALL
    if budget.tokens is not None:
        tokens = budget.tokens if tokens is None else min(tokens, budget.tokens)
    usd = 0.0 if names <= LOCAL_BACKENDS else None
    pricing = _Pricing.of(task_obj, mode, budget, cfg.finalist_reserve, held_out, modes)
    scaling = _scaled(cfg, strat, pricing)
    shown_mode = set_config(task_obj, modes, None).get("answer_mode", mode)  # "mixed", as the run will say
    est = Estimate(task=task_obj.name, strategy=strat.name, model=model_string, answer_mode=shown_mode, budget=budget,
                   calls_per_example=per_example, search_target_calls=search_target,
                   search_optimizer_calls=search_optimizer, test_target_calls=test_calls,
                   target_tokens_per_call=per_call, tokens=tokens, usd=usd, scaled=scaling.changes,
                   scaling_short=scaling.short)
    return _with_plan(est, scaling.strategy, pricing)


@dataclass(frozen=True)
class _Pricing:
    """What one run's plans cost in: its task, answer mode and budget, and the Run's finalist reserve.

    ``dev_calls`` and ``n_train`` are the strategy's splits: with ``select_on="held-out"`` its search
    split and the rest of train, and ``held_back`` the target calls the Run spends or keeps for the
    selection on dev (the seed there, and ``select_top`` finalists), which the strategy never gets.
    ``n_tasks`` is the number of tasks searched together (1 on one task).
    """

    n_train: int
    dev_calls: list[int]
    budget: Budget
    per_example: float
    per_call: int
    reserve: int | None
    held_back: int = 0
    n_tasks: int = 1

    @classmethod
    def of(cls, task: Task, mode: str, budget: Budget, reserve: int | None,
           held_out: HeldOutPlan | None = None, modes: Modes | None = None) -> _Pricing:
        per_example, per_call = _calls_per_example(task, mode, modes), _tokens_per_call(task, mode, modes)
        n_tasks = len(task.members) if isinstance(task, TaskSet) else 1
        if held_out is None:
            return cls(len(task.splits.train), _dev_calls(task, mode, modes), budget, per_example, per_call,
                       reserve, n_tasks=n_tasks)
        held_back = held_out.reserve + sum(_calls_of(task, mode, held_out.dev, modes))
        return cls(len(held_out.train), _calls_of(task, mode, held_out.search, modes), budget, per_example,
                   per_call, reserve, held_back, n_tasks)

    def plan_of(self, strat: Strategy) -> StepPlan | None:
        """``strat``'s step plan on these splits; the number of tasks is passed only on a set of two or
        more, so a plan that predates sets (``step_plan(n_dev, n_train)``) is called as it always was."""
        on_set = {"n_tasks": self.n_tasks} if self.n_tasks > 1 and _takes_n_tasks(strat) else {}
        return strat.step_plan(len(self.dev_calls), self.n_train, **on_set)


def _takes_n_tasks(strat: Strategy) -> bool:
    """Whether ``strat.step_plan`` accepts ``n_tasks`` (a plugin's plan may predate sets of tasks)."""
    params = inspect.signature(strat.step_plan).parameters.values()
    return any(p.name == "n_tasks" or p.kind is inspect.Parameter.VAR_KEYWORD for p in params)


@dataclass(frozen=True)
class _Figures:
    """A strategy's plan under a budget: what fits under each cap, the steps that fit (inf: no cap),
    the new fully scored candidates (None: no cap and no end), the target calls before step 1 and
    the finalists of the plan's finish scored on dev once its whole loop has run."""

    plan: StepPlan
    fit: _Fit
    steps: float
    new_full: int | None
    fixed: float
    finished: int

    def enough(self) -> bool:
        """One full step and WANTED_NEW_FULL new fully scored candidates fit, or the whole paper loop does.

        A loop that runs until the budget ends and scores nothing on dev as it goes (SPRIG's beam
        search) leaves the Run only the finalists it kept calls for, however large the budget: for
        it one full step is enough, as no budget buys more fully scored candidates."""
        whole_loop = (self.plan.paper_steps is not None and self.steps >= self.plan.paper_steps
                      and self.finished == self.plan.finish.new_full)  # its finalists scored on dev too
        capped = self.plan.paper_steps is None and self.plan.per_step.new_full == 0
        wanted = self.new_full is None or self.new_full >= WANTED_NEW_FULL or capped
        return whole_loop or (self.steps >= 1 and wanted)


def _figures(strat: Strategy, pricing: _Pricing) -> _Figures | None:
    """``strat``'s plan priced under ``pricing`` (None when it has no plan)."""
    dev_calls = pricing.dev_calls
    plan = pricing.plan_of(strat)
    if plan is None:
        return None
    cap = pricing.budget.target_calls
    left = None if cap is None else cap - pricing.held_back  # the finalist reserve counts what is left after it
    kept, finalists_kept = _kept_for_finalists(strat, pricing.reserve, dev_calls, left)
    kept += pricing.held_back
    seed = Spend(example_evals=len(dev_calls))  # the Run scores the seed on dev before step 1
    costs = _cap_costs(pricing.budget, pricing.per_example, pricing.per_call)
    fit = _fit(plan, costs, seed, kept)
    steps = min(fit.steps.values(), default=math.inf)
    fixed = (seed.example_evals + plan.setup.example_evals) * pricing.per_example + plan.setup.loss_calls + kept
    endless = math.isinf(steps) and plan.paper_steps is None  # no cap and no end: no count
    finished = _finished(plan, fit)
    new_full = None if endless else _new_full(plan, steps, finished, finalists_kept)
    return _Figures(plan, fit, steps, new_full, fixed, finished)


def _scaled(cfg: RunConfig, strat: Strategy, pricing: _Pricing) -> Scaling:
    if not cfg.scale_to_budget:
        return Scaling(strat)

    def fits(candidate: Strategy) -> bool:
        figures = _figures(candidate, pricing)
        return figures is None or figures.enough()

    return scale_to_fit(strat, fits, explicit_params(cfg.strategy, cfg.strategy_params))


def scaled_to_budget(cfg: RunConfig, strat: Strategy, task: Task, mode: str,
                     held_out: HeldOutPlan | None = None, modes: Modes | None = None) -> Scaling:
    """``strat`` with its step-size parameters shrunk to ``cfg``'s budget in answer mode ``mode``.

    With ``cfg.scale_to_budget``, the parameters the strategy names in ``scalable`` and ``cfg``
    does not set explicitly shrink (see :mod:`promptopt.strategies._scaling`) until its plan fits
    one full step and :data:`WANTED_NEW_FULL` new candidates scored on all of dev (or its whole
    paper loop) after the seed on dev, its setup and the calls the Run keeps for finalists. The
    Run calls it once the answer mode, and so the default budget, is known; so does the estimate.
    With ``held_out`` (``select_on="held-out"``) the plan is priced on the search split, after the
    calls held back for the selection on dev; on a set of tasks each example costs the calls of its
    task's answer mode (``modes``).
    """
    pricing = _Pricing.of(task, mode, cfg.budget_for(mode), cfg.finalist_reserve, held_out, modes)
    return _scaled(cfg, strat, pricing)


def _with_plan(est: Estimate, strat: Strategy, pricing: _Pricing) -> Estimate:
    """``est`` with the strategy's plan: the steps and new fully scored candidates the budget fits."""
    figures = _figures(strat, pricing)
    if figures is None:
        return est
    plan, steps = figures.plan, figures.steps
    est = replace(est, plan=plan, steps=None if math.isinf(steps) else steps,
                  fixed_target_calls=math.ceil(figures.fixed), new_full=figures.new_full)
    if steps < 1 and plan.paper_steps != 0:
        return replace(est, warnings=(_warning(est, plan, steps, figures.fit),))
    if est.scaling_short and not figures.enough():
        return replace(est, warnings=(_short_warning(est),))
    return est
