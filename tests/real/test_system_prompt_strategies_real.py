"""SPRIG and MetaSPO on the embedded SmolLM2: one system prompt searched over sst2, mr and subj, tiny
budgets.

Mechanisms only, never which prompt the model prefers: the caps hold and the tiny loops finish inside
them, what is scored on training examples comes from every task and names them, SPRIG edits the shared
system prompt alone, MetaSPO asks each task's tuned user prompt on that task only and records it, and
every optimizer reply is used or logged as a skip.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from embedded_runs import DATA_DIR, read_events

import promptopt
from promptopt.prompt import Prompt
from promptopt.strategies import SPRIG, MetaSPO, Strategy

TASKS = ("sst2", "mr", "subj")
N_DEV = 4  # dev (and test) examples of each task


def _run(tmp_path: Path, strategy: Strategy, budget: promptopt.Budget) -> tuple[promptopt.Result, list[dict[str, Any]]]:
    result = promptopt.optimize(",".join(TASKS), strategy, "llamacpp:smollm2", budget=budget, n_dev=N_DEV,
                                n_test=N_DEV, seed=0, data_dir=DATA_DIR, offline=True, runs_dir=tmp_path / "runs",
                                cache=tmp_path / "cache.sqlite")
    search = result.usage["search"]
    assert 0 < search["target"]["calls"] <= (budget.target_calls or 0)
    assert search["optimizer"]["calls"] <= (budget.optimizer_calls or 0)
    assert result.stopped_by is None  # the loop finished inside the caps: what follows saw all of it
    assert result.answer_mode == "choice" and set(result.per_task) == set(TASKS)
    assert all(s.seed_test.n == s.best_test.n == N_DEV for s in result.per_task.values())
    return result, read_events(result)


def _candidates(events: list[dict[str, Any]]) -> dict[str, Prompt]:
    return {e["prompt_id"]: Prompt.from_dict(e["prompt"]) for e in events if e["type"] == "candidate"}


def _skips(events: list[dict[str, Any]], *operators: str) -> list[dict[str, Any]]:
    return [e for e in events if e["type"] == "skip" and e["operator"] in operators]


def test_sprig_edits_only_the_shared_system_prompt(tmp_path: Path) -> None:
    sprig = SPRIG(beam_size=2, examples_per_task=1, n_add=2, n_paraphrases=2, max_iterations=2,
                  categories="chain_of_thought,style")
    result, events = _run(tmp_path, sprig, promptopt.Budget(target_calls=450, optimizer_calls=12))
    iterations = [e for e in events if e["type"] == "sprig_iteration"]
    assert [(e["index"], e["examples"]) for e in iterations] == [(0, 3), (1, 3)]
    on_train = [e for e in events if e["type"] == "evaluation" and not e["dev"]]
    assert on_train and all({t: v["n"] for t, v in e["per_task"].items()} == dict.fromkeys(TASKS, 1)
                            for e in on_train)  # each minibatch: one example of each task, named
    candidates = _candidates(events)
    assert len(candidates) > 2 and all(c == Prompt(system=c.system) for c in candidates.values())
    edits = [edit for e in events if e["type"] == "edit" for edit in e["edits"]]
    assert edits and {edit["field"] for edit in edits} == {"system"}
    # every paraphrase the optimizer wrote is a rewrite in its event or a logged skip
    rewrites = sum(len(e["rewrites"]) for e in events if e["type"] == "sprig_paraphrases")
    assert result.usage["search"]["optimizer"]["calls"] == rewrites + len(_skips(events, "paraphrase")) > 0
    # the last beam reached the Run, which scored it on all of dev (every task)
    last_beam = [e for e in events if e["type"] == "sprig_beam"][-1]["beam"]
    on_dev = {e["prompt_id"] for e in events if e["type"] == "evaluation" and e["dev"] and e["n"] == len(TASKS) * N_DEV}
    assert {b["prompt_id"] for b in last_beam} <= on_dev


def test_metaspo_tunes_each_tasks_user_prompt_under_one_system_prompt(tmp_path: Path) -> None:
    metaspo = MetaSPO(iterations=1, n_system_candidates=1, n_user_candidates=1, user_top_k=2,
                      examples_per_task=4, errors_per_task=1, errors_per_user=1)
    result, events = _run(tmp_path, metaspo, promptopt.Budget(target_calls=250, optimizer_calls=10))
    inner = {e["task"]: e for e in events if e["type"] == "metaspo_inner"}
    assert set(inner) == set(TASKS)
    (outer,) = [e for e in events if e["type"] == "metaspo_outer"]
    # the optimizer critiques a task's seed user prompt that erred on its training examples, and the
    # system prompt when some task's best user prompt still errs; a critique with reasons is then edited
    erring = [t for t, e in inner.items() if any(p["score"] < 1 for p in e["user_prompts"]
                                                 if p["instruction"] not in e["proposed"])]
    still_erring = any(e["user_prompts"][0]["score"] < 1 for e in inner.values())
    edits = (sum(len(e["proposed"]) for e in inner.values()) + len(outer["candidates"])
             + len(_skips(events, "edit", "user-rewrite", "system-rewrite")))  # each rewrite: listed or skipped
    critiques = edits + len(_skips(events, "gradient"))
    assert critiques == len(erring) + still_erring
    assert result.usage["search"]["optimizer"]["calls"] == critiques + edits
    # a tuned user prompt is asked on its own task's training examples only, and recorded
    candidates = _candidates(events)
    for e in (e for e in events if e["type"] == "evaluation"):
        prompt = candidates[e["prompt_id"]]
        if prompt.instruction:
            assert not e["dev"] and len(e["per_task"]) == 1
            assert prompt.instruction in inner[next(iter(e["per_task"]))]["proposed"]
        elif e["dev"]:  # what the Run scores is a system prompt over every task, each with its own instruction
            assert set(e["per_task"]) == set(TASKS)
    # the user prompts recorded at the end are those the inner loop kept, ranked under the final system
    # prompt: as the inner loop ranked them when the system prompt did not change
    (final,) = [e for e in events if e["type"] == "metaspo_user_prompts"]
    assert set(final["tasks"]) == set(TASKS) and final["system_id"] == outer["system_id"]
    for task, e in inner.items():
        kept = final["tasks"][task]["user_prompts"]
        assert sorted(p["instruction"] for p in kept) == sorted(p["instruction"] for p in e["user_prompts"])
        assert [p["score"] for p in kept] == sorted((p["score"] for p in kept), reverse=True)
        if not outer["changed"]:
            assert kept == e["user_prompts"]
    assert result.best_prompt == Prompt(system=result.best_prompt.system)
