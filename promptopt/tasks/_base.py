"""The task contract: examples, splits, rendering, parsing and the metric."""

from __future__ import annotations

import copy
from abc import ABC, abstractmethod
from dataclasses import dataclass

from promptopt.exceptions import ConfigError
from promptopt.prompt import Prompt
from promptopt.types import Example, Message

__all__ = ["Splits", "Task"]


@dataclass(frozen=True)
class Splits:
    """Train (optimisation pool), dev (prompt selection) and test (reported once)."""

    train: tuple[Example, ...]
    dev: tuple[Example, ...]
    test: tuple[Example, ...]


class Task(ABC):
    """A dataset with a metric.

    Subclasses provide :attr:`name`, :attr:`splits`, :attr:`seed_prompt`,
    :meth:`parse` and :meth:`metric`. Tasks with a closed label set also set
    :attr:`labels`, which enables ``choice`` answer mode: the answer is the
    label whose :meth:`verbalize` text the model finds most likely.

    Parsing never executes model output.
    """

    name: str = "task"
    #: closed label set (gold targets are among these), or None for open answers
    labels: tuple[str, ...] | None = None
    #: reply length for ``generate`` mode
    max_tokens: int = 64
    description: str = ""
    #: the gold continuations the task can give loss-based search, the default first
    gold_forms: tuple[str, ...] = ("answer",)
    #: the one :meth:`gold_text` gives (see :meth:`with_gold`)
    gold: str = "answer"

    @property
    @abstractmethod
    def splits(self) -> Splits:
        """The train/dev/test examples."""

    @property
    @abstractmethod
    def seed_prompt(self) -> Prompt:
        """The prompt optimisation starts from."""

    def render(self, prompt: Prompt, example: Example) -> tuple[Message, ...]:
        """The chat messages that ask the model this example under ``prompt``."""
        messages = [Message("system", prompt.system)] if prompt.system.strip() else []
        messages.append(Message("user", prompt.render_user(example.input)))
        return tuple(messages)

    @abstractmethod
    def parse(self, text: str) -> str | None:
        """Extract the answer from a reply; None when there is none."""

    @abstractmethod
    def metric(self, answer: str | None, example: Example) -> float:
        """Score an answer against the example's gold, in [0, 1]."""

    def choices(self, example: Example) -> tuple[str, ...] | None:
        """The closed answer set for one example (None: open answers, no choice mode).

        Defaults to :attr:`labels`; multiple-choice tasks whose options vary per
        example override it.
        """
        return self.labels

    def verbalize(self, label: str) -> str:
        """The text the model should produce for ``label`` (choice mode and losses)."""
        return label

    def gold_text(self, example: Example) -> str:
        """The gold continuation for loss-based strategies: by default the verbalized answer.

        Tasks whose replies reason before answering offer other forms (:attr:`gold_forms`).
        """
        return self.verbalize(example.target)

    def with_gold(self, form: str) -> Task:
        """A copy whose :meth:`gold_text` gives ``form``, one of :attr:`gold_forms`."""
        if form not in self.gold_forms:
            raise ConfigError(f"task {self.name!r} has no gold continuation {form!r}; it has: "
                              f"{', '.join(self.gold_forms)} (e.g. --gold {self.gold_forms[0]})")
        task = copy.copy(self)
        task.gold = form
        return task

    def feedback(self, answer: str | None, example: Example) -> str:
        """A short textual verdict on one answer, for reflective strategies."""
        return self.verdict(answer, example, self.metric(answer, example))

    def verdict(self, answer: str | None, example: Example, score: float) -> str:
        """The default :meth:`feedback` for an answer whose metric score is known."""
        if score >= 1.0:
            return "correct"
        got = "no parsable answer" if answer is None else repr(answer)
        return f"expected {example.target!r}, got {got}"
