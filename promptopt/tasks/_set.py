"""A set of tasks searched with one shared system prompt.

Each member keeps its own splits, answer mode, metric, labels and seed prompt
(instruction, template, demonstrations). What a search changes on a set is
the ``system`` field: a candidate is a :class:`~promptopt.prompt.Prompt`
whose ``system`` is the shared text, and a member's example is asked with the
member's seed prompt whose system text is the candidate's
(:meth:`TaskSet.prompt_for`).

Example ids are namespaced by task (``sst2/dev-3``) when the set has more than
one member, so ids from different tasks never collide; a set of one keeps its
task's ids. Unseen tasks (scored only at the end) are always namespaced.

A candidate's score on the set is the mean of its per-task means, so a large
task does not outweigh a small one (:func:`mean_of_task_means`).

Example:
    >>> from promptopt.tasks import make_sentiment_task, make_arithmetic_task
    >>> both = TaskSet([make_sentiment_task(n_dev=3), make_arithmetic_task(n_dev=2)], system="Be brief.")
    >>> both.name, len(both.splits.dev), both.splits.dev[0].id
    ('synthetic:sentiment,synthetic:arithmetic', 5, 'synthetic:sentiment/dev-0')
    >>> both.prompt_for(both.seed_prompt, both.splits.dev[4]).system
    'Be brief.'
"""

from __future__ import annotations

import copy
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from promptopt.exceptions import ConfigError
from promptopt.prompt import Prompt
from promptopt.stats import Score
from promptopt.tasks._base import Splits, Task
from promptopt.types import Example, Message

__all__ = ["SetMember", "TaskSet", "combine_scores", "mean_of_task_means", "task_means"]


@dataclass(frozen=True)
class SetMember:
    """One task of a set.

    Attributes:
        task: the task, with its own splits and seed prompt.
        answer_mode: what this task asks for (``auto``, ``generate``, ``choice``); None: the run's.
        config: the options it was loaded with, recorded in the run's configuration.
    """

    task: Task
    answer_mode: str | None = None
    config: Mapping[str, Any] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.task.name


def _member(item: Task | SetMember) -> SetMember:
    return item if isinstance(item, SetMember) else SetMember(item)


def _renamed(examples: Iterable[Example], prefix: str) -> tuple[Example, ...]:
    return tuple(replace(ex, id=f"{prefix}/{ex.id}") for ex in examples) if prefix else tuple(examples)


