"""The estimate's plan: steps and new fully scored candidates that fit, and the warning when not one step does."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

import promptopt
from promptopt.cli import app
from promptopt.strategies import Strategy
from promptopt.strategies._base import Spend, StepPlan
from promptopt.testing import FakeBackend
from promptopt.types import Request

TASK = "synthetic:sentiment"  # 100 train, n_dev dev examples, two labels


def _estimate(strategy: str, budget: promptopt.Budget, mode: str = "generate", **kw: object) -> promptopt.Estimate:
    """The plan of the paper's parameters (not scaled to the budget)."""
    kw = {"scale_to_budget": False, **kw}
    return promptopt.estimate(TASK, strategy, FakeBackend(), budget=budget, answer_mode=mode, n_dev=10, **kw)  # type: ignore[arg-type]


@pytest.mark.parametrize(("mode", "one_step"), [("generate", 10 + 8 * 10), ("choice", 2 * (10 + 8 * 10))])
def test_opro_warns_below_one_step_and_not_at_it(mode: str, one_step: int) -> None:
    # the seed on 10 dev examples, then 8 instructions on them (two calls each in choice mode)
    short = _estimate("opro", promptopt.Budget(target_calls=one_step - 1), mode)
    assert short.steps is not None and short.steps < 1 and short.new_full == 0
    [warning] = short.warnings
    assert warning.startswith("opro: ") and f"--budget-target-calls {one_step} would fit one step" in warning
    enough = _estimate("opro", promptopt.Budget(target_calls=one_step), mode)
    assert enough.steps == 1.0 and enough.new_full == 8 and enough.warnings == ()
    assert enough.target_calls_for(1) == one_step


def test_the_cap_that_binds_is_the_one_named() -> None:
    est = _estimate("opro", promptopt.Budget(target_calls=10_000, optimizer_calls=7))
    [warning] = est.warnings
    assert "--budget-optimizer-calls 8" in warning and "--budget-target-calls" not in warning
    assert est.steps == pytest.approx(7 / 8)
    assert _estimate("opro", promptopt.Budget(target_calls=10_000, optimizer_calls=8)).warnings == ()


def test_a_token_cap_counts_target_and_optimizer_tokens() -> None:
    plain = _estimate("opro", promptopt.Budget())
    per_call = plain.target_tokens_per_call
    need = (10 + 8 * 10) * per_call + 8 * 1000  # target calls x tokens per call + optimizer calls x 1000
    assert "--budget-tokens" in _estimate("opro", promptopt.Budget(tokens=need - 1)).warnings[0]
    assert _estimate("opro", promptopt.Budget(tokens=need)).warnings == ()
    assert plain.steps is None and plain.warnings == () and plain.new_full == 200 * 8  # no cap: the whole loop


def test_steps_and_candidates_that_fit() -> None:
    est = _estimate("opro", promptopt.Budget(target_calls=10 + 3 * 80 + 79))
    assert est.steps == pytest.approx(3 + 79 / 80) and est.new_full == 3 * 8 and est.paper_steps == 200


def test_calls_kept_back_for_finalists_come_before_the_steps() -> None:
    # APE leaves candidates scored on part of dev, so the Run keeps back 10 - stage_examples dev calls for one
    settings: dict[str, object] = {"task": TASK, "strategy": "ape", "model": FakeBackend(), "n_dev": 10,
                                   "answer_mode": "generate", "budget": promptopt.Budget(target_calls=1000),
                                   "strategy_params": {"stage_examples": 4}}
    kept = promptopt.estimate(config=promptopt.RunConfig(**settings))  # type: ignore[arg-type]
    none_kept = promptopt.estimate(config=promptopt.RunConfig(**settings, finalist_reserve=0))  # type: ignore[arg-type]
    assert kept.fixed_target_calls - none_kept.fixed_target_calls == 10 - 4
    assert none_kept.fixed_target_calls == 10  # the seed on dev
    assert kept.plan is not None and kept.steps is not None and none_kept.steps is not None
    round_calls = kept.target_calls_of(kept.plan.per_step)
    assert (none_kept.steps - kept.steps) * round_calls == pytest.approx(10 - 4)  # fewer calls left for the steps


def test_a_loop_the_budget_stops_leaves_the_finalists_the_run_kept_calls_for() -> None:
    # PromptWizard scores on train only; its three finalists reach dev only if all 3 rounds fit
    settings: dict[str, object] = {"task": TASK, "strategy": "promptwizard", "model": FakeBackend(), "n_dev": 10,
                                   "answer_mode": "generate", "budget": promptopt.Budget(target_calls=100)}
    default = promptopt.estimate(config=promptopt.RunConfig(**settings))  # type: ignore[arg-type]
    two = promptopt.estimate(config=promptopt.RunConfig(**settings, finalist_reserve=2))  # type: ignore[arg-type]
    assert default.steps is not None and 1 < default.steps < 3
    assert (default.new_full, two.new_full) == (1, 2)
    whole = _estimate("promptwizard", promptopt.Budget(target_calls=10_000))
    assert whole.new_full == 3


