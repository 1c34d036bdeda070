"""``kill -9`` the CLI mid-run, rerun the same command: the same result, and no finished call paid twice.

What is asserted about paid calls, per kill. Let C be the answers in the cache
right after the kill (the calls that had finished). The rerun must pay for
exactly the calls not in C, so across both attempts the server answers
``uninterrupted + (answered to the killed attempt - C)`` requests: the extra
ones are requests that were in flight at the kill (sent, answered by the
server, not yet stored by the client), and each of them is a repeat of one
request, answered once more. The cache holds a concurrency slot from sending a
request until its answer is stored, so at most ``max_concurrency`` (8, the
openai backend's default) can be in flight.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import time
from collections import Counter
from pathlib import Path

from reliability_helpers import (
    cache_rows,
    child_env,
    cli_args,
    comparable,
    integrity,
    paid,
    result_json,
    run_cli,
    without_paid,
)

from promptopt.store import RunStore
from promptopt.testing.fault_server import FaultPlan, FaultServer, FaultStats, run_fault_server

N_TRIALS = 10
MAX_IN_FLIGHT = 8  # the openai backend's default max_concurrency
LATENCY = 0.015  # per answer, so a run takes a few seconds
ONE_ROUND = ("--param", "rounds=1")  # half the search of the other tests: ten kills fit in a minute


def settled(server: FaultServer) -> FaultStats:
    """The stats so far, once the requests still being answered (after a kill) are done."""
    stats = server.reset_stats()
    deadline = time.monotonic() + 5
    while stats.in_flight and time.monotonic() < deadline:
        time.sleep(0.01)
    assert stats.in_flight == 0
    return stats


def kill_after(args: list[str], server: FaultServer, n_answers: int) -> None:
    """Start the CLI and ``kill -9`` it once the server has answered ``n_answers`` requests of it."""
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=child_env())
    try:
        deadline = time.monotonic() + 30
        while server.stats.completions < n_answers and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.002)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait(timeout=10)
    assert proc.returncode == -signal.SIGKILL, "the run finished before it could be killed"


def test_kill_9_at_random_points_then_rerun(tmp_path: Path) -> None:
    with run_fault_server(FaultPlan(latency=LATENCY), idle_timeout=60) as server:
        started = time.monotonic()
        ref = run_cli(cli_args(server.base_url, tmp_path / "reference", *ONE_ROUND))
        ref_seconds = time.monotonic() - started
        assert ref.returncode == 0, ref.stderr
        ref_stats = settled(server)
        ref_result = result_json(tmp_path / "reference")
        assert ref_stats.completions == paid(ref_result["usage"]) and ref_stats.duplicates == 0

        rng = random.Random(20240607)
        report = []
        for trial in range(N_TRIALS):
            runs = tmp_path / f"trial-{trial}"
            args = cli_args(server.base_url, runs, *ONE_ROUND)
            n_answers = rng.randint(1, ref_stats.completions - 5)
            kill_after(args, server, n_answers)
            killed = settled(server)

            # What the kill left behind is readable: the cache is sound, the log parses.
            assert integrity(runs / "cache.sqlite") == "ok"
            finished = cache_rows(runs / "cache.sqlite")
            [run_dir] = (p for p in runs.iterdir() if p.is_dir())
            assert (run_dir / "config.json").is_file() and not (run_dir / "result.json").exists()
            assert all(isinstance(e, dict) for e in RunStore(run_dir).events())

            resumed = run_cli(args)
            assert resumed.returncode == 0, resumed.stderr
            rerun = settled(server)
            result = result_json(runs)
            assert comparable(result) == comparable(ref_result)
            assert without_paid(result["usage"]) == without_paid(ref_result["usage"])
            assert paid(result["usage"]) == rerun.completions  # the rerun paid only for what it sent
            assert integrity(runs / "cache.sqlite") == "ok"
            assert [e["type"] for e in RunStore(run_dir).events()][-1] == "result"

            # No finished call is paid twice: the rerun pays for exactly what was not stored.
            assert rerun.completions == ref_stats.completions - finished
            extra = killed.completions + rerun.completions - ref_stats.completions
            assert extra == killed.completions - finished  # answered to the killed attempt, never stored
            assert set(killed.served + rerun.served) == set(ref_stats.served)  # the same requests, and
            assert extra == sum(n - 1 for n in (killed.served + rerun.served).values())  # each extra is a repeat
            assert 0 <= extra <= MAX_IN_FLIGHT
            report.append((n_answers, killed.completions, finished, rerun.completions, extra))

    print(f"\nuninterrupted: {ref_stats.completions} answers in {ref_seconds:.1f}s; per trial (kill once n "
          "were answered, answered to the killed attempt, stored, answered on rerun, extra):")
    for row in report:
        print("  ", row)
    print("   extra answers in total:", sum(r[-1] for r in report), Counter(r[-1] for r in report))
