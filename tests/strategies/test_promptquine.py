"""TAPruning and PromptQuine: the in-context start, threshold acceptance, never worse than the start,
successive halving, the GA's population rules, determinism; PruneSpace on tokens and spans."""

from __future__ import annotations

import json
import math
import random
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

import promptopt
from promptopt._loop import LoopThread
from promptopt.prompt import Demo, Prompt
from promptopt.strategies._pruning import (
    MUTATION_SIZES,
    PruneSpace,
    age_survivors,
    draw_removal,
    successive_halving,
    threshold_accepts,
)
from promptopt.tasks import Task, load_task
from promptopt.testing import FakeBackend
from promptopt.tokenizer import Tokenizer
from promptopt.types import Example, ScoreRequest


@pytest.fixture
def task(tmp_path: Path) -> Task:
    return load_task("synthetic:sentiment", data_dir=tmp_path, n_train=20, n_dev=6, n_test=6)


def _run(task: Task, name: str, tmp_path: Path, *, fake: FakeBackend | None = None, seed: int = 0, calls: int = 3000,
         **params: Any) -> tuple[promptopt.Result, list[dict[str, Any]]]:
    params = {"n_score": 2, "record_both": False, "fitness": "loss", **params}
    result = promptopt.optimize(task, name, fake or FakeBackend(), strategy_params=params, seed=seed,
                                budget=promptopt.Budget(target_calls=calls), runs_dir=tmp_path / f"runs{seed}",
                                cache=False)
    events = [json.loads(x) for x in Path(result.run_dir, "events.jsonl").read_text().splitlines()]
    return result, events


