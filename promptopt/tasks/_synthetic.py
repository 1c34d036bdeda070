"""Synthetic tasks generated from a seed: no download, instant, good for tests and demos.

Each family enumerates a fixed space of distinct inputs, shuffles it with
``random.Random(seed)``, and deals the shuffled list out as test first, then
dev, then train. So the same (seed, sizes) always give the same examples, no
input is in two splits, and growing ``n_train`` leaves dev and test unchanged.

- ``synthetic:sentiment``: short sentences built from fixed positive and
  negative word lists; labels ``negative`` / ``positive``. Easy enough that a
  135M-parameter model beats chance.
- ``synthetic:arithmetic``: "What is a + b?" for 0 <= a, b < 100; numeric answer.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Callable, Sequence
from typing import TypeVar

from promptopt.exceptions import ConfigError
from promptopt.tasks._base import Splits
from promptopt.tasks._classification import ClassificationTask, label_instruction
from promptopt.tasks._custom import CustomTask
from promptopt.tasks._sampling import check_size
from promptopt.types import Example

__all__ = ["DEFAULT_SIZES", "SYNTHETIC_TASKS", "make_arithmetic_task", "make_sentiment_task"]

T = TypeVar("T")

#: (n_train, n_dev, n_test) used for sizes left as None
DEFAULT_SIZES = (100, 100, 200)

_POSITIVE = ("wonderful", "excellent", "great", "delightful", "fantastic",
             "superb", "lovely", "brilliant", "enjoyable", "amazing")
_NEGATIVE = ("terrible", "awful", "boring", "dreadful", "horrible",
             "bad", "poor", "disappointing", "dull", "annoying")
_NOUNS = ("movie", "meal", "hotel", "concert", "book", "service", "game", "trip", "show", "phone")
_ADVERBS = ("", "really ", "very ", "truly ")
_TEMPLATES = ("The {noun} was {adj}.", "I found the {noun} {adj}.",
              "What {article} {adj} {noun}!", "This {noun} is {adj}.")


def _deal(space: Sequence[T], sizes: tuple[int | None, int | None, int | None],
          seed: int, make: Callable[[str, int, T], Example]) -> Splits:
    """Shuffle ``space`` and deal test, dev, then train examples from it."""
    n_train, n_dev, n_test = (
        DEFAULT_SIZES[k] if size is None else size for k, size in enumerate(sizes))
    for name, value in zip(("n_train", "n_dev", "n_test"), (n_train, n_dev, n_test), strict=True):
        check_size(name, value)
    if n_train + n_dev + n_test > len(space):
        raise ConfigError(f"a synthetic task has {len(space)} distinct examples; got n_train + n_dev "
                          f"+ n_test = {n_train + n_dev + n_test}; ask for fewer")
    order = list(range(len(space)))
    random.Random(seed).shuffle(order)
    cuts = {"test": order[:n_test], "dev": order[n_test:n_test + n_dev],
            "train": order[n_test + n_dev:n_test + n_dev + n_train]}
    made = {split: tuple(make(split, i, space[j]) for i, j in enumerate(idx))
            for split, idx in cuts.items()}
    return Splits(made["train"], made["dev"], made["test"])


def _sentence(template: str, noun: str, adverb: str, adj: str) -> str:
    phrase = f"{adverb}{adj}"
    article = "an" if phrase[0] in "aeiou" else "a"
    return template.format(noun=noun, adj=phrase, article=article)


def make_sentiment_task(*, n_train: int | None = None, n_dev: int | None = None,
                        n_test: int | None = None, seed: int = 0) -> ClassificationTask:
    """``synthetic:sentiment``: label short sentences ``negative`` or ``positive``.

    Sizes left as None use :data:`DEFAULT_SIZES`; there are 3200 distinct sentences.

    Example:
        >>> task = make_sentiment_task(n_train=4, n_dev=4, n_test=4, seed=1)
        >>> task.labels, len(task.splits.test)
        (('negative', 'positive'), 4)
    """
    words = [(adj, "positive") for adj in _POSITIVE] + [(adj, "negative") for adj in _NEGATIVE]
    space = list(itertools.product(_TEMPLATES, _NOUNS, _ADVERBS, words))

    def make(split: str, i: int, item: tuple[str, str, str, tuple[str, str]]) -> Example:
        template, noun, adverb, (adj, label) = item
        return Example(f"{split}-{i}", _sentence(template, noun, adverb, adj), label)

    labels = ("negative", "positive")
    return ClassificationTask(
        "synthetic:sentiment", labels, _deal(space, (n_train, n_dev, n_test), seed, make),
        instruction=label_instruction("Classify the sentiment of the sentence as", labels),
        description="Synthetic sentence sentiment from fixed word lists (2 classes); no download.")


def make_arithmetic_task(*, n_train: int | None = None, n_dev: int | None = None,
                         n_test: int | None = None, seed: int = 0) -> CustomTask:
    """``synthetic:arithmetic``: add two numbers below 100; numeric answer.

    Sizes left as None use :data:`DEFAULT_SIZES`; there are 10000 distinct sums.

    Example:
        >>> task = make_arithmetic_task(n_train=2, n_dev=2, n_test=2)
        >>> ex = task.splits.dev[0]
        >>> a, b = (int(x) for x in ex.input.removeprefix("What is ").rstrip("?").split(" + "))
        >>> str(a + b) == ex.target
        True
    """
    space = list(itertools.product(range(100), range(100)))

    def make(split: str, i: int, item: tuple[int, int]) -> Example:
        a, b = item
        return Example(f"{split}-{i}", f"What is {a} + {b}?", str(a + b))

    return CustomTask(
        "synthetic:arithmetic", _deal(space, (n_train, n_dev, n_test), seed, make),
        metric="numeric", max_tokens=16, template="Question: {input}\nAnswer:",
        instruction='Add the two numbers. End your reply with "The answer is <number>."',
        description="Synthetic two-number addition; numeric answer; no download.")


#: synthetic task name → builder
SYNTHETIC_TASKS: dict[str, Callable[..., ClassificationTask | CustomTask]] = {
    "synthetic:sentiment": make_sentiment_task,
    "synthetic:arithmetic": make_arithmetic_task,
}
