"""A strategies grid's summary, read from its rows (no model calls).

``python -m bench grid_figures --out bench/results/fair``

Writes into ``<out>``:

- ``grid_figures.md``: test accuracy per (task, mode, strategy), mean ± sd over
  seeds next to the seed prompt's; (a) of the runs that replaced the seed, how
  many scored at least the seed's test accuracy; (b) per task and mode, the best
  strategy's mean test gain over the seed; the cells whose mean test accuracy is
  more than two points below the seed's.
- ``held.png``: (a), each replacing run's test gain over the seed, per strategy.
- ``best_minus_seed.png``: (b), per task, one bar per answer mode.

Works on a partial grid: each cell says how many seeds it holds.
"""

from __future__ import annotations

import argparse
import json
import statistics
from collections import defaultdict
from collections.abc import Iterable
from pathlib import Path
from typing import Any

Row = dict[str, Any]
#: a cell fails the grid's rule when its mean test accuracy is this far below the seed's
TOLERANCE = 0.02


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench grid_figures")
    parser.add_argument("--out", default="bench/results/fair")
    out = Path(parser.parse_args(argv).out)
    rows = [json.loads(x) for x in (out / "rows.jsonl").read_text().splitlines() if x.strip()]
    text = "\n\n".join([test_table(rows), held_on_test(rows), best_minus_seed(rows), below_seed(rows)]) + "\n"
    (out / "grid_figures.md").write_text(text, encoding="utf-8")
    _plot_held(rows, out / "held.png")
    _plot_best(rows, out / "best_minus_seed.png")
    print(text)
    return 0


def cells(rows: Iterable[Row]) -> dict[tuple[str, str, str], list[Row]]:
    """(task, mode, strategy) -> its runs, in seed order."""
    groups: dict[tuple[str, str, str], list[Row]] = defaultdict(list)
    for row in sorted(rows, key=lambda r: r["seed"]):
        groups[(row["task"], row["mode"], row["strategy"])].append(row)
    return dict(sorted(groups.items()))


def gain(group: list[Row]) -> float:
    """Mean over seeds of final minus seed prompt on test."""
    return float(statistics.mean(r["best_test"] - r["seed_test"] for r in group))


def _mean_sd(values: list[float]) -> str:
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.3f} ± {sd:.3f}"


def beyond_spread(group: list[Row]) -> bool:
    """The mean gain exceeds both the seed prompt's sd over seeds and the gain's own sd."""
    if len(group) < 2:
        return False
    seeds = [r["seed_test"] for r in group]
    gaps = [r["best_test"] - r["seed_test"] for r in group]
    return bool(statistics.mean(gaps) > max(statistics.stdev(seeds), statistics.stdev(gaps)))


def test_table(rows: list[Row]) -> str:
    lines = ["## Test accuracy (mean ± sd over seeds)", "",
             "A gain is *beyond the spread* when the mean of final − seed exceeds both the seed prompt's sd over",
             "seeds (how much the splits alone move it) and the sd of final − seed (how much the gain varies).", "",
             "| task | mode | strategy | seeds | seed prompt | final prompt | final − seed (points) "
             "| beyond the spread | replaced |", "|---|---|---|---|---|---|---|---|---|"]
    for (task, mode, strategy), group in cells(rows).items():
        gaps = [100 * (r["best_test"] - r["seed_test"]) for r in group]
        gap_sd = statistics.stdev(gaps) if len(gaps) > 1 else 0.0
        lines.append(f"| {task} | {mode} | {strategy} | {','.join(str(r['seed']) for r in group)} "
                     f"| {_mean_sd([r['seed_test'] for r in group])} | {_mean_sd([r['best_test'] for r in group])} "
                     f"| {statistics.mean(gaps):+.1f} ± {gap_sd:.1f} | {'yes' if beyond_spread(group) else 'no'} "
                     f"| {sum(r['replaced'] for r in group)}/{len(group)} |")
    return "\n".join(lines)


