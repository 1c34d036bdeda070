"""Seed prompt vs each strategy at an equal budget, on tasks where SmolLM2 shows signal.

Every (task, answer mode, seed) gets the same splits and budget for every
strategy; runs share one response cache, so the seed prompt's evaluations are
paid once. Rows are appended to ``<out>/rows.jsonl`` as runs finish (a killed
benchmark resumes where it stopped) and ``<out>/table.md`` is rewritten after
each run: mean ± sample standard deviation over seeds, dev and test accuracy,
and the calls spent. Parallel workers share the cache file (SQLite WAL).

    python -m bench strategies --tasks sst2,agnews,trec --modes choice,generate --seeds 0,1,2
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections import defaultdict
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

from bench import mean_sd

STRATEGIES = ("apo", "opro", "ape", "promptwizard", "gepa", "fewshot")


def _parse(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench strategies", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tasks", default="sst2,agnews,trec")
    p.add_argument("--modes", default="choice,generate")
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--strategies", default=",".join(STRATEGIES))
    p.add_argument("--target-calls", type=int, default=200, help="target-call budget per generate-mode run")
    p.add_argument("--per-example", action="store_true",
                   help="count the choice-mode budget in example evaluations: --choice-target-calls times the "
                        "task's number of labels, so tasks with more labels get the same number of examples")
    p.add_argument("--choice-target-calls", type=int, default=800,
                   help="target-call budget per choice-mode run (one call per label per example)")
    p.add_argument("--optimizer-calls", type=int, default=10, help="optimizer-call budget per run")
    p.add_argument("--default-budget", action="store_true",
                   help="the budget a user gets without --budget (promptopt.config.default_budget of the mode); "
                        "the call options above are then ignored")
    p.add_argument("--strategy-params", default="{}",
                   help='JSON: hyper-parameters per strategy, e.g. {"hill-climb": {"n_score": 20}} (recorded per row)')
    p.add_argument("--n-dev", type=int, default=20)
    p.add_argument("--n-test", type=int, default=200)
    p.add_argument("--workers", type=int, default=1, help="runs in parallel (each uses one CPU thread)")
    p.add_argument("--data-dir", default=None)
    p.add_argument("--out", default="bench/results/strategies")
    return p.parse_args(argv)


def _run_one(job: dict[str, Any]) -> dict[str, Any]:
    import promptopt

    started = time.monotonic()
    target_calls = job["target_calls"]
    if job.get("per_example") and job["mode"] == "choice":
        from promptopt.tasks import load_task

        labels = load_task(job["task"], data_dir=job["data_dir"], n_dev=1, n_test=1, n_train=1, offline=True).labels
        target_calls *= len(labels or ())
    budget = None if job.get("default_budget") else promptopt.Budget(
        target_calls=target_calls, optimizer_calls=job["optimizer_calls"])
    result = promptopt.optimize(
        task=job["task"], strategy=job["strategy"], answer_mode=job["mode"], seed=job["seed"],
        strategy_params=job["params"].get(job["strategy"]) or None, budget=budget,
        n_dev=job["n_dev"], n_test=job["n_test"], data_dir=job["data_dir"], offline=True,
        runs_dir=job["out"] + "/runs", cache=job["out"] + "/cache.sqlite",
        model_options={"n_threads": 1})
    search = result.usage["search"]
    return {**{k: job[k] for k in ("task", "mode", "seed", "strategy")}, "settings": _settings(job),
            "params": job["params"].get(job["strategy"]) or {},
            "seed_dev": result.seed_dev, "best_dev": result.best_dev,
            "seed_test": result.seed_test.mean, "best_test": result.best_test.mean, "n_test": result.best_test.n,
            "target_calls": search["target"]["calls"], "optimizer_calls": search["optimizer"]["calls"],
            "tokens": search["target"]["tokens"] + search["optimizer"]["tokens"],
            "target_tokens": search["target"]["tokens"],
            "stopped_by": result.stopped_by, "run_dir": result.run_dir,
            "replaced": result.best_prompt.id != result.seed_prompt.id,
            "full_dev_candidates": max(result.n_fully_scored - 1, 0),  # the seed, unless a cap came first
            "strategy_seconds": result.strategy_seconds, "seconds": round(time.monotonic() - started, 1)}


def _settings(job: dict[str, Any]) -> dict[str, int]:
    """What must match for two runs to sit in one table: the budget and the split sizes."""
    if job.get("default_budget"):
        return {"default_budget": 1, "n_dev": job["n_dev"], "n_test": job["n_test"]}
    return {k: job[k] for k in ("target_calls", "optimizer_calls", "n_dev", "n_test")} | (
        {"per_example": 1} if job.get("per_example") else {})


def read_rows(rows_path: Path) -> list[dict[str, Any]]:
    if not rows_path.exists():
        return []
    return [json.loads(x) for x in rows_path.read_text().splitlines() if x.strip()]


def run_key(row: dict[str, Any]) -> tuple[str, str, int, str]:
    """One run of a grid: a grid may hold both answer modes of a task, seed and strategy."""
    return row["task"], row["mode"], row["seed"], row["strategy"]


def _done(rows: list[dict[str, Any]]) -> set[tuple[str, str, int, str]]:
    return {run_key(r) for r in rows}


def write_table(rows: list[dict[str, Any]], path: Path) -> None:
    """Markdown: per task and mode, the seed prompt then each strategy (mean ± sd over seeds)."""
    groups: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for r in rows:
        groups[(r["task"], r["mode"])].append(r)
    lines = ["| task | mode | prompt | seeds | dev | test | target calls | target tokens | optimizer calls | "
             "seed replaced | own compute (% of run) | new candidates on all of dev | stopped by |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for (task, mode), group in sorted(groups.items()):
        seeds = {r["seed"]: r for r in group}
        lines.append(f"| {task} | {mode} | seed prompt | {len(seeds)} | "
                     f"{mean_sd([r['seed_dev'] for r in seeds.values()])} | "
                     f"{mean_sd([r['seed_test'] for r in seeds.values()])} | – | – | – | – | – | – | – |")
        by_strategy: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for r in group:
            by_strategy[r["strategy"]].append(r)
        for name in [s for s in STRATEGIES if s in by_strategy] + sorted(set(by_strategy) - set(STRATEGIES)):
            rs = by_strategy[name]
            lines.append(f"| {task} | {mode} | {name} | {len(rs)} | {mean_sd([r['best_dev'] for r in rs])} | "
                         f"{mean_sd([r['best_test'] for r in rs])} | "
                         f"{statistics.mean(r['target_calls'] for r in rs):.0f} | {_target_tokens(rs)} | "
                         f"{statistics.mean(r['optimizer_calls'] for r in rs):.0f} | "
                         f"{sum(bool(r.get('replaced')) for r in rs)}/{len(rs)} | {_own_share(rs)} | "
                         f"{_mean_of(rs, 'full_dev_candidates')} | {_stops(rs)} |")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def _target_tokens(rows: list[dict[str, Any]]) -> str:
    """Mean target-model tokens processed in the search (prompt and reply), in thousands. Rows written
    before the column existed are read from their run's result.json."""
    values = []
    for r in rows:
        if "target_tokens" in r:
            values.append(r["target_tokens"])
        elif (result := Path(r["run_dir"]) / "result.json").exists():
            values.append(json.loads(result.read_text())["usage"]["search"]["target"]["tokens"])
    if not values:
        return "–"
    shown = f"{statistics.mean(values) / 1000:.1f}k"
    return shown if len(values) == len(rows) else f"{shown} ({len(values)} of {len(rows)} runs)"


