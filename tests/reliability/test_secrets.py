"""The API key never shows: not in run files, the cache, CLI output, or error messages and tracebacks.

The fault server is adversarial: a 401 echoes the key in its error body (as some
servers do), and with ``echo_key`` so does every other error.
"""

from __future__ import annotations

import traceback
from pathlib import Path

import pytest
from reliability_helpers import child_env, cli_args, optimize, run_cli

from promptopt.exceptions import BackendError
from promptopt.testing.fault_server import FaultPlan, run_fault_server

KEY = "sk-promptopt-FAKE-5f3c9a1e7b2d4068"
FRAGMENTS = (KEY, KEY[-12:])  # the whole key, and the tail a partial echo would show


def leaks(text: str | bytes) -> list[str]:
    data = text if isinstance(text, bytes) else text.encode("utf-8")
    return [f for f in FRAGMENTS if f.encode("utf-8") in data]


def leaking_files(root: Path) -> list[str]:
    return [str(p) for p in root.rglob("*") if p.is_file() and leaks(p.read_bytes())]


def test_the_cli_never_shows_the_key(tmp_path: Path) -> None:
    env = child_env(OPENAI_API_KEY=KEY)
    runs = tmp_path / "runs"
    with run_fault_server(FaultPlan(fatal_status=401), idle_timeout=60) as server:
        rejected = run_cli(cli_args(server.base_url, runs), env=env)
        assert KEY in server.stats.api_keys  # the key was sent, and echoed back in the 401 body
        # Rate limits with Retry-After: 0 are retried at once, keeping the child run quick.
        server.plan = FaultPlan(rate=0.15, kinds=("429-retry-after",), retry_after=0, echo_key=True, seed=5)
        normal = run_cli([*cli_args(server.base_url, runs), "--progress"], env=env)
        faults = server.stats.faults

    assert rejected.returncode == 1 and "OPENAI_API_KEY" in rejected.stderr
    assert normal.returncode == 0, normal.stderr
    assert faults["429-retry-after"] > 0
    for name, text in [("401 stdout", rejected.stdout), ("401 stderr", rejected.stderr),
                       ("stdout", normal.stdout), ("stderr", normal.stderr)]:
        assert not leaks(text), name
    files = [p for p in runs.rglob("*") if p.is_file()]
    assert {p.name for p in files} >= {"config.json", "events.jsonl", "result.json", "cache.sqlite"}
    assert leaking_files(runs) == []


@pytest.mark.parametrize("plan", [FaultPlan(fatal_status=401), FaultPlan(fatal_status=400, echo_key=True),
                                  FaultPlan(fatal_status=404, echo_key=True),
                                  FaultPlan(fatal_status=500, echo_key=True),
                                  FaultPlan(rate=1.0, kinds=("503",), echo_key=True, max_faults_per_request=99)],
                         ids=["401", "400", "404", "500", "503"])
def test_errors_never_show_the_key(plan: FaultPlan, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                   fast_retries: None) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", KEY)  # read at the edge, like the CLI does
    with run_fault_server(plan, idle_timeout=60) as server, pytest.raises(BackendError) as info:
        optimize(server.base_url, tmp_path, model_options={"max_concurrency": 1})
    assert KEY in server.stats.api_keys
    shown = "".join(traceback.format_exception(info.value))  # the message, the chain, the frames
    assert not leaks(shown + repr(info.value)), shown
    assert leaking_files(tmp_path) == []
