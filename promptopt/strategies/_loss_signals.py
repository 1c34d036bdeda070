"""Loss and accuracy of candidate prompts on the same training examples, for loss-based search.

PMPO and PromptQuine rank candidates by one signal (the gold continuation's
loss, or the task metric) and, with ``record_both``, measure the other on the
same examples, so that a run's events show how well loss predicts accuracy.
Every measurement goes through ``ctx.loss`` / ``ctx.evaluate`` (memoized,
metered, logged as ``loss`` / ``evaluation`` events); a :class:`SignalMeter`
adds one ``signals`` event per prompt and example set with both numbers.

**Preference mode.** When every training example is a (chosen, rejected) pair
(:func:`~promptopt.tasks._preference.is_preference`), an example's loss is
PMPO's pairwise preference loss ``-log σ(β (log P(chosen) - log P(rejected)))``
over summed log-probabilities, instead of the chosen reply's mean token
cross-entropy. The rejected reply is scored as the gold continuation of a
*twin* example (same input, the rejected reply as target, id suffixed
``/rejected``), so it is one more ``ctx.loss`` call per pair.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from promptopt.tasks._preference import is_preference, rejected_text
from promptopt.types import Example

if TYPE_CHECKING:
    from promptopt.context import Context
    from promptopt.evaluator import LossResult
    from promptopt.prompt import Prompt

__all__ = ["Signal", "SignalMeter", "Signals", "preference_loss", "rejected_twin"]

Signal = Literal["loss", "accuracy"]
TWIN_SUFFIX = "/rejected"


def preference_loss(chosen_logprob: float, rejected_logprob: float, beta: float) -> float:
    """``-log σ(β (chosen - rejected))``, computed without overflow (log-probabilities summed over tokens).

    Example:
        >>> round(preference_loss(-1.0, -1.0, beta=1.0), 4)  # no preference: log 2
        0.6931
        >>> preference_loss(-1.0, -30.0, beta=1.0) < 1e-9
        True
    """
    z = beta * (chosen_logprob - rejected_logprob)
    return max(-z, 0.0) + math.log1p(math.exp(-abs(z)))


def rejected_twin(example: Example) -> Example:
    """The example whose gold continuation is ``example``'s rejected reply."""
    rejected = rejected_text(example)
    if rejected is None:
        raise ValueError(f"example {example.id!r} is not a preference pair (no rejected reply)")
    return Example(example.id + TWIN_SUFFIX, example.input, rejected, example.meta)


@dataclass(frozen=True)
class Signals:
    """One prompt on a set of examples.

    Attributes:
        prompt: the prompt.
        losses: each example's loss (token cross-entropy, or preference loss), in
            the examples' order; empty when the loss was not measured.
        accuracy: mean task metric on the same examples; None when not measured.
    """

    prompt: Prompt
    losses: tuple[float, ...]
    accuracy: float | None

    @property
    def loss(self) -> float | None:
        """Mean loss over the examples (None when not measured)."""
        return sum(self.losses) / len(self.losses) if self.losses else None


class SignalMeter:
    """Measures prompts' loss and accuracy on examples through ``ctx``; logs a ``signals`` event each.

    Args:
        ctx: the run's context.
        lead: the signal the strategy ranks by; always measured, and measured first.
        record_both: also measure the other signal on the same examples.
        beta: the preference loss's scale (preference mode only).
    """

    def __init__(self, ctx: Context, *, lead: Signal, record_both: bool, beta: float = 1.0) -> None:
        self.ctx, self.lead, self.record_both, self.beta = ctx, lead, record_both, beta
        self.preference = is_preference(ctx.train)
        self._logged: set[tuple[str, tuple[str, ...]]] = set()

    def measure(self, prompts: Sequence[Prompt], examples: Sequence[Example]) -> list[Signals]:
        """Each prompt's signals on ``examples`` (pairs measured before cost nothing)."""
        unique = list({p.id: p for p in prompts}.values())
        wanted = [self.lead, *([other(self.lead)] if self.record_both else [])]
        losses: dict[str, tuple[float, ...]] = {}
        accuracy: dict[str, float] = {}
        for signal in wanted:
            if signal == "loss":
                losses = dict(zip((p.id for p in unique), self.example_losses(unique, examples), strict=True))
            else:
                accuracy = {r.prompt.id: r.mean for r in self.ctx.evaluate(unique, examples)}
        measured = {p.id: Signals(p, losses.get(p.id, ()), accuracy.get(p.id)) for p in unique}
        self._log(list(measured.values()), examples)
        return [measured[p.id] for p in prompts]

    def example_losses(self, prompts: Sequence[Prompt], examples: Sequence[Example]) -> list[tuple[float, ...]]:
        """Per prompt, each example's loss: mean token cross-entropy of the gold continuation, or in
        preference mode the pairwise preference loss of the chosen over the rejected reply."""
        chosen = self.ctx.loss(prompts, examples)
        if not self.preference:
            return [tuple(e.loss for e in res.examples) for res in chosen]
        rejected = self.ctx.loss(prompts, [rejected_twin(ex) for ex in examples])
        return [tuple(preference_loss(*pair, beta=self.beta) for pair in _summed_pairs(good, bad))
                for good, bad in zip(chosen, rejected, strict=True)]

    def _log(self, measured: Sequence[Signals], examples: Sequence[Example]) -> None:
        key_ids = tuple(ex.id for ex in examples)
        for signals in measured:
            if (signals.prompt.id, key_ids) in self._logged:
                continue
            self._logged.add((signals.prompt.id, key_ids))
            self.ctx.note("signals", prompt_id=signals.prompt.id, n=len(examples), loss=signals.loss,
                          accuracy=signals.accuracy, preference=self.preference)


def other(signal: Signal) -> Signal:
    """The signal that is not ``signal``."""
    return "accuracy" if signal == "loss" else "loss"


def _summed_pairs(chosen: LossResult, rejected: LossResult) -> list[tuple[float, float]]:
    """(log P(chosen), log P(rejected)) per example, summed over tokens (loss × token count)."""
    return [(-good.loss * good.n_tokens, -bad.loss * bad.n_tokens)
            for good, bad in zip(chosen.examples, rejected.examples, strict=True)]
