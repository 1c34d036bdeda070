"""Plum's six metaheuristics end to end on the real embedded model (SmolLM2 via llama.cpp), tiny budgets."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from embedded_runs import tiny_choice_run

import promptopt
from promptopt.strategies._operators import OPERATORS

BUDGET = promptopt.Budget(target_calls=60, optimizer_calls=3)
# 4 score-set examples (8 calls each in choice mode on sst2), 3 neighbours an iteration, and a patience
# the budget always runs out before; the genetic algorithm with a population small enough to see a generation
SMALL = {"n_score": 4, "n_candidates": 3, "patience": 50}
PARAMS: dict[str, dict[str, Any]] = {
    "hill-climb": SMALL, "simulated-annealing": SMALL, "genetic-mutation": SMALL, "tabu": SMALL,
    "genetic": {**SMALL, "population_size": 2, "n_offspring": 1, "n_candidates": 2},
    "harmony": {**SMALL, "n_segments": 3},
}


def _run(name: str, runs_dir: Path, cache: Path) -> tuple[promptopt.Result, list[dict[str, Any]]]:
    return tiny_choice_run(name, PARAMS[name], BUDGET, runs_dir, cache)


@pytest.mark.parametrize("name", list(PARAMS))
def test_plum_strategy_runs_on_the_embedded_model_within_budget_and_replays(name: str, tmp_path: Path) -> None:
    result, events = _run(name, tmp_path / "runs", tmp_path / "cache.sqlite")
    search = result.usage["search"]
    assert result.answer_mode == "choice" and result.strategy == name
    assert result.stopped_by is not None and 0 < search["target"]["calls"] <= 60
    assert search["optimizer"]["calls"] <= 3

    candidates = [e for e in events if e["type"] == "candidate"]
    edits = {e["prompt_id"]: e for e in events if e["type"] == "edit"}
    assert len(candidates) == result.n_candidates >= 2 and candidates[0]["operator"] == "seed"
    seen = {candidates[0]["prompt_id"]}
    for cand in candidates[1:]:  # every child: its parents, operator and edited spans
        assert cand["operator"] in {*OPERATORS, "crossover", "harmony"} and set(cand["parents"]) <= seen
        assert edits[cand["prompt_id"]]["operator"] == cand["operator"]
        assert cand["operator"] == "harmony" or edits[cand["prompt_id"]]["edits"][0]["indices"]
        seen.add(cand["prompt_id"])
    # scored on 4 training examples: a dev evaluation is of 4 dev examples, anything else of the score set
    assert all(e["n"] == 4 for e in events if e["type"] == "evaluation")

    again, events_again = _run(name, tmp_path / "again", tmp_path / "cache.sqlite")
    for role in ("target", "optimizer"):
        assert again.usage["total"][role]["paid_calls"] == 0
    assert again.best_prompt == result.best_prompt
    assert [e["prompt_id"] for e in events_again if e["type"] == "candidate"] == [c["prompt_id"] for c in candidates]
