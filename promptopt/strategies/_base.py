"""The strategy contract.

A strategy is a search algorithm. Its constructor only stores keyword-only
hyper-parameters (``get_params`` reads them back from the signature); the
search happens in :meth:`Strategy.optimize`, which talks to the world only
through the :class:`~promptopt.context.Context` it is given.

Call order, driven by the Run: ``validate()`` before any call, then one
``optimize(ctx)``. When the budget runs out, ``ctx`` raises
:class:`~promptopt.exceptions.BudgetExhausted`; the Run catches it and keeps
the best prompt found so far, so a strategy never counts its own calls.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, ClassVar

from promptopt.strategies._params import get_params, validate_params

if TYPE_CHECKING:
    from promptopt.backends._base import Backend
    from promptopt.context import Context
    from promptopt.prompt import Prompt

__all__ = ["Strategy"]


class Strategy(ABC):
    """Base class of every search strategy."""

    #: registry name, e.g. ``"apo"``
    name: ClassVar[str] = ""
    #: one line for ``promptopt strategies``
    summary: ClassVar[str] = ""
    #: parameter name -> constraint (or tuple of alternatives), see ``_params``
    constraints: ClassVar[dict[str, Any]] = {}
    #: True when the strategy needs backend log-probabilities (``ctx.loss``)
    needs_score: ClassVar[bool] = False
    #: True when the strategy needs the target model's tokenizer (``ctx.tokenizer``)
    needs_tokenizer: ClassVar[bool] = False
    #: True when it also needs the whole vocabulary (``ctx.tokenizer.vocabulary()``)
    needs_vocabulary: ClassVar[bool] = False
    #: True when it can search a set of tasks: it rewrites only ``ctx.text(prompt)`` through
    #: ``ctx.with_text`` (the shared system prompt on a set), never a field by name
    supports_task_sets: ClassVar[bool] = False

    def get_params(self) -> dict[str, Any]:
        """Hyper-parameters by name, as given to the constructor."""
        return get_params(self)

    def finalist_gap(self, n_dev: int) -> int | None:
        """Dev examples a candidate this strategy scored on part of a dev split of ``n_dev``
        examples may still lack. When positive, the Run keeps back the target calls to score
        them, so that the best partly scored candidate can still be scored on all of dev when
        the budget stops the search. 0 for a strategy that never leaves a candidate partly
        scored (kept calls would only be lost); None (the default) when the strategy does not
        say: nothing is kept back unless asked, and then a whole dev evaluation."""
        return None

    def check_backend(self, backend: Backend, answer_mode: str | None = None) -> None:
        """Raise CapabilityError, before any call, naming what the target backend lacks for this strategy.

        The Run calls it once the answer mode is known (``answer_mode``), before the seed is
        scored; a strategy whose settings exist only in one mode refuses the other here too.
        """
        from promptopt.backends._base import SCORING_BACKENDS, TOKENIZING_BACKENDS, VOCABULARY_BACKENDS
        from promptopt.exceptions import CapabilityError

        missing = []
        if self.needs_score and not backend.capabilities.score:
            missing.append(f"log-probabilities (score): {SCORING_BACKENDS}")
        if self.uses_tokenizer() and not backend.capabilities.tokenize:
            missing.append(f"its tokenizer (tokenize): {TOKENIZING_BACKENDS}")
        elif self.uses_vocabulary() and not backend.capabilities.vocabulary:
            missing.append(f"its whole vocabulary (vocabulary): {VOCABULARY_BACKENDS}")
        if missing:
            raise CapabilityError(f"strategy {self.name!r} needs {' and '.join(missing)}; "
                                  f"{backend.model_string} has not; use one of those backends")

    def uses_tokenizer(self) -> bool:
        """Whether this instance, with its parameters, needs the tokenizer (``needs_tokenizer`` by default)."""
        return self.needs_tokenizer or self.uses_vocabulary()

    def uses_vocabulary(self) -> bool:
        """Whether this instance needs the whole vocabulary (``needs_vocabulary`` by default)."""
        return self.needs_vocabulary

    def validate(self) -> None:
        """Check every declared constraint; raise ConfigError on the first violation."""
        validate_params(type(self).__name__, self.get_params(), self.constraints)

    @abstractmethod
    def optimize(self, ctx: Context) -> Sequence[Prompt]:
        """Search, and return the final candidates (best first) for the Run to pick from."""

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
        return f"{type(self).__name__}({args})"
