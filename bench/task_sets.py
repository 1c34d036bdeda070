"""One system prompt for many tasks, and one prompt per input: gains on seen and unseen tasks.

Two kinds of rows, both appended to ``<out>/rows.jsonl`` as runs finish (a killed
benchmark resumes where it stopped), with ``<out>/table.md`` rewritten after each:

* **set** rows: a set strategy (``--strategies``) searches one system prompt over
  all ``--tasks`` but two, which stay unseen: seed ``s`` holds out tasks ``2s`` and
  ``2s+1`` (mod the number of tasks), so three seeds hold out six (task, seed) pairs.
  The row keeps each task's seed and best test scores, seen and unseen.
* **selection** rows (``--selection-tasks``): ``prompt-selection`` on one task at a
  time: the seed prompt, the single best candidate, and the per-input selector, each on test.

All runs share one response cache, so the seed prompt's test evaluations are paid once.

    python -m bench task_sets --tasks sst2,mr,subj,agnews,trec --seeds 0,1,2 --strategies sprig,metaspo
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

from bench import mean_sd


def _parse(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench task_sets", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tasks", default="sst2,mr,subj,agnews,trec")
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--strategies", default="sprig,metaspo,hill-climb")
    p.add_argument("--selection-tasks", default="sst2,agnews,trec",
                   help="tasks for prompt-selection vs the single best prompt ('' for none)")
    p.add_argument("--mode", default="choice", help="answer mode of every task")
    p.add_argument("--target-calls", type=int, default=1500, help="target-call budget per run")
    p.add_argument("--optimizer-calls", type=int, default=24, help="optimizer-call budget per run")
    p.add_argument("--strategy-params", default="{}", help="JSON: hyper-parameters per strategy")
    p.add_argument("--n-dev", type=int, default=20, help="dev examples per task")
    p.add_argument("--n-test", type=int, default=200, help="test examples per task")
    p.add_argument("--data-dir", default=None)
    p.add_argument("--out", default="bench/results/task_sets")
    return p.parse_args(argv)


def unseen_for(tasks: list[str], seed: int) -> list[str]:
    """The two tasks seed ``seed`` holds out: ``2·seed`` and ``2·seed + 1``, counted around the list."""
    return [tasks[(2 * seed) % len(tasks)], tasks[(2 * seed + 1) % len(tasks)]]


def _run_set(job: dict[str, Any]) -> dict[str, Any]:
    import promptopt

    started = time.monotonic()
    seen = [t for t in job["tasks"] if t not in job["unseen"]]
    result = promptopt.optimize(
        task=seen, unseen=job["unseen"], strategy=job["strategy"], answer_mode=job["mode"], seed=job["seed"],
        strategy_params=job["params"].get(job["strategy"]) or None, **_common(job))
    per_task = {name: {"seed_test": s.seed_test.mean, "best_test": s.best_test.mean}
                for name, s in result.per_task.items()}
    unseen = {name: {"seed_test": s.seed_test.mean, "best_test": s.best_test.mean}
              for name, s in result.unseen.items()}
    return {"kind": "set", "strategy": job["strategy"], "seed": job["seed"], "settings": _settings(job),
            "seen": seen, "unseen": job["unseen"], "per_task": per_task, "unseen_scores": unseen,
            "best_system": result.best_prompt.system, "replaced": result.best_prompt.id != result.seed_prompt.id,
            **_spent(result, started)}


def _run_selection(job: dict[str, Any]) -> dict[str, Any]:
    import promptopt

    started = time.monotonic()
    result = promptopt.optimize(task=job["task"], strategy="prompt-selection", answer_mode=job["mode"],
                                seed=job["seed"], **_common(job))
    selector = result.selector_test.mean if result.selector_test is not None else None
    return {"kind": "selection", "task": job["task"], "seed": job["seed"], "settings": _settings(job),
            "seed_test": result.seed_test.mean, "best_test": result.best_test.mean, "selector_test": selector,
            "n_prompts": len(result.selector.prompts) if result.selector is not None else 0,
            **_spent(result, started)}


def _common(job: dict[str, Any]) -> dict[str, Any]:
    import promptopt

    return dict(budget=promptopt.Budget(target_calls=job["target_calls"], optimizer_calls=job["optimizer_calls"]),
                n_dev=job["n_dev"], n_test=job["n_test"], data_dir=job["data_dir"], offline=True,
                runs_dir=job["out"] + "/runs", cache=job["out"] + "/cache.sqlite", model_options={"n_threads": 1})


def _spent(result: Any, started: float) -> dict[str, Any]:
    search = result.usage["search"]
    return {"target_calls": search["target"]["calls"], "optimizer_calls": search["optimizer"]["calls"],
            "stopped_by": result.stopped_by, "run_dir": result.run_dir,
            "seconds": round(time.monotonic() - started, 1)}


def _settings(job: dict[str, Any]) -> dict[str, Any]:
    """What must match for two runs to sit in one table: the budget, the split sizes, the mode, the
    tasks (which decide the unseen ones) and the strategies' parameters."""
    return {k: job[k] for k in ("target_calls", "optimizer_calls", "n_dev", "n_test", "mode", "tasks", "params")}


