"""Quality vs DSPy: test accuracy for the same model, server, splits, seed prompt and target-call budget.

One ``llama_cpp.server`` serves SmolLM2 on 127.0.0.1, behind a counting proxy
(bench/proxy.py) with one port for target-model calls and one for optimizer
calls. promptopt (``openai:`` backend) and DSPy (bench/dspy_side.py, in its own
venv) both go through it, so calls and tokens are counted the same way for
both, whatever each reports about itself.

For every (task, seed) the splits are cut once by promptopt and written to a
JSON file that the DSPy side reads; the seed instruction is the DSPy
signature's instructions. Methods:

* ``dspy:none`` (the seed program, DSPy's prompt format), ``dspy:copro``,
  ``dspy:miprov2``, ``dspy:gepa``: DSPy's knobs are set so that its target
  calls land near ``--target-calls`` (see ``knobs_for_budget`` in dspy_side.py);
* ``promptopt:<strategy>``: generate mode through the proxy, capped at
  ``--target-calls`` and ``--optimizer-calls``;
* ``promptopt:<strategy>+choice``: choice mode as an extra row. The server's
  OpenAI API cannot score log-probabilities, so the target model runs
  in-process (embedded SmolLM2) and its calls are counted by promptopt's meter
  (one scoring call per label per example; the cap is ``--target-calls`` ×
  labels, the same number of example evaluations); optimizer calls still go
  through the proxy.

A target call is a test call when the example its last user message asks
about is a test example; the rest is search. Test is touched once per method and seed (the final
evaluation); nothing is tuned on it. Every run starts with an empty response
cache on both sides. ``rows.jsonl`` gets a line per finished run (rerunning
resumes), ``table.md`` and ``accuracy_vs_calls.png`` are rewritten after each.
``--workers N`` runs N (task, seed) cells at once, each with its own server and
proxy (so each cell's counts are its own); cells go seed-major.

    python -m bench quality --tasks sst2,agnews,trec,mr --seeds 0,1,2
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import time
from collections import defaultdict
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from bench import mean_sd
from bench.overhead import code_version
from bench.proxy import CallRecord, CountingProxy, summarize_calls

DSPY_METHODS = ("dspy:none", "dspy:copro", "dspy:miprov2", "dspy:gepa")
PROMPTOPT_STRATEGIES = ("apo", "opro", "ape", "promptwizard", "gepa", "fewshot")
DEFAULT_METHODS = (*DSPY_METHODS, *(f"promptopt:{s}" for s in PROMPTOPT_STRATEGIES), "promptopt:apo+choice")


def _parse(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench quality", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tasks", default="sst2,agnews,trec,mr")
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--methods", default=",".join(DEFAULT_METHODS))
    p.add_argument("--target-calls", type=int, default=200, help="target-call budget of the search")
    p.add_argument("--optimizer-calls", type=int, default=50,
                   help="promptopt's optimizer-call cap; DSPy's optimizers have none, so it is set high enough "
                        "that target calls bind for both (APO's first expansion alone takes about 18)")
    p.add_argument("--n-train", type=int, default=100)
    p.add_argument("--n-dev", type=int, default=20)
    p.add_argument("--n-test", type=int, default=200)
    p.add_argument("--dspy-python", default="/work/dspy-venv/bin/python", help="python of bench/setup_dspy.sh's venv")
    p.add_argument("--dspy-calls-per-eval", type=float, default=2.0,
                   help="target calls DSPy makes per metric evaluation, used only to aim its knobs: "
                        "ChatAdapter falls back to a second, JSON call when it cannot parse a reply "
                        "(2.15 measured with SmolLM2 on sst2)")
    p.add_argument("--server-threads", type=int, default=1, help="CPU threads of the llama.cpp server")
    p.add_argument("--deterministic", action=argparse.BooleanOptionalAction, default=True,
                   help="server evaluates prompts one token at a time, so a reply does not depend on the "
                        "previous request (slower prompt processing); --no-deterministic for speed")
    p.add_argument("--workers", type=int, default=1,
                   help="(task, seed) cells run at once, each with its own server and proxy; with "
                        "--server-threads 1, one per core")
    p.add_argument("--data-dir", default=None)
    p.add_argument("--out", default="bench/results/quality")
    return p.parse_args(argv)


def export_splits(task: Any, path: Path) -> dict[str, Any]:
    """Write the task's splits and seed instruction as the JSON the DSPy side reads; return it."""
    def rows(examples: Sequence[Any]) -> list[dict[str, str]]:
        return [{"id": ex.id, "input": ex.input, "target": ex.target} for ex in examples]

    data = {"task": task.name, "labels": list(task.labels), "instruction": task.seed_prompt.instruction,
            "train": rows(task.splits.train), "dev": rows(task.splits.dev), "test": rows(task.splits.test)}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    return data


