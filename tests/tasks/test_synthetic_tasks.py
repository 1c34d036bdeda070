"""Synthetic tasks: generated from the seed, deterministic, disjoint, correctly labelled."""

from __future__ import annotations

import re

import pytest

from promptopt.exceptions import ConfigError
from promptopt.tasks import make_arithmetic_task, make_sentiment_task
from promptopt.tasks._synthetic import _NEGATIVE, _POSITIVE


def test_sentiment_is_deterministic_and_seeded() -> None:
    a = make_sentiment_task(seed=3)
    assert a.splits == make_sentiment_task(seed=3).splits
    assert a.splits.test != make_sentiment_task(seed=4).splits.test
    assert (len(a.splits.train), len(a.splits.dev), len(a.splits.test)) == (100, 100, 200)


def test_sentiment_splits_disjoint_and_growing_train_keeps_test() -> None:
    small = make_sentiment_task(n_train=10, n_dev=20, n_test=30, seed=1)
    big = make_sentiment_task(n_train=500, n_dev=20, n_test=30, seed=1)
    assert small.splits.test == big.splits.test and small.splits.dev == big.splits.dev
    inputs = [{e.input for e in part} for part in (big.splits.train, big.splits.dev, big.splits.test)]
    assert sum(map(len, inputs)) == len(set().union(*inputs)) == 550


def test_sentiment_labels_follow_the_word_lists() -> None:
    task = make_sentiment_task(n_test=200, seed=0)
    counts = {"negative": 0, "positive": 0}
    for example in task.splits.test:
        words = set(re.findall(r"[a-z]+", example.input.lower()))
        positive, negative = words & set(_POSITIVE), words & set(_NEGATIVE)
        assert bool(positive) != bool(negative), example.input
        assert example.target == ("positive" if positive else "negative")
        counts[example.target] += 1
    assert min(counts.values()) > 60  # both classes well represented
    assert task.parse("Positive") == "positive" and task.labels == ("negative", "positive")


def test_arithmetic() -> None:
    task = make_arithmetic_task(n_train=5, n_dev=5, n_test=50, seed=2)
    for example in task.splits.test:
        a, b = map(int, re.findall(r"\d+", example.input))
        assert example.target == str(a + b)
        assert task.metric(task.parse(f"{a} + {b} = {a + b}. The answer is {a + b}."), example) == 1.0
        assert task.metric(task.parse(f"The answer is {a + b + 1}."), example) == 0.0
    assert task.labels is None and task.name == "synthetic:arithmetic"
    assert make_arithmetic_task(n_test=3, seed=2).splits.test == task.splits.test[:3]


def test_too_many_examples_and_bad_sizes() -> None:
    with pytest.raises(ConfigError, match="3200 distinct examples"):
        make_sentiment_task(n_train=3200)
    with pytest.raises(ConfigError, match="n_dev"):
        make_arithmetic_task(n_dev=0)
