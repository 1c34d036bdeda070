"""Preference tasks: each example pairs a preferred (chosen) and a dispreferred (rejected) reply.

An example is a preference pair when its ``meta`` holds the rejected reply
under :data:`REJECTED` and its ``target`` is the chosen one. Loss-based
strategies (PMPO) then compare the two continuations instead of scoring the
chosen one alone; choice mode asks which of the two the model finds more
likely, so a prompt's accuracy is the share of pairs it ranks the right way.
``file:`` tasks whose rows have a ``rejected`` field are built as a
:class:`PreferenceTask`.
"""

from __future__ import annotations

from collections.abc import Sequence

from promptopt.tasks._custom import CustomTask
from promptopt.types import Example

__all__ = ["REJECTED", "PreferenceTask", "is_preference", "rejected_text"]

#: the ``Example.meta`` key holding a pair's rejected reply
REJECTED = "rejected"


def rejected_text(example: Example) -> str | None:
    """The rejected reply of a preference pair, or None for an ordinary example."""
    value = example.meta.get(REJECTED)
    return value if isinstance(value, str) else None


def is_preference(examples: Sequence[Example]) -> bool:
    """Whether every one of ``examples`` (at least one) is a preference pair."""
    return bool(examples) and all(rejected_text(ex) is not None for ex in examples)


class PreferenceTask(CustomTask):
    """A :class:`CustomTask` whose examples are (chosen, rejected) pairs.

    The target is the chosen reply; the options of choice mode are the chosen and
    the rejected reply, and the metric gives 1 to the chosen one (in generate mode,
    a reply is scored against the chosen one by the task's metric, as a custom task).

    Example:
        >>> from promptopt.tasks._base import Splits
        >>> ex = Example("dev-0", "Say hi.", "Hello!", {"rejected": "No."})
        >>> task = PreferenceTask("pairs", Splits((ex,), (ex,), (ex,)))
        >>> task.choices(ex), task.metric("Hello!", ex), task.metric("No.", ex)
        (('Hello!', 'No.'), 1.0, 0.0)
    """

    def choices(self, example: Example) -> tuple[str, ...] | None:
        rejected = rejected_text(example)
        return None if rejected is None else (example.target, rejected)

    def metric(self, answer: str | None, example: Example) -> float:
        if answer is not None and answer == example.target:
            return 1.0
        if answer is not None and answer == rejected_text(example):
            return 0.0
        return super().metric(answer, example)
