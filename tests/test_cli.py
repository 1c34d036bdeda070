"""The ``promptopt`` command: one-line errors with exit code 2, help, listings, and fake-model runs.

Everything runs on ``fake:`` models (no model load) and synthetic or tiny ``file:`` tasks,
with ``--runs-dir`` always under ``tmp_path``.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import Result
from rich.console import Console
from typer.testing import CliRunner

from promptopt.cli import app

#: the benchmark data folder beside the repository (``<repo>/../shared/data``)
DEFAULT_DATA_DIR = Path(__file__).parents[1].parent / "shared" / "data"
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
FAST_OPTIMIZE = ["--model", "fake:x", "--task", "synthetic:sentiment", "--budget-target-calls", "120",
                 "--param", "rounds=1", "--param", "minibatch_size=8", "--no-progress"]


def _text(s: str) -> str:
    """Output without colour codes (rich and typer colour it when CI forces a terminal)."""
    return ANSI.sub("", s)


@pytest.fixture(autouse=True)
def _data_dir(monkeypatch: pytest.MonkeyPatch) -> Path:
    root = Path(os.environ.get("PROMPTOPT_DATA_DIR") or DEFAULT_DATA_DIR)
    monkeypatch.setenv("PROMPTOPT_DATA_DIR", str(root))
    monkeypatch.delenv("PROMPTOPT_OFFLINE", raising=False)
    monkeypatch.delenv("PROMPTOPT_DATA_URL", raising=False)
    return root


@pytest.fixture
def cli(tmp_path: Path) -> Callable[..., Result]:
    """Invoke the app in-process with ``--runs-dir tmp_path/runs`` appended.

    COLUMNS is wide because typer's help cuts long option names at 80 columns.
    """
    runner = CliRunner(env={"COLUMNS": "200"})

    def invoke(*args: str, runs: bool = True) -> Result:
        argv = [*args, "--runs-dir", str(tmp_path / "runs")] if runs else list(args)
        return runner.invoke(app, argv)

    return invoke


# --- bad input: exit 2, one line ----------------------------------------------------------------

def _write(path: Path, text: str) -> str:
    path.write_text(text, encoding="utf-8")
    return str(path)


def _write_bytes(path: Path, data: bytes) -> str:
    path.write_bytes(data)
    return str(path)


def _rows(n: int, input_key: str = "input") -> str:
    return "".join(json.dumps({input_key: f"q{i}", "target": f"a{i}"}) + "\n" for i in range(n))


#: one valid deployment of a router file (lines 1-5)
_DEPLOYMENT = '[[deployments]]\nname = "a"\nmodel_name = "m"\nmodel = "openai/x"\napi_base = "http://127.0.0.1:9/v1"\n'


def _routed(router_file: str) -> list[str]:
    return ["optimize", "--model", "litellm:m", "--task", "synthetic:sentiment", "--router", router_file]


# Each case: (id, argv builder given tmp_path, fragments the one-line message must contain;
# "{tmp}" stands for tmp_path).
BAD_INPUT: list[tuple[str, Callable[[Path], list[str]], list[str]]] = [
    ("negative-finalist-reserve",
     lambda p: ["optimize", "--model", "fake:x", "--task", "synthetic:sentiment", "--finalist-reserve", "-1",
                "--runs-dir", str(p / "runs")],
     ["finalist_reserve", "-1", "--finalist-reserve 1"]),
    ("unknown-strategy",
     lambda p: ["optimize", "--model", "fake:x", "--task", "synthetic:sentiment", "--strategy", "nope"],
     ["'nope'", "apo", "promptopt strategies"]),
    ("unknown-task",
     lambda p: ["optimize", "--model", "fake:x", "--task", "nope"],
     ["'nope'", "gsm8k", "synthetic:sentiment", "promptopt tasks"]),
    ("unknown-bbh-subtask",
     lambda p: ["optimize", "--model", "fake:x", "--task", "bbh:nope"],
     ["'nope'", "navigate", "bbh:<subtask>"]),
    ("unknown-backend",
     lambda p: ["optimize", "--model", "nope:x", "--task", "synthetic:sentiment"],
     ["'nope'", "llamacpp", "openai", "fake"]),
    ("model-without-colon",
     lambda p: ["optimize", "--model", "fakex", "--task", "synthetic:sentiment"],
     ["'fakex'", "backend:model", "llamacpp:smollm2"]),
    ("model-empty-name",
     lambda p: ["optimize", "--model", "fake:", "--task", "synthetic:sentiment"],
     ["'fake:'", "backend:model"]),
    ("missing-data-offline",
     lambda p: ["optimize", "--model", "fake:x", "--task", "sst2", "--offline",
                "--data-dir", str(_empty_dir(p))],
     ["sst2", "offline", "{tmp}/empty"]),
    ("jsonl-bad-line",
     lambda p: ["optimize", "--model", "fake:x", "--task",
                "file:" + _write(p / "bad.jsonl", _rows(2) + "{oops\n" + _rows(3))],
     ["line 3", "not valid JSON", "fix or remove"]),
    ("jsonl-missing-input-field",
     lambda p: ["optimize", "--model", "fake:x", "--task",
                "file:" + _write(p / "q.jsonl", _rows(5, input_key="question"))],
     ["no field 'input'", "'question'", "input_field"]),
    ("csv-missing-input-field",
     lambda p: ["optimize", "--model", "fake:x", "--task",
                "file:" + _write(p / "q.csv", "question,target\na,b\nc,d\ne,f\n")],
     ["line 2", "no field 'input'", "'question'"]),
    ("empty-split",
     lambda p: ["optimize", "--model", "fake:x", "--task", "file:" + _write(p / "two.jsonl", _rows(2))],
     ["split", "is empty", "at least 3"]),
    ("negative-budget",
     lambda p: ["optimize", *FAST_OPTIMIZE[:4], "--budget-target-calls", "-5"],
     ["-5", "target_calls", "--budget-target-calls 100"]),
    ("param-without-equals",
     lambda p: ["optimize", *FAST_OPTIMIZE[:4], "--param", "beam_size"],
     ["'beam_size'", "name=value", "--param beam_size=2"]),
    ("unknown-strategy-param",
     lambda p: ["optimize", *FAST_OPTIMIZE[:4], "--param", "beam_sise=2"],
     ["'beam_sise'", "beam_size", "minibatch_size"]),
    ("strategy-param-out-of-range",
     lambda p: ["optimize", *FAST_OPTIMIZE[:4], "--param", "beam_size=0"],
     ["'beam_size'", "APO", ">= 1", "got 0"]),
    ("bad-answer-mode",
     lambda p: ["optimize", *FAST_OPTIMIZE[:4], "--answer-mode", "bogus"],
     ["'bogus'", "generate", "choice"]),
    ("choice-mode-without-labels",
     lambda p: ["optimize", "--model", "fake:x", "--task", "synthetic:arithmetic", "--answer-mode", "choice"],
     ["synthetic:arithmetic", "label", "--answer-mode generate"]),
    ("n-dev-zero",
     lambda p: ["optimize", *FAST_OPTIMIZE[:4], "--n-dev", "0"],
     ["n_dev", "got 0", "--n-dev 50"]),
    ("evaluate-missing-prompt-file",
     lambda p: ["evaluate", "--model", "fake:x", "--task", "synthetic:sentiment",
                "--prompt-file", str(p / "nope.txt")],
     ["{tmp}/nope.txt", "does not exist", ".txt"]),
    ("evaluate-bad-split",
     lambda p: ["evaluate", "--model", "fake:x", "--task", "synthetic:sentiment", "--split", "nope"],
     ["'nope'", "train, dev or test"]),
    ("unknown-file-metric",
     lambda p: ["optimize", "--model", "fake:x", "--task", "file:" + _write(p / "ok.jsonl", _rows(6)),
                "--metric", "fuzzy"],
     ["'fuzzy'", "exact", "contains", "numeric"]),
    ("metric-on-builtin-task",
     lambda p: ["optimize", *FAST_OPTIMIZE[:4], "--metric", "exact"],
     ["metric", "file:<path>", "synthetic:sentiment"]),
    ("negative-usd-budget", lambda p: ["optimize", *FAST_OPTIMIZE[:4], "--budget-usd", "-1"],
     ["'usd'", "-1", "--budget-usd"]),
    ("negative-seconds-budget", lambda p: ["optimize", *FAST_OPTIMIZE[:4], "--budget-seconds", "-3"],
     ["'seconds'", "-3", "--budget-seconds"]),
    ("negative-token-budget", lambda p: ["optimize", *FAST_OPTIMIZE[:4], "--budget-tokens", "-2"],
     ["'tokens'", "-2", "--budget-tokens"]),
    ("n-test-zero", lambda p: ["optimize", *FAST_OPTIMIZE[:4], "--n-test", "0"], ["n_test", "--n-test"]),
    ("unknown-optimizer-backend",
     lambda p: ["optimize", *FAST_OPTIMIZE[:4], "--optimizer-model", "nope:x"], ["'nope'", "llamacpp"]),
    ("malformed-optimizer-model",
     lambda p: ["optimize", *FAST_OPTIMIZE[:4], "--optimizer-model", "smollm2"], ["'smollm2'", "backend:model"]),
    ("missing-gguf-file",
     lambda p: ["optimize", "--model", "llamacpp:/no/such/model.gguf", "--task", "synthetic:sentiment"],
     ["/no/such/model.gguf", "GGUF"]),
    ("non-utf8-data-line",
     lambda p: ["optimize", "--model", "fake:x", "--task",
                "file:" + _write_bytes(p / "latin.jsonl", _rows(3).encode() + b'{"input": "caf\xe9"}\n')],
     ["line 4", "UTF-8"]),
    ("missing-target-field",
     lambda p: ["optimize", "--model", "fake:x", "--task", "file:" + _write(p / "ok.jsonl", _rows(6)),
                "--target-field", "answer"],
     ["'answer'", "--target-field"]),
    ("target-outside-declared-labels",
     lambda p: ["optimize", "--model", "fake:x", "--task", "file:" + _write(p / "ok.jsonl", _rows(6)),
                "--labels", "yes,no"],
     ["'a0'", "yes"]),
    ("prompt-file-not-json",
     lambda p: ["evaluate", "--model", "fake:x", "--task", "synthetic:sentiment",
                "--prompt-file", _write(p / "bad.json", "{not json")],
     ["bad.json", "not valid JSON", "line 1"]),
    ("evaluate-unknown-task", lambda p: ["evaluate", "--model", "fake:x", "--task", "nope"], ["'nope'", "gsm8k"]),
    ("zero-requests-per-second", lambda p: ["optimize", *FAST_OPTIMIZE[:4], "--requests-per-second", "0"],
     ["requests_per_second", "got 0.0", "--requests-per-second"]),
    ("negative-tokens-per-minute", lambda p: ["optimize", *FAST_OPTIMIZE[:4], "--tokens-per-minute", "-5"],
     ["tokens_per_minute", "got -5", "--tokens-per-minute"]),
    # router files (litellm: models): the message names the file, the line and the field
    ("router-file-missing", lambda p: _routed(str(p / "none.toml")), ["none.toml", "--router"]),
    ("router-file-bad-suffix", lambda p: _routed(_write(p / "router.json", "{}")), ["router.json", ".toml"]),
    ("router-file-not-toml",
     lambda p: _routed(_write(p / "router.toml", '[[deployments]]\nname = "a"\nmodel = "openai/x\n')),
     ["router.toml line 3", "not valid TOML"]),
    ("router-deployment-without-api-base",
     lambda p: _routed(_write(p / "router.toml", _DEPLOYMENT + '\n[[deployments]]\nname = "b"\nmodel_name = "m"\n'
                                                 'model = "openai/x"\n')),
     ["router.toml line 7", "deployment 'b' has no api_base"]),
    ("router-misspelt-field",
     lambda p: _routed(_write(p / "router.toml", _DEPLOYMENT.replace("api_base", "api_bse"))),
     ["router.toml line 5", "unknown field 'api_bse'"]),
    ("router-fallback-to-nothing",
     lambda p: _routed(_write(p / "router.toml", _DEPLOYMENT + '\n[fallbacks]\nm = ["nope"]\n')),
     ["router.toml line 8", "fallbacks.m names 'nope'"]),
    ("router-key-in-file",
     lambda p: _routed(_write(p / "router.toml", _DEPLOYMENT + 'api_key = "sk-in-the-file-123"\n')),
     ["router.toml line 6", "api_key_env"]),
]


def _empty_dir(tmp_path: Path) -> Path:
    path = tmp_path / "empty"
    path.mkdir(exist_ok=True)
    return path


def _assert_one_line_error(result: Result, fragments: list[str]) -> None:
    output = _text(result.output)
    assert result.exit_code == 2, output
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    assert "Traceback" not in output
    assert result.stdout == ""
    lines = output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), output
    for fragment in fragments:
        assert fragment in lines[0], f"{fragment!r} missing from: {lines[0]}"


@pytest.mark.parametrize(("make_args", "fragments"), [c[1:] for c in BAD_INPUT], ids=[c[0] for c in BAD_INPUT])
def test_bad_input_is_one_line_exit_2(cli: Callable[..., Result], tmp_path: Path,
                                      make_args: Callable[[Path], list[str]], fragments: list[str]) -> None:
    args = make_args(tmp_path)
    result = cli(*args, *(["--no-progress"] if args[0] == "optimize" else []))
    _assert_one_line_error(result, [f.replace("{tmp}", str(tmp_path)) for f in fragments])
    assert "sk-in-the-file" not in result.output  # a key found in a router file is never echoed
    runs = tmp_path / "runs"
    assert not runs.exists() or not [p for p in runs.iterdir() if p.is_dir()], list(runs.iterdir())


def test_bad_input_with_default_progress_is_one_line(cli: Callable[..., Result]) -> None:
    result = cli("optimize", "--model", "fake:x", "--task", "nope")
    _assert_one_line_error(result, ["'nope'"])


def test_console_script_exits_2_without_traceback(tmp_path: Path, _data_dir: Path) -> None:
    script = Path(sys.executable).parent / ("promptopt.exe" if os.name == "nt" else "promptopt")
    assert script.is_file(), f"the promptopt console script is not installed next to {sys.executable}"
    env = {**os.environ, "PROMPTOPT_DATA_DIR": str(_data_dir)}
    proc = subprocess.run([str(script), "optimize", "--model", "fake:x", "--task", "nope", "--no-progress",
                           "--runs-dir", str(tmp_path / "runs")],
                          capture_output=True, text=True, env=env, timeout=60, check=False)
    assert proc.returncode == 2, proc.stderr
    assert proc.stdout == ""
    stderr = _text(proc.stderr)
    assert "Traceback" not in stderr
    assert stderr.strip().splitlines() == [stderr.strip()]
    assert stderr.startswith("error: unknown task 'nope'") and "gsm8k" in stderr
    assert not (tmp_path / "runs").exists()


# --- help and listings --------------------------------------------------------------------------

@pytest.mark.parametrize(("args", "expected"), [
    ([], ["optimize", "evaluate", "tasks", "strategies"]),
    (["optimize"], ["--task", "--strategy", "--model", "--param", "--budget-target-calls", "--runs-dir",
                    "--answer-mode", "--json", "--no-progress"]),
    (["evaluate"], ["--task", "--model", "--instruction", "--prompt-file", "--split", "--runs-dir"]),
    (["tasks"], ["List the built-in tasks"]),
    (["strategies"], ["List the search strategies"]),
], ids=["root", "optimize", "evaluate", "tasks", "strategies"])
def test_help(cli: Callable[..., Result], args: list[str], expected: list[str]) -> None:
    result = cli(*args, "--help", runs=False)
    output = _text(result.output)
    assert result.exit_code == 0, output
    for fragment in expected:
        assert fragment in output, f"{fragment!r} missing from --help of {args}"


@pytest.mark.parametrize("name", ["gsm8k", "sst2", "agnews", "bbh:navigate", "synthetic:sentiment",
                                  "synthetic:arithmetic", "file:<path>"])
def test_tasks_lists_builtins(cli: Callable[..., Result], name: str) -> None:
    result = cli("tasks", runs=False)
    assert result.exit_code == 0, result.output
    assert name in _text(result.stdout)


def test_tasks_shows_answer_kinds(cli: Callable[..., Result]) -> None:
    rows = _text(cli("tasks", runs=False).stdout).splitlines()
    cells = {}
    for line in rows:
        parts = [c.strip() for c in line.split("│")]
        if len(parts) == 5 and parts[1]:
            cells[parts[1]] = parts[2]
    assert cells["gsm8k"] == "number"
    assert cells["sst2"] == "label"


def test_strategies_lists_apo_with_params(cli: Callable[..., Result]) -> None:
    result = cli("strategies", runs=False)
    output = _text(result.stdout)
    assert result.exit_code == 0, output
    blocks = {block.split(":", 1)[0]: block for block in output.split("\n") if block and not block.startswith(" ")}
    assert {"apo", "opro", "ape", "gepa"} <= set(blocks)
    apo_params = output.split("apo:", 1)[1].split("\n")[1]
    for fragment in ("beam_size=4", "rounds=6", "minibatch_size=64", "selector='ucb'"):
        assert fragment in apo_params


# --- fake-model runs ----------------------------------------------------------------------------

def _run_dir(tmp_path: Path) -> Path:
    (run_dir,) = [p for p in (tmp_path / "runs").iterdir() if p.is_dir()]
    return run_dir


def test_optimize_prints_table_and_writes_run_dir(cli: Callable[..., Result], tmp_path: Path) -> None:
    result = cli("optimize", *FAST_OPTIMIZE)
    output = _text(result.stdout)
    assert result.exit_code == 0, _text(result.output)
    assert "Traceback" not in _text(result.output)
    run_dir = _run_dir(tmp_path)
    assert re.search(r"│ seed +│ +\d\.\d{3} │ .*\(n=\d+\)", output), output
    assert re.search(r"│ best +│ +\d\.\d{3} │ .*\(n=\d+\)", output), output
    assert "best prompt: '" in output
    assert f"run directory: {run_dir}" in output.replace("\n", "")  # see the test below on wrapping
    assert {p.name for p in run_dir.iterdir()} >= {"config.json", "events.jsonl", "result.json",
                                                     "best_prompt.txt"}
    events = [json.loads(line) for line in (run_dir / "events.jsonl").read_text("utf-8").splitlines()]
    assert events[-1]["type"] == "result"
    config = json.loads((run_dir / "config.json").read_text("utf-8"))
    assert config["strategy_params"]["rounds"] == 1 and config["strategy_params"]["minibatch_size"] == 8
    assert config["budget"]["target_calls"] == 120


def test_run_directory_line_is_not_wrapped(cli: Callable[..., Result], tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    import promptopt.cli

    monkeypatch.setattr(promptopt.cli, "out", Console(width=80))  # what a pipe or CI log gets
    result = cli("optimize", *FAST_OPTIMIZE)
    assert result.exit_code == 0, _text(result.output)
    assert f"run directory: {_run_dir(tmp_path)}\n" in _text(result.stdout)


def test_optimize_json_output(cli: Callable[..., Result], tmp_path: Path) -> None:
    result = cli("optimize", *FAST_OPTIMIZE, "--json")
    assert result.exit_code == 0, _text(result.output)
    data = json.loads(_text(result.stdout))
    assert data["best_prompt"]["instruction"]
    assert data["usage"]["search"]["target"]["calls"] <= 120
    assert data["usage"]["total"]["target"]["paid_calls"] > 0
    saved = json.loads((_run_dir(tmp_path) / "result.json").read_text("utf-8"))
    assert saved == data


def _without_paid_calls(result: dict[str, object]) -> dict[str, object]:
    """The result without what a replay does not repeat: paid calls and the strategy's compute time."""
    usage = json.loads(json.dumps(result["usage"]))
    for phase in usage.values():
        for role in phase.values():
            role.pop("paid_calls")
    return {**result, "usage": usage, "strategy_seconds": 0}


