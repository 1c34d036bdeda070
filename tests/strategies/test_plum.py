from __future__ import annotations

import json
import math
import random
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

import promptopt
from promptopt.exceptions import ConfigError
from promptopt.prompt import Prompt
from promptopt.strategies import get_strategy
from promptopt.strategies._edits import split
from promptopt.strategies._operators import OPERATORS, splice
from promptopt.strategies.plum import (
    GeneticCrossover,
    HarmonySearch,
    HillClimbing,
    SimulatedAnnealing,
    TabuSearch,
    anneal_accepts,
    temperature,
    update_memory,
)
from promptopt.tasks import Task, load_task
from promptopt.testing import FakeBackend
from promptopt.types import Request

PLUM = ["hill-climb", "simulated-annealing", "genetic-mutation", "genetic", "tabu", "harmony"]
# the seed's phrase units: "Classify the sentiment" / "of the sentence" / "as negative" / "or positive." /
# "Answer with the label only."; the fake model below answers right only without "as negative"
DISTRACTOR = "as negative"


@pytest.fixture
def task(tmp_path: Path) -> Task:
    return load_task("synthetic:sentiment", data_dir=tmp_path, n_train=20, n_dev=8, n_test=8)


def _gold(task: Task) -> dict[str, str]:
    splits = task.splits
    return {ex.input: str(ex.target) for ex in (*splits.train, *splits.dev, *splits.test)}


def _instruction(req: Request) -> str:
    return req.messages[-1].content.partition("\n\nText: ")[0]


def _fake(task: Task, *, graded: bool = True) -> FakeBackend:
    """Right on every sentence when the instruction has "sentiment" and not the distractor, else
    always "positive"; paraphrases are the unit in capitals. ``graded=False``: every prompt but the
    seed is always wrong (so every neighbour is worse)."""
    gold, seed = _gold(task), task.seed_prompt.instruction

    def reply(req: Request) -> str:
        content = req.messages[-1].content
        if req.role == "optimizer":
            return "Rewritten text: " + content.split("\nText: ")[1].split("\n")[0].upper()
        sentence = content.partition("\n\nText: ")[2].split("\nAnswer:")[0]
        right = gold[sentence]
        if not graded:
            return right if _instruction(req) == seed else ("positive" if right == "negative" else "negative")
        if DISTRACTOR in _instruction(req) or "sentiment" not in _instruction(req):
            return "positive"
        return right

    return FakeBackend(reply=reply)


def _run(task: Task, strategy: str | promptopt.strategies.Strategy, tmp_path: Path, *, calls: int = 3000,
         seed: int = 0, graded: bool = True, **params: Any) -> tuple[promptopt.Result, list[dict[str, Any]]]:
    kwargs: dict[str, Any] = {"strategy_params": params} if params else {}
    result = promptopt.optimize(task, strategy, _fake(task, graded=graded), answer_mode="generate",
                                budget=promptopt.Budget(target_calls=calls), runs_dir=tmp_path / f"runs{seed}",
                                cache=False, seed=seed, **kwargs)
    events = [json.loads(line) for line in Path(result.run_dir, "events.jsonl").read_text().splitlines()]
    return result, events