class TaskSet(Task):
    """Several tasks whose shared system prompt is searched; a :class:`Task` to the rest of promptopt.

    Its splits are its members' splits, concatenated (ids namespaced when there is more
    than one member); rendering, metric, options and gold text go to the example's member.
    A reply cannot be parsed without knowing whose it is: use
    ``member_of(example).task.parse``.

    Args:
        members: the tasks searched (Tasks, or :class:`SetMember` with their own answer mode).
        unseen: tasks scored only at the end, on their test split, for transfer.
        system: the seed system prompt (the candidate the search starts from); None when not
            given, for the Run to fill in (the target model's default, see ``promptopt.default_system``).
        name: the set's name (default: the members' names joined by commas).

    Raises:
        ConfigError: no member, or two tasks with the same name.
    """

    def __init__(self, members: Sequence[Task | SetMember], *, unseen: Sequence[Task | SetMember] = (),
                 system: str | None = None, name: str | None = None) -> None:
        self.members = tuple(_member(m) for m in members)
        self.unseen = tuple(_member(m) for m in unseen)
        if not self.members:
            raise ConfigError("a task set needs at least one task")
        names = [m.name for m in (*self.members, *self.unseen)]
        repeated = sorted({n for n in names if names.count(n) > 1})
        if repeated:
            raise ConfigError(f"two tasks of the set are named {repeated[0]!r}; every task needs its own name")
        self.name = name or ",".join(m.name for m in self.members)
        self.system = system
        self.description = "; ".join(f"{m.name}: {m.task.description or m.name}" for m in self.members)
        self.max_tokens = max(m.task.max_tokens for m in self.members)
        self._owner: dict[str, SetMember] = {}
        self._splits = self._build_splits()
        self.unseen_tests = {m.name: self._own(m, _renamed(m.task.splits.test, m.name)) for m in self.unseen}
        self._prompts: dict[tuple[str, str, str], Prompt] = {}

    def _own(self, member: SetMember, examples: tuple[Example, ...]) -> tuple[Example, ...]:
        for ex in examples:
            self._owner[ex.id] = member
        return examples

    def _build_splits(self) -> Splits:
        parts: dict[str, list[Example]] = {"train": [], "dev": [], "test": []}
        for m in self.members:
            prefix = m.name if len(self.members) > 1 else ""
            for split, examples in parts.items():
                examples += self._own(m, _renamed(getattr(m.task.splits, split), prefix))
        return Splits(tuple(parts["train"]), tuple(parts["dev"]), tuple(parts["test"]))

    # -- what the set is -----------------------------------------------------------------------
    @property
    def splits(self) -> Splits:
        return self._splits

    @property
    def seed_prompt(self) -> Prompt:
        """The shared system text alone: what the search starts from."""
        return Prompt(system=self.system or "")

    @property
    def member_names(self) -> tuple[str, ...]:
        return tuple(m.name for m in self.members)

    @property
    def task_of(self) -> dict[str, str]:
        """The member name by example id (members' examples only, not unseen tasks')."""
        searched = {m.name for m in self.members}
        return {ex_id: m.name for ex_id, m in self._owner.items() if m.name in searched}

    def with_system(self, system: str) -> TaskSet:
        """A copy whose seed system prompt is ``system``."""
        other = copy.copy(self)
        other.system = system
        return other

    def to_config(self) -> dict[str, Any]:
        """What defines the set in a run's configuration (and so its run id)."""
        def entry(m: SetMember) -> dict[str, Any]:
            mode = {} if m.answer_mode is None else {"answer_mode": m.answer_mode}
            return {"name": m.name, **mode, **dict(m.config)}

        return {"members": [entry(m) for m in self.members], "unseen": [entry(m) for m in self.unseen],
                "system": self.system}

    # -- routing to the member -----------------------------------------------------------------
    def member_of(self, example: Example) -> SetMember:
        """The member (searched or unseen) an example belongs to."""
        return self.owner(example.id)

    def owner(self, example_id: str) -> SetMember:
        """The member (searched or unseen) the example with this id belongs to."""
        try:
            return self._owner[example_id]
        except KeyError:
            raise ValueError(f"example {example_id!r} is not in the task set {self.name!r}") from None

    def prompt_for(self, prompt: Prompt, example: Example) -> Prompt:
        """The prompt a member's example is asked with: the member's seed prompt, with the
        candidate's system text, and the candidate's instruction when it has one.

        A candidate on a set is its system text alone (an empty instruction), so each member keeps
        its own instruction; a strategy that also tunes one member's instruction (MetaSPO's inner
        loop) asks that member's examples with a candidate carrying it.
        """
        member = self.member_of(example)
        key = (prompt.system, prompt.instruction, member.name)
        known = self._prompts.get(key)
        if known is None:
            own = member.task.seed_prompt
            known = self._prompts[key] = replace(own, system=prompt.system,
                                                 instruction=prompt.instruction or own.instruction)
        return known

    def render(self, prompt: Prompt, example: Example) -> tuple[Message, ...]:
        return self.member_of(example).task.render(self.prompt_for(prompt, example), example)

    def parse(self, text: str) -> str | None:
        raise TypeError(f"a reply to the task set {self.name!r} is parsed by its member: "
                        "use task_set.member_of(example).task.parse(text)")

    def metric(self, answer: str | None, example: Example) -> float:
        return self.member_of(example).task.metric(answer, example)

    def choices(self, example: Example) -> tuple[str, ...] | None:
        return self.member_of(example).task.choices(example)

    def gold_text(self, example: Example) -> str:
        return self.member_of(example).task.gold_text(example)

    def feedback(self, answer: str | None, example: Example) -> str:
        return self.member_of(example).task.feedback(answer, example)

    def verdict(self, answer: str | None, example: Example, score: float) -> str:
        return self.member_of(example).task.verdict(answer, example, score)


# --- scores on a set -------------------------------------------------------------------------------


def task_means(scores: Mapping[str, float], task_of: Mapping[str, str]) -> dict[str, float]:
    """Each task's mean over the examples of ``scores`` (example id → score) it owns, in first-seen order."""
    sums: dict[str, list[float]] = {}
    for ex_id, score in scores.items():
        sums.setdefault(task_of[ex_id], []).append(score)
    return {name: sum(values) / len(values) for name, values in sums.items()}


def mean_of_task_means(scores: Mapping[str, float], task_of: Mapping[str, str]) -> float:
    """The mean of the per-task means: every task weighs the same, whatever its size.

    Example:
        >>> mean_of_task_means({"a/1": 1.0, "a/2": 1.0, "a/3": 1.0, "b/1": 0.0},
        ...                    {"a/1": "a", "a/2": "a", "a/3": "a", "b/1": "b"})
        0.5
    """
    means = task_means(scores, task_of)
    return sum(means.values()) / len(means) if means else 0.0


def combine_scores(scores: Sequence[Score]) -> Score:
    """The mean of per-task test scores, with an interval treating the tasks as independent:
    half-width sqrt(sum of squared half-widths) / number of tasks (each task's interval
    read as symmetric around its mean)."""
    if not scores:
        return Score(0.0, 0.0, 0.0, 0)
    k = len(scores)
    mean = sum(s.mean for s in scores) / k
    half = math.sqrt(sum(((s.high - s.low) / 2) ** 2 for s in scores)) / k
    return Score(mean, max(0.0, mean - half), min(1.0, mean + half), sum(s.n for s in scores))
