"""EvoPrompt GA/DE, PromptBreeder and the multi-objective search on the embedded model (SmolLM2 via
llama.cpp): tiny budgets, mechanisms only (within budget, lineage recorded, a cached rerun pays nothing)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from embedded_runs import tiny_choice_run

import promptopt

BUDGET = promptopt.Budget(target_calls=60, optimizer_calls=3)
# 4 score-set / minibatch examples (8 calls each in choice mode on sst2) and populations of 2, so that
# a generation fits in the budget; the optimizer's cap of 3 calls ends the search if the budget does not
PARAMS: dict[str, dict[str, Any]] = {
    "evoprompt-ga": {"population_size": 2, "n_score": 4, "max_iterations": 3},
    "evoprompt-de": {"population_size": 2, "n_score": 4, "max_iterations": 3},
    "promptbreeder": {"population_size": 2, "minibatch_size": 4, "n_generations": 3},
    "multiobjective": {"population_size": 2, "n_score": 4, "n_generations": 3},
}
OPERATORS = {
    "evoprompt-ga": {"llm-paraphrase", "llm-crossover-mutation"},
    "evoprompt-de": {"llm-paraphrase", "llm-differential"},
    "promptbreeder": {"init", "zero-order", "first-order", "eda", "eda-rank", "lineage", "zero-order-hyper",
                      "first-order-hyper", "lamarckian", "crossover"},
    "multiobjective": {"delete", "swap", "paraphrase", "add", "crossover"},
}


def _run(name: str, runs_dir: Path, cache: Path) -> tuple[promptopt.Result, list[dict[str, Any]]]:
    return tiny_choice_run(name, PARAMS[name], BUDGET, runs_dir, cache)


@pytest.mark.parametrize("name", list(PARAMS))
def test_evolution_strategy_runs_on_the_embedded_model_within_budget_and_replays(name: str, tmp_path: Path) -> None:
    result, events = _run(name, tmp_path / "runs", tmp_path / "cache.sqlite")
    search = result.usage["search"]
    assert result.answer_mode == "choice" and result.strategy == name
    assert 0 < search["target"]["calls"] <= 60 and search["optimizer"]["calls"] <= 3

    candidates = [e for e in events if e["type"] == "candidate"]
    assert len(candidates) == result.n_candidates >= 2 and candidates[0]["operator"] == "seed"
    seen = {candidates[0]["prompt_id"]}
    for cand in candidates[1:]:  # every child: a known operator, parents recorded before it
        assert cand["operator"] in OPERATORS[name] and cand["parents"] and set(cand["parents"]) <= seen
        seen.add(cand["prompt_id"])
    # fitness on 4 training examples; a dev evaluation is of the 4 dev examples
    assert all(e["n"] == 4 for e in events if e["type"] == "evaluation")
    if name == "multiobjective":
        assert result.front and all(set(e.objectives) == {"accuracy", "length"} for e in result.front)
        assert result.selection == "shortest-within:0.01"
        assert next(e for e in events if e["type"] == "objectives")["length_measure"] == "tokenizer"

    again, events_again = _run(name, tmp_path / "again", tmp_path / "cache.sqlite")
    for role in ("target", "optimizer"):
        assert again.usage["total"][role]["paid_calls"] == 0
    assert again.best_prompt == result.best_prompt and again.front == result.front
    assert [e["prompt_id"] for e in events_again if e["type"] == "candidate"] == [c["prompt_id"] for c in candidates]
