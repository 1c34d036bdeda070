"""GEPA end to end on the real embedded model (SmolLM2 via llama.cpp), with a tiny budget."""

from __future__ import annotations

from pathlib import Path

from embedded_runs import DATA_DIR, check_selection, read_events

import promptopt
from promptopt.strategies.gepa import GEPA


# Two or three reflections on about 40 scored examples: the smallest run that still reaches the gate.
def test_gepa_runs_end_to_end_on_the_embedded_model(tmp_path: Path) -> None:
    budget = promptopt.Budget(target_calls=60, optimizer_calls=4)
    result = promptopt.optimize("sst2", GEPA(), "llamacpp:smollm2", budget=budget, answer_mode="choice",
                                n_dev=8, n_test=10, seed=0, data_dir=DATA_DIR, offline=True,
                                runs_dir=tmp_path / "runs", cache=tmp_path / "cache.sqlite")
    assert result.answer_mode == "choice" and result.strategy == "gepa"
    search = result.usage["search"]
    assert 0 < search["target"]["calls"] <= 60
    assert 0 < search["optimizer"]["calls"] <= 4
    assert result.best_test.n == 10

    events = read_events(result)
    check_selection(result, events, tmp_path / "cache.sqlite", n_dev=8, n_test=10)
    assert sum(e["type"] == "candidate" for e in events) == result.n_candidates
    # every reflection either proposed a candidate or was skipped and recorded
    reflections = sum(e["type"] in ("candidate", "skip") and e.get("operator") == "reflect" for e in events)
    assert 0 < reflections <= search["optimizer"]["calls"]
    assert any(e["type"] == "iteration" for e in events)
    for accepted in (e for e in events if e["type"] == "accept"):  # scored on the whole Pareto set (dev)
        assert any(e["type"] == "evaluation" and e["prompt_id"] == accepted["prompt_id"] and e["n"] == 8
                   for e in events)
