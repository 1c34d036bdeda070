"""What the reliability tests share: one small APO run, as Python call and as CLI command."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import promptopt
from promptopt.backends import ResponseCache

MODEL = "openai:fault"
TASK = "synthetic:sentiment"
SEED = 3
SIZES = {"n_train": 16, "n_dev": 12, "n_test": 12}
APO = {"rounds": 2, "beam_size": 2, "minibatch_size": 8, "n_gradients": 1, "mc_samples_per_step": 1,
       "max_expansion_factor": 3, "eval_rounds": 2, "eval_prompts_per_round": 3, "samples_per_eval": 6}
BUDGET = promptopt.Budget(target_calls=400, optimizer_calls=60)


def optimize(base_url: str, runs_dir: Path, **kw: Any) -> promptopt.Result:
    """The small APO run of these tests, through the Python API."""
    options = {"base_url": base_url, **kw.pop("model_options", {})}
    kw = {"budget": BUDGET, **SIZES, **kw}
    return promptopt.optimize(TASK, "apo", MODEL, answer_mode="generate", strategy_params=APO, seed=SEED,
                              runs_dir=runs_dir, model_options=options, **kw)


def cli_args(base_url: str, runs_dir: Path, *extra: str) -> list[str]:
    """The same run as a ``promptopt optimize`` command line."""
    args = [sys.executable, "-m", "promptopt.cli", "optimize", "--task", TASK, "--strategy", "apo",
            "--model", MODEL, "--base-url", base_url, "--answer-mode", "generate", "--seed", str(SEED),
            "--runs-dir", str(runs_dir), "--no-progress", "--json",
            "--budget-target-calls", str(BUDGET.target_calls),
            "--budget-optimizer-calls", str(BUDGET.optimizer_calls)]
    for name, value in SIZES.items():
        args += [f"--{name.replace('_', '-')}", str(value)]
    for name, value in APO.items():
        args += ["--param", f"{name}={value}"]
    return args + list(extra)


def child_env(**extra: str) -> dict[str, str]:
    """The environment of a CLI child: no stray OpenAI settings, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("OPENAI_")}
    return {**env, "PYTHONUNBUFFERED": "1", **extra}


def run_cli(args: Sequence[str], *, env: Mapping[str, str] | None = None,
            timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(args), capture_output=True, text=True, timeout=timeout,
                          env=dict(env) if env is not None else child_env())


def comparable(result: Mapping[str, Any]) -> dict[str, Any]:
    """A result without what legitimately differs between two runs: where it ran, what it paid, and how
    long the strategy computed."""
    return {k: v for k, v in result.items() if k not in ("usage", "run_dir", "strategy_seconds")}


def without_paid(usage: Mapping[str, Any]) -> dict[str, Any]:
    """Usage with the paid-call counts taken out (a replayed call is not paid again)."""
    return {phase: {role: {k: v for k, v in u.items() if k != "paid_calls"} for role, u in roles.items()}
            for phase, roles in usage.items()}


def paid(usage: Mapping[str, Any]) -> int:
    return int(sum(u["paid_calls"] for u in usage["total"].values()))


def result_json(runs_dir: Path) -> dict[str, Any]:
    [path] = runs_dir.glob("*/result.json")
    return dict(json.loads(path.read_text(encoding="utf-8")))


def integrity(cache: Path) -> str:
    with sqlite3.connect(cache) as db:
        return str(db.execute("PRAGMA integrity_check").fetchone()[0])


def cache_rows(cache: Path) -> int:
    """Answers the cache holds: its SQLite rows once the answer logs of finished or killed processes are moved in."""
    opened = ResponseCache(cache)
    try:
        return len(opened)
    finally:
        opened.close()
