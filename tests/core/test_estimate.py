from __future__ import annotations

from pathlib import Path

from parity_fixtures import parity_target, scripted_optimizer
from typer.testing import CliRunner

import promptopt
from promptopt.cli import app
from promptopt.tasks import Task
from promptopt.testing import FakeBackend

SMALL = {"rounds": 2, "beam_size": 2, "minibatch_size": 12, "n_gradients": 2, "mc_samples_per_step": 1}


def _backend() -> FakeBackend:
    return FakeBackend("scripted", reply=lambda r: scripted_optimizer(r) if r.role == "optimizer"
                       else parity_target(r))


def test_the_estimate_bounds_what_the_run_spends(parity_task: Task, tmp_path: Path) -> None:
    budget = promptopt.Budget(target_calls=40, optimizer_calls=5)
    for mode in ("generate", "choice"):
        est = promptopt.estimate(parity_task, "apo", _backend(), budget=budget, answer_mode=mode,
                                 strategy_params=SMALL)
        assert est.answer_mode == mode and est.usd == 0.0
        assert est.calls_per_example == (1.0 if mode == "generate" else 2.0)
        assert est.test_target_calls == 2 * len(parity_task.splits.test) * est.calls_per_example
        result = promptopt.optimize(parity_task, "apo", _backend(), budget=budget, answer_mode=mode,
                                    strategy_params=SMALL, runs_dir=tmp_path / mode, cache=False)
        total = result.usage["total"]
        assert est.target_calls is not None and total["target"]["calls"] <= est.target_calls
        assert total["optimizer"]["calls"] <= 5


def test_without_caps_the_estimate_says_so(parity_task: Task) -> None:
    est = promptopt.estimate(parity_task, "apo", _backend(), budget=promptopt.Budget(tokens=1000),
                             answer_mode="generate")
    assert est.search_target_calls is None and est.target_calls is None and est.tokens == 1000


def test_dry_run_prints_the_bounds_and_writes_nothing(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    result = CliRunner().invoke(app, ["optimize", "--task", "synthetic:sentiment", "--model", "fake:x", "--dry-run",
                                      "--budget-target-calls", "77", "--runs-dir", str(runs)],
                                env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "77" in result.stdout and "Nothing was run or written" in result.stdout
    assert not runs.exists()


def test_dry_run_shows_a_target_token_cap_only_when_given(tmp_path: Path) -> None:
    base = ["optimize", "--task", "synthetic:sentiment", "--model", "fake:x", "--dry-run",
            "--runs-dir", str(tmp_path / "runs")]
    capped = CliRunner().invoke(app, [*base, "--budget-target-tokens", "12345"], env={"COLUMNS": "200"})
    assert capped.exit_code == 0, capped.output
    assert "target-model tokens, search (cap)" in capped.stdout and "12,345" in capped.stdout
    plain = CliRunner().invoke(app, base, env={"COLUMNS": "200"})
    assert plain.exit_code == 0 and "target-model tokens" not in plain.stdout
