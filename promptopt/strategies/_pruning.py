"""Pruning a prompt: its removable units, and the pure rules of the pruning searches.

A :class:`PruneSpace` numbers the units of every non-empty text field of a
prompt (instruction, system, each demonstration's input and output; never the
template, which holds the ``{input}`` slot): the target model's tokens (the
PromptQuine papers' unit) or the edit units of ``_edits`` (words, phrases,
sentences). A set of removed positions gives a pruned prompt: token fields
are re-joined with the tokenizer's ``detokenize``, span fields keep the
separator that followed each kept unit, and a field without removals keeps its
exact text.

The rest are pure functions of scores, so tests can script them:
:func:`threshold_accepts` (TAPruning's acceptance rule),
:func:`successive_halving` (spend the second half of the score set only on
promising candidates), :func:`age_survivors` (PromptQuine's regularized
truncation), :func:`draw_removal` (PromptQuine's mutation) and
:func:`contiguous_groups` (PMPO's at most ``m`` segments).
"""

from __future__ import annotations

import random
from collections.abc import Callable, Collection, Sequence
from typing import TYPE_CHECKING, Literal

from promptopt.strategies._edits import LEVELS, Units, field_names, field_text, split, with_field
from promptopt.strategies._selection import top_k

if TYPE_CHECKING:
    from promptopt.prompt import Prompt
    from promptopt.tokenizer import Tokenizer
    from promptopt.types import Example

__all__ = ["PRUNE_UNITS", "MUTATION_SIZES", "PruneSpace", "PruneUnit", "age_survivors", "contiguous_groups",
           "draw_removal", "keep_units", "successive_halving", "threshold_accepts"]

PruneUnit = Literal["token", "word", "phrase", "sentence"]
PRUNE_UNITS: tuple[PruneUnit, ...] = ("token", *LEVELS)
#: how many units one PromptQuine mutation removes (drawn uniformly, as the reference code does)
MUTATION_SIZES = (1, 2, 3, 4)


def keep_units(units: Units, kept: Sequence[int]) -> Units:
    """Only the units at ``kept`` (ascending), each followed by the separator it had (as repeated
    ``delete`` would leave them); lead and tail unchanged.

    Example:
        >>> keep_units(split("One. Two.  Three.", "sentence"), [0, 2]).join()
        'One. Three.'
    """
    pieces = [units.pieces[i] for i in kept]
    seps = [units.seps[i] for i in kept[:-1]]
    return units.rebuilt(pieces, seps)


class PruneSpace:
    """The removable units of ``prompt``'s text fields, numbered 0 .. ``len - 1`` in field order.

    Args:
        prompt: the prompt to prune.
        unit: ``"token"`` (the target model's tokens, needs ``tokenizer``) or an edit level.
        tokenizer: the target model's tokenizer (token units only).
    """

    def __init__(self, prompt: Prompt, unit: PruneUnit, tokenizer: Tokenizer | None = None) -> None:
        self.prompt, self.unit, self._tokenizer = prompt, unit, tokenizer
        names = [f for f in field_names(prompt) if field_text(prompt, f).strip()]
        self._fields: list[tuple[str, Sequence[int] | Units]] = []
        if unit == "token":
            if tokenizer is None:
                raise ValueError("token units need the target model's tokenizer")
            ids = tokenizer.tokenize_many([field_text(prompt, f) for f in names])
            self._fields = [(f, tuple(i)) for f, i in zip(names, ids, strict=True) if i]
        else:
            self._fields = [(f, u) for f in names if len(u := split(field_text(prompt, f), unit))]
        #: (field number, unit number within the field) of each position
        self.positions = tuple((k, j) for k, (_, units) in enumerate(self._fields) for j in range(_size(units)))

    def __len__(self) -> int:
        return len(self.positions)

    def field(self, position: int) -> str:
        """The field a position is in."""
        return self._fields[self.positions[position][0]][0]

    def build(self, removed: Collection[int]) -> Prompt:
        """The prompt without the units at ``removed``."""
        by_field: dict[int, set[int]] = {}
        for position in removed:
            k, j = self.positions[position]
            by_field.setdefault(k, set()).add(j)
        prompt = self.prompt
        for k, gone in sorted(by_field.items()):
            name, units = self._fields[k]
            kept = [j for j in range(_size(units)) if j not in gone]
            prompt = with_field(prompt, name, self._join(units, kept))
        return prompt

    def _join(self, units: Sequence[int] | Units, kept: Sequence[int]) -> str:
        if not kept:
            return ""
        if isinstance(units, Units):
            return keep_units(units, kept).join()
        assert self._tokenizer is not None  # token fields exist only with a tokenizer
        return self._tokenizer.detokenize([units[j] for j in kept])


