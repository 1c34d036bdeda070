"""``promptopt report`` and ``promptopt runs`` on fake-model runs (once cli.py wires the two commands)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
from typer.testing import CliRunner

from promptopt.cli import app

COMMANDS = {c.name or (c.callback.__name__ if c.callback else "") for c in app.registered_commands}
pytestmark = pytest.mark.skipif(not {"report", "runs"} <= COMMANDS,
                                reason="promptopt/cli.py does not define the `report` and `runs` commands yet")
FAST = ["optimize", "--model", "fake:x", "--task", "synthetic:sentiment", "--budget-target-calls", "120",
        "--param", "rounds=1", "--param", "minibatch_size=8", "--no-progress", "--no-cache"]


def test_runs_then_report(tmp_path: Path) -> None:
    runner = CliRunner()
    runs_dir = tmp_path / "runs"
    assert runner.invoke(app, [*FAST, "--runs-dir", str(runs_dir)]).exit_code == 0
    listed = runner.invoke(app, ["runs", "--runs-dir", str(runs_dir)])
    assert listed.exit_code == 0, listed.output
    lines = listed.output.strip().splitlines()
    assert len(lines) == 2 and lines[1].split()[1:4] == ["synthetic:sentiment", "apo", "finished"]
    if importlib.util.find_spec("matplotlib") is None:
        pytest.skip("the report needs matplotlib: pip install 'promptopt[plot]'")
    run_dir = runs_dir / lines[1].split()[0]
    made = runner.invoke(app, ["report", str(run_dir)])
    assert made.exit_code == 0, made.output
    assert (run_dir / "report.html").is_file()


def test_bad_paths_exit_2_with_one_line(tmp_path: Path) -> None:
    runner = CliRunner()
    for args in (["runs", "--runs-dir", str(tmp_path / "nope")], ["report", str(tmp_path)]):
        res = runner.invoke(app, args)
        assert res.exit_code == 2 and "error:" in res.output
