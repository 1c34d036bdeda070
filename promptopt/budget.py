"""Budgets, usage accounting and the metering backend wrapper.

A :class:`Budget` caps what a search may spend. The :class:`Meter` counts every
call per role (``target`` or ``optimizer``) and refuses a batch *before* it is
sent when the batch would cross a cap, so no call is ever made past one.

Calls answered from the cache count toward the caps like paid ones: a resumed
or repeated run then follows exactly the same trajectory as the first one
(resume is replay), while ``paid_calls`` shows what was really sent this time.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from promptopt.backends._base import Backend, WrappingBackend
from promptopt.exceptions import BudgetExhausted, ConfigError
from promptopt.types import Completion, LogProb, Request, Role, ScoreRequest

__all__ = ["Budget", "Meter", "MeteredBackend", "RoleUsage", "Usage"]


@dataclass(frozen=True, kw_only=True)
class Budget:
    """Caps on what one search may spend; ``None`` means no cap.

    Args:
        target_calls: calls to the model being optimised (one per generated
            reply, one per scored continuation).
        optimizer_calls: calls to the optimizer model (proposals, critiques).
        tokens: prompt + completion tokens over both roles.
        target_tokens: prompt + completion tokens of the target model alone (a
            scored continuation counts its prompt and its own tokens), so that
            choice, generate and loss-based runs can be held to the same model work.
        usd: dollars over both roles (backends that report a price).
        seconds: wall time of the search.

    Example:
        >>> Budget(target_calls=400)
        Budget(target_calls=400, optimizer_calls=None, tokens=None, target_tokens=None, usd=None, seconds=None)
    """

    target_calls: int | None = None
    optimizer_calls: int | None = None
    tokens: int | None = None
    target_tokens: int | None = None
    usd: float | None = None
    seconds: float | None = None

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
                raise ConfigError(
                    f"the {f.name!r} cap of Budget must be a number >= 0 or None; got {value!r} "
                    f"(e.g. --budget-{f.name.replace('_', '-')} 100)")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class RoleUsage:
    """What one role has spent."""

    calls: int = 0
    paid_calls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    usd: float = 0.0

    @property
    def tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


@dataclass
class Usage:
    """Spend per role; ``calls`` includes cache replays, ``paid_calls`` does not."""

    target: RoleUsage = field(default_factory=RoleUsage)
    optimizer: RoleUsage = field(default_factory=RoleUsage)

    def role(self, role: Role) -> RoleUsage:
        return self.target if role == "target" else self.optimizer

    @property
    def tokens(self) -> int:
        return self.target.tokens + self.optimizer.tokens

    @property
    def usd(self) -> float:
        return self.target.usd + self.optimizer.usd

    @property
    def paid_calls(self) -> int:
        return self.target.paid_calls + self.optimizer.paid_calls

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for name, u in (("target", self.target), ("optimizer", self.optimizer)):
            out[name] = {**asdict(u), "tokens": u.tokens}
        return out


class Meter:
    """Counts calls and tokens, and enforces a :class:`Budget` before each batch.

    ``enforce`` is switched off by the Run for the final test evaluation, which
    is reported separately and never cut short.

    Token and dollar caps are known only from answers. Inside :meth:`one_call`
    (a strategy's ``ctx.evaluate``, ``ctx.loss`` or ``ctx.propose``) they are
    checked once, when the call starts, not before each of its batches: the
    batches of one call run concurrently, and on a rerun from the cache their
    answers come back at once, so a check per batch would admit a different
    number of them the second time and resume would not be replay.
    """

    def __init__(self, budget: Budget | None = None, *, clock: Any = time.monotonic) -> None:
        self.budget = budget or Budget()
        self.usage = Usage()
        self.enforce = True
        #: target calls the strategy may not spend: kept for the Run to score its finalists on all of dev
        self.held_back = 0
        #: called after every answered call (progress displays); must be cheap
        self.listener: Callable[[], None] | None = None
        self._clock = clock
        self._started = clock()
        self._in_call = False

    def elapsed(self) -> float:
        return float(self._clock() - self._started)

    def check(self, role: Role, n_calls: int) -> None:
        """Raise :class:`BudgetExhausted` if ``n_calls`` more calls would cross a cap."""
        if not self.enforce or n_calls == 0:
            return
        b, used = self.budget, self.usage.role(role)
        cap = b.target_calls if role == "target" else b.optimizer_calls
        held = self.held_back if role == "target" else 0
        if cap is not None and used.calls + n_calls > cap - held:
            kept = f" ({held} kept back to finish scoring the best candidates on dev)" if held else ""
            raise BudgetExhausted(f"{role} call cap {cap}{kept}: {used.calls} used, the next batch needs "
                                  f"{n_calls} more", cap=f"{role}_calls")
        if not self._in_call:
            self.check_spend(role)
        if b.seconds is not None and self.elapsed() >= b.seconds:
            raise BudgetExhausted(f"wall-time cap {b.seconds}s reached", cap="seconds")

    def check_spend(self, role: Role) -> None:
        """Raise :class:`BudgetExhausted` if a token or dollar cap is reached (``role``'s own included)."""
        if not self.enforce:
            return
        b, used = self.budget, self.usage.role(role)
        if b.tokens is not None and self.usage.tokens >= b.tokens:
            raise BudgetExhausted(f"token cap {b.tokens} reached ({self.usage.tokens} used)", cap="tokens")
        if role == "target" and b.target_tokens is not None and used.tokens >= b.target_tokens:
            raise BudgetExhausted(f"target token cap {b.target_tokens} reached ({used.tokens} used)",
                                  cap="target_tokens")
        if b.usd is not None and self.usage.usd >= b.usd:
            raise BudgetExhausted(f"dollar cap {b.usd} reached", cap="usd")

    @contextmanager
    def one_call(self, role: Role) -> Iterator[None]:
        """Check the token and dollar caps once, now, for every batch sent inside the block."""
        self.check_spend(role)
        self._in_call = True
        try:
            yield
        finally:
            self._in_call = False

    def reserve(self, role: Role, n_calls: int) -> None:
        """Count ``n_calls`` more calls, or raise :class:`BudgetExhausted` if that would cross a cap.

        Calls are counted when reserved, not when answered, so concurrent
        batches can never overshoot a cap together.
        """
        self.check(role, n_calls)
        self.usage.role(role).calls += n_calls

    def add(self, role: Role, *, cached: bool, prompt_tokens: int, completion_tokens: int,
            usd: float = 0.0) -> None:
        """Record what one reserved call cost once it has been answered."""
        u = self.usage.role(role)
        u.paid_calls += 0 if cached else 1
        u.prompt_tokens += prompt_tokens
        u.completion_tokens += completion_tokens
        u.usd += usd
        if self.listener is not None:
            self.listener()


class MeteredBackend(WrappingBackend):
    """Wraps a backend: reserves budget for each batch, then counts what came back.

    A batch mixing roles is reserved per role. Requests are never split: a batch
    that does not fit is refused whole, before anything is sent.
    """

    def __init__(self, inner: Backend, meter: Meter) -> None:
        super().__init__(inner)
        self.meter = meter

    def _reserve(self, roles: Sequence[Role]) -> None:
        counts = {role: sum(1 for r in roles if r == role) for role in ("target", "optimizer")}
        for role, n in counts.items():  # check every cap before counting anything
            self.meter.check(role, n)  # type: ignore[arg-type]
        for role, n in counts.items():
            self.meter.reserve(role, n)  # type: ignore[arg-type]

    async def agenerate(self, requests: Sequence[Request]) -> list[Completion]:
        self._reserve([r.role for r in requests])
        out = await self.inner.agenerate(requests)
        for req, c in zip(requests, out, strict=False):
            self.meter.add(req.role, cached=c.cached, prompt_tokens=c.prompt_tokens,
                           completion_tokens=c.completion_tokens, usd=c.usd)
        return out

    async def ascore(self, requests: Sequence[ScoreRequest]) -> list[LogProb]:
        self._reserve([r.role for r in requests])
        out = await self.inner.ascore(requests)
        for req, lp in zip(requests, out, strict=False):
            self.meter.add(req.role, cached=lp.cached, prompt_tokens=lp.prompt_tokens,
                           completion_tokens=0)
        return out
