"""prompt-selection on the real embedded model (SmolLM2 via llama.cpp), choice mode on sst2, a tiny budget.

Asserts the mechanism (a selector is fitted, scored per picked prompt, saved as JSON and reloaded with
the same picks), never which prompt the model prefers.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from embedded_runs import DATA_DIR, check_selection, read_events

import promptopt
from promptopt.selector import SELECTOR_FILE
from promptopt.tasks import load_task

N_DEV, N_TEST = 4, 6
PARAMS = {"n_clusters": 2, "prompts_per_cluster": 2, "n_cluster_examples": 3, "n_score_examples": 6}


def test_prompt_selection_on_the_embedded_model(tmp_path: Path) -> None:
    cache = tmp_path / "cache.sqlite"
    result = promptopt.optimize("sst2", "prompt-selection", "llamacpp:smollm2", strategy_params=PARAMS,
                                budget=promptopt.Budget(target_calls=200, optimizer_calls=4), answer_mode="choice",
                                n_dev=N_DEV, n_test=N_TEST, seed=0, data_dir=DATA_DIR, offline=True,
                                runs_dir=tmp_path / "runs", cache=cache)
    events = read_events(result)
    assert result.answer_mode == "choice" and result.stopped_by is None
    check_selection(result, events, cache, n_dev=N_DEV, n_test=N_TEST)
    selector = result.selector
    assert selector is not None and len(selector.prompts) >= 2  # the seed and at least one generated prompt
    assert selector.prompts[0] == result.best_prompt or result.best_prompt == result.seed_prompt

    # saved as JSON, reloaded with the same picks
    json.loads(Path(result.run_dir, SELECTOR_FILE).read_text(encoding="utf-8"))
    loaded = promptopt.load_selector(result.run_dir)
    task = load_task("sst2", data_dir=DATA_DIR, offline=True, n_dev=N_DEV, n_test=N_TEST, seed=0)
    inputs = [ex.input for ex in task.splits.train[:50]]
    assert len(set(inputs)) == 50
    assert [p.id for p in loaded.pick_many(inputs)] == [p.id for p in selector.pick_many(inputs)]

    # selector_test: each test example scored with the prompt picked for it (recomputed from the run's cache)
    test = task.splits.test
    picks = selector.pick_many([ex.input for ex in test])
    scores = {p.id: {e.example_id: e.score for e in promptopt.evaluate(
        p, task, "llamacpp:smollm2", split="test", answer_mode="choice", cache=cache).examples}
        for p in {p.id: p for p in picks}.values()}
    assert result.selector_test is not None and result.selector_test.n == N_TEST and result.selector_dev is not None
    assert result.selector_test.mean == pytest.approx(sum(scores[p.id][ex.id] for p, ex in zip(picks, test,
                                                                                              strict=True)) / N_TEST)
