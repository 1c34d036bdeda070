"""Identical requests in flight at the same time are sent once.

Two batches running concurrently (say, two candidates that came out identical,
or an optimizer asked the same thing twice) may ask for the same answer. The
first to ask sends the request; the others wait for its answer, which reaches
them marked ``cached=True`` so the meter does not count it as paid twice.
:class:`Flights` holds these rules; the response cache uses it by cache key
(covering a request from its miss until its answer is stored), and
:class:`DedupingBackend` by request where there is no cache.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Hashable, Iterable, Mapping, Sequence
from dataclasses import replace
from typing import Any, Generic, TypeVar

from promptopt.backends._base import Backend
from promptopt.types import Completion, LogProb, Request, ScoreRequest

__all__ = ["DedupingBackend", "Flights", "Lead"]

K = TypeVar("K", bound=Hashable)
T = TypeVar("T", Completion, LogProb)


class Lead(Generic[K]):
    """The keys one asker sends for everyone: it hands each key's answer, or error, to whoever waits."""

    def __init__(self, flights: dict[K, asyncio.Future[Any]], ours: dict[K, asyncio.Future[Any]],
                 answers: dict[K, Any]) -> None:
        self._flights, self._ours, self._answers = flights, ours, answers

    def answer(self, key: K, value: Any) -> None:
        self._answers[key] = value
        self._release(key).set_result(value)

    def fail(self, keys: Iterable[K], error: BaseException) -> None:
        """These keys were sent and failed: their waiters get the same error (it was the same request)."""
        for key in keys:
            future = self._release(key)
            future.set_exception(error)
            future.exception()  # retrieved: no "never retrieved" warning when nobody waited

    def abandon(self) -> list[K]:
        """The keys neither answered nor failed (not sent, or the asker was cancelled): their waiters send them."""
        left = [key for key, future in self._ours.items() if not future.done()]
        for key in left:
            self._release(key).cancel()
        return left

    def _release(self, key: K) -> asyncio.Future[Any]:
        future = self._ours[key]
        if self._flights.pop(key, future) is not future:  # an invariant: only its leader removes a key
            raise RuntimeError(f"{key!r} is led by another asker")
        return future


class Flights(Generic[K]):
    """Answers on their way, by key: the first asker sends; later askers await its answer."""

    def __init__(self) -> None:
        self._futures: dict[K, asyncio.Future[Any]] = {}

    async def fetch(self, wanted: Mapping[K, Any], send: Callable[[Mapping[K, Any], Lead[K]], Awaitable[None]]
                    ) -> dict[K, Any]:
        """The answers to ``wanted`` (distinct key -> request).

        Keys nobody has in flight go to ``send(requests, lead)``, which calls
        ``lead.answer`` as each answer arrives (or ``lead.fail`` for keys whose
        call failed) before it returns or raises. The other keys' answers come
        from whoever sends them, marked ``cached=True``; if that asker was
        cancelled, or stopped before sending the key, it is sent here.
        """
        answers: dict[K, Any] = {}
        pending = wanted
        while pending:  # more than one pass only when a key we waited for was abandoned
            loop = asyncio.get_running_loop()
            futures = self._futures
            ours: dict[K, asyncio.Future[Any]] = {}
            theirs: dict[K, asyncio.Future[Any]] = {}
            for key in pending:
                future = futures.get(key)
                if future is None:
                    ours[key] = futures[key] = loop.create_future()
                else:
                    theirs[key] = future
            if ours:
                lead = Lead(futures, ours, answers)
                try:
                    await send(pending if not theirs else {key: pending[key] for key in ours}, lead)
                finally:
                    unanswered = lead.abandon()
                if unanswered:  # a sender that returns must settle every key; sending again would loop
                    raise RuntimeError(f"{len(unanswered)} requests were sent without an answer or an error")
            again = []
            for key, future in theirs.items():
                try:
                    answers[key] = replace(await asyncio.shield(future), cached=True)
                except asyncio.CancelledError:
                    if not future.cancelled():
                        raise  # we were cancelled ourselves
                    again.append(key)
            pending = {key: pending[key] for key in again}
        return answers


class DedupingBackend(Backend):
    """Sends each distinct request once while it is in flight; repeats await the first's answer.

    If the first asker's request fails, every waiter gets the same error (it was
    the same request); if the first asker is cancelled, the waiters send it
    themselves. (With the response cache on, the cache does this by key and
    this layer is left out.)
    """

    def __init__(self, inner: Backend) -> None:
        self.inner = inner
        self.name, self.model = inner.name, inner.model
        self.capabilities = inner.capabilities
        self._flights: Flights[Any] = Flights()

    def identity(self) -> dict[str, Any]:
        return self.inner.identity()

    async def agenerate(self, requests: Sequence[Request]) -> list[Completion]:
        return await self._through(requests, self.inner.agenerate)

    async def ascore(self, requests: Sequence[ScoreRequest]) -> list[LogProb]:
        return await self._through(requests, self.inner.ascore)

    async def _through(self, requests: Sequence[Any], send: Callable[[list[Any]], Awaitable[list[T]]]) -> list[T]:
        async def send_all(wanted: Mapping[Any, Any], lead: Lead[Any]) -> None:
            try:
                answers = await send(list(wanted))
            except asyncio.CancelledError:
                raise  # abandoned: the waiters send it themselves
            except BaseException as exc:
                lead.fail(wanted, exc)
                raise
            for key, answer in zip(wanted, answers, strict=True):
                lead.answer(key, answer)

        # A frozen request is its own key here (one backend, one process): no JSON, no SHA-256 per call.
        wanted = dict.fromkeys(requests)
        answers = await self._flights.fetch(wanted, send_all)
        if len(wanted) == len(requests):  # no repeats in the batch (the usual case): no copies to mark
            return [answers[key] for key in requests]
        out: list[T] = []
        for key in requests:
            answer = answers[key]
            out.append(answer)
            answers[key] = replace(answer, cached=True)  # a repeat within this batch was not paid again
        return out

    async def aclose(self) -> None:
        await self.inner.aclose()
