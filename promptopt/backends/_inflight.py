"""Identical requests in flight at the same time are sent once.

Two batches running concurrently (say, two candidates that came out identical,
or an optimizer asked the same thing twice) may ask for the same answer. The
first to ask sends the request; the others wait for its answer, which reaches
them marked ``cached=True`` so the meter does not count it as paid twice. This
holds with or without the response cache: the cache merges requests it has
answered before, this layer merges requests still on the wire.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import replace
from typing import Any, TypeVar

from promptopt.backends._base import Backend
from promptopt.types import Completion, LogProb, Request, ScoreRequest

__all__ = ["DedupingBackend"]

T = TypeVar("T", Completion, LogProb)


class DedupingBackend(Backend):
    """Sends each distinct request once while it is in flight; repeats await the first's answer.

    If the first asker's request fails, every waiter gets the same error (it was
    the same request); if the first asker is cancelled, the waiters send it
    themselves.
    """

    def __init__(self, inner: Backend) -> None:
        self.inner = inner
        self.name, self.model = inner.name, inner.model
        self.capabilities = inner.capabilities
        self._flights: dict[Any, asyncio.Future[Any]] = {}

    def identity(self) -> dict[str, Any]:
        return self.inner.identity()

    async def agenerate(self, requests: Sequence[Request]) -> list[Completion]:
        return await self._through(requests, self.inner.agenerate)

    async def ascore(self, requests: Sequence[ScoreRequest]) -> list[LogProb]:
        return await self._through(requests, self.inner.ascore)

    async def _through(self, requests: Sequence[Any], send: Callable[[list[Any]], Awaitable[list[T]]]) -> list[T]:
        if len(requests) == 1 and requests[0] not in self._flights:
            # the common case (the cache sends its misses one at a time): one request, nobody else asking
            return await self._lead([requests[0]], send)
        # A frozen request is its own key here (one backend, one process): no JSON, no SHA-256 per call.
        answers: dict[Any, T] = {}
        pending = list(dict.fromkeys(requests))  # distinct, in order
        while pending:  # more than one pass only when a request we waited for was cancelled
            follow = {k: self._flights[k] for k in pending if k in self._flights}
            lead = [k for k in pending if k not in follow]
            if lead:
                answers.update(zip(lead, await self._lead(lead, send), strict=True))
            for key, flight in follow.items():
                try:
                    answers[key] = replace(await asyncio.shield(flight), cached=True)
                except asyncio.CancelledError:
                    if not flight.cancelled():
                        raise  # we were cancelled ourselves
                    continue  # its sender was cancelled: send it on the next pass
            pending = [k for k in pending if k not in answers]
        out: list[T] = []
        for key in requests:
            answer = answers[key]
            out.append(answer)
            answers[key] = replace(answer, cached=True)  # a repeat within this batch was not paid again
        return out

    async def _lead(self, lead: list[Any], send: Callable[[list[Any]], Awaitable[list[T]]]) -> list[T]:
        """Send ``lead`` (distinct requests nobody else has in flight), answering whoever waits on them."""
        loop = asyncio.get_running_loop()
        flights = [loop.create_future() for _ in lead]
        self._flights.update(zip(lead, flights, strict=True))
        try:
            answers = await send(lead)
        except asyncio.CancelledError:
            for flight in flights:
                flight.cancel()
            raise
        except BaseException as exc:
            for flight in flights:
                flight.set_exception(exc)
                flight.exception()  # retrieved: no "never retrieved" warning when nobody waited
            raise
        finally:
            for key in lead:
                self._flights.pop(key, None)
        for flight, answer in zip(flights, answers, strict=True):
            flight.set_result(answer)
        return answers

    async def aclose(self) -> None:
        await self.inner.aclose()