def test_rerun_is_identical_and_replays_from_cache(cli: Callable[..., Result], tmp_path: Path) -> None:
    assert cli("optimize", *FAST_OPTIMIZE).exit_code == 0
    run_dir = _run_dir(tmp_path)
    first = {name: (run_dir / name).read_text("utf-8") for name in ("result.json", "config.json",
                                                                    "best_prompt.txt")}
    assert cli("optimize", *FAST_OPTIMIZE).exit_code == 0
    assert _run_dir(tmp_path) == run_dir  # the same configuration reuses its directory
    second = {name: (run_dir / name).read_text("utf-8") for name in first}
    assert second["config.json"] == first["config.json"]
    assert second["best_prompt.txt"] == first["best_prompt.txt"]
    r1, r2 = json.loads(first["result.json"]), json.loads(second["result.json"])
    assert _without_paid_calls(r2) == _without_paid_calls(r1)
    for phase in ("search", "total"):
        for role in ("target", "optimizer"):
            assert r1["usage"][phase][role]["paid_calls"] == r1["usage"][phase][role]["calls"]
            assert r2["usage"][phase][role]["paid_calls"] == 0


def test_evaluate_prints_score(cli: Callable[..., Result]) -> None:
    result = cli("evaluate", "--model", "fake:x", "--task", "synthetic:sentiment",
                 "--instruction", "Say positive or negative.")
    output = _text(result.stdout)
    assert result.exit_code == 0, _text(result.output)
    assert re.search(r"synthetic:sentiment · test · \w+ mode: \d\.\d{3} \[\d\.\d{3}, \d\.\d{3}\] \(n=\d+\)",
                     output), output
    assert re.search(r"calls: \d+ \(paid \d+\)", output), output
