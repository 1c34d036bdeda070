"""BIG-Bench Hard: the fixed split, answer extraction per kind, choices, seed prompts."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from promptopt.exceptions import UnknownNameError
from promptopt.tasks import BBHTask, DataStore
from promptopt.tasks._bbh import BBH_SUBTASKS
from promptopt.types import Example

# upstream data errors: targets that are not one of the example's option letters
ODD_TARGETS = {"Monsters, Inc", "dearth, wind, & fire", "rita, sue and bob poo"}


@pytest.fixture(scope="module")
def store(data_dir: Path) -> DataStore:
    return DataStore(data_dir, offline=True)


def test_the_24_provided_subtasks(data_dir: Path) -> None:
    files = {p.stem for p in (data_dir / "bbh").glob("*.json")}
    assert set(BBH_SUBTASKS) == files and len(files) == 24


@pytest.mark.parametrize("subtask", sorted(BBH_SUBTASKS))
def test_split_and_round_trip(store: DataStore, data_dir: Path, subtask: str) -> None:
    task = BBHTask.load(store, subtask)
    s = task.splits
    n = len(json.loads((data_dir / "bbh" / f"{subtask}.json").read_text("utf-8"))["examples"])
    assert (len(s.train), len(s.dev)) == (round(0.2 * n), round(0.2 * n))
    ids = [e.id for part in (s.train, s.dev, s.test) for e in part]
    assert len(ids) == n == len(set(ids))
    assert {int(i.split("-")[1]) for i in ids} == set(range(n))
    for example in s.train + s.dev + s.test:
        reply = f"Let's think step by step. Blah (Z) 99. So the answer is {example.target}."
        assert task.metric(task.parse(reply), example) == 1.0, (reply, task.parse(reply))
        choices = task.choices(example)
        if task.kind == "choice" and example.target not in ODD_TARGETS:
            assert choices is not None and example.target in choices
        elif task.kind in ("number", "text"):
            assert choices is None


def test_split_is_fixed_and_seed_only_picks_subsets(store: DataStore) -> None:
    full = BBHTask.load(store, "snarks", seed=0)
    assert full.splits == BBHTask.load(store, "snarks", seed=7).splits
    assert (len(full.splits.train), len(full.splits.dev), len(full.splits.test)) == (36, 36, 106)
    small = BBHTask.load(store, "snarks", n_train=5, n_dev=5, n_test=5, seed=1)
    assert set(small.splits.test) <= set(full.splits.test)
    assert small.splits != BBHTask.load(store, "snarks", n_train=5, n_dev=5, n_test=5, seed=2).splits


def test_binary_subtask_subsets_are_stratified(store: DataStore) -> None:
    task = BBHTask.load(store, "navigate", n_dev=10)
    dev = [e.target for e in task.splits.dev]
    assert 3 <= dev.count("Yes") <= 7 and len(dev) == 10


def test_multiple_choice(store: DataStore) -> None:
    task = BBHTask.load(store, "logical_deduction_three_objects", n_dev=3)
    example = Example("x", "Which is first?\nOptions:\n(A) apple\n(B) pear\n(C) fig", "(B)")
    assert task.choices(example) == ("(A)", "(B)", "(C)")
    assert task.labels is None
    assert task.parse("Pear comes first. So the answer is (B).") == "(B)"
    assert task.parse("B") == "(B)"
    assert task.metric(task.parse("So the answer is (C)."), example) == 0.0
    assert task.parse("I am not sure.") is None
    assert task.metric(task.parse("(A) is out. So the answer is pear."), example) == 1.0  # the option's text
    assert task.metric(task.parse("So the answer is fig."), example) == 0.0


@pytest.mark.parametrize(("subtask", "reply", "target", "score"), [
    ("navigate", "So the answer is yes.", "Yes", 1.0),
    ("navigate", "So the answer is No.", "Yes", 0.0),
    ("sports_understanding", "So the answer is Yes.", "yes", 1.0),
    ("formal_fallacies", "So the answer is invalid.", "valid", 0.0),
    ("formal_fallacies", "so the answer is VALID", "valid", 1.0),
    ("boolean_expressions", "true", "True", 1.0),
    ("object_counting", "I count 3 + 4 = 7 items. So the answer is 7.", "7", 1.0),
    ("multistep_arithmetic_two", "So the answer is -1,234.", "-1234", 1.0),
    ("word_sorting", "So the answer is apple  Banana cherry.", "apple banana cherry", 1.0),
    ("word_sorting", "So the answer is banana apple.", "apple banana", 0.0),
    ("dyck_languages", "So the answer is ] ) >.", "] ) >", 1.0),
])
def test_answers_by_kind(store: DataStore, subtask: str, reply: str, target: str, score: float) -> None:
    task = BBHTask.load(store, subtask, n_train=1, n_dev=1, n_test=1)
    assert task.metric(task.parse(reply), Example("x", "q", target)) == score


def test_binary_choices_and_seed_prompt(store: DataStore) -> None:
    task = BBHTask.load(store, "web_of_lies", n_dev=2)
    assert task.name == "bbh:web_of_lies" and task.labels == ("Yes", "No")
    assert task.choices(task.splits.dev[0]) == ("Yes", "No")
    prompt = task.seed_prompt
    assert prompt.instruction.startswith("Evaluate a random boolean function expressed as a word problem.")
    assert '"So the answer is Yes."' in prompt.instruction
    temporal = BBHTask.load(store, "temporal_sequences", n_dev=2).seed_prompt.instruction
    assert temporal.startswith("Answer questions about which times") and "(X)" in temporal


def test_unknown_subtask(store: DataStore) -> None:
    with pytest.raises(UnknownNameError, match="known: boolean_expressions, .*word_sorting"):
        BBHTask.load(store, "nope")
    with pytest.raises(UnknownNameError, match="not in the provided data"):
        BBHTask.load(store, "date_understanding")
