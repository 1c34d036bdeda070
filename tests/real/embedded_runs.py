"""Shared pieces of the real-model tests: the data folder and a tiny run of a strategy on sst2."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import promptopt
from promptopt.strategies import Strategy

DATA_DIR = Path(os.environ.get("PROMPTOPT_DATA_DIR") or Path(__file__).parents[2].parent / "shared" / "data")
BUDGET = promptopt.Budget(target_calls=100, optimizer_calls=6)


def run_on_sst2(tmp_path: Path, strategy: Strategy) -> tuple[promptopt.Result, list[dict[str, Any]]]:
    """A choice-mode run on 8 dev / 10 test examples under :data:`BUDGET`, with the checks every run must pass."""
    result = promptopt.optimize("sst2", strategy, "llamacpp:smollm2", budget=BUDGET, n_dev=8, n_test=10, seed=0,
                                data_dir=DATA_DIR, offline=True, runs_dir=tmp_path / "runs", cache=False)
    events = [json.loads(x) for x in Path(result.run_dir, "events.jsonl").read_text().splitlines()]
    assert result.answer_mode == "choice"
    search = result.usage["search"]
    assert 0 < search["target"]["calls"] <= 100 and 0 < search["optimizer"]["calls"] <= 6
    assert result.best_dev >= result.seed_dev and result.best_test.n == 10
    assert sum(e["type"] == "candidate" for e in events) == result.n_candidates
    return result, events
