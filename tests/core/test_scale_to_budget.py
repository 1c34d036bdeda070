"""Strategies scaled to the budget: the estimate's plan, the run's parameters and id, and what a run completes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

import promptopt
from promptopt.cli import app
from promptopt.config import RunConfig, default_budget
from promptopt.strategies import HillClimbing, Strategy
from promptopt.strategies._base import Spend, StepPlan
from promptopt.testing import FakeBackend
from promptopt.types import Request

TASK = "synthetic:sentiment"  # 100 train examples, two labels: the default budget is sst2's
N_DEV = 30


def _estimate(strategy: str | Strategy, mode: str, **kw: Any) -> promptopt.Estimate:
    return promptopt.estimate(TASK, strategy, FakeBackend(), answer_mode=mode, n_dev=N_DEV, **kw)


def _short(est: promptopt.Estimate) -> bool:
    return est.steps is None or est.steps < 1 or (est.new_full or 0) < 3


@pytest.mark.parametrize("mode", ["choice", "generate"])
@pytest.mark.parametrize("strategy", ["apo", "ape", "opro", "hill-climb", "evoprompt-ga", "rlprompt"])
def test_the_scaled_plan_fits_a_step_and_three_new_candidates_at_the_default_budget(strategy: str, mode: str) -> None:
    paper = _estimate(strategy, mode, scale_to_budget=False)
    scaled = _estimate(strategy, mode)
    assert scaled.budget == paper.budget == default_budget(mode)
    assert bool(scaled.scaled) == _short(paper)  # scaled exactly when the paper's values fall short
    assert scaled.steps is not None and scaled.steps >= 1 and scaled.warnings == () and not scaled.scaling_short
    if (strategy, mode) == ("ape", "generate"):
        # APE's loop is one round whose filter keeps 10% of the proposals: its whole loop fits, with two finalists
        assert scaled.paper_steps == 1 and scaled.new_full == 2
    else:
        assert scaled.new_full is not None and scaled.new_full >= 3


def test_a_strategy_that_cannot_fit_warns_with_its_parameters_at_their_smallest() -> None:
    est = _estimate("evoprompt-de", "generate")  # a base and two donors: 3 x (3 x 10 + 30) > 170
    assert est.scaling_short and dict(est.scaled) == {"n_score": (100, 10), "population_size": (10, 3)}
    [warning] = est.warnings
    assert "every step-size parameter at its smallest" in warning and "fewer than 3" in warning


def test_an_explicit_parameter_is_kept_even_at_its_default_value() -> None:
    given = _estimate("hill-climb", "generate", strategy_params={"n_score": 100})
    assert "n_score" not in given.scaled and "n_candidates" in given.scaled
    instance = _estimate(HillClimbing(n_candidates=10, n_score=60), "generate")
    assert "n_score" not in instance.scaled and "n_candidates" in instance.scaled
    # with both given there is nothing left to shrink: the paper's plan, with its warning
    both = _estimate("hill-climb", "generate", strategy_params={"n_score": 100, "n_candidates": 10})
    assert both.scaled == {} and both.warnings


def _positive(req: Request) -> str:
    """The target always answers 'positive' (half right); the optimizer gives a new reason or instruction
    per request, in APO's tags and OPRO's."""
    if req.role == "target":
        return "positive"
    key = req.key()[:12]
    return f"<START>Label the review's sentiment ({key}).<END> <INS>Label the review's sentiment ({key}).</INS>"


def _run(strategy: str, tmp_path: Path, **kw: Any) -> promptopt.Result:
    return promptopt.optimize(TASK, strategy, FakeBackend(reply=_positive), answer_mode="generate", n_dev=N_DEV,
                              runs_dir=tmp_path, cache=False, **kw)


def _config(result: promptopt.Result) -> dict[str, Any]:
    config: dict[str, Any] = json.loads(Path(result.run_dir, "config.json").read_text())
    return config


def test_without_scaling_the_parameters_and_run_id_are_as_before(tmp_path: Path) -> None:
    # run ids computed with promptopt before scale_to_budget existed (commit 7b9068f), same configurations
    paper = _run("apo", tmp_path / "paper", scale_to_budget=False)
    assert paper.run_id == "synthetic-sentiment-apo-e7524f9b" and paper.scaled_to_budget == {}
    assert "scaled_to_budget" not in _config(paper)
    assert _config(paper)["strategy_params"] == promptopt.strategies.APO().get_params()
    unscaled = _run("fewshot", tmp_path / "fewshot")  # fits the budget as it is: nothing scaled, same id
    assert unscaled.run_id == "synthetic-sentiment-fewshot-8a2919e6" and unscaled.scaled_to_budget == {}


def test_a_scaled_run_records_its_parameters_and_gets_its_own_id(tmp_path: Path) -> None:
    scaled = _run("apo", tmp_path)
    config = _config(scaled)
    assert scaled.run_id != "synthetic-sentiment-apo-e7524f9b"
    assert config["scaled_to_budget"] == scaled.scaled_to_budget == {
        "minibatch_size": [64, 16], "beam_size": [4, 1], "max_expansion_factor": [8, 3]}
    assert {k: config["strategy_params"][k] for k in ("minibatch_size", "beam_size", "max_expansion_factor")} == {
        "minibatch_size": 16, "beam_size": 1, "max_expansion_factor": 3}
    explicit = _run("apo", tmp_path / "explicit", strategy_params={"beam_size": 4})
    assert _config(explicit)["strategy_params"]["beam_size"] == 4 and "beam_size" not in explicit.scaled_to_budget


def _events(result: promptopt.Result) -> list[dict[str, Any]]:
    return [json.loads(line) for line in Path(result.run_dir, "events.jsonl").read_text().splitlines()]


def _new_on_all_of_dev(result: promptopt.Result) -> set[str]:
    """Candidates other than the seed with an evaluation on every dev example."""
    return {e["prompt_id"] for e in _events(result) if e["type"] == "evaluation" and e["dev"] and e["n"] == N_DEV
            and e["prompt_id"] != result.seed_prompt.id}


def test_a_scaled_opro_run_completes_a_full_step_within_the_budget(tmp_path: Path) -> None:
    result = _run("opro", tmp_path)
    per_step = result.scaled_to_budget["instructions_per_step"][1]
    events = _events(result)
    proposed = {e["prompt_id"] for e in events if e["type"] == "candidate" and e["operator"] != "seed"}
    first_step = {e["prompt_id"] for e in events if e["type"] == "candidate" and e["operator"] != "seed"
                  and e["target_calls"] <= N_DEV}  # proposed before anything but the seed was scored
    assert len(first_step) == per_step and first_step <= _new_on_all_of_dev(result)  # the whole first step
    assert len(_new_on_all_of_dev(result)) >= 3 and proposed
    assert result.usage["search"]["target"]["calls"] <= 200


def test_a_scaled_apo_run_completes_a_full_round_within_the_budget(tmp_path: Path) -> None:
    result = _run("apo", tmp_path)
    rounds = [e["index"] for e in _events(result) if e["type"] == "round"]
    assert rounds[:2] == [0, 1]  # round 0 ended (its selection made the beam of round 1)
    assert len(_new_on_all_of_dev(result)) >= 3
    assert result.usage["search"]["target"]["calls"] <= 200


def test_the_setting_from_the_command_line_and_a_file(tmp_path: Path) -> None:
    base = ["optimize", "--task", TASK, "--model", "fake:x", "--strategy", "hill-climb", "--answer-mode", "generate",
            "--dry-run", "--runs-dir", str(tmp_path / "runs")]
    scaled = CliRunner().invoke(app, base, env={"COLUMNS": "200"})
    assert scaled.exit_code == 0 and "scaled to the budget: n_score 100→10, n_candidates 10→2" in scaled.stdout
    assert "warning" not in scaled.stderr
    paper = CliRunner().invoke(app, [*base, "--no-scale-to-budget"], env={"COLUMNS": "200"})
    assert paper.exit_code == 0 and "scaled to the budget" not in paper.stdout and "warning: " in paper.stderr
    path = tmp_path / "run.toml"
    path.write_text("scale_to_budget = false\n", encoding="utf-8")
    assert RunConfig.from_toml(path).scale_to_budget is False and RunConfig().scale_to_budget is True


def _cli_run(strategy: str, tmp_path: Path, *extra: str) -> Any:
    args = ["optimize", "--task", TASK, "--model", "fake:x", "--strategy", strategy, "--answer-mode", "generate",
            "--n-dev", str(N_DEV), "--no-progress", "--no-cache", "--runs-dir", str(tmp_path / "runs"), *extra]
    return CliRunner().invoke(app, args, env={"COLUMNS": "200"})


def test_the_run_summary_says_what_was_scaled(tmp_path: Path) -> None:
    scaled = _cli_run("hill-climb", tmp_path)
    assert scaled.exit_code == 0, scaled.output
    assert "scaled to the budget: n_score 100→10, n_candidates 10→2; --no-scale-to-budget" in scaled.stdout
    assert "warning" not in scaled.stderr
    paper = _cli_run("hill-climb", tmp_path, "--no-scale-to-budget")
    assert paper.exit_code == 0 and "scaled to the budget" not in paper.stdout


def test_a_run_scaled_to_its_smallest_and_still_short_says_so(tmp_path: Path) -> None:
    short = _cli_run("evoprompt-de", tmp_path)  # see the estimate's warning above: 3 x (3 x 10 + 30) > 170
    assert short.exit_code == 0, short.output
    assert "scaled to the budget: n_score 100→10, population_size 10→3 (every one at its smallest)" in short.stdout
    [warning] = [line for line in short.stderr.splitlines() if line.startswith("warning: ")]
    assert "evoprompt-de" in warning and "--dry-run" in warning
    fits = _run("hill-climb", tmp_path / "fits")
    assert fits.scaled_to_budget and not fits.scaling_short


MIXED = "synthetic:sentiment,synthetic:arithmetic"  # a set: sentiment answers by choice (2 calls), sums by generation


def test_a_set_of_tasks_is_priced_in_each_tasks_answer_mode_and_scaled_to_fit(tmp_path: Path) -> None:
    # the set is mixed and gets generate mode's budget (200 calls), but a sentiment example costs two
    # scoring calls: OPRO's step of 8 instructions on 10 + 10 dev examples is 240 calls, more than the
    # 170 left after the seed
    paper = promptopt.estimate(MIXED, "opro", FakeBackend(), n_dev=10, scale_to_budget=False)
    assert paper.answer_mode == "mixed" and paper.calls_per_example == 1.5 and paper.warnings
    result = promptopt.optimize(MIXED, "opro", FakeBackend(reply=_positive), n_dev=10, runs_dir=tmp_path,
                                cache=False)
    assert result.per_task and result.scaled_to_budget == {"instructions_per_step": [8, 5]}
    events = _events(result)
    seed_id = result.seed_prompt.id
    full = {e["prompt_id"] for e in events if e["type"] == "evaluation" and e["dev"] and e["n"] == 20}
    first_step = {e["prompt_id"] for e in events if e["type"] == "candidate" and e["operator"] != "seed"
                  and e["target_calls"] <= 30}  # proposed before anything but the seed was scored
    assert len(first_step) == 5 and first_step <= full - {seed_id}  # the whole first step, on both tasks
    assert result.usage["search"]["target"]["calls"] <= 200


def test_held_out_selection_prices_the_search_split_after_the_calls_kept_for_dev() -> None:
    on_dev = _estimate("hill-climb", "choice")
    held_out = _estimate("hill-climb", "choice", select_on="held-out", n_train=80)
    # before step 1, in choice mode (2 calls an example): the seed on the 30 examples the strategy scores on
    # (60) and on its score set (2 x n_score); held out, also the seed on dev (60) and three finalists kept for
    # dev (180). A step (10 neighbours on the score set, the best on the 30) fits three times.
    assert (on_dev.fixed_target_calls, held_out.fixed_target_calls) == (60 + 2 * 20, 60 + 2 * 16 + 60 + 180)
    assert dict(on_dev.scaled) == {"n_score": (100, 20)} and dict(held_out.scaled) == {"n_score": (100, 16)}
    assert held_out.steps is not None and held_out.steps >= 1 and (held_out.new_full or 0) >= 3


def test_prompt_selection_scaled_to_the_default_budget_finishes_its_pass(tmp_path: Path) -> None:
    # one pass scores the seed and 4 x 2 generated prompts on 40 training inputs: 360 calls > 200
    paper = _run("prompt-selection", tmp_path / "paper", scale_to_budget=False)
    assert paper.stopped_by is not None and paper.stopped_by.startswith("target call cap")
    scaled = _run("prompt-selection", tmp_path / "scaled")
    assert scaled.scaled_to_budget == {"n_score_examples": [40, 15]} and not scaled.scaling_short
    assert scaled.stopped_by is None and scaled.selector is not None  # the whole pass, then the selector
    assert scaled.usage["search"]["target"]["calls"] <= 200


class _PlanBeforeSets(Strategy):
    """A plugin whose step plan predates sets of tasks (no ``n_tasks``): one instruction, scored on dev."""

    name = "plan-before-sets"
    supports_task_sets = True

    def optimize(self, ctx: Any) -> list[promptopt.Prompt]:
        found = ctx.with_text(ctx.seed_prompt, "Answer carefully.")
        ctx.record(found, [ctx.seed_prompt], "edit")
        ctx.evaluate([found])
        return [found]

    def step_plan(self, n_dev: int, n_train: int) -> StepPlan:  # type: ignore[override]
        return StepPlan("step", Spend(example_evals=n_dev), paper_steps=1)


def test_a_plan_written_before_sets_is_called_as_it_was_on_a_set(tmp_path: Path) -> None:
    est = promptopt.estimate(MIXED, _PlanBeforeSets(), FakeBackend(), n_dev=10)
    assert est.plan is not None and est.steps is not None and est.steps >= 1
    result = promptopt.optimize(MIXED, _PlanBeforeSets(), FakeBackend(reply=_positive), n_dev=10,
                                runs_dir=tmp_path, cache=False)
    assert result.per_task and result.n_fully_scored == 2


def test_the_estimate_and_the_run_agree_on_whether_scaling_fell_short(tmp_path: Path) -> None:
    # evoprompt-de is scaled and still short; promptwizard has nothing to scale for its shortfall
    for strategy in ("evoprompt-de", "promptwizard", "hill-climb"):
        est = _estimate(strategy, "generate")
        result = _run(strategy, tmp_path / strategy)
        assert est.scaling_short == result.scaling_short == (bool(est.scaled) and bool(est.warnings)), strategy
