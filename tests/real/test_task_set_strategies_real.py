"""OPRO (an LLM proposes the text) and Plum's hill climbing (edits of the text) searching one system prompt
over sst2 and mr on the embedded SmolLM2.

Checks mechanisms only: the budget holds, every candidate is a system prompt alone (each task asks with its
own instruction), what a strategy draws from the training examples comes from both tasks alike, every
optimizer reply is either a candidate or a logged skip, and edits touch the system prompt only.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from embedded_runs import DATA_DIR

import promptopt
from promptopt.prompt import Prompt

TASKS = "sst2,mr"
BUDGET = promptopt.Budget(target_calls=60, optimizer_calls=3)
PARAMS: dict[str, dict[str, Any]] = {
    "opro": {"n_steps": 1, "instructions_per_step": 2, "n_exemplars": 2, "score_examples": 4, "n_finalists": 1},
    "hill-climb": {"n_candidates": 2, "max_iterations": 1, "n_score": 4, "operators": "delete,swap,paraphrase"},
}


@pytest.mark.parametrize("strategy", list(PARAMS))
def test_a_converted_strategy_searches_the_system_prompt_of_two_tasks(tmp_path: Path, strategy: str) -> None:
    result = promptopt.optimize(TASKS, strategy, "llamacpp:smollm2", strategy_params=PARAMS[strategy],
                                budget=BUDGET, n_dev=4, n_test=4, seed=0, data_dir=DATA_DIR, offline=True,
                                runs_dir=tmp_path / "runs", cache=tmp_path / "cache.sqlite")
    events = [json.loads(line) for line in Path(result.run_dir, "events.jsonl").read_text().splitlines()]

    search = result.usage["search"]
    assert 0 < search["target"]["calls"] <= 60 and search["optimizer"]["calls"] <= 3
    assert result.answer_mode == "choice" and set(result.per_task) == {"sst2", "mr"}
    assert result.seed_prompt.system.startswith("You are a helpful AI assistant named SmolLM")

    candidates = [Prompt.from_dict(e["prompt"]) for e in events if e["type"] == "candidate"]
    assert len(candidates) > 1 and all(c == Prompt(system=c.system) for c in candidates)
    on_train = [e for e in events if e["type"] == "evaluation" and not e["dev"]]
    assert on_train and all(e["per_task"] == {"sst2": {"n": 2, "mean": e["per_task"]["sst2"]["mean"]},
                                              "mr": {"n": 2, "mean": e["per_task"]["mr"]["mean"]}}
                            for e in on_train)  # the score set: two training examples of each task
    if strategy == "opro":  # each of the optimizer's replies became a candidate or a logged skip
        handled = [e for e in events if e["type"] in ("candidate", "skip") and e.get("operator") == "opro"]
        assert search["optimizer"]["calls"] == 2 and len(handled) == 2
    else:
        edits = [edit for e in events if e["type"] == "edit" for edit in e["edits"]]
        assert edits and {edit["field"] for edit in edits} == {"system"}
