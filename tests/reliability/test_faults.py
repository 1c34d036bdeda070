"""Transient faults are retried to the same result; non-transient ones stop the run at once.

Every run here goes through ``promptopt.optimize`` (or the CLI) against the
fault server, with an ``openai:`` model: the whole stack (meter, cache, retry,
OpenAIBackend, HTTP) is exercised, with no model weights.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest
from reliability_helpers import (
    cache_rows,
    cli_args,
    comparable,
    optimize,
    paid,
    result_json,
    run_cli,
    without_paid,
)

from promptopt.backends.openai import OpenAIBackend
from promptopt.exceptions import BackendError
from promptopt.store import RunStore
from promptopt.testing.fault_server import TRANSIENT_FAULTS, FaultPlan, FaultServer, run_fault_server
from promptopt.types import Message, Request

# Short client timeouts so a "timeout" fault costs half a second, not two minutes.
TIMEOUT = {"timeout": 0.5}
FAULTY = FaultPlan(rate=0.2, seed=11, hang_seconds=1.0, retry_after=1)


@pytest.fixture
def server() -> Iterator[FaultServer]:
    with run_fault_server(idle_timeout=60) as srv:
        yield srv


def ask(server: FaultServer, plan: FaultPlan, timeout: float = 0.3) -> BaseException | str:
    """One request through a bare OpenAIBackend: the error it raised, or the reply text."""
    server.plan = plan
    backend = OpenAIBackend(model="fault", base_url=server.base_url, timeout=timeout)

    async def main() -> str:
        try:
            return (await backend.agenerate([Request((Message("user", "The meal was great."),))]))[0].text
        finally:
            await backend.aclose()

    try:
        return asyncio.run(main())
    except BackendError as exc:
        return exc


@pytest.mark.parametrize("kind", TRANSIENT_FAULTS)
def test_every_transient_fault_is_a_retryable_backend_error(server: FaultServer, kind: str) -> None:
    error = ask(server, FaultPlan(rate=1.0, kinds=(kind,), hang_seconds=0.6, max_faults_per_request=99))
    assert isinstance(error, BackendError), f"{kind}: got a reply {error!r} instead of an error"
    assert error.retryable, f"{kind}: {error}"
    assert server.base_url in str(error)
    assert server.stats.faults[kind] == 1 and server.stats.completions == 0


@pytest.mark.parametrize("status, words", [(401, ["401", "OPENAI_API_KEY"]), (400, ["400"]),
                                           (404, ["404", "'fault'", "model name"])])
def test_non_transient_errors_are_final_and_say_what_to_fix(server: FaultServer, status: int,
                                                           words: list[str]) -> None:
    # Nothing hangs here: a long timeout keeps a loaded machine from turning the answer into a timeout.
    error = ask(server, FaultPlan(fatal_status=status), timeout=30.0)
    assert isinstance(error, BackendError) and not error.retryable
    for word in [*words, server.base_url]:
        assert word in str(error)


def test_a_run_under_20_percent_faults_matches_a_clean_run(server: FaultServer, tmp_path: Path,
                                                           fast_retries: None) -> None:
    clean = optimize(server.base_url, tmp_path / "clean", model_options=TIMEOUT)
    clean_stats = server.reset_stats()
    assert clean_stats.n_faults == 0 and clean_stats.received == clean_stats.completions

    server.plan = FAULTY
    faulty = optimize(server.base_url, tmp_path / "faulty", model_options=TIMEOUT)
    stats = server.reset_stats()

    print(f"\nfaults injected ({stats.n_faults} in {stats.received} requests): {dict(sorted(stats.faults.items()))}")
    assert set(stats.faults) == set(TRANSIENT_FAULTS)  # every kind was hit, and retried through
    assert 0.12 < stats.n_faults / stats.received < 0.28
    # The same search, step by step, and the same result file.
    assert comparable(result_json(tmp_path / "faulty")) == comparable(result_json(tmp_path / "clean"))
    assert comparable(faulty.to_dict()) == comparable(clean.to_dict())
    # Faults cost retries, never answers: each call was answered, and paid, exactly once.
    assert faulty.usage == clean.usage
    assert stats.completions == clean_stats.completions == paid(clean.usage)
    assert stats.duplicates == 0
    assert stats.received == stats.completions + stats.n_faults


def test_a_rejected_key_stops_the_run_at_once(server: FaultServer, tmp_path: Path,
                                              leftover_tasks: list[int]) -> None:
    server.plan = FaultPlan(fatal_status=401)
    with pytest.raises(BackendError, match="OPENAI_API_KEY") as info:
        optimize(server.base_url, tmp_path, model_options={"max_concurrency": 4})
    assert not info.value.retryable
    # The first batch (the seed on 12 dev examples) had 4 requests in flight;
    # the other 8 were failed without being sent.
    assert server.stats.received == 4
    [run_dir] = (p for p in tmp_path.iterdir() if p.is_dir())
    assert {"config.json", "events.jsonl"} <= {p.name for p in run_dir.iterdir()}
    assert not (run_dir / "result.json").exists()
    assert [e["type"] for e in RunStore(run_dir).events()] == ["run_started", "candidate"]


def test_cli_stops_on_a_missing_model_and_a_rerun_replays_what_was_paid(server: FaultServer,
                                                                       tmp_path: Path) -> None:
    clean = run_cli(cli_args(server.base_url, tmp_path / "clean"))
    assert clean.returncode == 0, clean.stderr
    clean_result = result_json(tmp_path / "clean")
    server.reset_stats()

    runs = tmp_path / "runs"
    server.plan = FaultPlan(fatal_status=404, fatal_after=30)  # the model "goes away" mid-run
    failed = run_cli(cli_args(server.base_url, runs, "--cache", str(tmp_path / "cache.sqlite")))
    stats = server.reset_stats()
    assert failed.returncode == 1
    assert failed.stdout == ""
    lines = failed.stderr.strip().splitlines()
    assert len(lines) == 1, failed.stderr
    assert lines[0].startswith("error: ") and "404" in lines[0] and "'fault'" in lines[0]
    assert server.base_url in lines[0] and "Traceback" not in failed.stderr
    [run_dir] = runs.iterdir()
    assert {"config.json", "events.jsonl"} <= {p.name for p in run_dir.iterdir()}
    assert not (run_dir / "result.json").exists()
    events = list(RunStore(run_dir).events())
    assert events and events[-1]["type"] != "result"
    # Requests 31 and later are refused; after the first refusal only those already in flight
    # (8 at once, the default max_concurrency) reach the server.
    assert 0 < stats.completions <= 30 < stats.received <= 30 + 8
    stored = cache_rows(tmp_path / "cache.sqlite")
    assert 0 < stored == stats.completions  # answers in flight when the run failed are kept too

    server.plan = FaultPlan()
    rerun = run_cli(cli_args(server.base_url, runs, "--cache", str(tmp_path / "cache.sqlite")))
    assert rerun.returncode == 0, rerun.stderr
    result = result_json(runs)
    assert comparable(result) == comparable(clean_result)
    assert without_paid(result["usage"]) == without_paid(clean_result["usage"])
    # The answers the failed attempt kept are replayed, not bought again.
    assert paid(result["usage"]) == paid(clean_result["usage"]) - stored == server.stats.completions
    assert server.stats.duplicates == 0


def test_answers_in_flight_when_a_run_fails_are_kept(server: FaultServer, tmp_path: Path,
                                                     leftover_tasks: list[int]) -> None:
    # 12 dev requests go out together; the first 6 to arrive are answered after 0.3 s,
    # the other 6 get an immediate 404 that ends the run.
    server.plan = FaultPlan(fatal_status=404, fatal_after=6, latency=0.3)
    with pytest.raises(BackendError, match="404"):
        optimize(server.base_url, tmp_path, model_options={"max_concurrency": 12})
    assert server.stats.received == 12
    assert cache_rows(tmp_path / "cache.sqlite") == server.stats.completions == 6


def test_retries_are_bounded_when_a_fault_persists(server: FaultServer, tmp_path: Path,
                                                   fast_retries: None) -> None:
    server.plan = FaultPlan(rate=1.0, kinds=("502",), max_faults_per_request=10**6)
    with pytest.raises(BackendError, match="502") as info:
        optimize(server.base_url, tmp_path, model_options={"max_concurrency": 1})
    assert info.value.retryable
    assert server.stats.received == 6  # RetryingBackend's max_attempts, then the run stops
    assert server.stats.completions == 0


@pytest.mark.parametrize("cache", [True, False], ids=["cache", "no-cache"])
def test_a_failed_run_leaves_no_request_running(server: FaultServer, tmp_path: Path, cache: bool,
                                                leftover_tasks: list[int]) -> None:
    # 12 dev requests go out together: 6 are answered after 0.3 s, 6 are refused at once (HTTP 400).
    server.plan = FaultPlan(fatal_status=400, fatal_after=6, latency=0.3)
    with pytest.raises(BackendError, match=r"\(HTTP 400\)"):
        optimize(server.base_url, tmp_path, cache=cache, model_options={"max_concurrency": 12})
    assert leftover_tasks == [0]
