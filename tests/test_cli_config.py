"""``--config run.toml``: the same configuration as flags or keywords, flags over the file, bad files refused.

Fake models and synthetic tasks only; ``--runs-dir`` is always under ``tmp_path``.
"""

from __future__ import annotations

import dataclasses
import importlib
import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from click.testing import Result
from typer.testing import CliRunner

import promptopt
import promptopt.session
from promptopt.cli import app
from promptopt.config import RunConfig

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
SECRET = "sk-in-a-config-file-1234"

#: one configuration, whole, as a file
FULL_FILE = '''\
task = "synthetic:sentiment"
model = "fake:x"
seed = 2
n_dev = 12

[budget]
target_calls = 120

[strategy_params]
rounds = 1
minibatch_size = 8
'''


def _text(s: str) -> str:
    return ANSI.sub("", s)


@pytest.fixture
def cli(tmp_path: Path) -> Callable[..., Result]:
    runner = CliRunner(env={"COLUMNS": "200"})

    def invoke(*args: str) -> Result:
        return runner.invoke(app, [*args, "--runs-dir", str(tmp_path / "runs")])

    return invoke


def _file(tmp_path: Path, text: str, name: str = "run.toml") -> str:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return str(path)


def _run_id(result: Result) -> str:
    assert result.exit_code == 0, _text(result.output)
    return str(json.loads(_text(result.stdout))["run_id"])


def test_file_flags_and_keywords_give_the_same_run_id(cli: Callable[..., Result], tmp_path: Path) -> None:
    flags = cli("optimize", "--task", "synthetic:sentiment", "--model", "fake:x", "--seed", "2", "--n-dev", "12",
                "--budget-target-calls", "120", "--param", "rounds=1", "--param", "minibatch_size=8",
                "--no-progress", "--json")
    partial = _file(tmp_path, FULL_FILE.replace("seed = 2\n", "").replace("minibatch_size = 8\n", ""), "part.toml")
    file_and_flags = cli("optimize", "--config", partial, "--seed", "2", "--param", "minibatch_size=8",
                         "--no-progress", "--json")
    keywords = promptopt.optimize(task="synthetic:sentiment", model="fake:x", seed=2, n_dev=12,
                                  budget=promptopt.Budget(target_calls=120),
                                  strategy_params={"rounds": 1, "minibatch_size": 8}, runs_dir=tmp_path / "runs")
    from_file = promptopt.optimize(config=RunConfig.from_toml(_file(tmp_path, FULL_FILE),
                                                              {"runs_dir": str(tmp_path / "runs")}))
    ids = {_run_id(flags), _run_id(file_and_flags), keywords.run_id, from_file.run_id}
    assert len(ids) == 1, ids
    other = cli("optimize", "--config", partial, "--seed", "3", "--param", "minibatch_size=8", "--no-progress",
                "--json")
    assert _run_id(other) not in ids  # the id does follow the configuration


@pytest.fixture
def estimated(monkeypatch: pytest.MonkeyPatch) -> list[RunConfig]:
    """The configurations ``--dry-run`` hands to estimate (which then runs as usual)."""
    seen: list[RunConfig] = []
    module = importlib.import_module("promptopt.estimate")  # promptopt.estimate is the function
    real = module.estimate

    def spy(**kwargs: Any) -> promptopt.Estimate:
        seen.append(kwargs["config"])
        return real(**kwargs)

    monkeypatch.setattr(module, "estimate", spy)
    return seen


def test_flags_given_beat_the_file_which_beats_the_defaults(cli: Callable[..., Result], tmp_path: Path,
                                                            estimated: list[RunConfig]) -> None:
    path = _file(tmp_path, FULL_FILE.replace("target_calls = 120", "target_calls = 120\ntokens = 900"))
    base = ["optimize", "--config", path, "--dry-run"]
    assert cli(*base).exit_code == 0
    # --n-dev 30 is the default value: given on the command line, it still wins over the file's 12
    assert cli(*base, "--n-dev", "30", "--budget-target-calls", "70", "--param", "rounds=2").exit_code == 0
    from_file, flagged = estimated
    assert (from_file.n_dev, from_file.n_test, from_file.seed) == (12, 50, 2)
    assert from_file.budget == promptopt.Budget(target_calls=120, tokens=900)
    assert flagged.n_dev == 30 and flagged.budget == promptopt.Budget(target_calls=70, tokens=900)
    assert flagged.strategy_params == {"rounds": 2, "minibatch_size": 8}
    assert dataclasses.replace(flagged, n_dev=12, budget=from_file.budget,
                               strategy_params=from_file.strategy_params) == from_file


