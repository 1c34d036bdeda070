"""A task from any examples, scored by a named metric: the basis of file tasks."""

from __future__ import annotations

from typing import Literal, get_args

from promptopt.exceptions import ConfigError
from promptopt.prompt import Prompt
from promptopt.tasks._base import Splits, Task
from promptopt.tasks._parsing import answer_segment, extract_number, normalize_text, numbers_equal
from promptopt.types import Example

__all__ = ["METRICS", "CustomTask", "MetricName", "check_metric"]

MetricName = Literal["exact", "contains", "numeric"]
#: the metric names a custom or file task accepts
METRICS: tuple[str, ...] = get_args(MetricName)


def check_metric(metric: str) -> MetricName:
    """``metric`` if it is one of :data:`METRICS`.

    Raises:
        ConfigError: naming the value and the choices.
    """
    if metric not in METRICS:
        raise ConfigError(f"unknown metric {metric!r} for a custom task; choose one of "
                          f"{', '.join(METRICS)}")
    return metric  # type: ignore[return-value]  # checked just above


class CustomTask(Task):
    """Your own examples with one of three metrics.

    - ``exact``: the answer (the text after "answer is", if the reply has it,
      else the whole reply) equals the target, trimmed and ignoring case;
    - ``contains``: the reply contains the target, ignoring case;
    - ``numeric``: the number after "answer is" (else the last number in the
      reply) equals the target numerically.

    Args:
        name: the task name.
        splits: train, dev and test examples.
        metric: one of :data:`METRICS`.
        instruction: the seed prompt's instruction.
        template: where the input goes in the prompt (``{input}``).
        max_tokens: reply length in generate mode.
        description: one line for listings.

    Example:
        >>> ex = Example("dev-0", "2 + 2", "4")
        >>> task = CustomTask("add", Splits((ex,), (ex,), (ex,)), metric="numeric")
        >>> task.metric(task.parse("The answer is 4.0"), ex)
        1.0
    """

    def __init__(self, name: str, splits: Splits, *, metric: str = "exact", instruction: str = "",
                 template: str = "Input: {input}\nAnswer:", max_tokens: int = 64,
                 description: str = "") -> None:
        self.name = name
        self.metric_name = check_metric(metric)
        self.max_tokens = max_tokens
        self.description = description
        self._splits = splits
        self._prompt = Prompt(instruction=instruction, template=template)

    @property
    def splits(self) -> Splits:
        return self._splits

    @property
    def seed_prompt(self) -> Prompt:
        return self._prompt

    def parse(self, text: str) -> str | None:
        if self.metric_name == "numeric":
            return extract_number(text)
        if self.metric_name == "contains":
            return text.strip() or None
        segment, _ = answer_segment(text)
        return normalize_text(segment) or None

    def metric(self, answer: str | None, example: Example) -> float:
        if answer is None:
            return 0.0
        if self.metric_name == "numeric":
            ok = numbers_equal(answer, example.target)
        elif self.metric_name == "contains":
            ok = normalize_text(example.target).casefold() in " ".join(answer.split()).casefold()
        else:
            ok = normalize_text(answer).casefold() == normalize_text(example.target).casefold()
        return 1.0 if ok else 0.0
