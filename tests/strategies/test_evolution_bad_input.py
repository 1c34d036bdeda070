"""Bad input to the evolutionary strategies: one ConfigError line before any call, exit 2 from the CLI."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

import promptopt
from promptopt.cli import app
from promptopt.exceptions import CapabilityError, ConfigError
from promptopt.tasks import Task, load_task
from promptopt.testing import FakeBackend

DATA_DIR = Path(os.environ.get("PROMPTOPT_DATA_DIR") or Path(__file__).parents[2].parent / "shared" / "data")
EVOLUTION = ("evoprompt-ga", "evoprompt-de", "promptbreeder", "multiobjective")


@pytest.fixture
def task(tmp_path: Path) -> Task:
    return load_task("synthetic:sentiment", data_dir=tmp_path, n_train=10, n_dev=4, n_test=4)


def _optimize(task: Task, tmp_path: Path, backend: FakeBackend, strategy: str, mode: str = "auto",
              **params: Any) -> promptopt.Result:
    return promptopt.optimize(task, strategy, backend, answer_mode=mode, strategy_params=params, cache=False,
                              runs_dir=tmp_path / "runs")


@pytest.mark.parametrize(("strategy", "params", "message"), [
    ("multiobjective", {"objectives": "accuracy,speed"},
     "the 'objectives' parameter of MultiObjective must be a non-empty list of accuracy, margin, length, "
     "output-length, loss (or those names separated by commas); got 'accuracy,speed'"),
    ("multiobjective", {"objectives": ""}, "the 'objectives' parameter of MultiObjective must be"),
    ("multiobjective", {"select": "fastest"},
     "the 'select' parameter of MultiObjective must be 'best-accuracy', 'knee' or 'shortest-within:<tolerance "
     "in [0, 1]>' (e.g. 'shortest-within:0.01'); got 'fastest'"),
    ("multiobjective", {"select": "shortest-within:abc"}, "the 'select' parameter of MultiObjective must be"),
    *[(name, {"population_size": 1}, f"the 'population_size' parameter of {cls} must be an int >= 2; got 1")
      for name, cls in zip(EVOLUTION, ("EvoPromptGA", "EvoPromptDE", "PromptBreeder", "MultiObjective"),
                           strict=True)],
    ("promptbreeder", {"operators": "first-order,telepathy"}, "the 'operators' parameter of PromptBreeder must be"),
])
def test_bad_parameters_fail_before_any_call(task: Task, tmp_path: Path, strategy: str, params: dict[str, Any],
                                             message: str) -> None:
    backend = FakeBackend()
    with pytest.raises(ConfigError) as caught:
        _optimize(task, tmp_path, backend, strategy, **params)
    assert str(caught.value).startswith(message) and "\n" not in str(caught.value)
    assert backend.n_calls == 0 and not (tmp_path / "runs").exists()


@pytest.mark.parametrize("objective", ["margin", "loss"])
def test_an_objective_needing_scores_is_refused_on_a_backend_without_them(task: Task, tmp_path: Path,
                                                                          objective: str) -> None:
    backend = FakeBackend(can_score=False)
    with pytest.raises(CapabilityError, match=f"the objective '{objective}' of multiobjective .* needs a backend "
                                              "that scores log-probabilities; fake:fake cannot") as caught:
        _optimize(task, tmp_path, backend, "multiobjective", objectives=f"accuracy,{objective}")
    assert isinstance(caught.value, ConfigError) and "\n" not in str(caught.value)
    assert backend.n_calls == 0


@pytest.mark.parametrize(("objective", "mode"), [("margin", "generate"), ("output-length", "choice")])
def test_an_objective_of_the_other_answer_mode_is_refused_before_any_call(
        task: Task, tmp_path: Path, objective: str, mode: str) -> None:
    backend = FakeBackend()
    with pytest.raises(ConfigError, match=f"the objective '{objective}' of multiobjective .* exists only in "
                                          f".* this run is in {mode} mode; use --answer-mode"):
        _optimize(task, tmp_path, backend, "multiobjective", mode, objectives=f"accuracy,{objective}")
    assert backend.n_calls == 0 and not (tmp_path / "runs").exists()  # refused once the mode was known


@pytest.mark.parametrize(("args", "needle"), [
    (["multiobjective", "--param", "objectives=accuracy,speed"], "'objectives' parameter of MultiObjective"),
    (["multiobjective", "--param", "select=knee-deep"], "'select' parameter of MultiObjective"),
    (["multiobjective", "--param", "objectives=accuracy,margin", "--answer-mode", "generate"],
     "the objective 'margin' of multiobjective"),
    *[([name, "--param", "population_size=1"], "'population_size' parameter") for name in EVOLUTION],
])
def test_the_cli_prints_one_error_line_and_exits_2(tmp_path: Path, args: list[str], needle: str) -> None:
    strategy, *rest = args
    result = CliRunner(env={"COLUMNS": "200", "PROMPTOPT_DATA_DIR": str(DATA_DIR)}).invoke(app, [
        "optimize", "--model", "fake:x", "--task", "synthetic:sentiment", "--strategy", strategy, *rest,
        "--n-dev", "4", "--no-progress", "--runs-dir", str(tmp_path / "runs")])
    assert result.exit_code == 2
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:") and needle in lines[0]
