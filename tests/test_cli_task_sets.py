"""The ``promptopt`` command on sets of tasks: one-line errors for bad specs, the per-task summary and listing."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import Result
from typer.testing import CliRunner

from promptopt.cli import app

DEFAULT_DATA_DIR = Path(__file__).parents[1].parent / "shared" / "data"
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
TWO = "synthetic:sentiment,synthetic:arithmetic"
FAST = ["--model", "fake:x", "--n-dev", "4", "--n-test", "4", "--param", "rounds=1", "--param", "minibatch_size=4",
        "--budget-target-calls", "60", "--no-progress", "--no-cache"]


@pytest.fixture(autouse=True)
def _data_dir(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PROMPTOPT_DATA_DIR", os.environ.get("PROMPTOPT_DATA_DIR") or str(DEFAULT_DATA_DIR))


@pytest.fixture
def cli(tmp_path: Path) -> Callable[..., Result]:
    runner = CliRunner(env={"COLUMNS": "200"})
    return lambda *args: runner.invoke(app, [*args, "--runs-dir", str(tmp_path / "runs")])


def _suite(tmp_path: Path, text: str) -> str:
    path = tmp_path / "suite.toml"
    path.write_text(text, encoding="utf-8")
    return str(path)


BAD_SPECS: list[tuple[str, Callable[[Path], list[str]], list[str]]] = [
    ("unknown-member", lambda p: ["--task", "sst2,nope"], ["'nope'", "known tasks", "cls:all", "bbh:all"]),
    ("empty-list", lambda p: ["--task", ","], ["--task", "names no task"]),
    ("searched-and-unseen", lambda p: ["--task", TWO, "--unseen", "synthetic:arithmetic"],
     ["'synthetic:arithmetic'", "both", "--unseen"]),
    ("file-in-list", lambda p: ["--task", "sst2,file:data.jsonl"], ["file:data.jsonl", "--task-set"]),
    ("strategy-without-sets", lambda p: ["--task", TWO, "--strategy", "fewshot"],
     ["'fewshot'", "cannot search a set", "strategies that can: ape, apo, evoprompt-de"]),
    ("unknown-unseen", lambda p: ["--task", "sst2", "--unseen", "nope"], ["--unseen", "'nope'"]),
    ("task-set-line", lambda p: ["--task-set", _suite(p, 'tasks = ["sst2"]\nunseen = [{name = "mr", n_dev = -1}]\n')],
     ["suite.toml line 2", "n_dev"]),
    ("task-set-and-task", lambda p: ["--task", "sst2", "--task-set", _suite(p, 'tasks = ["mr"]\n')],
     ["--task-set", "replaces --task"]),
]


@pytest.mark.parametrize(("make_args", "fragments"), [c[1:] for c in BAD_SPECS], ids=[c[0] for c in BAD_SPECS])
def test_a_bad_spec_is_one_error_line_exit_2_and_nothing_written(cli: Callable[..., Result], tmp_path: Path,
                                                                 make_args: Callable[[Path], list[str]],
                                                                 fragments: list[str]) -> None:
    result = cli("optimize", "--model", "fake:x", "--no-progress", *make_args(tmp_path))
    output = ANSI.sub("", result.output)
    assert result.exit_code == 2, output
    assert result.stdout == "" and "Traceback" not in output
    lines = output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), output
    assert all(f in lines[0] for f in fragments), lines[0]
    assert not (tmp_path / "runs").exists()


def test_evaluate_takes_one_task_and_says_so(cli: Callable[..., Result], tmp_path: Path) -> None:
    result = cli("evaluate", "--model", "fake:x", "--task", TWO)
    lines = ANSI.sub("", result.output).strip().splitlines()
    assert result.exit_code == 2 and len(lines) == 1 and "one task, not a set" in lines[0], result.output


def test_a_set_run_prints_each_task_and_is_listed_with_them(cli: Callable[..., Result], tmp_path: Path) -> None:
    result = cli("optimize", "--task", TWO, "--unseen", "sst2", "--system", "Be brief.", *FAST)
    output = ANSI.sub("", result.output)
    assert result.exit_code == 0, output
    rows = {line.split("│")[1].strip(): line for line in output.splitlines() if line.startswith("│ synthetic:")
            or line.startswith("│ sst2")}
    assert set(rows) == {"synthetic:sentiment", "synthetic:arithmetic", "sst2 (unseen)"}
    assert "choice" in rows["synthetic:sentiment"] and "generate" in rows["synthetic:arithmetic"]
    assert "best system prompt:" in output
    (run_dir,) = (tmp_path / "runs").iterdir()
    saved = json.loads((run_dir / "result.json").read_text())
    assert set(saved["per_task"]) == {"synthetic:sentiment", "synthetic:arithmetic"}
    assert set(saved["unseen"]) == {"sst2"}
    listing = ANSI.sub("", CliRunner(env={"COLUMNS": "300"}).invoke(app, ["runs", "--runs-dir",
                                                                          str(tmp_path / "runs")]).output)
    assert "best test per task" in listing and "unseen sst2" in listing
