"""Seeded, optionally label-stratified subsets of examples.

Never take a prefix of a dataset file: several files are grouped by label, so a
prefix would hold one class only. Everything here shuffles with a fixed seed
(``random.Random(seed)``, stable across processes and platforms) instead.
"""

from __future__ import annotations

import math
import random
from collections import Counter
from collections.abc import Sequence

from promptopt.exceptions import ConfigError
from promptopt.tasks._base import Splits
from promptopt.types import Example

__all__ = ["check_size", "hold_out", "sample_examples", "seeded_order", "subset_splits"]


def seeded_order(n: int, seed: int) -> list[int]:
    """The indices ``0..n-1`` in a seeded random order."""
    order = list(range(n))
    random.Random(seed).shuffle(order)
    return order


def sample_examples(
    examples: Sequence[Example], n: int | None, *, seed: int, stratify: bool
) -> tuple[Example, ...]:
    """A deterministic random subset of ``n`` examples, kept in input order.

    The same (examples, n, seed) always give the same subset, and without
    stratification a smaller ``n`` gives a subset of a larger one (both are
    the first items of one seeded shuffle). With ``stratify=True`` each target
    value gets its proportional share (largest remainder), and every class gets
    at least one example when ``n`` is at least the number of classes.

    The result keeps the input order. To pick a few demonstrations, call this
    again with a small ``n``; never slice a split.

    Args:
        examples: the pool.
        n: how many to keep; None, or a number not below ``len(examples)``,
            keeps them all.
        seed: the shuffle seed.
        stratify: balance the subset by ``Example.target``.

    Returns:
        The chosen examples, in the order they have in ``examples``.

    Example:
        >>> pool = [Example(str(i), "x", "a" if i < 8 else "b") for i in range(10)]
        >>> [e.target for e in sample_examples(pool, 4, seed=0, stratify=True)]
        ['a', 'a', 'a', 'b']
    """
    if n is None or n >= len(examples):
        return tuple(examples)
    check_size("n", n)
    order = seeded_order(len(examples), seed)
    chosen = _stratified_pick(examples, order, n) if stratify else order[:n]
    return tuple(examples[i] for i in sorted(chosen))


def hold_out(examples: Sequence[Example], n: int, *, seed: int,
             stratify: bool) -> tuple[tuple[Example, ...], tuple[Example, ...]]:
    """Split ``examples`` into a seeded sample of ``n`` (:func:`sample_examples`) and the rest.

    Both keep the input order and share no example.

    Example:
        >>> pool = [Example(str(i), "x", "a" if i < 6 else "b") for i in range(8)]
        >>> held, rest = hold_out(pool, 4, seed=0, stratify=True)
        >>> len(held), len(rest), sorted(e.target for e in held)
        (4, 4, ['a', 'a', 'a', 'b'])
    """
    held = sample_examples(examples, n, seed=seed, stratify=stratify)
    taken = {id(e) for e in held}
    return held, tuple(e for e in examples if id(e) not in taken)


def _stratified_pick(examples: Sequence[Example], order: list[int], n: int) -> list[int]:
    quota = _allocate(Counter(e.target for e in examples), n)
    chosen: list[int] = []
    for i in order:
        label = examples[i].target
        if quota[label] > 0:
            quota[label] -= 1
            chosen.append(i)
    return chosen


def _allocate(counts: Counter[str], n: int) -> dict[str, int]:
    """Split ``n`` over classes in proportion to ``counts`` (largest remainder)."""
    total = sum(counts.values())
    labels = sorted(counts)
    exact = {c: n * counts[c] / total for c in labels}
    floor = 1 if n >= len(labels) else 0
    quota = {c: min(counts[c], max(floor, math.floor(exact[c]))) for c in labels}
    while sum(quota.values()) > n:  # the minimum of one per class overshot
        over = max((c for c in labels if quota[c] > 1), key=lambda c: quota[c] - exact[c])
        quota[over] -= 1
    while sum(quota.values()) < n:
        under = max((c for c in labels if quota[c] < counts[c]), key=lambda c: exact[c] - quota[c])
        quota[under] += 1
    return quota


def check_size(name: str, value: int | None) -> None:
    """Reject a split size that is not None or a positive int.

    Raises:
        ConfigError: naming the parameter and the value received.
    """
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"the {name} parameter of the task must be None (all) or an int >= 1; "
                          f"got {value!r}")


def subset_splits(
    splits: Splits, *, n_train: int | None, n_dev: int | None, n_test: int | None,
    seed: int, stratify: bool,
) -> Splits:
    """Each split cut down to its requested size with :func:`sample_examples`."""
    for name, value in (("n_train", n_train), ("n_dev", n_dev), ("n_test", n_test)):
        check_size(name, value)
    return Splits(
        train=sample_examples(splits.train, n_train, seed=seed, stratify=stratify),
        dev=sample_examples(splits.dev, n_dev, seed=seed, stratify=stratify),
        test=sample_examples(splits.test, n_test, seed=seed, stratify=stratify),
    )
