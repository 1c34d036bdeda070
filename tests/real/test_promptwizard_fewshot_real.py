"""PromptWizard and FewShot on the real embedded model (SmolLM2 via llama.cpp), with tiny budgets."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import promptopt
from promptopt.strategies._base import Strategy
from promptopt.strategies.fewshot import FewShot
from promptopt.strategies.promptwizard import PromptWizard

DATA_DIR = Path(os.environ.get("PROMPTOPT_DATA_DIR") or Path(__file__).parents[2].parent / "shared" / "data")
BUDGET = promptopt.Budget(target_calls=100, optimizer_calls=6)


def _run(tmp_path: Path, strategy: Strategy) -> tuple[promptopt.Result, list[dict[str, Any]]]:
    result = promptopt.optimize("sst2", strategy, "llamacpp:smollm2", budget=BUDGET, n_dev=8, n_test=10, seed=0,
                                data_dir=DATA_DIR, offline=True, runs_dir=tmp_path / "runs", cache=False)
    events = [json.loads(x) for x in Path(result.run_dir, "events.jsonl").read_text().splitlines()]
    assert result.answer_mode == "choice"
    search = result.usage["search"]
    assert 0 < search["target"]["calls"] <= 100 and 0 < search["optimizer"]["calls"] <= 6
    assert result.best_dev >= result.seed_dev and result.best_test.n == 10
    assert sum(e["type"] == "candidate" for e in events) == result.n_candidates > 1
    return result, events


def test_promptwizard_on_the_embedded_model(tmp_path: Path) -> None:
    # 1 mutation + critique + refinement + 2 reasoning chains + 1 persona = the 6 optimizer calls
    wizard = PromptWizard(mutate_refine_iterations=1, mutation_rounds=1, style_variation=2, min_correct_count=2,
                          refine_task_eg_iterations=0, seen_set_size=6, few_shot_count=2)
    _, events = _run(tmp_path, wizard)
    handled = [e for e in events if e["type"] in ("candidate", "skip") and e.get("operator") == "mutate"]
    assert handled  # the mutation reply became candidates or a recorded skip, never a crash
    assert any(e["type"] == "examples" for e in events)


def test_fewshot_joint_on_the_embedded_model(tmp_path: Path) -> None:
    fewshot = FewShot(n_demos=2, n_demo_sets=3, n_instructions=2, n_trials=4, minibatch_size=4, full_eval_steps=2,
                      n_startup_trials=2, n_exemplars=4)
    _, events = _run(tmp_path, fewshot)
    assert any(e["type"] == "bootstrap" for e in events)
    assert [e["type"] for e in events].count("trial") >= 1
    assert any(e["type"] == "candidate" and e["operator"] == "demos" for e in events)
