"""Plans at the default budget: how much of each strategy's loop the budget pays for.

``python -m bench plans [--task sst2] [--set sst2,mr,subj] [--n-dev 30] [--want 3]``

No model is called: for each registered strategy, in choice and in generate mode,
:func:`promptopt.estimate` works out from the strategy's :meth:`step_plan` how many
full steps of its loop fit the default budget (``promptopt.config.default_budget``),
how many new candidates scored on all of dev that leaves, and whether the dry run
warns, first with the paper's parameters (``scale_to_budget=False``). The next two
columns give the ``--budget-target-calls`` that would fit one full step, and ``--want``
new fully scored candidates, of the paper's parameters. The last two are the run's
default, the strategy scaled to the budget (``scale_to_budget=True``): the steps and
new fully scored candidates that fit, and the parameters it shrank ("smallest": every
one at its minimum, and still short). Prints a Markdown table, then a second one for the
strategies written for sets of tasks (:data:`SET_STRATEGIES`, and any that needs two tasks or
more), priced on the set ``--set`` (``n_dev`` examples of each task).
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from promptopt.estimate import Estimate
    from promptopt.strategies._base import StepPlan

MODES = ("choice", "generate")
#: strategies written to search one system prompt for a set of tasks: priced on ``--set``
SET_STRATEGIES = ("sprig", "metaspo")


def main(argv: list[str]) -> int:
    from promptopt.config import DEFAULT_MODEL
    from promptopt.strategies import get_strategy, list_strategies

    parser = argparse.ArgumentParser(prog="python -m bench plans")
    parser.add_argument("--task", default="sst2")
    parser.add_argument("--set", default="sst2,mr,subj", help="the set of tasks strategies written for sets are "
                                                              "priced on")
    parser.add_argument("--model", default=DEFAULT_MODEL)
    parser.add_argument("--n-dev", type=int, default=30)
    parser.add_argument("--want", type=int, default=3, help="new fully scored candidates to price")
    parser.add_argument("--data-dir", default=str(Path(__file__).resolve().parents[2] / "shared" / "data"))
    args = parser.parse_args(argv)
    names = [info.name for info in list_strategies()]
    on_sets = [n for n in names if n in SET_STRATEGIES or get_strategy(n).min_tasks > 1]
    _table([n for n in names if n not in on_sets], args.task, args)
    if on_sets:
        print(f"\nWritten for sets of tasks, on the set {args.set} ({args.n_dev} dev examples of each task):\n")
        _table(on_sets, args.set, args)
    return 0


def _table(names: list[str], task: str, args: argparse.Namespace) -> None:
    import promptopt

    print("| strategy | mode | budget | one step (target calls) | steps that fit / paper | new fully scored "
          f"| warning | --budget-target-calls for 1 step | for {args.want} new fully scored "
          "| scaled: steps / new fully scored | scaled parameters |")
    print("|---|---|---:|---|---|---:|---|---:|---:|---|---|")
    for name in names:
        for mode in MODES:
            ests = [promptopt.estimate(task, name, args.model, answer_mode=mode, n_dev=args.n_dev,
                                       data_dir=args.data_dir, offline=True, scale_to_budget=scale)
                    for scale in (False, True)]
            print(_row(*ests, want=args.want))


def _row(est: Estimate, scaled: Estimate, *, want: int) -> str:
    plan = est.plan
    if plan is None:
        return f"| {est.strategy} | {est.answer_mode} | {est.budget.target_calls} | no plan | | | | | | | |"
    paper = "∞" if plan.paper_steps is None else str(plan.paper_steps)
    for_want = _calls_for_candidates(est, plan, want)
    return (f"| {est.strategy} | {est.answer_mode} | {est.budget.target_calls} | {plan.unit}: "
            f"{est.target_calls_of(plan.per_step):,.0f} | {_steps(est)} / {paper} | {est.new_full} | "
            f"{'yes' if est.warnings else 'no'} | {est.target_calls_for(1):,} | "
            f"{'never' if for_want is None else f'{for_want:,}'} | {_steps(scaled)} / {scaled.new_full} | "
            f"{_scaled_params(scaled)} |")


def _steps(est: Estimate) -> str:
    return "all" if est.steps is None else f"{est.steps:.2f}"


def _scaled_params(est: Estimate) -> str:
    from promptopt.strategies._scaling import describe_changes

    changes = describe_changes(est.scaled)
    return f"{changes or 'none'}{' (smallest)' if est.scaling_short else ''}"


def _calls_for_candidates(est: Estimate, plan: StepPlan, want: int) -> int | None:
    """Target calls for ``want`` new fully scored candidates: whole steps (and the finish, when the
    paper's loop must end to get them); None when the plan never gets that many."""
    have, per, paper = plan.setup.new_full, plan.per_step.new_full, plan.paper_steps
    steps = 0 if have >= want else math.ceil(round((want - have) / per, 6)) if per > 0 else math.inf
    if paper is not None and steps >= paper:  # the finish's candidates come only once the loop ends
        if have + paper * per + plan.finish.new_full < want:
            return None
        return (est.target_calls_for(paper) or 0) + math.ceil(est.target_calls_of(plan.finish))
    return None if math.isinf(steps) else est.target_calls_for(steps)
