"""Keep a backend within a provider's limits: requests in flight, requests per second, tokens per minute.

The throttle sits below the retry layer, so every attempt, retries included,
passes through it. Requests are spaced evenly rather than sent in bursts
(``requests_per_second=5`` sends one every 200 ms), and a request is admitted
only while the replies received in the last 60 seconds used fewer tokens than
``tokens_per_minute`` (a reply's size is known only once it is back, so the
requests admitted just under the cap may end a little past it).
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from promptopt._loop import gather_or_cancel
from promptopt.backends._base import Backend, WrappingBackend
from promptopt.exceptions import ConfigError
from promptopt.types import Completion, LogProb, Request, ScoreRequest

__all__ = ["Throttle", "ThrottledBackend"]

T = TypeVar("T", Completion, LogProb)

WINDOW = 60.0  # seconds: the "minute" of tokens per minute


@dataclass(frozen=True, kw_only=True)
class Throttle:
    """Limits on the calls sent to one backend (None = no limit).

    Args:
        max_in_flight: requests sent and not yet answered.
        requests_per_second: requests started per second, spaced evenly.
        tokens_per_minute: tokens (prompt + completion) of replies per 60 s.
    """

    max_in_flight: int | None = None
    requests_per_second: float | None = None
    tokens_per_minute: int | None = None

    def __post_init__(self) -> None:
        for name, kind in (("max_in_flight", int), ("requests_per_second", (int, float)), ("tokens_per_minute", int)):
            value = getattr(self, name)
            if value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, kind) or not value > 0:
                flag = "--" + name.replace("_", "-")
                raise ConfigError(f"{name} must be a {'number' if name == 'requests_per_second' else 'whole number'}"
                                  f" > 0; got {value!r} (e.g. {flag} {5 if 'second' in name else 100000})")

    @property
    def limits(self) -> bool:
        return any(v is not None for v in (self.max_in_flight, self.requests_per_second, self.tokens_per_minute))


class ThrottledBackend(WrappingBackend):
    """Sends a batch's requests one by one, each when the :class:`Throttle` allows it."""

    def __init__(self, inner: Backend, throttle: Throttle) -> None:
        super().__init__(inner)
        self.throttle = throttle
        self._slots: asyncio.Semaphore | None = None
        self._gate: asyncio.Lock | None = None  # admissions happen one at a time, in arrival order
        self._next_start = 0.0
        self._tokens: deque[tuple[float, int]] = deque()  # (time received, tokens) of recent replies

    async def agenerate(self, requests: Sequence[Request]) -> list[Completion]:
        return await self._fan_out(requests, self.inner.agenerate)

    async def ascore(self, requests: Sequence[ScoreRequest]) -> list[LogProb]:
        return await self._fan_out(requests, self.inner.ascore)

    async def _fan_out(self, requests: Sequence[Any], send: Callable[[list[Any]], Awaitable[list[T]]]) -> list[T]:
        if self._gate is None:
            self._gate = asyncio.Lock()
            self._slots = asyncio.Semaphore(self.throttle.max_in_flight or 1_000_000)
        return await gather_or_cancel(self._one(r, send) for r in requests)

    async def _one(self, request: Any, send: Callable[[list[Any]], Awaitable[list[T]]]) -> T:
        assert self._slots is not None and self._gate is not None
        async with self._slots:
            async with self._gate:
                await self._admit()
            [answer] = await send([request])
        self._tokens.append((time.monotonic(), answer.prompt_tokens + getattr(answer, "completion_tokens", 0)))
        return answer

    async def _admit(self) -> None:
        """Wait for the next request slot in time and for the token window to have room."""
        t = self.throttle
        if t.requests_per_second is not None:
            now = time.monotonic()
            start = max(now, self._next_start)
            self._next_start = start + 1.0 / t.requests_per_second
            if start > now:
                await asyncio.sleep(start - now)
        if t.tokens_per_minute is not None:
            while True:
                now = time.monotonic()
                while self._tokens and self._tokens[0][0] <= now - WINDOW:
                    self._tokens.popleft()
                if sum(n for _, n in self._tokens) < t.tokens_per_minute:
                    return
                await asyncio.sleep(self._tokens[0][0] + WINDOW - now)  # until the oldest reply leaves the window
