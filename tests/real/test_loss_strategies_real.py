"""PMPO, TAPruning and PromptQuine end to end on the real embedded model (SmolLM2 via llama.cpp), tiny budgets.

Mechanisms only: the caps hold, candidates come with their loss (and accuracy) on the score set, new bests
are scored on all of dev, and a rerun from the same cache pays nothing and repeats the search.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from embedded_runs import tiny_choice_run

import promptopt

BUDGET = promptopt.Budget(target_calls=80, optimizer_calls=2)
# 3-4 score-set examples (a loss call each, two choice calls each for the accuracy beside it)
PARAMS: dict[str, dict[str, Any]] = {
    "pmpo": {"n_score": 3, "max_segments": 2, "n_hard": 1, "n_variants": 2, "max_iterations": 1},
    "tapruning": {"n_score": 3, "n_demos": 1, "fitness": "loss"},
    "promptquine": {"n_score": 4, "n_demos": 1, "population_size": 3, "reproduction_size": 3},
}


def _run(name: str, runs_dir: Path, cache: Path) -> tuple[promptopt.Result, list[dict[str, Any]]]:
    return tiny_choice_run(name, PARAMS[name], BUDGET, runs_dir, cache)


@pytest.mark.parametrize("name", list(PARAMS))
def test_loss_strategy_runs_on_the_embedded_model_within_budget_and_replays(name: str, tmp_path: Path) -> None:
    result, events = _run(name, tmp_path / "runs", tmp_path / "cache.sqlite")
    search = result.usage["search"]
    assert result.answer_mode == "choice" and result.strategy == name
    assert 0 < search["target"]["calls"] <= 80 and search["optimizer"]["calls"] <= 2

    candidates = {e["prompt_id"]: e for e in events if e["type"] == "candidate"}
    losses = [e for e in events if e["type"] == "loss"]
    signals = [e for e in events if e["type"] == "signals"]
    assert len(candidates) == result.n_candidates >= 3
    assert {e["prompt_id"] for e in losses} <= set(candidates) and len({e["prompt_id"] for e in losses}) >= 2
    for s in signals:  # loss and accuracy on the same training examples, for every candidate measured
        assert s["loss"] > 0 and 0 <= s["accuracy"] <= 1 and s["n"] in (2, 3, 4) and not s["preference"]
    dev = {e["prompt_id"] for e in events if e["type"] == "evaluation" and e["dev"] and e["n"] == 4}
    assert {e["prompt_id"] for e in events if e["type"] == "incumbent"} <= dev  # new bests scored on all of dev
    if name != "pmpo":  # pruning starts from the seed with a training example as demonstration
        start = next(c for c in candidates.values() if c["operator"] == "demos")
        assert len(start["prompt"]["demos"]) == 1 and start["prompt_id"] in dev

    again, events_again = _run(name, tmp_path / "again", tmp_path / "cache.sqlite")
    for role in ("target", "optimizer"):
        assert again.usage["total"][role]["paid_calls"] == 0
    assert again.best_prompt == result.best_prompt
    assert [e["prompt_id"] for e in events_again if e["type"] == "candidate"] == list(candidates)