def example_split(message: str, inputs: dict[str, str]) -> str | None:
    """The split of the example a message asks about: of the inputs found in it, the one that ends
    last (demonstrations come before the input), the longest on a tie (a short test sentence can sit
    inside a longer train sentence)."""
    best: tuple[int, int, str] | None = None
    for text, split in inputs.items():
        at = message.rfind(text)
        if at >= 0 and (best is None or (at + len(text), len(text)) > best[:2]):
            best = (at + len(text), len(text), split)
    return best[2] if best else None


def split_by_phase(records: Sequence[CallRecord], splits: dict[str, Any]) -> dict[str, Any]:
    """Calls and tokens per role, search and test apart (a test call asks about a test example)."""
    inputs = {r["input"]: name for name in ("train", "dev", "test") for r in splits[name]}
    test = [r.role == "target" and example_split(r.last_user, inputs) == "test" for r in records]
    return {"search": summarize_calls(r for r, t in zip(records, test, strict=True) if not t),
            "test": summarize_calls(r for r, t in zip(records, test, strict=True) if t)}


def run_dspy(method: str, splits_file: Path, seed: int, proxy: CountingProxy, args: argparse.Namespace,
             run_dir: Path) -> dict[str, Any]:
    out = run_dir / f"{method.replace(':', '-')}-result.json"
    command = [args.dspy_python, str(Path(__file__).with_name("dspy_side.py")), "optimize",
               "--splits", str(splits_file), "--optimizer", method.split(":")[1],
               "--target-url", proxy.base_url("target"), "--optimizer-url", proxy.base_url("optimizer"),
               "--budget", str(args.target_calls), "--calls-per-eval", str(args.dspy_calls_per_eval),
               "--seed", str(seed), "--out", str(out)]
    log_path = run_dir / f"{method.replace(':', '-')}.log"
    out.unlink(missing_ok=True)
    with open(log_path, "w", encoding="utf-8") as log:
        exit_code = subprocess.run(command, stdout=log, stderr=subprocess.STDOUT).returncode
    if exit_code != 0:  # a crash is a result too: reported as such, with what it spent
        errors = [line for line in log_path.read_text().splitlines() if "Error" in line.split(":")[0]]
        return {"status": "failed", "error": errors[-1] if errors else f"exit code {exit_code}",
                "test_accuracy": None, "log": str(log_path)}
    result: dict[str, Any] = json.loads(out.read_text())
    return {"status": "ok", "test_accuracy": result["test_accuracy"], "n_test": result["n_test"],
            "instruction": result["instruction"], "n_demos": result["n_demos"], "knobs": result["knobs"],
            "self_reported": result["dspy_reported"], "version": f"dspy {result['dspy']}"}


def run_promptopt(method: str, task: Any, seed: int, proxy: CountingProxy, args: argparse.Namespace,
                  run_dir: Path) -> dict[str, Any]:
    import promptopt

    strategy, _, mode = method.split(":")[1].partition("+")
    choice = mode == "choice"
    run_id = f"{method.replace(':', '-').replace('+', '-')}"
    cache = run_dir / f"{run_id}.sqlite"
    for stale in run_dir.glob(f"{run_id}.sqlite*"):  # a rerun after a crash must pay again to be counted
        stale.unlink()
    # Choice mode scores labels, which the server's OpenAI API cannot do: its target runs in-process.
    model, model_options = (("llamacpp:smollm2", {"n_threads": 1}) if choice else
                            ("openai:smollm2", {"base_url": proxy.base_url("target"), "max_concurrency": 1}))
    cap = args.target_calls * (len(task.labels) if choice else 1)
    result = promptopt.optimize(
        task=task, strategy=strategy, model=model, model_options=model_options,
        optimizer_model="openai:smollm2",
        optimizer_options={"base_url": proxy.base_url("optimizer"), "max_concurrency": 1},
        answer_mode="choice" if choice else "generate",
        budget=promptopt.Budget(target_calls=cap, optimizer_calls=args.optimizer_calls),
        seed=seed, runs_dir=run_dir, run_id=run_id, cache=cache)
    usage = result.usage
    return {"status": "ok", "test_accuracy": result.best_test.mean, "n_test": result.best_test.n,
            "seed_test": result.seed_test.mean, "best_dev": result.best_dev, "seed_dev": result.seed_dev,
            "instruction": result.best_prompt.instruction, "n_demos": len(result.best_prompt.demos),
            "stopped_by": result.stopped_by, "self_reported": usage, "version": f"promptopt {promptopt.__version__}",
            # choice-mode target calls never reach the proxy: promptopt's meter is the only count
            "meter_target": usage["search"]["target"] if choice else None,
            "meter_target_test": ({k: usage["total"]["target"][k] - usage["search"]["target"][k]
                                   for k in ("calls", "tokens")} if choice else None)}


