"""PromptBreeder on FakeBackend: each operator class makes a child under its own name, tournaments, determinism."""

from __future__ import annotations

import hashlib
import itertools
import json
from pathlib import Path
from typing import Any

import pytest

import promptopt
from promptopt.prompt import Prompt
from promptopt.strategies._breeder import MUTATION_PROMPTS, MUTATORS, distinct, first_line
from promptopt.strategies._edits import split
from promptopt.tasks import Task, load_task
from promptopt.testing import FakeBackend
from promptopt.types import Request

#: request marker -> the fake optimizer's reply (numbered by call), per operator's request text
REPLIES = {
    "A numbered list of 100 hints": "Zero-order hint {n} ++\n2. another hint",
    "Responses ranked from best to worst": "Ranked child {n} +\n5. more",
    "A list of different instructions": "Listed child {n} +",
    "Instructions found so far": "Lineage child {n} ++",
    "tells someone how to improve an instruction": "Mutator from a style {n}",
    "Summarize and improve this instruction": "Improved mutator {n}",
    "A friend followed an instruction": "Lamarckian child {n} +",
    "NEW INSTRUCTION:": "Mutant instruction {n}, for the review {plus}",
}


def _h(text: str) -> int:
    return int(hashlib.sha256(text.encode()).hexdigest()[:8], 16)


@pytest.fixture
def task(tmp_path: Path) -> Task:
    return load_task("synthetic:sentiment", data_dir=tmp_path, n_train=30, n_dev=6, n_test=6)


def _fake(task: Task) -> FakeBackend:
    """The target is right on an input when its hash mod 5 is below 1 + the '+' signs in the instruction."""
    splits = task.splits
    gold = {ex.input: str(ex.target) for ex in (*splits.train, *splits.dev, *splits.test)}
    count = itertools.count(1)

    def reply(req: Request) -> str:
        content = req.messages[-1].content
        if req.role == "optimizer":
            n = next(count)
            template = next(r for marker, r in REPLIES.items() if marker in content)
            return template.format(n=n, plus="+" * (n % 3))
        instruction, _, rest = content.partition("\n\nText: ")
        sentence = rest.split("\nAnswer:")[0]
        right = _h(sentence) % 5 < 1 + instruction.count("+")
        return gold[sentence] if right else ("negative" if gold[sentence] == "positive" else "positive")

    return FakeBackend(reply=reply)


def _run(task: Task, tmp_path: Path, *, seed: int = 0, calls: int = 3000,
         **params: Any) -> tuple[promptopt.Result, list[dict[str, Any]], FakeBackend]:
    params = {"population_size": 4, "n_generations": 4, "minibatch_size": 5, **params}
    backend = _fake(task)
    result = promptopt.optimize(task, "promptbreeder", backend, answer_mode="generate", strategy_params=params,
                                budget=promptopt.Budget(target_calls=calls), seed=seed, cache=False,
                                runs_dir=tmp_path / f"runs{seed}-{calls}-{params.get('operators', 'all')}")
    events = [json.loads(line) for line in Path(result.run_dir, "events.jsonl").read_text().splitlines()]
    return result, events, backend


