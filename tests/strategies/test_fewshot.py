from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from parity_fixtures import MAGIC, parity_target

import promptopt
from promptopt.exceptions import ConfigError
from promptopt.strategies.fewshot import FewShot, round_robin_by_label
from promptopt.tasks import Task
from promptopt.testing import FakeBackend
from promptopt.types import Request

PROPOSAL = f"<START>Use {MAGIC}: say whether the number is even or odd.<END>"


def _events(run_dir: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in Path(run_dir, "events.jsonl").read_text().splitlines()]


def _demo_candidates(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [e["prompt"] for e in events if e["type"] == "candidate" and e["operator"] == "demos"]


def _number(text: str) -> int:
    return int(re.findall(r"number (\d+)", text)[-1])


def _run(task: Task, strategy: FewShot, backend: FakeBackend, tmp_path: Path, **kw: Any) -> promptopt.Result:
    return promptopt.optimize(task, strategy, backend, answer_mode="generate",
                              budget=promptopt.Budget(target_calls=kw.pop("target_calls", 3000)),
                              runs_dir=tmp_path, cache=False, **kw)


def test_round_robin_takes_labels_in_turn_and_keeps_the_order_within_a_label() -> None:
    items = ["odd-1", "odd-2", "odd-3", "even-1", "even-2"]
    assert round_robin_by_label(items, lambda s: s.split("-")[0], 4) == ["odd-1", "even-1", "odd-2", "even-2"]
    assert round_robin_by_label(items, lambda s: None, 2) == ["odd-1", "odd-2"]  # no labels: the order
    assert round_robin_by_label(items, lambda s: s[0], 10) == ["odd-1", "even-1", "odd-2", "even-2", "odd-3"]


def test_bootstrap_keeps_only_the_models_own_correct_outputs(parity_task: Task, tmp_path: Path) -> None:
    # Without the magic word the model always says even: right on even numbers only, in its own words.
    backend = FakeBackend(reply=lambda r: "The number is even" if r.role == "target" else "")
    result = _run(parity_task, FewShot(method="bootstrap", n_demos=3, n_demo_sets=4, n_trials=4,
                                       minibatch_size=6), backend, tmp_path)
    events = _events(result.run_dir)
    boot = next(e for e in events if e["type"] == "bootstrap")
    assert boot["n_run"] == 12 and 0 < boot["n_kept"] < boot["n_run"]
    candidates = _demo_candidates(events)
    assert candidates
    for prompt in candidates:
        assert len(prompt["demos"]) == 3
        for demo in prompt["demos"]:
            assert _number(demo["input"]) % 2 == 0
            assert demo["output"] == "The number is even"  # the model's output, not the gold label


def test_bootstrap_without_correct_outputs_returns_the_seed(parity_task: Task, tmp_path: Path) -> None:
    backend = FakeBackend(reply=lambda r: "no idea")
    result = _run(parity_task, FewShot(method="bootstrap", n_demos=2, n_demo_sets=3, n_trials=3), backend,
                  tmp_path)
    events = _events(result.run_dir)
    assert next(e for e in events if e["type"] == "bootstrap")["n_kept"] == 0
    assert not _demo_candidates(events)
    assert result.best_prompt == result.seed_prompt


def test_random_sets_are_gold_labelled_and_mix_labels(parity_task: Task, scripted_backend: FakeBackend,
                                                      tmp_path: Path) -> None:
    result = _run(parity_task, FewShot(method="random", n_demos=4, n_trials=5, minibatch_size=6, full_eval_steps=2),
                  scripted_backend, tmp_path)
    events = _events(result.run_dir)
    candidates = _demo_candidates(events)
    assert len(candidates) == 5
    assert len({json.dumps(c["demos"]) for c in candidates}) == 5  # different random sets
    for prompt in candidates:
        outputs = [d["output"] for d in prompt["demos"]]
        assert sorted(outputs) == ["even", "even", "odd", "odd"]
        assert all(d["output"] == ("even" if _number(d["input"]) % 2 == 0 else "odd") for d in prompt["demos"])
    trials = [e for e in events if e["type"] == "trial"]
    assert [t["demo_set"] for t in trials] == [0, 1, 2, 3, 4]
    assert all(t["instruction"] == 0 for t in trials)
    assert len([e for e in events if e["type"] == "full_eval"]) == 3  # after trials 2, 4 and the last


def _needs_word_and_demos(req: Request) -> str:
    """Always right with the magic word *and* at least two demonstrations, half right with the word alone."""
    text = req.messages[-1].content
    if MAGIC not in text:
        return "no idea"
    return parity_target(req) if text.count("number ") >= 3 else "even"


def test_joint_search_finds_the_instruction_and_demo_combination(parity_task: Task, tmp_path: Path) -> None:
    replies = iter([PROPOSAL, "<START>Answer the question.<END>"])
    backend = FakeBackend(reply=lambda r: next(replies) if r.role == "optimizer" else _needs_word_and_demos(r))
    strategy = FewShot(n_demos=2, n_demo_sets=4, n_instructions=3, n_trials=12, minibatch_size=6,
                       full_eval_steps=4, n_startup_trials=4)
    result = _run(parity_task, strategy, backend, tmp_path)
    assert MAGIC in result.best_prompt.instruction and len(result.best_prompt.demos) >= 2
    assert result.best_dev == 1.0 and result.seed_dev < 1.0
    events = _events(result.run_dir)
    trials = [e for e in events if e["type"] == "trial"]
    assert len(trials) == 12 and (trials[0]["instruction"], trials[0]["demo_set"]) == (0, 0)
    assert {t["instruction"] for t in trials} <= {0, 1, 2} and {t["demo_set"] for t in trials} <= {0, 1, 2, 3}
    assert len([e for e in events if e["type"] == "full_eval"]) == 3
    # proposals are grounded in training exemplars
    proposals = [r for r in backend.generate_requests if r.role == "optimizer"]
    assert len(proposals) == 2 and proposals[0].messages[-1].content.count("Input: number") == 10


def test_joint_search_with_a_useless_optimizer_still_searches_demos(parity_task: Task, tmp_path: Path) -> None:
    backend = FakeBackend(reply=lambda r: "!!" if r.role == "optimizer" else parity_target(r))
    result = _run(parity_task, FewShot(n_demos=2, n_demo_sets=3, n_trials=5, minibatch_size=4), backend,
                  tmp_path, target_calls=400)
    events = _events(result.run_dir)
    assert [e["operator"] for e in events if e["type"] == "skip"] == ["propose", "propose"]
    assert _demo_candidates(events)
    assert all(c["instruction"] == result.seed_prompt.instruction for c in _demo_candidates(events))


def test_fewshot_parameters_validate_and_the_constructor_only_stores_them() -> None:
    strategy = FewShot()
    assert set(vars(strategy)) == set(strategy.get_params())
    assert strategy.get_params()["method"] == "joint" and strategy.get_params()["n_trials"] == 10
    with pytest.raises(ConfigError, match="'method' parameter of FewShot must be one of"):
        FewShot(method="knn").validate()
    with pytest.raises(ConfigError, match="'n_demos' parameter of FewShot must be an int >= 1; got 0"):
        FewShot(n_demos=0).validate()


def test_calls_are_kept_back_only_when_trials_see_part_of_dev() -> None:
    assert FewShot(minibatch_size=10).finalist_gap(25) == 15  # a trial scored 10 of 25
    assert FewShot(minibatch_size=35).finalist_gap(20) == 0  # every trial scores all of dev
    assert FewShot(minibatch_size=20).finalist_gap(20) == 0
