"""sample_examples: deterministic, order-keeping, nested, stratified by label."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from promptopt.exceptions import ConfigError
from promptopt.tasks import sample_examples
from promptopt.types import Example


def _pool(labels: str) -> list[Example]:
    return [Example(f"train-{i}", f"text {i}", label) for i, label in enumerate(labels)]


def _trec(data_dir: Path, split: str) -> list[Example]:
    lines = (data_dir / "cls" / "trec" / f"{split}.jsonl").read_text("utf-8").splitlines()
    return [Example(f"{split}-{i}", row["text"], row["label"]) for i, row in enumerate(map(json.loads, lines))]


def test_same_seed_same_subset_other_seed_other_subset() -> None:
    pool = _pool("ab" * 50)
    first = sample_examples(pool, 10, seed=3, stratify=False)
    assert first == sample_examples(pool, 10, seed=3, stratify=False)
    assert first != sample_examples(pool, 10, seed=4, stratify=False)


def test_keeps_input_order_and_nests() -> None:
    pool = _pool("a" * 40)
    small = sample_examples(pool, 5, seed=0, stratify=False)
    large = sample_examples(pool, 20, seed=0, stratify=False)
    positions = [pool.index(e) for e in large]
    assert positions == sorted(positions)
    assert set(small) <= set(large)


def test_not_a_prefix() -> None:
    pool = _pool("a" * 40)
    assert sample_examples(pool, 5, seed=0, stratify=False) != tuple(pool[:5])


def test_none_or_oversize_keeps_all() -> None:
    pool = _pool("abc")
    assert sample_examples(pool, None, seed=0, stratify=True) == tuple(pool)
    assert sample_examples(pool, 99, seed=0, stratify=True) == tuple(pool)


@pytest.mark.parametrize("bad", [0, -1, 2.5, True])
def test_bad_sizes(bad: object) -> None:
    with pytest.raises(ConfigError, match="int >= 1"):
        sample_examples(_pool("ab" * 5), bad, seed=0, stratify=False)  # type: ignore[arg-type]


def test_stratified_is_proportional_on_trec(data_dir: Path) -> None:
    dev = _trec(data_dir, "dev")
    assert len({e.target for e in dev[:40]}) == 1  # the file is grouped by label: a prefix has one class
    population = Counter(e.target for e in dev)
    for seed in (0, 1, 2):
        sample = sample_examples(dev, 30, seed=seed, stratify=True)
        counts = Counter(e.target for e in sample)
        assert len(sample) == 30 and set(counts) == set(population)
        for label, count in counts.items():
            assert abs(count - 30 * population[label] / len(dev)) <= 1, (label, count)


def test_stratified_gives_every_class_one_when_possible(data_dir: Path) -> None:
    train = _trec(data_dir, "train")
    sample = sample_examples(train, 6, seed=0, stratify=True)
    assert sorted(e.target for e in sample) == ["Description", "Entity", "Expression", "Human", "Location", "Number"]


def test_stratified_small_n_takes_the_big_classes() -> None:
    pool = _pool("a" * 90 + "b" * 9 + "c")
    sample = sample_examples(pool, 2, seed=0, stratify=True)
    assert Counter(e.target for e in sample) == {"a": 2}
