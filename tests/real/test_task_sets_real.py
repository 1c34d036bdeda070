"""One system prompt over three classification tasks on the embedded SmolLM2, with an unseen fourth.

Checks mechanisms only: the budget holds, every task has its scores, the unseen task is scored only
after the search, and the seed system prompt is the model's own default (read from the GGUF's chat
template), which asks the model exactly what each task's own seed prompt asks it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from embedded_runs import DATA_DIR

import promptopt
from promptopt.backends.llamacpp import LlamaCppBackend
from promptopt.strategies import APO

TASKS, UNSEEN = "sst2,mr,subj", "trec"
BUDGET = promptopt.Budget(target_calls=80, optimizer_calls=3)
APO_TINY = APO(rounds=1, beam_size=2, minibatch_size=6, n_gradients=1, errors_per_gradient=3,
               mc_samples_per_step=0, eval_rounds=1, eval_prompts_per_round=2, samples_per_eval=4)


def _chat_template() -> str:
    backend = LlamaCppBackend("smollm2", n_ctx=256, n_threads=1)
    try:
        return str(backend._model().metadata["tokenizer.chat_template"])
    finally:
        backend.close()


def test_a_system_prompt_searched_over_three_tasks_with_an_unseen_fourth(tmp_path: Path) -> None:
    options: dict[str, Any] = {"n_dev": 4, "n_test": 4, "seed": 0, "data_dir": DATA_DIR, "offline": True,
                               "cache": tmp_path / "cache.sqlite"}
    result = promptopt.optimize(TASKS, APO_TINY, "llamacpp:smollm2", unseen=UNSEEN, budget=BUDGET,
                                runs_dir=tmp_path / "runs", **options)
    events = [json.loads(line) for line in Path(result.run_dir, "events.jsonl").read_text().splitlines()]

    search = result.usage["search"]
    assert 0 < search["target"]["calls"] <= 80 and 0 < search["optimizer"]["calls"] <= 3
    assert result.answer_mode == "choice"
    assert set(result.per_task) == {"sst2", "mr", "subj"} and set(result.unseen) == {"trec"}
    for scores in result.per_task.values():
        assert scores.seed_dev is not None and scores.best_dev is not None
        assert scores.seed_test.n == scores.best_test.n == 4
    assert result.seed_dev == pytest.approx(sum(s.seed_dev or 0.0 for s in result.per_task.values()) / 3)
    assert result.unseen["trec"].seed_test.n == 4

    first_test = next(i for i, e in enumerate(events) if e["type"] == "test")
    assert not any("trec" in json.dumps(e) for e in events[:first_test])  # never evaluated during the search
    assert {e["task"] for e in events if e["type"] == "unseen_test"} == {"trec"}
    evaluations = [e for e in events if e["type"] == "evaluation"]
    assert evaluations and all(set(e["per_task"]) <= {"sst2", "mr", "subj"} for e in evaluations)

    # the seed is SmolLM2's own default system prompt, as its GGUF chat template writes it
    assert result.seed_prompt.system.startswith("You are a helpful AI assistant named SmolLM")
    assert result.seed_prompt.system in _chat_template()
    # made explicit, it asks the model what sst2's own seed prompt asks it: the same dev scores
    alone = promptopt.evaluate(None, "sst2", "llamacpp:smollm2", split="dev", answer_mode="choice", **options)
    assert alone.score.mean == result.per_task["sst2"].seed_dev
