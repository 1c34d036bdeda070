"""Objectives by name: what a multi-objective search measures for a prompt, and which way is better.

=================  ==========  ==================================================================
name               direction   value
=================  ==========  ==================================================================
``accuracy``       maximize    mean metric score on the examples
``margin``         maximize    mean gold-minus-best-wrong summed log-probability (nats); choice
                               mode only (needs a backend that scores)
``length``         minimize    the prompt's own length in target-model tokens: system text plus
                               the user message with an empty input (instruction, demonstrations,
                               template), i.e. everything the model reads but the example
``output-length``  minimize    mean completion tokens of the replies; generate mode only
``loss``           minimize    mean per-token cross-entropy of the gold continuation (nats;
                               ``ctx.loss``: one more target call per example; needs scoring)
=================  ==========  ==================================================================

``length`` uses the target model's tokenizer (``ctx.tokenizer``) when the backend
has one; otherwise it is estimated as whitespace-separated words ×
:data:`TOKENS_PER_WORD` (1.4: SmolLM2's tokenizer gives 1.43 tokens per word on
the seed prompts of the 33 built-in tasks, 1.29-1.81 per task), and the
strategy's ``objectives`` event says which (:attr:`PromptLength.method`).

A strategy takes its objectives as one parameter, a list or a comma-separated
string (``objectives="accuracy,length"``); :func:`parse_objectives` reads it,
:data:`OBJECTIVE_LIST` is its constraint, :func:`check_capabilities` and
:func:`check_answer_mode` refuse objectives the run cannot compute.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from promptopt.exceptions import CapabilityError, ConfigError
from promptopt.strategies._params import NameList, parse_names
from promptopt.strategies._selection import non_dominated_sort

if TYPE_CHECKING:
    from promptopt.context import Context
    from promptopt.prompt import Prompt
    from promptopt.tokenizer import Tokenizer
    from promptopt.types import Example

__all__ = ["OBJECTIVES", "TOKENS_PER_WORD", "Objective", "OBJECTIVE_LIST", "PromptLength", "check_answer_mode",
           "check_capabilities", "measure", "non_dominated", "oriented", "parse_objectives", "prompt_text"]

Direction = Literal["maximize", "minimize"]

#: tokens per whitespace-separated word when the backend has no tokenizer (measured, see above)
TOKENS_PER_WORD = 1.4


@dataclass(frozen=True)
class Objective:
    """One measurable property of a prompt.

    Attributes:
        name: the name a user writes.
        direction: ``"maximize"`` or ``"minimize"``.
        summary: what the value is, for messages.
        needs_score: the target backend must score log-probabilities.
        mode: the only answer mode it exists in (None: both).
    """

    name: str
    direction: Direction
    summary: str
    needs_score: bool = False
    mode: str | None = None

    def oriented(self, value: float) -> float:
        """``value`` with larger always better (a minimised objective negated)."""
        return value if self.direction == "maximize" else -value


OBJECTIVES: dict[str, Objective] = {o.name: o for o in (
    Objective("accuracy", "maximize", "mean metric score"),
    Objective("margin", "maximize", "mean gold-minus-best-wrong log-probability", needs_score=True, mode="choice"),
    Objective("length", "minimize", "prompt length in target-model tokens"),
    Objective("output-length", "minimize", "mean completion tokens", mode="generate"),
    Objective("loss", "minimize", "mean gold-continuation cross-entropy", needs_score=True),
)}


def parse_objectives(value: Any) -> tuple[Objective, ...]:
    """Objectives from a list of names or a comma-separated string, in order, each once.

    Raises:
        ValueError: not a string or list of strings, empty, or an unknown name.

    Example:
        >>> [o.direction for o in parse_objectives("accuracy, length")]
        ['maximize', 'minimize']
    """
    return tuple(OBJECTIVES[n] for n in parse_names(value, OBJECTIVES, "objectives"))


#: a constraint: objective names, as a list or a comma-separated string
OBJECTIVE_LIST = NameList(tuple(OBJECTIVES), "objectives")


def check_capabilities(objectives: Sequence[Objective], *, can_score: bool, model_string: str, owner: str) -> None:
    """Refuse, before any call, objectives a backend that cannot score log-probabilities cannot give.

    Raises:
        CapabilityError: (a ConfigError) naming the objective and what to do.
    """
    for objective in objectives:
        if objective.needs_score and not can_score:
            raise CapabilityError(
                f"the objective {objective.name!r} of {owner} ({objective.summary}) needs a backend that scores "
                f"log-probabilities; {model_string} cannot; use llamacpp:<model>, vllm:<model> or openai:<model> "
                f"pointed at a vLLM server, or drop {objective.name!r} from objectives")


def check_answer_mode(objectives: Sequence[Objective], mode: str, *, owner: str) -> None:
    """Refuse objectives that do not exist in this answer mode (margin without choice mode, say).

    Raises:
        ConfigError: naming the objective, the mode it needs and the mode of the run.
    """
    for objective in objectives:
        if objective.mode is not None and objective.mode != mode:
            raise ConfigError(
                f"the objective {objective.name!r} of {owner} ({objective.summary}) exists only in "
                f"{objective.mode} answer mode; this run is in {mode} mode; use --answer-mode {objective.mode} "
                f"(answer_mode={objective.mode!r}) or drop {objective.name!r} from objectives")


# -- measuring --------------------------------------------------------------------------------------
def prompt_text(prompt: Prompt) -> str:
    """Everything the model reads but the example: system text, then the user message with an
    empty input (instruction, demonstrations, template)."""
    return "\n".join(part for part in (prompt.system, prompt.render_user("")) if part)


class PromptLength:
    """A prompt's length in target-model tokens, or the words × :data:`TOKENS_PER_WORD` estimate
    when the backend has no tokenizer; :attr:`method` says which. Lengths are remembered."""

    def __init__(self, ctx: Context) -> None:
        self._tokenizer: Tokenizer | None
        try:
            self._tokenizer = ctx.tokenizer
        except CapabilityError:
            self._tokenizer = None
        self.method = ("tokenizer" if self._tokenizer is not None
                       else f"estimate: whitespace words x {TOKENS_PER_WORD} (the backend has no tokenizer)")
        self._known: dict[str, float] = {}

    def __call__(self, prompt: Prompt) -> float:
        if prompt.id not in self._known:
            text = prompt_text(prompt)
            count = (len(self._tokenizer.tokenize(text)) if self._tokenizer is not None
                     else round(len(text.split()) * TOKENS_PER_WORD))
            self._known[prompt.id] = float(count)
        return self._known[prompt.id]


def measure(ctx: Context, prompts: Sequence[Prompt], examples: Sequence[Example],
            objectives: Sequence[Objective], length: PromptLength) -> list[dict[str, float]]:
    """Every objective's value for each prompt on ``examples``, by name.

    Accuracy, margin and output length come from one ``ctx.evaluate`` batch,
    loss from one ``ctx.loss`` batch (each asked only when an objective needs it;
    both memoized), length from the tokenizer. A margin no example has (no
    wrong option anywhere) counts as 0.
    """
    names = {o.name for o in objectives}
    evaluated = ctx.evaluate(prompts, examples) if names & {"accuracy", "margin", "output-length"} else []
    losses = ctx.loss(prompts, examples) if "loss" in names else []
    values: list[dict[str, float]] = []
    for k, prompt in enumerate(prompts):
        row: dict[str, float] = {}
        for name in (o.name for o in objectives):
            if name == "length":
                row[name] = length(prompt)
            elif name == "loss":
                row[name] = losses[k].mean
            elif name == "accuracy":
                row[name] = evaluated[k].mean
            elif name == "margin":
                row[name] = evaluated[k].mean_margin or 0.0
            else:  # output-length
                replies = evaluated[k].examples
                row[name] = sum(e.completion_tokens for e in replies) / len(replies) if replies else 0.0
        values.append(row)
    return values


def oriented(values: Mapping[str, float], objectives: Sequence[Objective]) -> tuple[float, ...]:
    """The values as a vector in which larger is better on every objective (for NSGA-II)."""
    return tuple(o.oriented(values[o.name]) for o in objectives)


def non_dominated(values: Sequence[Mapping[str, float]], objectives: Sequence[Objective]) -> list[int]:
    """Positions no other position dominates on ``objectives`` (each in its own direction), in order.

    Example:
        >>> objs = parse_objectives("accuracy,length")
        >>> non_dominated([{"accuracy": 0.8, "length": 20}, {"accuracy": 0.8, "length": 30},
        ...                {"accuracy": 0.9, "length": 40}], objs)
        [0, 2]
    """
    if not values:
        return []
    return non_dominated_sort([oriented(v, objectives) for v in values])[0]