def _mean_of(rows: list[dict[str, Any]], key: str) -> str:
    """The mean of a column the older rows may lack ("–" when none has it)."""
    values = [r[key] for r in rows if key in r]
    return f"{statistics.mean(values):.1f}" if values else "–"


def _stops(rows: list[dict[str, Any]]) -> str:
    """Which cap ended each run, with counts ("finished" when the strategy ended its own loop)."""
    counts: dict[str, int] = defaultdict(int)
    for r in rows:
        counts[r.get("stopped_by") or "finished"] += 1
    return ", ".join(f"{name} {n}" for name, n in sorted(counts.items()))


def _own_share(rows: list[dict[str, Any]]) -> str:
    """The strategy's own compute (Result.strategy_seconds) as a share of the runs' wall time."""
    timed = [r for r in rows if "strategy_seconds" in r and r["seconds"]]
    if not timed:
        return "–"
    return f"{100 * sum(r['strategy_seconds'] for r in timed) / sum(r['seconds'] for r in timed):.1f}"


def main(argv: list[str]) -> int:
    args = _parse(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rows_path = out / "rows.jsonl"
    rows = read_rows(rows_path)
    done = _done(rows)
    data_dir = args.data_dir or str(Path(__file__).resolve().parents[2] / "shared" / "data")
    # Whole (mode, task) blocks first, every seed and strategy, so a partial grid gives complete table cells.
    jobs = [dict(task=t, mode=m, seed=int(s), strategy=st,
                 target_calls=args.choice_target_calls if m == "choice" else args.target_calls,
                 optimizer_calls=args.optimizer_calls, n_dev=args.n_dev, n_test=args.n_test,
                 data_dir=data_dir, out=str(out), per_example=args.per_example,
                 default_budget=args.default_budget,
                 params=json.loads(args.strategy_params))
            for m in args.modes.split(",") for t in args.tasks.split(",") for s in args.seeds.split(",")
            for st in args.strategies.split(",") if (t, m, int(s), st) not in done]
    for row in rows:  # a resumed grid must keep the settings it started with
        job = next((j for j in jobs if j["mode"] == row["mode"]), None)
        if job is not None and row.get("settings") != _settings(job):
            raise SystemExit(f"{rows_path} holds runs made with {row.get('settings')}; this command asks for "
                             f"{_settings(job)}: use the same options, or another --out")
    print(f"{len(jobs)} runs to go ({len(done)} done) -> {out}")
    with ProcessPoolExecutor(max_workers=args.workers) as pool:
        for row in pool.map(_run_one, jobs):
            with open(rows_path, "a", encoding="utf-8") as fh:
                fh.write(json.dumps(row) + "\n")
            print(json.dumps({k: row[k] for k in ("task", "mode", "seed", "strategy", "best_test", "seconds")}))
            write_table(read_rows(rows_path), out / "table.md")
    return 0
