"""OPRO and APE on the real embedded model (SmolLM2 via llama.cpp), with tiny budgets."""

from __future__ import annotations

import json
import os
from pathlib import Path

import promptopt
from promptopt.strategies._base import Strategy
from promptopt.strategies.ape import APE
from promptopt.strategies.opro import OPRO

DATA_DIR = Path(os.environ.get("PROMPTOPT_DATA_DIR") or Path(__file__).parents[2].parent / "shared" / "data")
BUDGET = promptopt.Budget(target_calls=100, optimizer_calls=6)


def _run(tmp_path: Path, strategy: Strategy) -> tuple[promptopt.Result, list[dict[str, object]]]:
    result = promptopt.optimize("sst2", strategy, "llamacpp:smollm2", budget=BUDGET, n_dev=8, n_test=10, seed=0,
                                data_dir=DATA_DIR, offline=True, runs_dir=tmp_path / "runs", cache=False)
    events = [json.loads(x) for x in Path(result.run_dir, "events.jsonl").read_text().splitlines()]
    assert result.answer_mode == "choice"
    search = result.usage["search"]
    assert 0 < search["target"]["calls"] <= 100 and 0 < search["optimizer"]["calls"] <= 6
    assert result.best_dev >= result.seed_dev and result.best_test.n == 10
    assert sum(e["type"] == "candidate" for e in events) == result.n_candidates
    return result, events


def test_opro_on_the_embedded_model(tmp_path: Path) -> None:
    result, events = _run(tmp_path, OPRO(n_steps=1, instructions_per_step=3))
    assert result.usage["search"]["optimizer"]["calls"] == 3
    # every reply became a candidate or a recorded skip, never a crash
    handled = [e for e in events if e["type"] in ("candidate", "skip") and e.get("operator") == "opro"]
    assert len(handled) == 3


def test_ape_on_the_embedded_model(tmp_path: Path) -> None:
    ape = APE(n_demo_sets=1, prompts_per_demo_set=2, n_demos=3, keep_fraction=0.5, resample_rounds=1,
              stage_examples=4)
    _, events = _run(tmp_path, ape)
    proposals = [e for e in events if e["type"] in ("candidate", "skip") and e.get("operator") == "induce"]
    assert proposals and sum(e["type"] == "round" for e in events) == 2
