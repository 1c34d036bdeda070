"""Figures of the families grid, read from its rows and run directories (no model calls).

``python -m bench families_figures --out bench/results/families``

Writes into ``<out>``:

- ``figures.md``: per (task, mode, strategy) the test mean ± sd over seeds next to the
  seed's; which beat the seed by more than the seed-to-seed spread; the loss-based
  strategies' Spearman correlation between candidate loss and accuracy per task;
  the shortest prompt (target tokens) each strategy found that keeps the seed's
  dev accuracy; RLPrompt's learned prompts and throughput.
- ``rl_curves.png``: RLPrompt's mean reward per step, one line per task and seed.
- ``front_<task>.png``: every candidate ``multiobjective`` scored on all of dev, as
  dev accuracy vs prompt tokens, its Pareto front joined and the seed marked.

Prompt lengths are counted with the embedded model's tokenizer (vocabulary only).
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from bench.grid_figures import test_table

LOSS_STRATEGIES = ("pmpo", "tapruning", "promptquine")
Row = dict[str, Any]


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench families_figures")
    parser.add_argument("--out", default="bench/results/families")
    args = parser.parse_args(argv)
    out = Path(args.out)
    rows = [json.loads(x) for x in (out / "rows.jsonl").read_text().splitlines() if x.strip()]
    count = _token_counter()
    sections = [test_table(rows), _loss_vs_accuracy(rows), _shortest(rows, count), _rl(rows, out)]
    sections += [_fronts(rows, out, count)]
    (out / "figures.md").write_text("\n\n".join(s for s in sections if s) + "\n", encoding="utf-8")
    print((out / "figures.md").read_text())
    return 0


# -- reading runs ----------------------------------------------------------------------------------
def _events(row: Row) -> list[Row]:
    return [json.loads(x) for x in Path(row["run_dir"], "events.jsonl").read_text().splitlines() if x.strip()]


def _full_dev_scores(events: Iterable[Row], n_dev: int) -> dict[str, float]:
    """prompt id -> mean on all of dev, for candidates scored on every dev example."""
    return {e["prompt_id"]: e["mean"] for e in events
            if e["type"] == "evaluation" and e.get("dev") and e["n"] == n_dev}


def _prompts(events: Iterable[Row]) -> dict[str, Row]:
    return {e["prompt_id"]: e["prompt"] for e in events if e["type"] == "candidate"}


def _prompt_text(prompt: Row) -> str:
    demos = "".join(f"\n{d['input']}\n{d['output']}" for d in prompt["demos"])
    return f"{prompt['system']}\n{prompt['instruction']}{demos}\n{prompt['template']}".strip()


def _token_counter() -> Callable[[str], int]:
    from llama_cpp import Llama

    from promptopt.backends.llamacpp import smollm2_path

    vocab = Llama(model_path=smollm2_path(), vocab_only=True, verbose=False)
    return lambda text: len(vocab.tokenize(text.encode(), add_bos=False, special=False))


def _by(rows: Iterable[Row], *keys: str) -> dict[tuple[Any, ...], list[Row]]:
    groups: dict[tuple[Any, ...], list[Row]] = defaultdict(list)
    for row in rows:
        groups[tuple(row[k] for k in keys)].append(row)
    return groups


# -- sections --------------------------------------------------------------------------------------
def _spearman(xs: list[float], ys: list[float]) -> float | None:
    from scipy.stats import spearmanr

    if len(xs) < 3 or len(set(xs)) < 2 or len(set(ys)) < 2:
        return None
    return float(spearmanr(xs, ys).statistic)


def _loss_vs_accuracy(rows: list[Row]) -> str:
    """Spearman of candidate loss vs accuracy: on the same training sample, and vs dev accuracy."""
    lines = ["## Loss vs accuracy (Spearman ρ over candidates; loss-based strategies, all seeds pooled)", "",
             "| task | strategy | candidates (same sample) | ρ(loss, accuracy), same sample "
             "| candidates (dev) | ρ(loss, dev accuracy) |", "|---|---|---|---|---|---|"]
    for (task, strategy), group in sorted(_by([r for r in rows if r["strategy"] in LOSS_STRATEGIES],
                                              "task", "strategy").items()):
        same_loss, same_acc, dev_loss, dev_acc = [], [], [], []
        for row in group:
            events = _events(row)
            dev = _full_dev_scores(events, row["settings"]["n_dev"])
            signals = {e["prompt_id"]: e for e in events if e["type"] == "signals" and "accuracy" in e}
            for pid, sig in signals.items():
                same_loss.append(sig["loss"])
                same_acc.append(sig["accuracy"])
                if pid in dev:
                    dev_loss.append(sig["loss"])
                    dev_acc.append(dev[pid])
        rho_same, rho_dev = _spearman(same_loss, same_acc), _spearman(dev_loss, dev_acc)
        lines.append(f"| {task} | {strategy} | {len(same_loss)} | {_fmt(rho_same)} | {len(dev_loss)} "
                     f"| {_fmt(rho_dev)} |")
    lines.append("")
    lines.append("A negative ρ means lower loss goes with higher accuracy; — where fewer than 3 candidates "
                 "or no spread.")
    return "\n".join(lines)


def _fmt(value: float | None) -> str:
    return "—" if value is None else f"{value:+.2f}"


def _shortest(rows: list[Row], count: Callable[[str], int]) -> str:
    """Per task and strategy, the shortest candidate whose dev accuracy is at least the seed's."""
    lines = ["## Shortest prompt keeping the seed's dev accuracy (target tokens of the prompt text)", "",
             "| task | seed | strategy | seed tokens | shortest tokens | its dev (seed dev) | prompt |",
             "|---|---|---|---|---|---|---|"]
    for row in sorted(rows, key=lambda r: (r["task"], r["seed"], r["strategy"])):
        events = _events(row)
        dev, prompts = _full_dev_scores(events, row["settings"]["n_dev"]), _prompts(events)
        seed_id = next(e["prompt_id"] for e in events if e["type"] == "candidate" and e["operator"] == "seed")
        keep = [(count(_prompt_text(prompts[pid])), pid) for pid, mean in dev.items()
                if mean >= dev[seed_id] and pid in prompts]
        tokens, pid = min(keep)
        if pid == seed_id:
            continue
        text = _prompt_text(prompts[pid]).replace("\n", " ⏎ ").replace("|", "\\|")
        lines.append(f"| {row['task']} | {row['seed']} | {row['strategy']} | {count(_prompt_text(prompts[seed_id]))} "
                     f"| {tokens} | {dev[pid]:.2f} ({dev[seed_id]:.2f}) | `{text[:120]}` |")
    lines.append("")
    lines.append("Runs not listed found no candidate scored on all of dev that was both shorter than the seed "
                 "and at least as accurate.")
    return "\n".join(lines)


