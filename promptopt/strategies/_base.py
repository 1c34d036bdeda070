"""The strategy contract.

A strategy is a search algorithm. Its constructor only stores keyword-only
hyper-parameters (``get_params`` reads them back from the signature); the
search happens in :meth:`Strategy.optimize`, which talks to the world only
through the :class:`~promptopt.context.Context` it is given.

Call order, driven by the Run: ``validate()`` before any call, then one
``optimize(ctx)``. When the budget runs out, ``ctx`` raises
:class:`~promptopt.exceptions.BudgetExhausted`; the Run catches it and keeps
the best prompt found so far, so a strategy never counts its own calls.

A strategy may also say what one step of its loop costs (:meth:`Strategy.step_plan`),
so that :func:`promptopt.estimate` (``--dry-run``) can tell how much of the loop a
budget pays for before anything is spent, and which parameters set that cost
(:attr:`Strategy.scalable`), so that a run can shrink them to fit its budget
(``promptopt.strategies._scaling``).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from promptopt.strategies._params import get_params, validate_params

if TYPE_CHECKING:
    from promptopt.backends._base import Backend
    from promptopt.context import Context
    from promptopt.prompt import Prompt

__all__ = ["Scalable", "Spend", "StepPlan", "Strategy"]


@dataclass(frozen=True)
class Spend:
    """What a part of a search spends, in the units a strategy knows (planning figures, not caps).

    Attributes:
        example_evals: target-model example evaluations, one prompt on one example (in
            choice mode each costs one call per label; the estimate knows how many).
        loss_calls: gold continuations scored (``ctx.loss``), one target call each.
        optimizer_calls: optimizer-model calls (one per reply asked for).
        new_full: new candidates scored on all of dev, which the Run can pick.
    """

    example_evals: float = 0.0
    loss_calls: float = 0.0
    optimizer_calls: float = 0.0
    new_full: float = 0.0


@dataclass(frozen=True)
class StepPlan:
    """What one full step of a strategy's loop costs, worked out from its parameters.

    A full step is one in which every proposal is usable and new (a full beam or
    population, every child scored); a strategy that scores only new bests on
    dev counts one per step. The Run's seed evaluation on dev is not included:
    the estimate adds it.

    Attributes:
        unit: what a step is called (``"round"``, ``"step"``, ``"iteration"``, ...).
        per_step: one full step.
        paper_steps: steps the paper's loop runs with these parameters; None when it
            runs until the budget ends.
        setup: paid once before step 1 (an initial population, a bootstrap pass).
        finish: paid once after the last step (finalists scored on dev).

    Example:
        >>> plan = StepPlan("step", Spend(example_evals=240, optimizer_calls=8, new_full=8), paper_steps=200)
        >>> plan.per_step.new_full, plan.setup
        (8, Spend(example_evals=0.0, loss_calls=0.0, optimizer_calls=0.0, new_full=0.0))
    """

    unit: str
    per_step: Spend
    paper_steps: int | None
    setup: Spend = field(default_factory=Spend)
    finish: Spend = field(default_factory=Spend)


@dataclass(frozen=True)
class Scalable:
    """A parameter that sets the size of one step, which a run may shrink to fit its budget.

    Attributes:
        name: the constructor parameter (a whole number).
        minimum: the smallest value that still runs the algorithm as meant (a beam of one, a
            score set of ten examples); scaling never goes below it.
        stage: parameters of a lower stage shrink first, all the way to their minimums, before
            those of the next stage start; parameters of one stage shrink together, in proportion.

    Example:
        >>> Scalable("n_score", 10), Scalable("population_size", 3, stage=1)
        (Scalable(name='n_score', minimum=10, stage=0), Scalable(name='population_size', minimum=3, stage=1))
    """

    name: str
    minimum: int
    stage: int = 0


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
    #: the parameters that set one step's cost, in the order a run shrinks them to fit its budget
    scalable: ClassVar[tuple[Scalable, ...]] = ()
    #: True when it can search a set of tasks: it rewrites only ``ctx.text(prompt)`` through
    #: ``ctx.with_text`` (the shared system prompt on a set), never a field by name
    supports_task_sets: ClassVar[bool] = False
    #: the fewest tasks it can search (2 for one that learns from several tasks at once, MetaSPO);
    #: the Run checks it before any call
    min_tasks: ClassVar[int] = 1

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

    def step_plan(self, n_dev: int, n_train: int, *, n_tasks: int = 1) -> StepPlan | None:
        """What one full step of this strategy's loop costs with its current parameters, on a
        task with ``n_dev`` dev and ``n_train`` training examples. None (the default) when the
        strategy does not say; ``--dry-run`` then shows no plan.

        On a set of tasks, ``n_dev`` and ``n_train`` count every task's examples together and
        ``n_tasks`` says how many tasks share them (the estimate passes it only on a set of two or
        more, so a plan written before sets is still called as it was). A strategy whose draws are
        totals over the set (a minibatch of 64 spread over the tasks) ignores it; one that draws a
        number per task, or loops over the tasks, needs it.
        """
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
