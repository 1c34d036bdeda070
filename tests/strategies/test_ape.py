from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path

import pytest
from parity_fixtures import MAGIC, parity_target

import promptopt
from promptopt.exceptions import ConfigError
from promptopt.strategies.ape import APE
from promptopt.tasks import Task
from promptopt.testing import FakeBackend
from promptopt.types import Request


def _events(run_dir: str) -> list[dict[str, object]]:
    return [json.loads(line) for line in Path(run_dir, "events.jsonl").read_text().splitlines()]


def _optimize(task: Task, strategy: APE, backend: FakeBackend, tmp_path: Path) -> promptopt.Result:
    return promptopt.optimize(task, strategy, backend, answer_mode="generate", cache=False, runs_dir=tmp_path,
                              budget=promptopt.Budget(target_calls=3000))


def graded_target(req: Request) -> str:
    """An instruction saying "level k" gets exactly the numbers with (7n mod 10) < k right.

    The sets of right answers are nested, so a higher level is at least as good on any subset.
    """
    text = req.messages[-1].content
    n = int(re.findall(r"number (\d+)", text)[-1])
    truth, wrong = ("even", "odd") if n % 2 == 0 else ("odd", "even")
    level = re.search(r"level (\d)", text)
    return truth if level and (7 * n) % 10 < int(level.group(1)) else wrong


def test_adaptive_filtering_spends_examples_on_the_promising_candidates(parity_task: Task, tmp_path: Path) -> None:
    induced = iter(range(9, -1, -1))  # proposals arrive best first, so ties favour the better one

    def optimizer(req: Request) -> str:
        assert "What was the instruction?" in req.messages[-1].content
        return f"The instruction was to answer at level {next(induced)}: even or odd."

    backend = FakeBackend(reply=lambda r: optimizer(r) if r.role == "optimizer" else graded_target(r))
    ape = APE(n_demo_sets=2, prompts_per_demo_set=5, n_demos=3, keep_fraction=0.2, resample_rounds=0,
              stage_examples=4, stage_keep=0.5)
    result = _optimize(parity_task, ape, backend, tmp_path)
    assert result.best_prompt.instruction == "Answer at level 9: even or odd."
    dev = {ex.input for ex in parity_task.splits.dev}
    per_level: Counter[int] = Counter()
    for r in backend.generate_requests:
        text = r.messages[-1].content
        level = re.search(r"level (\d)", text)
        if r.role == "target" and level and re.findall(r"number \d+", text)[-1] in dev:
            per_level[int(level.group(1))] += 1
    # 12 dev examples in stages of 4: 10 candidates -> 5 -> 3, and the survivors finish dev
    assert per_level == {9: 12, 8: 12, 7: 12, 6: 8, 5: 8, 4: 4, 3: 4, 2: 4, 1: 4, 0: 4}
    assert sum(per_level.values()) < 10 * len(dev)
    stages = [e for e in _events(result.run_dir) if e["type"] == "filter_stage"]
    assert [(e["n_examples"], len(e["survivors"])) for e in stages] == [(4, 5), (8, 3), (12, 3)]  # type: ignore[arg-type]


def test_induction_shows_training_demonstrations(parity_task: Task, tmp_path: Path) -> None:
    backend = FakeBackend(reply=lambda r: "Say even or odd." if r.role == "optimizer" else parity_target(r))
    _optimize(parity_task, APE(n_demo_sets=3, prompts_per_demo_set=2, n_demos=4, resample_rounds=0), backend, tmp_path)
    asked = [r for r in backend.generate_requests if r.role == "optimizer"]
    assert len(asked) == 3 * 2 and {r.temperature for r in asked} == {0.9}
    train = {ex.input: ex.target for ex in parity_task.splits.train}
    demo_sets = {r.messages[-1].content for r in asked}
    assert len(demo_sets) == 3  # a fresh demonstration set per batch of proposals
    for text in demo_sets:
        pairs = re.findall(r"Input: (number \d+)\nOutput: (\w+)", text)
        assert len(pairs) == 4 and all(train[i] == o for i, o in pairs)


def test_iterative_ape_resamples_the_elites(parity_task: Task, tmp_path: Path) -> None:
    def optimizer(req: Request) -> str:
        text = req.messages[-1].content
        if "What was the instruction?" in text:
            return ["The instruction was: tell whether the number is even or odd.", "ok",
                    "Decide between even and odd for the number."][req.sample_index]
        instruction = re.search(r"Instruction: (.*)\n", text).group(1)  # type: ignore[union-attr]
        return f"Use {MAGIC}: {instruction.lower()}" if req.sample_index == 0 else f"Please: {instruction}"

    backend = FakeBackend(reply=lambda r: optimizer(r) if r.role == "optimizer" else parity_target(r))
    ape = APE(n_demo_sets=1, prompts_per_demo_set=3, keep_fraction=0.5, resample_rounds=1, stage_examples=6)
    result = _optimize(parity_task, ape, backend, tmp_path)
    assert result.best_prompt.instruction.startswith(f"Use {MAGIC}: ") and result.best_dev == 1.0
    events = _events(result.run_dir)
    induced = [e for e in events if e["type"] == "candidate" and e["operator"] == "induce"]
    resampled = [e for e in events if e["type"] == "candidate" and e["operator"] == "resample"]
    # "The instruction was: say ..." is read as the instruction itself; "ok" is skipped
    assert [e["prompt"]["instruction"] for e in induced] == [  # type: ignore[index]
        "Tell whether the number is even or odd.", "Decide between even and odd for the number."]
    assert any(e["type"] == "skip" and e["operator"] == "induce" for e in events)
    # keep 2 of a pool of 3, then one variation per elite (3 - 2 = 1, spread over 2 elites: 1 each)
    assert len(resampled) == 2 and {p for e in resampled for p in e["parents"]} == {  # type: ignore[attr-defined]
        e["prompt_id"] for e in induced}
    rounds = [e for e in events if e["type"] == "round"]
    assert len(rounds) == 2 and result.best_prompt.id in rounds[-1]["elites"]  # type: ignore[operator]