def _role(counts: dict[str, Any], phase: str, role: str, key: str) -> int:
    return int(counts[phase].get(role, {}).get(key, 0))


def run_one(method: str, task: Any, splits: dict[str, Any], splits_file: Path, seed: int, proxy: CountingProxy,
            args: argparse.Namespace, out: Path) -> dict[str, Any]:
    """Run one method on one (task, seed) and count what it sent through the proxy."""
    run_dir = out / "runs" / f"{task.name}-s{seed}"
    run_dir.mkdir(parents=True, exist_ok=True)
    first = len(proxy.records())
    started = time.monotonic()
    if method.startswith("dspy:"):
        detail = run_dspy(method, splits_file, seed, proxy, args, run_dir)
    else:
        detail = run_promptopt(method, task, seed, proxy, args, run_dir)
    seconds = round(time.monotonic() - started, 1)
    counts = split_by_phase(proxy.records()[first:], splits)
    meter, meter_test = detail.pop("meter_target", None), detail.pop("meter_target_test", None)
    row = {"task": task.name, "seed": seed, "method": method, "seconds": seconds, **detail,
           "target_calls": meter["calls"] if meter else _role(counts, "search", "target", "calls"),
           "target_tokens": meter["tokens"] if meter else (_role(counts, "search", "target", "prompt_tokens")
                                                            + _role(counts, "search", "target", "completion_tokens")),
           "target_counted_by": "promptopt meter (in-process scoring)" if meter else "proxy",
           "optimizer_calls": _role(counts, "search", "optimizer", "calls"),
           "optimizer_tokens": (_role(counts, "search", "optimizer", "prompt_tokens")
                                + _role(counts, "search", "optimizer", "completion_tokens")),
           "failed_calls": sum(v["failed"] for phase in counts.values() for v in phase.values()),
           "test_calls": meter_test["calls"] if meter_test else _role(counts, "test", "target", "calls"),
           "proxy": counts}
    return row


