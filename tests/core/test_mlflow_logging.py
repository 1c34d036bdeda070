"""MLflow logging: a real MLflow store (SQLite in tmp_path) gets the params, per-step metrics and best prompt."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

import promptopt
from promptopt.cli import app
from promptopt.exceptions import ConfigError
from promptopt.mlflow_logging import flatten_params

needs_mlflow = pytest.mark.skipif(importlib.util.find_spec("mlflow") is None,
                                  reason="mlflow is not installed (extra promptopt[mlflow])")
RUN = dict(task="synthetic:sentiment", strategy="apo", model="fake:x", seed=1, n_dev=12, n_test=10,
           strategy_params={"rounds": 2, "minibatch_size": 8}, budget=promptopt.Budget(target_calls=150))


@pytest.fixture
def tracking_uri(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.chdir(tmp_path)  # MLflow puts a SQLite store's artifacts in ./mlruns
    return uri


def _only_run(uri: str, experiment: str) -> Any:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    exp = client.get_experiment_by_name(experiment)
    assert exp is not None, f"no experiment {experiment!r}"
    [run] = client.search_runs([exp.experiment_id])
    return client, run


@needs_mlflow
def test_run_is_logged_with_params_step_metrics_and_best_prompt(tmp_path: Path, tracking_uri: str) -> None:
    result = promptopt.optimize(**RUN, runs_dir=tmp_path / "runs", mlflow=True)  # type: ignore[arg-type]
    client, run = _only_run(tracking_uri, "promptopt")
    assert run.info.status == "FINISHED"
    assert run.info.run_name == result.run_id
    config = json.loads((Path(result.run_dir) / "config.json").read_text())
    assert run.data.params == flatten_params(config)
    assert run.data.params["strategy"] == "apo" and run.data.params["budget.target_calls"] == "150"
    assert run.data.metrics["best_test"] == result.best_test.mean
    assert run.data.metrics["seed_dev"] == result.seed_dev
    assert run.data.tags["promptopt.stopped_by"] == (result.stopped_by or "strategy finished")
    # best dev over the search, one point per step (target calls spent), never decreasing
    history = client.get_metric_history(run.info.run_id, "best_dev")
    steps = [m.step for m in sorted(history, key=lambda m: (m.step, m.timestamp))]
    assert len(set(steps)) >= 3 and steps == sorted(steps)
    values = [m.value for m in sorted(history, key=lambda m: (m.step, m.timestamp))]
    assert values == sorted(values) and values[-1] == result.best_dev
    assert len(client.get_metric_history(run.info.run_id, "candidate_dev")) >= 2
    artifact = Path(client.download_artifacts(run.info.run_id, "best_prompt.txt", str(tmp_path / "dl")))
    assert artifact.read_text() == (Path(result.run_dir) / "best_prompt.txt").read_text()
    assert result.best_prompt.instruction in artifact.read_text()


@needs_mlflow
def test_cli_flag_and_experiment_name(tmp_path: Path, tracking_uri: str) -> None:
    out = CliRunner().invoke(app, ["optimize", "--model", "fake:x", "--task", "synthetic:sentiment",
                                   "--budget-target-calls", "60", "--param", "rounds=1", "--no-progress", "--json",
                                   "--runs-dir", str(tmp_path / "runs"), "--mlflow", "--mlflow-experiment", "mine"])
    assert out.exit_code == 0, out.output
    result = json.loads(out.stdout)  # stdout is still only the JSON result
    _, run = _only_run(tracking_uri, "mine")
    assert run.info.run_name == result["run_id"] and run.data.metrics["best_test"] == result["best_test"]["mean"]


@needs_mlflow
def test_failed_run_is_marked_failed_and_keeps_its_directory(tmp_path: Path, tracking_uri: str) -> None:
    class Stop(Exception):
        pass

    def stop_after_first_round(event: dict[str, Any]) -> None:
        if event["type"] == "round":
            raise Stop

    with pytest.raises(Stop):
        promptopt.optimize(**RUN, runs_dir=tmp_path / "runs", mlflow="crashes",  # type: ignore[arg-type]
                           on_event=stop_after_first_round)
    _, run = _only_run(tracking_uri, "crashes")
    assert run.info.status == "FAILED"
    [run_dir] = (tmp_path / "runs").glob("*/events.jsonl")
    assert '"type": "round"' in run_dir.read_text()


@needs_mlflow
def test_unreachable_store_is_bad_input_before_anything_is_written(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "nosuchscheme://nowhere")
    with pytest.raises(ConfigError, match=r"MLflow tracking at 'nosuchscheme://nowhere' failed to start.*"
                                          r"MLFLOW_TRACKING_URI"):
        promptopt.optimize(**RUN, runs_dir=tmp_path / "runs", mlflow=True)  # type: ignore[arg-type]
    assert not [p for p in (tmp_path / "runs").glob("*") if p.is_dir()]


def test_missing_mlflow_is_a_config_error_naming_the_extra(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "mlflow", None)  # import mlflow now raises ImportError
    with pytest.raises(ConfigError, match=r"promptopt\[mlflow\]"):
        promptopt.optimize(**RUN, runs_dir=tmp_path / "runs", mlflow=True)  # type: ignore[arg-type]
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("value", ["", "  ", 3])
def test_bad_mlflow_value_is_a_config_error(tmp_path: Path, value: Any) -> None:
    with pytest.raises(ConfigError, match=r"mlflow must be True, False or an experiment name"):
        promptopt.optimize(**RUN, runs_dir=tmp_path / "runs", mlflow=value)  # type: ignore[arg-type]