def test_by_default_ape_is_plain_one_pool_filtered_once(parity_task: Task, tmp_path: Path) -> None:
    backend = FakeBackend(reply=lambda r: (f"Use {MAGIC}: say even or odd." if r.sample_index == 0
                                           else "Say even or odd.") if r.role == "optimizer" else parity_target(r))
    result = _optimize(parity_task, APE(n_demo_sets=2, prompts_per_demo_set=3), backend, tmp_path)
    asked = [r.messages[-1].content for r in backend.generate_requests if r.role == "optimizer"]
    assert len(asked) == 2 * 3 and all("What was the instruction?" in text for text in asked)  # no variations
    events = _events(result.run_dir)
    assert [e["type"] for e in events].count("round") == 1
    assert {e["operator"] for e in events if e["type"] == "candidate"} <= {"seed", "induce"}
    assert result.best_prompt.instruction.startswith(f"Use {MAGIC}")


def test_optimizer_cap_while_collecting_still_scores_the_proposals_in_hand(parity_task: Task,
                                                                          tmp_path: Path) -> None:
    def optimizer(req: Request) -> str:
        return f"Use {MAGIC}: say even or odd." if req.sample_index == 1 else "Say even or odd."

    backend = FakeBackend(reply=lambda r: optimizer(r) if r.role == "optimizer" else parity_target(r))
    # 3 sets of 4 proposals; a cap of 10 optimizer calls refuses the third set
    result = promptopt.optimize(parity_task, APE(n_demo_sets=3, prompts_per_demo_set=4, resample_rounds=2),
                                backend, answer_mode="generate", cache=False, runs_dir=tmp_path,
                                budget=promptopt.Budget(target_calls=3000, optimizer_calls=10))
    assert sum(r.role == "optimizer" for r in backend.generate_requests) == 8
    assert result.best_prompt.instruction.startswith(f"Use {MAGIC}") and result.best_dev == 1.0
    assert result.stopped_by is not None and result.stopped_by.startswith("optimizer call cap 10")
    events = _events(result.run_dir)
    assert [e["type"] for e in events].count("round") == 1  # no resampling without optimizer calls


def test_useless_optimizer_returns_the_seed(parity_task: Task, tmp_path: Path) -> None:
    garbage = iter(["", "!!!", "The instruction was", "12345", "ok"] * 100)
    backend = FakeBackend(reply=lambda r: next(garbage) if r.role == "optimizer" else parity_target(r))
    result = _optimize(parity_task, APE(n_demo_sets=2, prompts_per_demo_set=3), backend, tmp_path)
    assert result.best_prompt == result.seed_prompt and result.n_candidates == 1
    assert sum(e["type"] == "skip" for e in _events(result.run_dir)) == 6


def test_parameters_round_trip_and_validate() -> None:
    ape = APE()
    assert ape.get_params() == {"n_demo_sets": 5, "prompts_per_demo_set": 10, "n_demos": 5, "temperature": 0.9,
                                "keep_fraction": 0.1, "resample_rounds": 0, "stage_examples": 10,
                                "stage_keep": 0.5, "score_examples": None}
    assert set(vars(ape)) == set(ape.get_params())
    assert repr(ape).startswith("APE(n_demo_sets=5")
    with pytest.raises(ConfigError, match="'keep_fraction' parameter of APE must be a number in"):
        APE(keep_fraction=0.0).validate()
    with pytest.raises(ConfigError, match="'stage_examples' parameter of APE must be an int >= 1; got 0"):
        APE(stage_examples=0).validate()


def test_a_budget_stop_in_the_first_filtering_pass_still_finishes_the_leader_on_dev(parity_task: Task,
                                                                                   tmp_path: Path) -> None:
    induced = iter(range(9, -1, -1))

    def optimizer(req: Request) -> str:
        return f"The instruction was to answer at level {next(induced)}: even or odd."

    backend = FakeBackend(reply=lambda r: optimizer(r) if r.role == "optimizer" else graded_target(r))
    ape = APE(n_demo_sets=2, prompts_per_demo_set=5, n_demos=3, stage_examples=4)
    # the seed's 12 dev calls, 8 kept back for one leader's other dev examples: 20 left for the first stage,
    # which needs 10 x 4
    result = promptopt.optimize(parity_task, ape, backend, answer_mode="generate", cache=False, runs_dir=tmp_path,
                                budget=promptopt.Budget(target_calls=40))
    assert result.stopped_by is not None
    stage_scored = [e for e in _events(result.run_dir) if e["type"] == "evaluation" and e["n"] == 4]
    assert 0 < len(stage_scored) < 10  # the cap came inside the first stage
    assert result.best_prompt.instruction == "Answer at level 9: even or odd."  # finished on all of dev
    assert result.usage["search"]["target"]["calls"] <= 40
