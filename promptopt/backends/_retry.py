"""Retry transient backend failures with exponential backoff (tenacity).

Only errors marked ``retryable`` (rate limits, 5xx, timeouts, dropped
connections) are retried; a bad request or a missing key fails at once. A
``retry_after`` hint on the error (from a ``Retry-After`` header) is honoured.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from tenacity import AsyncRetrying, RetryCallState, retry_if_exception, stop_after_attempt

from promptopt._loop import gather_or_cancel
from promptopt.backends._base import Backend, WrappingBackend
from promptopt.exceptions import BackendError, ConfigError
from promptopt.types import Completion, LogProb, Request, ScoreRequest

__all__ = ["RetryPolicy", "RetryingBackend"]

T = TypeVar("T")


@dataclass(frozen=True, kw_only=True)
class RetryPolicy:
    """How transient failures are retried.

    Args:
        max_attempts: tries per request, the first included.
        initial_wait: first pause in seconds; it doubles on each retry (plus jitter).
        max_wait: longest pause between tries, in seconds; a server's
            ``Retry-After`` is honoured up to this.
    """

    max_attempts: int = 6
    initial_wait: float = 0.5
    max_wait: float = 30.0

    def __post_init__(self) -> None:
        if not isinstance(self.max_attempts, int) or isinstance(self.max_attempts, bool) or self.max_attempts < 1:
            raise ConfigError(f"the max_attempts of RetryPolicy must be an int >= 1; got {self.max_attempts!r}")
        for name in ("initial_wait", "max_wait"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
                raise ConfigError(f"the {name} of RetryPolicy must be a number >= 0; got {value!r}")


def _is_transient(exc: BaseException) -> bool:
    return isinstance(exc, BackendError) and exc.retryable


class RetryingBackend(WrappingBackend):
    """Wraps a backend and retries transient failures.

    Backends that serve requests concurrently are retried per request, so one
    failure does not resend its neighbours; engines that take a batch in one
    call (llama.cpp, vLLM) are retried per batch.

    Args:
        inner: the backend to wrap.
        max_attempts: tries per request, the first included.
        max_wait: longest pause between tries, in seconds.
    """

    def __init__(self, inner: Backend, *, max_attempts: int = 6, max_wait: float = 30.0,
                 initial_wait: float = 0.5) -> None:
        super().__init__(inner)
        self.max_attempts, self.max_wait, self.initial_wait = max_attempts, max_wait, initial_wait

    def _pause(self, exc: BaseException | None, attempt_number: int) -> float:
        hint = getattr(exc, "retry_after", None)
        if isinstance(hint, (int, float)) and hint >= 0:
            return float(min(hint, self.max_wait))
        # Exponential backoff with jitter, so many clients do not retry in step.
        backoff = self.initial_wait * 2 ** (attempt_number - 1)
        return float(min(self.max_wait, backoff + random.uniform(0, self.initial_wait)))

    async def _call(self, fn: Callable[[], Awaitable[T]]) -> T:
        # The first attempt runs bare: tenacity's machinery costs tens of microseconds a call,
        # and almost every call succeeds at once. Only a transient failure enters the retry loop.
        try:
            return await fn()
        except Exception as exc:
            if not _is_transient(exc) or self.max_attempts <= 1:
                raise
            await asyncio.sleep(self._pause(exc, 1))

        def wait(state: RetryCallState) -> float:
            exc = state.outcome.exception() if state.outcome else None
            return self._pause(exc, state.attempt_number + 1)

        async for attempt in AsyncRetrying(
            retry=retry_if_exception(_is_transient), stop=stop_after_attempt(self.max_attempts - 1),
            wait=wait, reraise=True,
        ):
            with attempt:
                return await fn()
        raise AssertionError("unreachable")  # pragma: no cover

    async def _fan_out(self, requests: Sequence[Any], send: Callable[[list[Any]], Awaitable[list[T]]]) -> list[T]:
        if self.capabilities.max_concurrency <= 1 or self.capabilities.batches:
            return await self._call(lambda: send(list(requests)))

        async def one(req: Any) -> T:
            return (await self._call(lambda: send([req])))[0]

        return await gather_or_cancel(one(r) for r in requests)

    async def agenerate(self, requests: Sequence[Request]) -> list[Completion]:
        return await self._fan_out(requests, self.inner.agenerate)

    async def ascore(self, requests: Sequence[ScoreRequest]) -> list[LogProb]:
        return await self._fan_out(requests, self.inner.ascore)

    # a tokenizer served over HTTP (a vLLM server's /tokenize) fails transiently like any request
    async def atokenize(self, texts: Sequence[str]) -> list[list[int]]:
        return await self._call(lambda: self.inner.atokenize(texts))

    async def adetokenize(self, ids: Sequence[Sequence[int]]) -> list[str]:
        return await self._call(lambda: self.inner.adetokenize(ids))

    async def avocabulary(self) -> list[str]:
        return await self._call(self.inner.avocabulary)