def _size(units: Sequence[int] | Units) -> int:
    return len(units)


def threshold_accepts(fitness: float, best: float, threshold: float) -> bool:
    """TAPruning's rule: a removal stays when its fitness is at least ``threshold`` times the best
    fitness seen so far (the reference's ``performance / max_performance >= threshold``, written
    so that a best of 0 accepts instead of dividing by zero).

    Example:
        >>> threshold_accepts(0.97, 1.0, 0.96), threshold_accepts(0.95, 1.0, 0.96)
        (True, False)
    """
    return fitness >= threshold * best


def successive_halving(prompts: Sequence[Prompt], examples: Sequence[Example],
                       fitness: Callable[[Sequence[Prompt], Sequence[Example]], list[float]],
                       floor: float) -> tuple[list[float], list[int]]:
    """Score ``prompts`` on the first half of ``examples``; only those scoring at least ``floor``
    are scored on all of them (the first half again costs nothing: results are memoized).

    Returns:
        Each prompt's fitness (on all examples, or on the first half for those below the
        floor) and how many examples it rests on.
    """
    if not prompts:
        return [], []
    half = examples[: (len(examples) + 1) // 2]
    first = fitness(prompts, half)
    promising = [p for p, f in zip(prompts, first, strict=True) if f >= floor]
    full: dict[str, float] = {}
    if promising and len(half) < len(examples):
        full = dict(zip((p.id for p in promising), fitness(promising, examples), strict=True))
    values = [full.get(p.id, f) for p, f in zip(prompts, first, strict=True)]
    sizes = [len(examples) if p.id in full or len(half) == len(examples) else len(half) for p in prompts]
    return values, sizes


def age_survivors(fitness: Sequence[float], window: int, size: int) -> list[int]:
    """Positions of the ``size`` fittest among the last ``window`` members (the youngest), best
    first, ties to the older: PromptQuine's "approximate regularized evolution", where members
    older than ``window`` births die whatever their fitness.

    Example:
        >>> age_survivors([0.9, 0.1, 0.5, 0.5], window=3, size=2)
        [2, 3]
    """
    start = max(0, len(fitness) - window)
    return [start + k for k in top_k(fitness[start:], size)]


def draw_removal(remaining: Sequence[int], rng: random.Random, *, tries: int = 10) -> list[int] | None:
    """PromptQuine's mutation: ``k`` of the ``remaining`` positions, ``k`` drawn from
    :data:`MUTATION_SIZES` until it is smaller than ``len(remaining)`` (at most ``tries`` draws,
    so a unit always stays); None when no draw fitted."""
    for _ in range(tries):
        k = rng.choice(MUTATION_SIZES)
        if k < len(remaining):
            return sorted(rng.sample(list(remaining), k))
    return None


def contiguous_groups(n: int, m: int) -> list[range]:
    """``n`` positions cut into ``min(n, m)`` contiguous groups of near-equal size, in order.

    Example:
        >>> [list(g) for g in contiguous_groups(7, 3)]
        [[0, 1, 2], [3, 4], [5, 6]]
    """
    groups = min(n, m)
    return [range(-(-j * n // groups), -(-(j + 1) * n // groups)) for j in range(groups)]