def _of(events: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [e for e in events if e["type"] == kind]


def _query(req: ScoreRequest) -> str:
    return req.messages[-1].content.rpartition("Text: ")[2].removesuffix("\nAnswer:")


# -- the start ----------------------------------------------------------------------------------------
def test_the_start_is_the_seed_with_training_demonstrations_kept_out_of_the_score_set(
        task: Task, tmp_path: Path) -> None:
    fake = FakeBackend()
    result, events = _run(task, "tapruning", tmp_path, fake=fake, calls=80, n_demos=2, n_score=18)
    start = next(c for c in _of(events, "candidate") if c["operator"] == "demos")
    assert start["parents"] == [result.seed_prompt.id]
    demos = start["prompt"]["demos"]
    train = {ex.input: ex for ex in task.splits.train}
    assert len(demos) == 2 and all(d["input"] in train for d in demos)
    assert {d["output"] for d in demos} == {"negative", "positive"}  # labels in turn
    assert all(d["output"] == task.gold_text(train[d["input"]]) for d in demos)
    queried = {_query(r) for r in fake.score_requests} - {ex.input for ex in task.splits.dev + task.splits.test}
    assert queried == set(train) - {d["input"] for d in demos}  # the 18 training examples that are not demos


# -- TAPruning ----------------------------------------------------------------------------------------
@pytest.mark.parametrize(("fitness", "best", "threshold", "accepted"), [
    (0.96, 1.0, 0.96, True), (0.9599, 1.0, 0.96, False), (0.5, 0.5, 1.0, True), (0.0, 0.0, 0.96, True),
    (0.3, 0.5, 0.5, True), (0.2, 0.5, 0.5, False)])
def test_threshold_accepts(fitness: float, best: float, threshold: float, accepted: bool) -> None:
    assert threshold_accepts(fitness, best, threshold) is accepted


def test_tapruning_accepts_by_threshold_against_the_best_so_far(task: Task, tmp_path: Path) -> None:
    result, events = _run(task, "tapruning", tmp_path, unit="word", threshold=0.9)
    decisions = _of(events, "threshold")
    assert result.stopped_by is None and {d["accepted"] for d in decisions} == {True, False}
    record = _of(events, "incumbent")[0]["fitness"]  # the start's fitness
    for decision in decisions:
        assert decision["best"] == record
        assert decision["accepted"] == (decision["fitness"] >= 0.9 * record)
        if decision["accepted"]:
            record = max(record, decision["fitness"])
    sweeps = _of(events, "sweep")
    assert sweeps[-1]["removed"] == 0 and all(s["removed"] > 0 for s in sweeps[:-1])


def _worse_without_text() -> FakeBackend:
    """Loss 0.5 plus 0.005 per character of the longest prompt seen that is missing: every removed
    byte costs a little, eight of them stay within the threshold of 0.96 (exp(-0.04) = 0.961)."""
    longest = [0]

    def score(req: ScoreRequest) -> float:
        prefix = req.messages[-1].content.rpartition("Text: ")[0]
        longest[0] = max(longest[0], len(prefix))
        return -(0.5 + 0.005 * (longest[0] - len(prefix)))

    return FakeBackend(score=score)


def test_tapruning_never_returns_a_prompt_worse_than_its_start(task: Task, tmp_path: Path) -> None:
    _, events = _run(task, "tapruning", tmp_path, fake=_worse_without_text())  # tokens: bytes of the fake tokenizer
    start = next(c for c in _of(events, "candidate") if c["operator"] == "demos")
    accepted = [d for d in _of(events, "threshold") if d["accepted"]]
    assert len(accepted) == 8 and all(d["fitness"] < d["best"] for d in accepted)  # the climb went downhill
    [finalists] = _of(events, "finalists")
    assert finalists["prompt_ids"] == [start["prompt_id"]]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_pruning_returns_a_prompt_at_least_as_fit_as_its_start(task: Task, tmp_path: Path, seed: int) -> None:
    for name, params in (("tapruning", {"unit": "word"}), ("promptquine", {"unit": "word", "population_size": 4,
                                                                           "reproduction_size": 6})):
        _, events = _run(task, name, tmp_path / name, seed=seed, **params)
        start_fitness = _of(events, "incumbent")[0]["fitness"]
        [finalists] = _of(events, "finalists")
        assert finalists["fitness"][0] >= start_fitness and finalists["fitness"] == sorted(finalists["fitness"],
                                                                                           reverse=True)


# -- PromptQuine ----------------------------------------------------------------------------------------
def _prompts(*names: str) -> list[Prompt]:
    return [Prompt(n) for n in names]


def test_successive_halving_scores_the_rest_only_for_promising_candidates() -> None:
    table = {("A", 2): 1.0, ("A", 4): 0.75, ("B", 2): 0.25, ("C", 2): 0.5, ("C", 4): 0.3, ("D", 2): 0.0}
    asked: list[tuple[list[str], int]] = []

    def fitness(prompts: Sequence[Prompt], examples: Sequence[Example]) -> list[float]:
        asked.append(([p.instruction for p in prompts], len(examples)))
        return [table[(p.instruction, len(examples))] for p in prompts]

    examples = [Example(f"e{i}", "x", "y") for i in range(4)]
    values, sizes = successive_halving(_prompts("A", "B", "C", "D"), examples, fitness, floor=0.5)
    assert asked == [(["A", "B", "C", "D"], 2), (["A", "C"], 4)]
    assert values == [0.75, 0.25, 0.3, 0.0] and sizes == [4, 2, 4, 2]
    # then PromptQuine keeps the fittest of the youngest members: A, then C
    population = [0.9, 0.8] + values
    assert age_survivors(population, window=4, size=2) == [2, 4]


def test_promptquine_halving_follows_each_generation_floor(task: Task, tmp_path: Path) -> None:
    _, events = _run(task, "promptquine", tmp_path, calls=800, n_score=4, unit="word", population_size=3,
                     reproduction_size=5)
    signals = _of(events, "signals")
    born: list[str] = []
    checked = halves = 0
    for event in events:  # a generation's children are logged before its note, which gives its floor
        if event["type"] == "prune":
            born.append(event["prompt_id"])
        elif event["type"] == "generation":
            for pid in born:
                scored = {s["n"]: math.exp(-s["loss"]) for s in signals if s["prompt_id"] == pid}
                assert (4 in scored) == (scored[2] >= event["floor"]), (scored, event["floor"])
                checked, halves = checked + 1, halves + (4 not in scored)
            born = []
    assert checked > 5 and 0 < halves < checked


def test_same_seed_same_result(task: Task, tmp_path: Path) -> None:
    params: dict[str, Any] = {"unit": "token", "population_size": 4, "reproduction_size": 6, "calls": 400}

    def order(events: list[dict[str, Any]]) -> list[str]:
        return [e["prompt_id"] for e in events if e["type"] == "candidate"]

    first, events = _run(task, "promptquine", tmp_path, **params)
    again, events_again = _run(task, "promptquine", tmp_path / "again", **params)
    _, other = _run(task, "promptquine", tmp_path, seed=1, **params)
    assert len(order(events)) > 10 and order(events) == order(events_again)
    assert first.best_prompt == again.best_prompt and order(other) != order(events)


def test_age_survivors_and_mutation() -> None:
    assert age_survivors([0.9, 0.2, 0.7, 0.7, 0.1], window=4, size=3) == [2, 3, 1]  # 0.9 is too old
    assert age_survivors([0.5], window=4, size=3) == [0]
    rng = random.Random(0)
    sizes = set()
    for n in (2, 3, 5, 40):
        for _ in range(50):
            removal = draw_removal(list(range(100, 100 + n)), rng)
            if removal is None:  # ten draws of k in 1-4 all too large for n: rare, and only for small n
                assert n < 5
                continue
            assert len(removal) in MUTATION_SIZES and len(removal) < n and len(set(removal)) == len(removal)
            assert set(removal) <= set(range(100, 100 + n))
            sizes.add(len(removal))
    assert sizes == set(MUTATION_SIZES) and draw_removal([7], rng) is None


# -- PruneSpace ----------------------------------------------------------------------------------------
def test_prune_space_over_tokens_and_spans() -> None:
    prompt = Prompt("Say yes. Or no.", demos=(Demo("great film", "yes"),), template="Q: {input}\nA:")
    loop = LoopThread()
    try:
        tokens = PruneSpace(prompt, "token", Tokenizer(FakeBackend(), loop))  # the fake's tokens are bytes
        assert len(tokens) == len("Say yes. Or no.") + len("great film") + len("yes")
        assert [tokens.field(p) for p in (0, 15, 25)] == ["instruction", "demos[0].input", "demos[0].output"]
        pruned = tokens.build({0, 1, 2, 3, 15, 16, 17, 18, 19, 20})
        assert pruned == Prompt("yes. Or no.", demos=(Demo("film", "yes"),), template="Q: {input}\nA:")
        assert tokens.build(set()) == prompt and tokens.build(range(len(tokens))).demos[0] == Demo("", "")
    finally:
        loop.close()
    words = PruneSpace(prompt, "word")
    assert len(words) == 4 + 2 + 1
    assert words.build({1, 4}).instruction == "Say Or no." and words.build({1, 4}).demos[0].input == "film"
    sentences = PruneSpace(prompt, "sentence")
    assert sentences.build({0}).instruction == "Or no." and sentences.build({0}).template == prompt.template
