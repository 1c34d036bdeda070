"""Classification sets: labels from labels.json, label parsing, stratified sizes, seed prompts."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from promptopt.tasks import ClassificationTask, DataStore, list_tasks
from promptopt.tasks._classification import CLASSIFICATION_SETS
from promptopt.types import Example

README_SIZES = {  # (train, dev, test) from the data README
    "sst2": (597, 200, 1821), "subj": (1197, 200, 2000), "agnews": (1299, 200, 1404),
    "trec": (1158, 199, 500), "sst-5": (719, 200, 1186), "mr": (1218, 200, 1166),
}


@pytest.fixture(scope="module")
def store(data_dir: Path) -> DataStore:
    return DataStore(data_dir, offline=True)


@pytest.mark.parametrize("name", sorted(CLASSIFICATION_SETS))
def test_full_splits_and_labels(store: DataStore, data_dir: Path, name: str) -> None:
    task = ClassificationTask.load(store, name)
    s = task.splits
    assert (len(s.train), len(s.dev), len(s.test)) == README_SIZES[name]
    labels = tuple(json.loads((data_dir / "cls" / name / "labels.json").read_text("utf-8")))
    assert task.labels == labels and task.choices(s.dev[0]) == labels
    assert {e.target for e in s.train + s.dev + s.test} == set(labels)
    assert not {e.input for e in s.train} & {e.input for e in s.test}
    assert all(label in task.seed_prompt.instruction for label in labels)
    assert "{input}" in task.seed_prompt.template and task.max_tokens <= 8
    listed = {info.name: info for info in list_tasks()}[name]
    assert listed.labels == labels and listed.answer == "label"


def test_trec_subsets_are_stratified_and_seeded(store: DataStore) -> None:
    task = ClassificationTask.load(store, "trec", n_train=60, n_dev=30, n_test=60, seed=0)
    for part, n in ((task.splits.train, 60), (task.splits.dev, 30), (task.splits.test, 60)):
        counts = Counter(e.target for e in part)
        assert len(part) == n and len(counts) == 6, counts
        assert max(counts.values()) < n / 2
    same = ClassificationTask.load(store, "trec", n_train=60, n_dev=30, n_test=60, seed=0)
    other = ClassificationTask.load(store, "trec", n_train=60, n_dev=30, n_test=60, seed=1)
    assert same.splits == task.splits and other.splits.dev != task.splits.dev
    assert all(e.id.startswith("dev-") for e in task.splits.dev)


@pytest.mark.parametrize(("reply", "answer"), [
    ("positive", "positive"),
    ("Negative.", "negative"),
    ("The sentiment is positive.", "positive"),
    ("It's positive and negative", None),
    ("neutral", None),
])
def test_parse_binary(store: DataStore, reply: str, answer: str | None) -> None:
    task = ClassificationTask.load(store, "sst2", n_train=2, n_dev=2, n_test=2)
    assert task.parse(reply) == answer


def test_parse_and_metric_multiclass(store: DataStore) -> None:
    task = ClassificationTask.load(store, "sst-5", n_train=5, n_dev=5, n_test=5)
    gold = Example("x", "a fine film", "good")
    assert task.metric(task.parse("Good"), gold) == 1.0
    assert task.metric(task.parse("great"), gold) == 0.0
    assert task.metric(task.parse("good or great"), gold) == 0.0
    assert task.metric(None, gold) == 0.0
    assert task.verbalize("good") == "good" and task.gold_text(gold) == "good"
    agnews = ClassificationTask.load(store, "agnews", n_train=4, n_dev=4, n_test=4)
    assert agnews.parse("This is about sports") == "Sports"
