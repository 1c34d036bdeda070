"""PromptWizard and FewShot on the real embedded model (SmolLM2 via llama.cpp), with tiny budgets."""

from __future__ import annotations

from itertools import pairwise
from pathlib import Path
from typing import Any

from embedded_runs import run_on_sst2

import promptopt
from promptopt.strategies._base import Strategy
from promptopt.strategies.fewshot import FewShot
from promptopt.strategies.promptwizard import PromptWizard


def _run(tmp_path: Path, strategy: Strategy) -> tuple[promptopt.Result, list[dict[str, Any]]]:
    result, events = run_on_sst2(tmp_path, strategy)
    assert result.n_candidates > 1
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
    assert any(e["type"] == "candidate" and e["operator"] == "demos" for e in events)
    _check_trials_and_full_evaluations(events, full_eval_steps=2, minibatch_size=4, n_dev=8)


def _check_trials_and_full_evaluations(events: list[dict[str, Any]], *, full_eval_steps: int, minibatch_size: int,
                                       n_dev: int) -> None:
    """Each trial is scored on a minibatch of dev, and after every ``full_eval_steps`` trials the combination
    with the best mean minibatch score not yet fully scored is scored on all of dev. Which combination that
    is depends on the model's replies; that it is the best-looking one does not."""
    trials = [e for e in events if e["type"] == "trial"]
    assert [t["index"] for t in trials] == list(range(len(trials))) and len(trials) >= full_eval_steps
    minibatch: dict[tuple[int, int], list[float]] = {}
    fully_scored: set[tuple[int, int]] = set()
    due = False  # a full evaluation must come before the next trial
    for before, e in pairwise(events):
        if e["type"] == "trial":
            assert not due
            if before["type"] == "evaluation":  # none when every pair was scored before (free)
                assert (before["prompt_id"], before["n"]) == (e["prompt_id"], minibatch_size)
                assert before["mean"] == e["score"]
            minibatch.setdefault((e["instruction"], e["demo_set"]), []).append(e["score"])
            due = (e["index"] + 1) % full_eval_steps == 0
        elif e["type"] == "full_eval":
            pending = {c: sum(s) / len(s) for c, s in minibatch.items() if c not in fully_scored}
            chosen = (e["instruction"], e["demo_set"])
            assert pending[chosen] == max(pending.values())
            fully_scored.add(chosen)
            if before["type"] == "evaluation":
                assert (before["n"], before["mean"]) == (n_dev, e["score"])
            due = False
    assert fully_scored  # at least one full evaluation happened
