"""The quality grid's summary tables, from its rows (``results/quality/rows.jsonl``).

Prints, as Markdown: test accuracy per (method, task), mean ± sd over seeds
with each seed in brackets (the seed prompt's own test score as a row of its
own); then the runs where a strategy replaced the seed prompt with one that
scored higher on dev, per answer mode, with what that did on test, and what a
paired significance test on dev would have kept.

    python -m bench quality-summary [--rows bench/results/quality/rows.jsonl] [--n-dev 20]
"""

from __future__ import annotations

import argparse
import json
import statistics
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

SEED_ROW = "promptopt seed prompt"
ALPHA = 0.05


def _parse(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench quality-summary", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rows", default="bench/results/quality/rows.jsonl")
    p.add_argument("--n-dev", type=int, default=20, help="dev examples each run was picked on")
    return p.parse_args(argv)


def accuracy_table(rows: Sequence[dict[str, Any]]) -> str:
    tasks = list(dict.fromkeys(r["task"] for r in rows))
    seeds = sorted({r["seed"] for r in rows})
    cells: dict[tuple[str, str], dict[int, float | None]] = defaultdict(dict)
    for r in rows:
        cells[(r["method"], r["task"])][r["seed"]] = r["test_accuracy"] if r["status"] == "ok" else None
        if r["status"] == "ok" and _generate_mode_promptopt(r):  # every such run scored the seed prompt on test
            cells[(SEED_ROW, r["task"])][r["seed"]] = r["seed_test"]
    methods = list(dict.fromkeys(r["method"] for r in rows if r["method"].startswith("dspy:")))
    methods += [SEED_ROW] + list(dict.fromkeys(r["method"] for r in rows if r["method"].startswith("promptopt:")))
    lines = ["| method | " + " | ".join(tasks) + " |", "|---" * (len(tasks) + 1) + "|"]
    for method in methods:
        lines.append(f"| {method} | " + " | ".join(_cell(cells[(method, t)], seeds) for t in tasks) + " |")
    return "\n".join(lines)


def _cell(by_seed: dict[int, float | None], seeds: list[int]) -> str:
    if not by_seed:
        return "–"
    scores = [v for v in by_seed.values() if v is not None]
    if not scores:
        return f"failed ×{len(by_seed)}"
    each = " / ".join("–" if s not in by_seed else "failed" if by_seed[s] is None else f"{by_seed[s]:.2f}"
                      for s in seeds)
    spread = f" ± {statistics.stdev(scores):.2f}" if len(scores) > 1 else ""
    return f"{statistics.mean(scores):.2f}{spread} ({each})"


def _generate_mode_promptopt(row: dict[str, Any]) -> bool:
    return str(row["method"]).startswith("promptopt:") and "+choice" not in row["method"]


def least_significant_gain(n_dev: int) -> int:
    """The fewest more dev examples right for a one-sided exact sign test to reach ALPHA.

    A net gain g (wins minus losses) is most significant with no losses: p = 0.5**g.
    """
    return next(g for g in range(1, n_dev + 1) if 0.5 ** g < ALPHA)


def replacements(rows: Sequence[dict[str, Any]], n_dev: int) -> str:
    picked = [r for r in rows if r["status"] == "ok" and str(r["method"]).startswith("promptopt:")
              and r.get("best_dev") is not None and abs(r["best_dev"] - r["seed_dev"]) > 1e-9]
    need = least_significant_gain(n_dev)
    lines = [f"Runs whose strategy replaced the seed prompt (better on {n_dev} dev examples); "
             f"a paired test keeps a winner only with ≥ {need} more dev examples right (p = {0.5 ** need:.3f}):", "",
             "| mode | replaced | test rose | test fell | test change, summed (points) | dev gains (examples) "
             "| kept by the test | their test change (points) |", "|---|---|---|---|---|---|---|---|"]
    for mode in ("generate", "choice"):
        runs = [r for r in picked if ("+choice" in r["method"]) == (mode == "choice")]
        change = [100 * (r["test_accuracy"] - r["seed_test"]) for r in runs]
        gains = [round((r["best_dev"] - r["seed_dev"]) * n_dev) for r in runs]
        kept = [c for c, g in zip(change, gains, strict=True) if g >= need]
        lines.append(f"| {mode} | {len(runs)} | {sum(c > 1e-6 for c in change)} | {sum(c < -1e-6 for c in change)} "
                     f"| {sum(change):+.0f} | {', '.join(map(str, sorted(gains)))} | {len(kept)} | {sum(kept):+.0f} |")
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    args = _parse(argv)
    path = Path(args.rows)
    if not path.is_file():
        print(f"no rows at {str(path)!r}: run `python -m bench quality` first, or pass --rows PATH")
        return 2
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    print(accuracy_table(rows))
    print()
    print(replacements(rows, args.n_dev))
    return 0
