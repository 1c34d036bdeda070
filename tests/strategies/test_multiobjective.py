"""TAPO-style multi-objective search: the selection rules on a hand-made front, and runs on FakeBackend."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import pytest

import promptopt
from promptopt.strategies._objectives import parse_objectives, prompt_text
from promptopt.strategies._selection import crowded_tournament
from promptopt.strategies.multiobjective import parse_rule, pick_final
from promptopt.tasks import Task, load_task
from promptopt.testing import FakeBackend
from promptopt.types import Request

ACC_LEN = parse_objectives("accuracy,length")
#: a hand-made front (accuracy up, length down) with one dominated row
FRONT = [
    {"accuracy": 0.60, "length": 10.0},  # 0: the shortest
    {"accuracy": 0.80, "length": 20.0},  # 1: the knee (far above the line from 0 to 4)
    {"accuracy": 0.86, "length": 70.0},  # 2: within 0.01 of the best, shorter than 4
    {"accuracy": 0.70, "length": 60.0},  # 3: dominated by 1
    {"accuracy": 0.87, "length": 100.0},  # 4: the most accurate
]


@pytest.mark.parametrize(("rule", "expected"), [
    ("best-accuracy", 4), ("knee", 1), ("shortest-within:0.01", 2), ("shortest-within:0.3", 0),
    ("shortest-within:0", 4), ("shortest-within:0.07", 1)])
def test_each_rule_picks_what_it_should_on_a_hand_made_front(rule: str, expected: int) -> None:
    assert pick_final(parse_rule(rule), FRONT, ACC_LEN) == expected


def test_rule_ties_go_to_the_shorter_then_the_older() -> None:
    rows = [{"accuracy": 0.9, "length": 30.0}, {"accuracy": 0.9, "length": 20.0}, {"accuracy": 0.9, "length": 20.0}]
    assert pick_final(parse_rule("best-accuracy"), rows, ACC_LEN) == 1
    assert pick_final(parse_rule("shortest-within:0.01"), rows, ACC_LEN) == 1
    assert pick_final(parse_rule("knee"), rows, ACC_LEN) == 1


def test_knee_uses_every_chosen_objective_in_its_direction() -> None:
    objectives = parse_objectives("accuracy,loss")
    rows = [{"accuracy": 0.9, "loss": 3.0, "length": 1.0}, {"accuracy": 0.85, "loss": 1.0, "length": 9.0},
            {"accuracy": 0.5, "loss": 0.9, "length": 1.0}]
    assert pick_final(parse_rule("knee"), rows, objectives) == 1


@pytest.mark.parametrize("bad", ["fastest", "knee:1", "shortest-within", "shortest-within:x", "shortest-within:2",
                                 "shortest-within:-0.1", 3, None])
def test_bad_rules_are_refused(bad: Any) -> None:
    with pytest.raises(ValueError):
        parse_rule(bad)


def test_crowded_tournament_prefers_the_better_front_then_the_less_crowded() -> None:
    # 0 and 3 are the ends of front 0 (infinite crowding), 1 sits between them, 2 is dominated by 1
    points = [(0.0, 5.0), (1.0, 3.0), (0.5, 2.0), (5.0, 0.0)]
    rng = random.Random(0)
    wins = [crowded_tournament(points, rng, size=2) for _ in range(400)]
    assert 2 in wins  # drawn against itself it wins: the draw is random, with replacement
    for a in range(4):
        for b in range(4):
            drawn = iter([a, b])
            pick = crowded_tournament(points, _Fixed(drawn), size=2)
            assert pick == (min(a, b, key=lambda i: (i == 2, i == 1)) if {a, b} != {0, 3} else a)
    assert [crowded_tournament(points, random.Random(s)) for s in range(20)] == \
        [crowded_tournament(points, random.Random(s)) for s in range(20)]


class _Fixed(random.Random):
    """Draws positions from a given sequence."""

    def __init__(self, draws: Any) -> None:
        super().__init__(0)
        self.draws = draws

    def randrange(self, *args: Any, **kwargs: Any) -> int:  # type: ignore[override]
        return next(self.draws)


# -- runs --------------------------------------------------------------------------------------------
@pytest.fixture
def task(tmp_path: Path) -> Task:
    return load_task("synthetic:sentiment", data_dir=tmp_path, n_train=20, n_dev=8, n_test=8)


def _fake(task: Task) -> FakeBackend:
    """Right on every sentence while the instruction says "sentiment", else always "positive";
    paraphrases are the unit in capitals."""
    splits = task.splits
    gold = {ex.input: str(ex.target) for ex in (*splits.train, *splits.dev, *splits.test)}

    def reply(req: Request) -> str:
        content = req.messages[-1].content
        if req.role == "optimizer":
            return content.split("\nText: ")[1].split("\n")[0].upper()
        instruction, _, rest = content.partition("\n\nText: ")
        return gold[rest.split("\nAnswer:")[0]] if "sentiment" in instruction else "positive"

    return FakeBackend(reply=reply)


def _run(task: Task, tmp_path: Path, *, seed: int = 0, calls: int = 3000,
         **params: Any) -> tuple[promptopt.Result, list[dict[str, Any]]]:
    params = {"n_score": 6, "population_size": 6, "n_generations": 4, **params}
    result = promptopt.optimize(task, "multiobjective", _fake(task), answer_mode="generate", strategy_params=params,
                                budget=promptopt.Budget(target_calls=calls), seed=seed, cache=False,
                                runs_dir=tmp_path / f"runs{seed}-{calls}-{len(params)}")
    events = [json.loads(line) for line in Path(result.run_dir, "events.jsonl").read_text().splitlines()]
    return result, events


def _dominates(a: dict[str, float], b: dict[str, float]) -> bool:
    better = [a["accuracy"] - b["accuracy"], b["length"] - a["length"]]  # accuracy up, length down
    return all(x >= 0 for x in better) and any(x > 0 for x in better)


def test_the_front_holds_only_non_dominated_dev_scored_candidates(task: Task, tmp_path: Path) -> None:
    result, events = _run(task, tmp_path)
    front = [(e.prompt, dict(e.objectives)) for e in result.front]
    assert len(front) >= 2 and all(set(values) == {"accuracy", "length"} for _, values in front)
    for _, a in front:
        assert not any(_dominates(b, a) for _, b in front)
    on_dev = {e["prompt_id"]: e["mean"] for e in events if e["type"] == "evaluation" and e["dev"]}
    for prompt, values in front:  # values are dev accuracy and the byte-level fake tokenizer's count
        assert values["accuracy"] == on_dev[prompt.id]
        assert values["length"] == len(prompt_text(prompt).encode("utf-8"))
    # the last front event is the Result's front
    measured = [e for e in events if e["type"] == "front"][-1]["entries"]
    assert [m["prompt_id"] for m in measured] == [p.id for p, _ in front]
    assert [e["operator"] for e in events if e["type"] == "candidate"][0] == "seed"


@pytest.mark.parametrize("rule", ["best-accuracy", "knee", "shortest-within:0.01", "shortest-within:0.6"])
def test_the_run_picks_the_final_prompt_by_the_named_rule(task: Task, tmp_path: Path, rule: str) -> None:
    result, _ = _run(task, tmp_path, select=rule)
    rows = [dict(e.objectives) for e in result.front]
    assert result.selection == rule
    assert result.best_prompt == result.front[pick_final(parse_rule(rule), rows, ACC_LEN)].prompt
    if rule == "shortest-within:0.01":  # the search found a shorter prompt that keeps "sentiment"
        assert result.best_dev == 1.0 and len(prompt_text(result.best_prompt)) < len(prompt_text(task.seed_prompt))


def test_same_seed_same_result_and_the_budget_is_kept(task: Task, tmp_path: Path) -> None:
    first, events = _run(task, tmp_path, calls=200)
    assert first.stopped_by is not None and first.usage["search"]["target"]["calls"] <= 200 and first.front
    again, events_again = _run(task, tmp_path / "again", calls=200)
    ids = [e["prompt_id"] for e in events if e["type"] == "candidate"]
    assert [e["prompt_id"] for e in events_again if e["type"] == "candidate"] == ids
    assert again.best_prompt == first.best_prompt and again.front == first.front
    _, other = _run(task, tmp_path, seed=1, calls=200)
    assert [e["prompt_id"] for e in other if e["type"] == "candidate"] != ids


def test_objectives_event_names_directions_and_length_measure(task: Task, tmp_path: Path) -> None:
    _, events = _run(task, tmp_path, objectives="accuracy,length,output-length", n_generations=1)
    note = next(e for e in events if e["type"] == "objectives")
    assert note["objectives"] == {"accuracy": "maximize", "length": "minimize", "output-length": "minimize"}
    assert note["length_measure"] == "tokenizer"
