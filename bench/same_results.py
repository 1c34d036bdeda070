"""Does a change keep every strategy's results? Runs at two checkouts, one response cache.

``python -m bench same_results --before /tmp/old --after /tmp/new [--tasks sst2] [--modes choice,generate]``

Each strategy runs on the embedded model at a tiny budget, first with the code
at ``--before`` (filling a fresh cache), then with the code at ``--after`` from
that cache. The change keeps results when every pair has the same best prompt,
the same dev and test scores, and the second run paid 0 calls. Each run is a
``promptopt optimize`` subprocess with ``PYTHONPATH`` set to its checkout.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

STRATEGIES = ("apo", "opro", "ape", "promptwizard", "gepa", "fewshot")
KEPT = ("best_prompt", "seed_dev", "best_dev", "seed_test", "best_test", "n_candidates", "stopped_by")


def _run(checkout: str, task: str, strategy: str, mode: str, work: Path, data_dir: str) -> dict[str, Any]:
    runs = work / f"{Path(checkout).name}-{task}-{mode}-{strategy}"
    calls = "80" if mode == "choice" else "40"
    cmd = [sys.executable, "-m", "promptopt.cli", "optimize", "--task", task, "--strategy", strategy,
           "--answer-mode", mode, "--budget-target-calls", calls, "--budget-optimizer-calls", "6",
           "--n-dev", "8", "--n-test", "8", "--n-train", "30", "--runs-dir", str(runs),
           "--cache", str(work / "cache.sqlite"), "--data-dir", data_dir]
    env = {**os.environ, "PYTHONPATH": checkout, "PROMPTOPT_LLAMACPP_THREADS": "1"}
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"{checkout} {task} {mode} {strategy} failed:\n{done.stderr[-2000:]}")
    [path] = runs.glob("*/result.json")
    return dict(json.loads(path.read_text()))


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench same_results")
    parser.add_argument("--before", required=True)
    parser.add_argument("--after", required=True)
    parser.add_argument("--tasks", default="sst2")
    parser.add_argument("--modes", default="choice,generate")
    parser.add_argument("--strategies", default=",".join(STRATEGIES))
    parser.add_argument("--data-dir", default=str(Path(__file__).resolve().parents[2] / "shared" / "data"))
    args = parser.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="same-results-"))
    same = True
    for task in args.tasks.split(","):
        for mode in args.modes.split(","):
            for strategy in args.strategies.split(","):
                before = _run(args.before, task, strategy, mode, work, args.data_dir)
                after = _run(args.after, task, strategy, mode, work, args.data_dir)
                paid = sum(u["paid_calls"] for u in after["usage"]["total"].values())
                equal = all(before[k] == after[k] for k in KEPT)
                same &= equal and paid == 0
                print(f"{task:6} {mode:8} {strategy:12} best {before['best_prompt'] == after['best_prompt']} "
                      f"dev {before['seed_dev']:.3f}->{before['best_dev']:.3f} | {after['seed_dev']:.3f}->"
                      f"{after['best_dev']:.3f}  test {before['best_test']['mean']:.3f} | "
                      f"{after['best_test']['mean']:.3f}  paid after: {paid}  {'SAME' if equal else 'DIFFERENT'}",
                      flush=True)
    print("all the same, nothing paid again" if same else "DIFFERENCES")
    return 0 if same else 1