def _candidates(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [e for e in events if e["type"] == "candidate"]


@pytest.mark.parametrize("operator", MUTATORS)
def test_each_operator_class_makes_a_child_under_its_own_name(task: Task, tmp_path: Path, operator: str) -> None:
    _, events, backend = _run(task, tmp_path, operators=operator, crossover_prob=0.0, n_generations=6)
    candidates = _candidates(events)
    assert {c["operator"] for c in candidates} == {"seed", "init", operator}
    seen: set[str] = set()
    for cand in candidates:  # parents were recorded before their children
        assert set(cand["parents"]) <= seen
        seen.add(cand["prompt_id"])
    children = [c for c in candidates if c["operator"] == operator]
    breeds = {e["prompt_id"]: e for e in events if e["type"] == "breed"}
    requests = [r.messages[-1].content for r in backend.generate_requests if r.role == "optimizer"]
    hyper = operator.endswith("-hyper")
    for child in children:
        assert breeds[child["prompt_id"]]["operator"] == operator
        assert breeds[child["prompt_id"]]["mutation_prompt_changed"] is hyper
        if hyper:  # the new mutation prompt is the one the optimizer wrote, then applied first-order
            assert breeds[child["prompt_id"]]["mutation_prompt"].startswith(("Mutator", "Improved mutator"))
            assert any(breeds[child["prompt_id"]]["mutation_prompt"] in r and "NEW INSTRUCTION:" in r
                       for r in requests)
        else:
            assert breeds[child["prompt_id"]]["mutation_prompt"] in MUTATION_PROMPTS
    if operator in ("eda", "eda-rank"):  # conditioned on the population: parents are the listed prompts
        assert any(len(c["parents"]) >= 2 for c in children)
    if operator == "lamarckian":  # the request shows a working-out the target got right
        splits = task.splits
        gold = {ex.input: str(ex.target) for ex in splits.train}
        shown = [r.split("Input: ")[1].split("\nThe instruction was:")[0] for r in requests
                 if r.startswith("A friend followed")]
        assert shown and all(gold[w.split("\nAnswer: ")[0]] == w.split("\nAnswer: ")[1] for w in shown)


def test_crossover_children_hold_only_their_parents_phrases(task: Task, tmp_path: Path) -> None:
    _, events, _ = _run(task, tmp_path, operators="first-order", crossover_prob=1.0)
    prompts = {c["prompt_id"]: Prompt.from_dict(c["prompt"]) for c in _candidates(events)}
    crossed = [c for c in _candidates(events) if c["operator"] == "crossover"]
    assert crossed
    for cand in crossed:
        first, second = (prompts[p] for p in cand["parents"])
        assert next(c for c in _candidates(events) if c["prompt_id"] == first.id)["operator"] == "first-order"
        units = set(split(first.instruction, "phrase").pieces) | set(split(second.instruction, "phrase").pieces)
        assert set(split(prompts[cand["prompt_id"]].instruction, "phrase").pieces) <= units


def test_the_fitter_of_each_pair_breeds_and_its_child_replaces_the_other(task: Task, tmp_path: Path) -> None:
    _, events, _ = _run(task, tmp_path, operators="first-order,zero-order", crossover_prob=0.0, population_size=6)
    generations = [e for e in events if e["type"] == "generation"]
    breeds = {e["prompt_id"]: e for e in events if e["type"] == "breed"}
    replaced = 0
    for before, after in itertools.pairwise(generations):
        changed = [k for k, (a, b) in enumerate(zip(before["units"], after["units"], strict=True)) if a != b]
        assert len(changed) <= 3  # a generation is population_size // 2 tournaments
        for k in changed:
            winner = breeds[after["units"][k]]["winner"]
            fitness = max(f for u, f in zip(before["units"], before["fitness"], strict=True) if u == winner)
            assert fitness >= before["fitness"][k]
            replaced += 1
    assert replaced >= 3


def test_same_seed_same_result_the_budget_is_kept_and_elites_are_on_dev(task: Task, tmp_path: Path) -> None:
    first, events, _ = _run(task, tmp_path, calls=150, n_generations=50)
    assert first.stopped_by is not None and first.usage["search"]["target"]["calls"] <= 150
    lineage = [(c["prompt_id"], c["parents"], c["operator"]) for c in _candidates(events)]
    again, events_again, _ = _run(task, tmp_path / "again", calls=150, n_generations=50)
    assert [(c["prompt_id"], c["parents"], c["operator"]) for c in _candidates(events_again)] == lineage
    assert again.best_prompt == first.best_prompt
    _, other, _ = _run(task, tmp_path, seed=2, calls=150, n_generations=50)
    assert [(c["prompt_id"], c["parents"]) for c in _candidates(other)] != [x[:2] for x in lineage]
    on_dev = {e["prompt_id"] for e in events if e["type"] == "evaluation" and e["dev"]}
    assert {e["prompt_id"] for e in events if e["type"] == "elite"} <= on_dev
    # fitness is on training minibatches of 5; only dev evaluations are of the 6 dev examples
    assert {(e["n"], e["dev"]) for e in events if e["type"] == "evaluation"} <= {(5, False), (6, True)}


@pytest.mark.parametrize(("reply", "expected"), [
    (" 4. Read the sentence twice.\n5. Another.", "Read the sentence twice."),
    ("NEW INSTRUCTION: Name the feeling in one word.\nINSTRUCTION: again", "Name the feeling in one word."),
    ("\n- Decide if the review is happy or sad.", "Decide if the review is happy or sad."),
    ("1.\n2.", None)])
def test_first_line_takes_the_instruction_off_a_continued_list(reply: str, expected: str | None) -> None:
    assert first_line(reply) == expected


def test_distinct_drops_near_duplicates_only() -> None:
    prompts = [Prompt("Label the review as positive or negative please now."),
               Prompt("label the review as positive or negative please now."),  # same words, other case
               Prompt("Label the review as positive or negative please today."),  # 8 of 9 words in common
               Prompt("Say if the text is happy.")]
    assert [p.instruction for p in distinct(prompts)] == [prompts[0].instruction, prompts[2].instruction,
                                                          prompts[3].instruction]