def _rl(rows: list[Row], out: Path) -> str:
    rl = [r for r in rows if r["strategy"] == "rlprompt"]
    if not rl:
        return ""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    lines = ["## RLPrompt", "", "| task | seed | steps | mean reward first → last step | best prompt (test) "
             "| seed (test) | prompts scored / s | share of wall time outside model calls |",
             "|---|---|---|---|---|---|---|---|"]
    for row in sorted(rl, key=lambda r: (r["task"], r["seed"])):
        events = _events(row)
        steps = [e for e in events if e["type"] == "rl_step"]
        ax.plot([e["step"] for e in steps], [e["mean_reward"] for e in steps], marker="o",
                label=f"{row['task']} seed {row['seed']}")
        scored = sum(1 for e in events if e["type"] == "candidate") - 1
        result = json.loads(Path(row["run_dir"], "result.json").read_text())
        best = _prompt_text(result["best_prompt"]).replace("\n", " ⏎ ").replace("|", "\\|")
        first_last = f"{steps[0]['mean_reward']:.1f} → {steps[-1]['mean_reward']:.1f}" if steps else "—"
        lines.append(f"| {row['task']} | {row['seed']} | {len(steps)} | {first_last} | `{best[:80]}` "
                     f"({row['best_test']:.3f}) | {row['seed_test']:.3f} | {scored / row['seconds']:.2f} "
                     f"| {row['strategy_seconds'] / row['seconds']:.2%} |")
    ax.set_xlabel("policy step")
    ax.set_ylabel("mean reward of the sampled prompts")
    ax.set_title("RLPrompt learning curves (choice mode, SmolLM2-135M)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out / "rl_curves.png", dpi=120)
    plt.close(fig)
    lines += ["", "![RLPrompt learning curves](rl_curves.png)"]
    return "\n".join(lines)


def _fronts(rows: list[Row], out: Path, count: Callable[[str], int]) -> str:
    multi = [r for r in rows if r["strategy"] == "multiobjective"]
    if not multi:
        return ""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    lines = ["## multiobjective: accuracy vs prompt tokens", ""]
    for task, group in sorted(_by(multi, "task").items()):
        fig, ax = plt.subplots(figsize=(6, 4))
        for row in group:
            events = _events(row)
            dev, prompts = _full_dev_scores(events, row["settings"]["n_dev"]), _prompts(events)
            points = sorted((count(_prompt_text(prompts[pid])), mean, pid) for pid, mean in dev.items())
            seed_id = next(e["prompt_id"] for e in events if e["type"] == "candidate" and e["operator"] == "seed")
            front = _pareto([(t, m) for t, m, _ in points])
            ax.scatter([t for t, _, _ in points], [m for _, m, _ in points], s=18, alpha=0.6,
                       label=f"seed {row['seed']}: candidates")
            ax.plot([t for t, _ in front], [m for _, m in front], linewidth=1)
            seed_point = next((t, m) for t, m, pid in points if pid == seed_id)
            ax.scatter([seed_point[0]], [seed_point[1]], marker="*", s=160, color="black", zorder=3)
            lines.append(f"- {task[0]} seed {row['seed']}: {len(points)} candidates scored on all of dev, "
                         f"front {front}, seed at {seed_point}")
        ax.set_xlabel("prompt tokens (SmolLM2 tokenizer)")
        ax.set_ylabel("dev accuracy")
        ax.set_title(f"multiobjective on {task[0]}: accuracy vs length (★ = seed)")
        ax.legend(fontsize=7)
        fig.tight_layout()
        fig.savefig(out / f"front_{task[0]}.png", dpi=120)
        plt.close(fig)
        lines.append(f"\n![front {task[0]}](front_{task[0]}.png)\n")
    return "\n".join(lines)


def _pareto(points: list[tuple[int, float]]) -> list[tuple[int, float]]:
    """The points no other point beats on both fewer tokens and higher accuracy, by tokens."""
    front: list[tuple[int, float]] = []
    for tokens, acc in sorted(points, key=lambda p: (p[0], -p[1])):
        if not front or acc > front[-1][1]:
            front.append((tokens, acc))
    return front