def write_table(rows: Sequence[dict[str, Any]], path: Path) -> None:
    """Markdown: per task, each method's test accuracy (mean ± sample sd over seeds) and spend."""
    groups: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for r in rows:
        groups[(r["task"], r["method"])].append(r)
    lines = ["| task | method | seeds | test accuracy | target calls | target tokens | optimizer calls | "
             "optimizer tokens | test calls | minutes |", "|---" * 10 + "|"]
    seed_rows: dict[str, dict[int, float]] = defaultdict(dict)  # one value per seed: every run has the same
    for r in rows:
        if r["method"].startswith("promptopt:") and "+" not in r["method"] and r["status"] == "ok":
            seed_rows[r["task"]][r["seed"]] = r["seed_test"]
    for (task, method), rs in sorted(groups.items()):
        mark = " (meter)" if rs[0]["target_counted_by"] != "proxy" else ""
        ok = [r["test_accuracy"] for r in rs if r["status"] == "ok"]
        failed = f" ({len(rs) - len(ok)} failed)" if len(ok) < len(rs) else ""
        lines.append(f"| {task} | {method} | {len(rs)}{failed} | {mean_sd(ok) if ok else 'failed'} | "
                     f"{statistics.mean(r['target_calls'] for r in rs):.0f}{mark} | "
                     f"{statistics.mean(r['target_tokens'] for r in rs):.0f} | "
                     f"{statistics.mean(r['optimizer_calls'] for r in rs):.0f} | "
                     f"{statistics.mean(r['optimizer_tokens'] for r in rs):.0f} | "
                     f"{statistics.mean(r['test_calls'] for r in rs):.0f} | "
                     f"{statistics.mean(r['seconds'] for r in rs) / 60:.1f} |")
    for task, by_seed in sorted(seed_rows.items()):
        lines.append(f"| {task} | seed prompt (promptopt format, from its runs) | {len(by_seed)} | "
                     f"{mean_sd(list(by_seed.values()))} | – | – | – | – | – | – |")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def plot(rows: Sequence[dict[str, Any]], path: Path) -> None:
    """Test accuracy against search target calls, one panel per task, mean ± sd over seeds."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tasks = sorted({r["task"] for r in rows})
    fig, axes = plt.subplots(1, len(tasks), figsize=(5 * len(tasks), 4), squeeze=False)
    for ax, task in zip(axes[0], tasks, strict=True):
        by_method: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for r in rows:
            if r["task"] == task and r["status"] == "ok":
                by_method[r["method"]].append(r)
        for method, rs in sorted(by_method.items()):
            acc = [r["test_accuracy"] for r in rs]
            calls = [r["target_calls"] for r in rs]
            ax.errorbar(statistics.mean(calls), statistics.mean(acc), label=method,
                        yerr=statistics.stdev(acc) if len(acc) > 1 else 0,
                        xerr=statistics.stdev(calls) if len(calls) > 1 else 0,
                        marker="s" if method.startswith("dspy:") else "o", capsize=3, linestyle="none")
        ax.set(title=task, xlabel="target calls in the search (counted)", ylabel="test accuracy")
        if by_method:
            ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _done(rows_path: Path) -> list[dict[str, Any]]:
    if not rows_path.exists():
        return []
    return [json.loads(x) for x in rows_path.read_text().splitlines() if x.strip()]


@contextmanager
def _rows_lock(out: Path, *, write: bool) -> Iterator[None]:
    """Hold rows.jsonl for one worker writing, or for any number reading."""
    import fcntl

    with open(out / "rows.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX if write else fcntl.LOCK_SH)
        yield


def _append_row(row: dict[str, Any], out: Path) -> None:
    """Add a finished run to rows.jsonl and redraw the table and plot, one process at a time."""
    with _rows_lock(out, write=True):
        with open(out / "rows.jsonl", "a", encoding="utf-8") as fh:
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")
        rows = _done(out / "rows.jsonl")
        write_table(rows, out / "table.md")
        plot(rows, out / "accuracy_vs_calls.png")


def run_cell(seed: int, task_name: str, methods: Sequence[str], args: argparse.Namespace) -> None:
    """Every method not yet done on one (task, seed), against a server and proxy of its own."""
    from promptopt.tasks import load_task
    from promptopt.testing import run_llama_server

    out = Path(args.out)
    with _rows_lock(out, write=False):  # another worker may be appending a row
        done = {(r["task"], r["seed"], r["method"]) for r in _done(out / "rows.jsonl")}
    todo = [m for m in methods if (task_name, seed, m) not in done]
    if not todo:
        return
    task = load_task(task_name, data_dir=Path(args.data_dir), offline=True, n_train=args.n_train,
                     n_dev=args.n_dev, n_test=args.n_test, seed=seed)
    splits_file = out / "runs" / f"{task_name}-s{seed}" / "splits.json"
    splits = export_splits(task, splits_file)
    with run_llama_server(n_ctx=4096, n_threads=args.server_threads, deterministic=args.deterministic) as url, \
            CountingProxy(url.removesuffix("/v1"), roles=("target", "optimizer")) as proxy:
        for method in todo:
            print(f"{task_name} seed {seed}: {method} ...", flush=True)
            try:
                row = run_one(method, task, splits, splits_file, seed, proxy, args, out)
            except Exception as exc:  # one method's crash must not cost the cell its other methods
                print(f"{task_name} seed {seed}: {method} crashed: {exc!r}", flush=True)
                continue  # no row: a rerun tries it again
            _append_row(row, out)
            print(json.dumps({k: row[k] for k in ("task", "seed", "method", "test_accuracy", "target_calls",
                                                  "optimizer_calls", "test_calls", "seconds")}), flush=True)


def main(argv: list[str]) -> int:
    from concurrent.futures import ProcessPoolExecutor

    args = _parse(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    args.data_dir = str(args.data_dir or Path(__file__).resolve().parents[2] / "shared" / "data")
    methods = args.methods.split(",")
    meta = {"date": time.strftime("%Y-%m-%d %H:%M"), "argv": ["python", "-m", "bench", "quality", *argv],
            "cpus": os.cpu_count(), **code_version()}
    (out / f"meta-{time.strftime('%Y%m%d-%H%M%S')}.json").write_text(json.dumps(meta, indent=2) + "\n")
    # Seed-major: a grid stopped part-way has every task at the first seeds.
    cells = list(dict.fromkeys((int(seed), task) for seed in args.seeds.split(",")
                               for task in args.tasks.split(",")))  # a cell twice would race with itself
    if args.workers < 1:
        raise SystemExit(f"--workers must be 1 or more; got {args.workers}")
    if args.workers == 1:
        for seed, task in cells:
            run_cell(seed, task, methods, args)
        return 0
    with ProcessPoolExecutor(max_workers=args.workers) as pool:
        list(pool.map(run_cell, *zip(*cells, strict=True), [methods] * len(cells), [args] * len(cells)))
    return 0