def test_the_setup_comes_before_the_first_step() -> None:
    # hill climbing scores the seed on its score set (50 of the 100 training examples) before iterating
    est = _estimate("hill-climb", promptopt.Budget(target_calls=10 + 50 + 10 * 50 + 10 - 1),
                    strategy_params={"n_score": 50})
    assert est.fixed_target_calls == 10 + 50 and est.steps is not None and est.steps < 1 and est.warnings


def _unique_proposals(req: Request) -> str:
    """A new instruction per optimizer request (in OPRO's tags); the target always says 'positive'."""
    if req.role == "target":
        return "positive"
    return f"<INS>Say whether the review is positive or negative ({req.key()[:12]}).</INS>"


@pytest.mark.parametrize(("strategy", "params", "steps"), [
    ("opro", {"n_steps": 2}, 2), ("ape", {}, 1)])
def test_the_plan_is_what_the_loop_spends(strategy: str, params: dict[str, object], steps: int,
                                          tmp_path: Path) -> None:
    """With every proposal new and usable, a run of whole steps spends what the plan says."""
    backend = FakeBackend("unique", reply=_unique_proposals, can_score=False)
    settings: dict[str, object] = {"answer_mode": "generate", "n_dev": 30, "strategy_params": params}
    est = promptopt.estimate(TASK, strategy, backend, budget=promptopt.Budget(), **settings)  # type: ignore[arg-type]
    result = promptopt.optimize(TASK, strategy, backend, budget=promptopt.Budget(), runs_dir=tmp_path, cache=False,
                                **settings)  # type: ignore[arg-type]
    assert est.plan is not None
    search = result.usage["search"]
    assert search["target"]["calls"] == 30 + steps * est.plan.per_step.example_evals
    assert search["optimizer"]["calls"] == steps * est.plan.per_step.optimizer_calls


def test_dry_run_prints_the_plan_and_warns_on_stderr(tmp_path: Path) -> None:
    base = ["optimize", "--task", TASK, "--model", "fake:x", "--strategy", "opro", "--answer-mode", "generate",
            "--n-dev", "10", "--dry-run", "--runs-dir", str(tmp_path / "runs"), "--no-scale-to-budget"]
    short = CliRunner().invoke(app, [*base, "--budget-target-calls", "89"], env={"COLUMNS": "200"})
    assert short.exit_code == 0, short.output
    warnings = [line for line in short.stderr.splitlines() if line.startswith("warning: ")]
    assert len(warnings) == 1 and "--budget-target-calls 90" in warnings[0], short.stderr
    assert "warning" not in short.stdout
    assert re.search(r"one step ≈ 80 example evaluations \(80 target calls\), 8 optimizer calls", short.stdout)
    assert "the budget fits 0.99" in short.stdout
    enough = CliRunner().invoke(app, [*base, "--budget-target-calls", "90"], env={"COLUMNS": "200"})
    assert enough.exit_code == 0 and "warning" not in enough.stderr and "the budget fits 1.00" in enough.stdout


class _FinishOnDev(Strategy):
    """Two steps, each scoring a new instruction on ten train examples; then both on dev (the finish)."""

    name = "finish-on-dev"

    def optimize(self, ctx: Any) -> list[promptopt.Prompt]:
        found = []
        for step in range(2):
            found.append(ctx.with_text(ctx.seed_prompt, f"Answer carefully ({step})."))
            ctx.record(found[-1], [ctx.seed_prompt], "edit")
            ctx.evaluate([found[-1]], ctx.train[:10])
        for prompt in found:
            ctx.evaluate([prompt])
        return found

    def step_plan(self, n_dev: int, n_train: int, *, n_tasks: int = 1) -> StepPlan:
        return StepPlan("step", Spend(example_evals=10), paper_steps=2,
                        finish=Spend(example_evals=2 * n_dev, new_full=2))


@pytest.mark.parametrize(("cap", "new_full"), [(39, 0), (40, 1), (49, 1), (50, 2)])
def test_a_finish_the_budget_cannot_pay_for_is_not_counted(tmp_path: Path, cap: int, new_full: int) -> None:
    # the seed on 10 dev examples and the two steps take 30 calls; each finalist on dev takes 10 more
    settings: dict[str, Any] = {"answer_mode": "generate", "n_dev": 10, "budget": promptopt.Budget(target_calls=cap)}
    est = promptopt.estimate(TASK, _FinishOnDev(), FakeBackend(), **settings)
    result = promptopt.optimize(TASK, _FinishOnDev(), FakeBackend(), runs_dir=tmp_path, cache=False, **settings)
    assert est.steps is not None and est.steps >= 2  # the whole loop fits every time
    assert est.new_full == result.n_fully_scored - 1 == new_full
