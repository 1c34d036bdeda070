"""Engine overhead: microseconds of promptopt per (prompt, example) evaluation, next to DSPy's Evaluate.

The model costs nothing here (``FakeBackend(latency=0)`` for promptopt, DSPy's
``DummyLM`` for DSPy), so what is timed is everything else: rendering,
batching, the backend stack a run uses (retry → cache → meter), parsing and
scoring. Both sides do the same work: P prompts × E examples of a two-label
sentiment task in generate mode, every prompt distinct, best of ``--repeats``.

Rows for promptopt: cache off; cache on, empty (every answer is stored: one
write to the answer log each); cache on, full (a replay: every answer is read back).
With ``--profile``, cProfile's top functions at the largest size are written
next to the results.

    python -m bench overhead --sizes 10,100,1000,10000
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import os
import platform
import pstats
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Coroutine
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

from bench.dspy_side import example_text, grid_shape, prompt_instruction

T = TypeVar("T")
LABELS = ("negative", "positive")
MODES = ("cache off", "cache on, empty", "cache on, full (replay)")


def _parse(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench overhead", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", default="10,100,1000,10000", help="evaluations per measurement")
    p.add_argument("--repeats", type=int, default=5, help="measurements per size; the fastest is kept")
    p.add_argument("--dspy-python", default="/work/dspy-venv/bin/python",
                   help="the DSPy venv's python (bench/setup_dspy.sh); '' to skip DSPy")
    p.add_argument("--profile", action=argparse.BooleanOptionalAction, default=True)
    p.add_argument("--out", default="bench/results/overhead")
    return p.parse_args(argv)


def _grid(size: int) -> tuple[list[Any], Any]:
    """The prompts and the task (examples in its test split) shared with bench/dspy_side.py."""
    from promptopt import Example, Prompt
    from promptopt.tasks import ClassificationTask, Splits

    n_prompts, n_examples = grid_shape(size)
    examples = tuple(Example(f"test-{i}", example_text(i), LABELS[i % 2]) for i in range(n_examples))
    task = ClassificationTask("overhead", LABELS, Splits(examples[:1], examples[:1], examples))
    prompts = [Prompt(instruction=prompt_instruction(j), template="Text: {input}\nAnswer:") for j in range(n_prompts)]
    return prompts, task


def time_promptopt(size: int, mode: str, repeats: int, profile: cProfile.Profile | None = None) -> float:
    """Fastest wall time (seconds) of one Evaluator pass over the grid through a run's backend stack."""
    from promptopt import Budget
    from promptopt.evaluator import Evaluator
    from promptopt.session import Session
    from promptopt.testing import FakeBackend

    prompts, task = _grid(size)
    best = float("inf")
    for _ in range(repeats):
        with tempfile.TemporaryDirectory() as tmp:
            cache = None if mode == "cache off" else Path(tmp) / "cache.sqlite"
            with Session(FakeBackend(reply=lambda r: "positive"), None, budget=Budget(), cache_path=cache) as session:
                if mode == "cache on, full (replay)":  # fill the cache first, untimed
                    session.loop.run(Evaluator(task, session.target, "generate").aevaluate(prompts, task.splits.test))
                evaluator = Evaluator(task, session.target, "generate")  # a fresh one remembers nothing
                run = evaluator.aevaluate(prompts, task.splits.test)
                started = time.perf_counter()
                session.loop.run(run if profile is None else _profiled(run, profile))
                best = min(best, time.perf_counter() - started)
    return best


async def _profiled(run: Coroutine[Any, Any, T], profile: cProfile.Profile) -> T:
    """Profile ``run`` on the thread that executes it (the session's loop thread, not the caller's)."""
    profile.enable()
    try:
        return await run
    finally:
        profile.disable()


def time_fake_alone(size: int, repeats: int) -> float:
    """The fake backend's own share: answering the same requests directly, in one batch."""
    import asyncio

    from promptopt.testing import FakeBackend
    from promptopt.types import Request

    prompts, task = _grid(size)
    requests = [Request(task.render(p, ex), max_tokens=task.max_tokens) for p in prompts for ex in task.splits.test]
    best = float("inf")
    for _ in range(repeats):
        fake = FakeBackend(reply=lambda r: "positive")
        started = time.perf_counter()
        asyncio.run(fake.agenerate(requests))
        best = min(best, time.perf_counter() - started)
    return best