def _key(row: dict[str, Any]) -> tuple[str, str, int]:
    return (row["kind"], row.get("strategy") or row.get("task") or "", row["seed"])


def write_table(rows: list[dict[str, Any]], path: Path) -> None:
    """Markdown: per set strategy, test gain over the seed on seen and on unseen tasks; then selection rows."""
    lines = ["| strategy | runs | seen tasks: seed test | seen: best − seed | unseen tasks: seed test | "
             "unseen: best − seed | seed replaced |", "|---|---|---|---|---|---|---|"]
    by_strategy: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in rows:
        if r["kind"] == "set":
            by_strategy[r["strategy"]].append(r)
    for name, rs in sorted(by_strategy.items()):
        seen = [statistics.mean(s["seed_test"] for s in r["per_task"].values()) for r in rs]
        seen_gain = [statistics.mean(s["best_test"] - s["seed_test"] for s in r["per_task"].values()) for r in rs]
        unseen = [statistics.mean(s["seed_test"] for s in r["unseen_scores"].values()) for r in rs]
        unseen_gain = [statistics.mean(s["best_test"] - s["seed_test"] for s in r["unseen_scores"].values())
                       for r in rs]
        lines.append(f"| {name} | {len(rs)} | {mean_sd(seen)} | {mean_sd(seen_gain)} | {mean_sd(unseen)} | "
                     f"{mean_sd(unseen_gain)} | {sum(bool(r['replaced']) for r in rs)}/{len(rs)} |")
    lines += ["", "| task (prompt-selection) | seeds | seed prompt test | single best test | selector test | "
              "prompts in the selector |", "|---|---|---|---|---|---|"]
    by_task: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in rows:
        if r["kind"] == "selection":
            by_task[r["task"]].append(r)
    for task, rs in sorted(by_task.items()):
        picked = [r["selector_test"] for r in rs if r["selector_test"] is not None]
        lines.append(f"| {task} | {len(rs)} | {mean_sd([r['seed_test'] for r in rs])} | "
                     f"{mean_sd([r['best_test'] for r in rs])} | {mean_sd(picked)} | "
                     f"{statistics.mean(r['n_prompts'] for r in rs):.1f} |")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def main(argv: list[str]) -> int:
    args = _parse(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rows_path = out / "rows.jsonl"
    rows = [json.loads(x) for x in rows_path.read_text().splitlines() if x.strip()] if rows_path.exists() else []
    done = {_key(r) for r in rows}
    tasks = args.tasks.split(",")
    if len(tasks) < 4:  # two are held out per seed and a set needs two more
        raise SystemExit(f"--tasks needs at least 4 tasks (two stay unseen per seed); got {args.tasks!r}")
    base = dict(mode=args.mode, tasks=tasks, params=json.loads(args.strategy_params),
                target_calls=args.target_calls, optimizer_calls=args.optimizer_calls, n_dev=args.n_dev,
                n_test=args.n_test, out=str(out),
                data_dir=args.data_dir or str(Path(__file__).resolve().parents[2] / "shared" / "data"))
    for row in rows:  # a resumed benchmark must keep the settings it started with
        if row.get("settings") != _settings(base):
            raise SystemExit(f"{rows_path} holds runs made with {row.get('settings')}; this command asks for "
                             f"{_settings(base)}: use the same options, or another --out")
    seeds = [int(s) for s in args.seeds.split(",")]
    jobs = [(_run_set, base | dict(kind="set", strategy=st, seed=s, unseen=unseen_for(tasks, s)))
            for s in seeds for st in args.strategies.split(",") if st]
    jobs += [(_run_selection, base | dict(kind="selection", task=t, seed=s))
             for s in seeds for t in args.selection_tasks.split(",") if t]
    jobs = [(run, job) for run, job in jobs if _key(job) not in done]
    print(f"{len(jobs)} runs to go ({len(done)} done) -> {out}")
    for run, job in jobs:
        row = run(job)
        with open(rows_path, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(row) + "\n")
        print(json.dumps({k: row.get(k) for k in ("kind", "strategy", "task", "seed", "seconds")}))
        rows.append(row)
        write_table(rows, out / "table.md")
    return 0