def test_a_boolean_flag_can_turn_off_what_the_file_turned_on(cli: Callable[..., Result], tmp_path: Path,
                                                             estimated: list[RunConfig]) -> None:
    path = _file(tmp_path, 'task = "synthetic:sentiment"\nmodel = "fake:x"\noffline = true\ncache = false\n')
    assert cli("optimize", "--config", path, "--dry-run").exit_code == 0
    assert cli("optimize", "--config", path, "--no-offline", "--cache", str(tmp_path / "c.sqlite"),
               "--dry-run").exit_code == 0
    (on, off) = estimated
    assert (on.offline, on.cache) == (True, False)
    assert (off.offline, off.cache) == (False, tmp_path / "c.sqlite")


@pytest.mark.parametrize(("owner", "kind"), [("budget", promptopt.Budget), ("retry", promptopt.RetryPolicy)])
def test_every_field_of_budget_and_retry_has_a_flag(cli: Callable[..., Result], estimated: list[RunConfig],
                                                    owner: str, kind: type) -> None:
    """The flags are made from the dataclass, so a new cap needs no CLI edit (and gets one here)."""
    names = [f.name for f in dataclasses.fields(kind)]
    for name in names:
        flag = f"--{owner}-{name.replace('_', '-')}"
        result = cli("optimize", "--model", "fake:x", "--task", "synthetic:sentiment", flag, "7", "--dry-run")
        assert result.exit_code == 0, (flag, _text(result.output))
    assert [getattr(getattr(cfg, owner), name) for cfg, name in zip(estimated, names, strict=True)] == [7] * len(names)


def test_evaluate_reads_the_same_file(cli: Callable[..., Result], tmp_path: Path) -> None:
    path = _file(tmp_path, FULL_FILE.replace("n_dev = 12", "n_test = 7"))  # the search's keys are ignored
    result = cli("evaluate", "--config", path, "--instruction", "Say positive or negative.")
    assert result.exit_code == 0, _text(result.output)
    assert "synthetic:sentiment · test" in result.stdout and "(n=7)" in result.stdout


# --- bad files: one line, exit 2, nothing written, no model made ------------------------------------

BAD_FILES = [
    ("unknown-key", 'task = "synthetic:sentiment"\nn_deve = 10\n', ["line 2", "unknown key 'n_deve'", "n_dev"]),
    ("unknown-budget-key", "[budget]\ntarget_calls = 5\ntokenz = 9\n", ["line 3", "budget.tokenz", "tokens"]),
    ("wrong-type", 'task = "synthetic:sentiment"\nn_dev = "ten"\n', ["line 2", "key 'n_dev'", "'ten'"]),
    ("wrong-type-in-table", "[retry]\nmax_attempts = 2.5\n", ["line 2", "key 'retry.max_attempts'", "2.5"]),
    ("bad-toml-line", 'task = "synthetic:sentiment"\nseed = = 3\n', ["line 2", "not valid TOML", "key 'seed'"]),
    ("key-on-a-bad-line", f'[model_options]\napi_key = "{SECRET}\n', ["line 2", "not valid TOML", "api_key"]),
]


@pytest.mark.parametrize("command", ["optimize", "evaluate"])
@pytest.mark.parametrize(("text", "fragments"), [c[1:] for c in BAD_FILES], ids=[c[0] for c in BAD_FILES])
def test_a_bad_file_is_one_line_exit_2_and_nothing_happens(cli: Callable[..., Result], tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch, command: str,
                                                           text: str, fragments: list[str]) -> None:
    made: list[object] = []
    monkeypatch.setattr(promptopt.session, "make_backend", lambda *a, **k: made.append(a))
    path = _file(tmp_path, text)
    result = cli(command, "--config", path, "--model", "fake:x",
                 *(["--no-progress"] if command == "optimize" else []))
    output = _text(result.output)
    assert result.exit_code == 2, output
    assert result.stdout == "" and "Traceback" not in output
    lines = output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {path} line"), output
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    assert SECRET not in output
    assert made == [] and not (tmp_path / "runs").exists()


def test_a_flag_never_hides_an_error_of_the_file(cli: Callable[..., Result], tmp_path: Path) -> None:
    path = _file(tmp_path, 'n_dev = "ten"\n')
    result = cli("optimize", "--config", path, "--model", "fake:x", "--task", "synthetic:sentiment", "--seed", "1")
    assert result.exit_code == 2 and "line 1" in _text(result.output)


def test_a_missing_config_file_is_bad_input(cli: Callable[..., Result], tmp_path: Path) -> None:
    result = cli("optimize", "--config", str(tmp_path / "none.toml"), "--no-progress")
    assert result.exit_code == 2
    assert _text(result.output).startswith(f"error: config file '{tmp_path / 'none.toml'}' does not exist")
