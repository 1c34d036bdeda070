"""Two CLI processes running the same search at the same time, sharing one cache file."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time
from pathlib import Path

from reliability_helpers import cache_rows, child_env, cli_args, comparable, integrity, paid, result_json

from promptopt.backends import ResponseCache
from promptopt.testing.fault_server import FaultPlan, run_fault_server


def test_two_processes_share_one_cache(tmp_path: Path) -> None:
    cache = tmp_path / "shared.sqlite"
    ResponseCache(cache).close()  # an existing cache; a fresh one opened at once is tested below
    with run_fault_server(FaultPlan(latency=0.01), idle_timeout=60) as server:
        procs = [subprocess.Popen(cli_args(server.base_url, tmp_path / name, "--cache", str(cache)),
                                  stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=child_env())
                 for name in ("a", "b")]
        started = time.monotonic()
        errors = [p.communicate(timeout=90)[1] for p in procs]
        seconds = time.monotonic() - started
        stats = server.stats

    assert [p.returncode for p in procs] == [0, 0], errors
    a, b = result_json(tmp_path / "a"), result_json(tmp_path / "b")
    assert comparable(a) == comparable(b)
    assert integrity(cache) == "ok"
    # One row per distinct request, whichever process stored it (or both: INSERT OR REPLACE).
    assert cache_rows(cache) == len(stats.served)
    # The processes raced on the same calls: each answer was bought at most twice,
    # and what the two results report as paid is what the server answered.
    assert len(stats.served) <= stats.completions <= 2 * len(stats.served)
    assert paid(a["usage"]) + paid(b["usage"]) == stats.completions
    print(f"\n2 processes in {seconds:.1f}s: {len(stats.served)} distinct requests, {stats.completions} answered "
          f"(paid a={paid(a['usage'])}, b={paid(b['usage'])}); integrity ok")


# Six forked processes open one fresh cache file at the same instant, 40 times over.
RACE = textwrap.dedent("""
    import multiprocessing, sys, tempfile
    from pathlib import Path
    from promptopt.backends import ResponseCache

    def open_cache(path, barrier, errors):
        barrier.wait()
        try:
            ResponseCache(path).close()
        except Exception as exc:
            errors.put(f"{type(exc).__name__}: {exc}")

    if __name__ == "__main__":
        ctx = multiprocessing.get_context("fork")
        errors = ctx.Queue()
        for _ in range(40):
            path, barrier = Path(tempfile.mkdtemp(dir=sys.argv[1])) / "cache.sqlite", ctx.Barrier(6)
            procs = [ctx.Process(target=open_cache, args=(path, barrier, errors)) for _ in range(6)]
            for p in procs:
                p.start()
            for p in procs:
                p.join()
        failures = []
        while not errors.empty():
            failures.append(errors.get())
        print(len(failures), sorted(set(failures)))
""")


def test_processes_opening_a_fresh_cache_at_once(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "-c", RACE, str(tmp_path)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "0 []"