def _candidates(events: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {e["prompt_id"]: e for e in events if e["type"] == "candidate"}


def _edits(events: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {e["prompt_id"]: e for e in events if e["type"] == "edit"}


# -- end to end ------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", PLUM)
def test_each_strategy_finds_the_one_edit_improvement(task: Task, tmp_path: Path, name: str) -> None:
    result, events = _run(task, name, tmp_path, n_score=8, n_candidates=6, max_iterations=10)
    assert result.stopped_by is None
    assert DISTRACTOR not in result.best_prompt.instruction and result.best_dev == 1.0
    assert any(e["type"] == "incumbent" and e["prompt_id"] == result.best_prompt.id for e in events)
    # fitness is measured on training examples only: 8 of them per candidate
    sizes = Counter((e["n"], e["dev"]) for e in events if e["type"] == "evaluation")
    assert set(sizes) <= {(8, False), (8, True)} and sizes[(8, False)] > sizes[(8, True)]


@pytest.mark.parametrize("name", PLUM)
def test_each_strategy_stays_in_budget_records_lineage_and_repeats(task: Task, tmp_path: Path, name: str) -> None:
    result, events = _run(task, name, tmp_path, calls=150, n_score=5, n_candidates=4, patience=50)
    assert result.stopped_by is not None and result.usage["search"]["target"]["calls"] <= 150
    candidates, edits = _candidates(events), _edits(events)
    order = list(candidates)
    assert candidates[order[0]]["operator"] == "seed" and len(order) > 3
    for k, pid in enumerate(order[1:], 1):
        cand = candidates[pid]
        assert cand["operator"] in {*OPERATORS, "crossover", "harmony"}
        assert cand["parents"] and set(cand["parents"]) <= set(order[:k])  # parents came first
        assert edits[pid]["operator"] == cand["operator"]
        for edit in edits[pid]["edits"]:
            assert edit["field"] == "instruction" and edit["level"] == "phrase" and edit["indices"]
    again, events_again = _run(task, name, tmp_path / "again", calls=150, n_score=5, n_candidates=4, patience=50)
    assert list(_candidates(events_again)) == order and again.best_prompt == result.best_prompt
    _, other_seed = _run(task, name, tmp_path, calls=150, seed=1, n_score=5, n_candidates=4, patience=50)
    assert list(_candidates(other_seed)) != order


def test_a_budget_stop_keeps_the_best_found_when_incumbents_are_scored(task: Task, tmp_path: Path) -> None:
    kept, events = _run(task, "hill-climb", tmp_path, calls=110, n_score=8, n_candidates=6)
    assert kept.stopped_by is not None and kept.best_prompt != task.seed_prompt and kept.best_dev == 1.0
    assert any(e["type"] == "incumbent" for e in events)
    lost, _ = _run(task, "hill-climb", tmp_path / "off", calls=110, n_score=8, n_candidates=6,
                   score_incumbents=False)
    assert lost.stopped_by is not None and lost.best_prompt == task.seed_prompt  # only the seed was on dev


def test_a_normal_stop_hands_the_best_to_the_run_for_dev(task: Task, tmp_path: Path) -> None:
    result, events = _run(task, "hill-climb", tmp_path, n_score=8, n_candidates=6, max_iterations=3,
                          score_incumbents=False)
    assert result.stopped_by is None and result.best_prompt != task.seed_prompt and result.best_dev == 1.0
    last_step = max(k for k, e in enumerate(events) if e["type"] == "step")
    on_dev = [k for k, e in enumerate(events)
              if e["type"] == "evaluation" and e["dev"] and e["prompt_id"] == result.best_prompt.id]
    assert on_dev and min(on_dev) > last_step  # scored on dev by the Run, after the search


@pytest.mark.parametrize("name", ["hill-climb", "genetic-mutation", "harmony"])
def test_search_stops_after_patience_iterations_without_improvement(task: Task, tmp_path: Path, name: str) -> None:
    _, events = _run(task, name, tmp_path, graded=False, patience=3, max_iterations=50, n_score=4,
                     n_candidates=3)  # nothing beats the seed
    kind = {"hill-climb": "step", "genetic-mutation": "generation", "harmony": "memory"}[name]
    # harmony stops before updating its memory, so its third miss leaves no memory note
    assert len([e for e in events if e["type"] == kind]) == (2 if name == "harmony" else 3)
    assert [e["reason"] for e in events if e["type"] == "stop"] == ["no improvement in 3 iterations (patience 3)"]


def test_an_improvement_resets_the_patience_count(task: Task, tmp_path: Path) -> None:
    _, events = _run(task, "hill-climb", tmp_path, patience=3, max_iterations=50, n_score=8, n_candidates=6)
    current = [task.seed_prompt.id] + [e["current"] for e in events if e["type"] == "step"]
    moves = [i for i in range(1, len(current)) if current[i] != current[i - 1]]  # iterations that improved
    assert moves and len(current) - 1 == moves[-1] + 3  # stopped three misses after the last move


def test_add_only_puts_back_units_the_lineage_deleted(task: Task, tmp_path: Path) -> None:
    _, events = _run(task, "genetic-mutation", tmp_path, n_score=4, n_candidates=10, max_iterations=12,
                     patience=12, operators="delete,add,swap")
    candidates, edits = _candidates(events), _edits(events)
    adds = [pid for pid, e in edits.items() if e["operator"] == "add"]
    assert adds
    for pid in adds:
        deleted: set[str] = set()
        stack = list(candidates[pid]["parents"])
        while stack:
            ancestor = stack.pop()
            if ancestor in edits:
                deleted |= {u for e in edits[ancestor]["edits"] if e["operator"] == "delete" for u in e["before"]}
                stack += candidates[ancestor]["parents"]
        assert set(edits[pid]["edits"][0]["after"]) <= deleted


def test_paraphrases_come_from_the_optimizer_and_keep_punctuation(task: Task, tmp_path: Path) -> None:
    _, events = _run(task, "hill-climb", tmp_path, n_score=4, max_iterations=3, operators=["paraphrase"])
    paraphrases = [e["edits"][0] for e in _edits(events).values()]
    assert paraphrases and all(p["operator"] == "paraphrase" for p in paraphrases)
    for p in paraphrases:
        assert p["after"] == [p["before"][0].upper()]  # the fake optimizer's rewrite, punctuation kept


# -- tabu -----------------------------------------------------------------------------------------
def test_tabu_never_revisits_a_prompt_on_its_list(task: Task, tmp_path: Path) -> None:
    # every prompt scores the same, so each step's winner is the first admissible neighbour; with
    # sentence-level deletes and swaps of a two-sentence seed there are only three neighbours
    _, events = _run(task, TabuSearch(tabu_size=3, level="sentence", operators=("delete", "swap"),
                                      n_candidates=6, max_iterations=8, patience=50, n_score=4),
                     tmp_path, graded=False)
    steps = [e for e in events if e["type"] == "tabu"]
    listed = [task.seed_prompt.id]
    for step in steps:
        assert step["winner"] not in listed  # barred while on the list
        listed = step["tabu"]
        assert step["winner"] == listed[-1] and len(listed) <= 3
    assert len(steps) == 3 < 8  # after the three neighbours are listed, nothing is admissible
    assert len({s["winner"] for s in steps}) == 3


# -- simulated annealing -------------------------------------------------------------------------------
def test_annealing_acceptance_follows_the_temperature_schedule() -> None:
    assert temperature(0, t_max=10.0, decay=5.0) == 10.0
    assert temperature(5, t_max=10.0, decay=5.0) == pytest.approx(10.0 / math.e)
    for seed in range(50):  # the same draw as exp(delta / T) against the seeded rng
        for i in (1, 5, 20):
            expected = random.Random(seed).random() < math.exp(-3.0 / temperature(i, t_max=10.0, decay=5.0))
            assert anneal_accepts(-3.0, i, random.Random(seed), t_max=10.0, decay=5.0) == expected
    rng = random.Random(0)
    rates = [sum(anneal_accepts(-3.0, i, rng, t_max=10.0, decay=5.0) for _ in range(4000)) / 4000
             for i in (1, 5, 10)]
    expected = [math.exp(-3.0 / temperature(i, t_max=10.0, decay=5.0)) for i in (1, 5, 10)]
    assert rates == pytest.approx(expected, abs=0.03) and rates[0] > rates[1] > rates[2]
    assert anneal_accepts(0.0, 30, rng, t_max=10.0, decay=5.0)  # an equal neighbour is always taken


def test_annealing_takes_worse_prompts_early_and_not_late(task: Task, tmp_path: Path) -> None:
    # two sentences, swaps only: the seed's one neighbour is 100 points worse, and from there the
    # seed is an improvement; so every annealing decision is about a 100-point loss
    sa = SimulatedAnnealing(t_max=1000.0, decay=2.0, level="sentence", operators="swap", n_candidates=3,
                            max_iterations=14, patience=50, n_score=4)
    _, events = _run(task, sa, tmp_path, graded=False)
    anneals = [e for e in events if e["type"] == "anneal"]
    steps = {e["index"]: e for e in events if e["type"] == "step"}
    for e in anneals:
        assert e["delta"] == -100.0 and e["temperature"] == pytest.approx(1000 * math.exp(-e["index"] / 2))
        assert (steps[e["index"]]["current"] != task.seed_prompt.id) == e["accepted"]  # taken means moved
    early = [e["accepted"] for e in anneals if e["index"] <= 4]  # T > 135: p > 0.47
    late = [e["accepted"] for e in anneals if e["index"] >= 10]  # T < 7: p < 1e-6
    assert any(early) and late and not any(late)
    plain, _ = _run(task, HillClimbing(level="sentence", operators="swap", n_candidates=3, max_iterations=14,
                                       patience=50, n_score=4), tmp_path / "hc", graded=False)
    assert plain.best_prompt == task.seed_prompt


# -- harmony search ------------------------------------------------------------------------------
def test_harmony_memory_keeps_the_fittest_once_each_best_first() -> None:
    a, b, c, d = (Prompt(x) for x in "abcd")
    fitness = {"a": 0.5, "b": 0.3, "c": 0.9, "d": 0.3}
    asked: list[list[str]] = []

    def score(prompts: Any) -> list[float]:
        asked.append([p.instruction for p in prompts])
        return [fitness[p.instruction] for p in prompts]

    assert update_memory([a, b], [c, b, d], 3, score) == [c, a, b]  # b (in memory) before d at equal fitness
    assert asked == [["a", "b", "c", "d"]]  # the duplicate b is scored and kept once
    assert update_memory([a], [], 3, score) == [a]


def test_harmonies_are_assembled_from_memory_segments(task: Task, tmp_path: Path) -> None:
    hs = HarmonySearch(hmcr=0.6, par=0.0, n_segments=3, n_candidates=6, max_iterations=6, patience=50, n_score=4,
                       operators="delete,swap")
    _, events = _run(task, hs, tmp_path)
    candidates, edits = _candidates(events), _edits(events)
    prompts = {pid: Prompt.from_dict(c["prompt"]) for pid, c in candidates.items()}
    memory = [task.seed_prompt.id]
    plain = 0
    for e in events:
        if e["type"] == "memory":
            assert e["memory"][: len(memory)] != [] and len(e["memory"]) <= 10
            memory = e["memory"]
        elif e["type"] == "edit" and e["operator"] == "harmony":
            record = edits[e["prompt_id"]]
            assert {s["source"] for s in record["segments"]} <= set(memory)
            assert set(candidates[e["prompt_id"]]["parents"]) == {s["source"] for s in record["segments"]}
            if not record["edits"]:  # a pure recombination: segment j of 3 of each source, in order
                plain += 1
                parts = [(split(prompts[s["source"]].instruction, "phrase"), *s["units"]) for s in record["segments"]]
                for j, (units, start, end) in enumerate(parts):
                    assert (start, end) == (math.ceil(j * len(units) / 3), math.ceil((j + 1) * len(units) / 3))
                assert prompts[e["prompt_id"]].instruction == splice(parts).join()
    assert plain > 0


# -- genetic with crossover ----------------------------------------------------------------------
def test_crossover_children_are_a_prefix_of_one_parent_and_a_suffix_of_the_other(task: Task,
                                                                                 tmp_path: Path) -> None:
    ga = GeneticCrossover(population_size=4, n_offspring=4, n_candidates=3, max_iterations=6, patience=50,
                          n_score=4, operators="delete,swap,paraphrase")
    _, events = _run(task, ga, tmp_path)
    candidates, edits = _candidates(events), _edits(events)
    text = {pid: Prompt.from_dict(c["prompt"]).instruction for pid, c in candidates.items()}
    crossed = [pid for pid, e in edits.items() if e["operator"] == "crossover"]
    assert len(crossed) >= 3
    for pid in crossed:
        first, second = candidates[pid]["parents"]
        (cut,) = edits[pid]["edits"][0]["indices"]
        one, two = split(text[first], "phrase"), split(text[second], "phrase")
        assert 0 <= cut < max(len(one), len(two))
        child = splice([(one, 0, min(cut, len(one))), (two, min(cut, len(two)), len(two))])
        assert child.pieces == one.pieces[:cut] + two.pieces[cut:] and text[pid] == child.join()


# -- parameters and registry ---------------------------------------------------------------------
@pytest.mark.parametrize("name", PLUM)
def test_parameters_round_trip_validate_and_are_listed(name: str) -> None:
    strategy = get_strategy(name)
    assert set(vars(strategy)) == set(strategy.get_params())  # the constructor stores only its parameters
    strategy.validate()
    assert strategy.get_params()["n_candidates"] == 10 and strategy.get_params()["level"] == "phrase"
    rebuilt = get_strategy(name, json.loads(json.dumps(strategy.get_params())))
    rebuilt.validate()
    assert rebuilt.finalist_gap(30) == 0
    with pytest.raises(ConfigError, match="'operators' parameter of .* must be a non-empty list of delete"):
        get_strategy(name, {"operators": "delete,shuffle"}).validate()
    with pytest.raises(ConfigError, match="'level' parameter"):
        get_strategy(name, {"level": "clause"}).validate()


def test_algorithm_specific_parameters_are_checked() -> None:
    with pytest.raises(ConfigError, match="'population_size' parameter of GeneticCrossover must be an int >= 2; got 1"):
        GeneticCrossover(population_size=1).validate()
    with pytest.raises(ConfigError, match="'hmcr' parameter of HarmonySearch"):
        HarmonySearch(hmcr=1.5).validate()
    with pytest.raises(ConfigError, match="'tabu_size'"):
        TabuSearch(tabu_size=0).validate()
    assert SimulatedAnnealing().get_params()["t_max"] == 10.0


def test_an_empty_field_stops_before_any_search_call(task: Task, tmp_path: Path) -> None:
    result, events = _run(task, "hill-climb", tmp_path, field="system")
    assert result.best_prompt == task.seed_prompt
    assert any(e["type"] == "stop" and "system is empty" in e["reason"] for e in events)
    assert result.usage["search"]["target"]["calls"] == len(task.splits.dev)  # the Run's seed evaluation only