def held_on_test(rows: list[Row]) -> str:
    lines = ["## (a) A replaced seed on test", "",
             "| mode | runs | replaced the seed | test ≥ seed's | test > seed's | share ≥ |",
             "|---|---|---|---|---|---|"]
    for mode in sorted({r["mode"] for r in rows}) + ["all"]:
        runs = [r for r in rows if mode in ("all", r["mode"])]
        replaced = [r for r in runs if r["replaced"]]
        held = sum(r["best_test"] >= r["seed_test"] for r in replaced)
        rose = sum(r["best_test"] > r["seed_test"] for r in replaced)
        share = f"{held / len(replaced):.0%}" if replaced else "–"
        lines.append(f"| {mode} | {len(runs)} | {len(replaced)} | {held} | {rose} | {share} |")
    return "\n".join(lines)


def best_per_task(rows: list[Row]) -> dict[tuple[str, str], tuple[str, float]]:
    """(task, mode) -> the strategy with the highest mean test gain over the seed, and that gain."""
    best: dict[tuple[str, str], tuple[str, float]] = {}
    for (task, mode, strategy), group in cells(rows).items():
        if (task, mode) not in best or gain(group) > best[(task, mode)][1]:
            best[(task, mode)] = (strategy, gain(group))
    return best


def best_minus_seed(rows: list[Row]) -> str:
    lines = ["## (b) Best strategy minus seed on test (mean over seeds, points)", "",
             "| task | mode | best strategy | best − seed | seeds |", "|---|---|---|---|---|"]
    groups = cells(rows)
    for (task, mode), (strategy, value) in sorted(best_per_task(rows).items()):
        seeds = ",".join(str(r["seed"]) for r in groups[(task, mode, strategy)])
        lines.append(f"| {task} | {mode} | {strategy} | {100 * value:+.1f} | {seeds} |")
    return "\n".join(lines)


def below_seed(rows: list[Row]) -> str:
    groups = cells(rows)
    low = [(key, gain(group)) for key, group in groups.items() if gain(group) < -TOLERANCE]
    lowest = min(groups.items(), key=lambda kv: gain(kv[1]))
    lines = [f"## Cells more than {100 * TOLERANCE:.0f} points below the seed on test", "",
             f"{len(low)} of {len(groups)} cells; the lowest: {'/'.join(lowest[0])} "
             f"{100 * gain(lowest[1]):+.1f} points."]
    lines += [f"- {'/'.join(key)}: {100 * value:+.1f}" for key, value in low]
    return "\n".join(lines)


def _plot_held(rows: list[Row], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    strategies = sorted({r["strategy"] for r in rows})
    fig, ax = plt.subplots(figsize=(8, 4.5))
    for offset, (mode, marker) in zip((-0.12, 0.12), (("choice", "o"), ("generate", "s")), strict=True):
        replaced = [r for r in rows if r["replaced"] and r["mode"] == mode]
        ax.scatter([strategies.index(r["strategy"]) + offset for r in replaced],
                   [100 * (r["best_test"] - r["seed_test"]) for r in replaced], marker=marker, alpha=0.7,
                   label=f"{mode} ({len(replaced)} replaced)")
    ax.axhline(0, color="grey", linewidth=1)
    ax.set_xticks(range(len(strategies)), strategies, rotation=45, ha="right")
    ax.set_ylabel("final − seed on test (points)")
    ax.set_title("(a) Runs that replaced the seed: test gain over the seed")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _plot_best(rows: list[Row], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    best = best_per_task(rows)
    tasks = sorted({task for task, _ in best})
    fig, ax = plt.subplots(figsize=(8, 4))
    for offset, mode, colour in ((-0.2, "choice", "tab:blue"), (0.2, "generate", "tab:orange")):
        xs = [i + offset for i, t in enumerate(tasks) if (t, mode) in best]
        values = [100 * best[(t, mode)][1] for t in tasks if (t, mode) in best]
        bars = ax.bar(xs, values, width=0.4, label=mode, color=colour)
        ax.bar_label(bars, labels=[best[(t, mode)][0] for t in tasks if (t, mode) in best], fontsize=7)
    ax.axhline(0, color="grey", linewidth=1)
    ax.set_xticks(range(len(tasks)), tasks)
    ax.set_ylabel("best strategy − seed on test (points)")
    ax.set_title("(b) Per task, the best strategy's mean test gain over the seed")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    raise SystemExit(main(__import__("sys").argv[1:]))