def profile_text(size: int, mode: str) -> str:
    """cProfile's top functions by own time, then by cumulative time, for one pass."""
    prof = cProfile.Profile()
    time_promptopt(size, mode, 1, prof)
    out = io.StringIO()
    stats = pstats.Stats(prof, stream=out).strip_dirs()
    stats.sort_stats("tottime").print_stats(25)
    stats.sort_stats("cumulative").print_stats(30)
    return out.getvalue()


def run_dspy(dspy_python: str, sizes: str, repeats: int, out: Path) -> list[dict[str, Any]]:
    if not dspy_python:
        return []
    result_file = out / "dspy_raw.json"
    subprocess.run([dspy_python, str(Path(__file__).with_name("dspy_side.py")), "overhead", "--sizes", sizes,
                    "--repeats", str(repeats), "--out", str(result_file)], check=True)
    rows: list[dict[str, Any]] = json.loads(result_file.read_text())["rows"]
    for row in rows:
        row["mode"] = "DummyLM, Evaluate(num_threads=1)"
    return rows


def code_version() -> dict[str, Any]:
    """Which promptopt was timed: its location, the commit, and files changed since (a dirty tree)."""
    import promptopt

    root = Path(promptopt.__file__).resolve().parents[1]

    def git(*cmd: str) -> str:
        done = subprocess.run(["git", "-C", str(root), *cmd], capture_output=True, text=True)
        return done.stdout.rstrip() if done.returncode == 0 else ""

    return {"promptopt_path": str(root), "commit": git("rev-parse", "--short", "HEAD"),
            "changed_since_commit": git("status", "--short", "--", "promptopt").splitlines()}


def write_table(rows: list[dict[str, Any]], path: Path) -> None:
    """Markdown: one line per size, µs per evaluation for each system and mode."""
    columns = [("promptopt", m) for m in MODES] + [("promptopt", "fake backend alone")]
    columns += sorted({(r["system"], r["mode"]) for r in rows if r["system"] == "dspy"})
    by_key = {(r["system"], r["mode"], r["evaluations"]): r["us_per_eval"] for r in rows}
    header = "| evaluations (prompts × examples) | " + " | ".join(f"{s}: {m}" for s, m in columns) + " |"
    lines = [header, "|---" * (len(columns) + 1) + "|"]
    for size in sorted({r["evaluations"] for r in rows}):
        p, e = grid_shape(size)
        cells = [f"{by_key[(s, m, size)]:.1f}" if (s, m, size) in by_key else "–" for s, m in columns]
        lines.append(f"| {size:,} ({p} × {e}) | " + " | ".join(cells) + " |")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def plot(rows: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 4))
    for system, mode in sorted({(r["system"], r["mode"]) for r in rows}):
        line = sorted((r["evaluations"], r["us_per_eval"]) for r in rows if (r["system"], r["mode"]) == (system, mode))
        ax.plot(*zip(*line, strict=True), marker="o", label=f"{system}: {mode}")
    ax.axhline(20, color="grey", linestyle=":", label="goal: 20 µs")
    ax.set(xscale="log", yscale="log", xlabel="evaluations (prompt × example)", ylabel="µs per evaluation",
           title="Engine overhead with a zero-latency model")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: list[str]) -> int:
    args = _parse(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    sizes = [int(s) for s in args.sizes.split(",")]
    rows: list[dict[str, Any]] = []
    measures: list[tuple[str, Callable[[int], float]]] = [
        (m, partial(time_promptopt, mode=m, repeats=args.repeats)) for m in MODES]
    measures.append(("fake backend alone", partial(time_fake_alone, repeats=args.repeats)))
    for size in sizes:
        p, e = grid_shape(size)
        for mode, measure in measures:
            rows.append({"system": "promptopt", "mode": mode, "evaluations": size, "prompts": p, "examples": e,
                         "us_per_eval": round(measure(size) / size * 1e6, 2)})
            print(json.dumps(rows[-1]), flush=True)
    rows += run_dspy(args.dspy_python, args.sizes, args.repeats, out)
    if args.profile:
        for mode in ("cache off", "cache on, empty"):
            name = "profile_" + mode.split(",")[0].replace(" ", "_") + ".txt"
            (out / name).write_text(profile_text(max(sizes), mode), encoding="utf-8")
    meta = {"date": time.strftime("%Y-%m-%d"), "python": platform.python_version(), "machine": platform.machine(),
            "cpus": os.cpu_count(), "argv": ["python", "-m", "bench", "overhead", *argv], **code_version()}
    (out / "results.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=2) + "\n", encoding="utf-8")
    write_table(rows, out / "table.md")
    plot(rows, out / "overhead.png")
    print((out / "table.md").read_text())
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
