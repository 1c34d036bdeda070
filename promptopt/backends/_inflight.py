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

from promptopt.backends._base import Backend, WrappingBackend
from promptopt.types import Completion, LogProb, Request, ScoreRequest

__all__ = ["DedupingBackend", "Flights", "Lead"]

K = TypeVar("K", bound=Hashable)
T = TypeVar("T", Completion, LogProb)


class _Batch:
    """Shared by one fetch and the re-asks it makes: whether a request it sent or waits on has failed."""

    __slots__ = ("failed",)

    def __init__(self) -> None:
        self.failed = False

    def note(self, future: asyncio.Future[Any]) -> None:
        # A done callback: it runs before a send slot the failed sender frees wakes the next sender.
        if not future.cancelled() and future.exception() is not None:
            self.failed = True


class Lead(Generic[K]):
    """The keys one asker sends for everyone: it hands each key's answer, or error, to whoever waits.

    ``again`` is True when these keys were sent before by an asker who gave up
    (their answer may have been stored since). ``batch.failed`` turns True once
    a request the same batch sent or waits on has failed: the batch will fail,
    so a sender should start nothing new.
    """

    def __init__(self, flights: dict[K, asyncio.Future[Any]], ours: dict[K, asyncio.Future[Any]],
                 answers: dict[K, Any], *, again: bool, batch: _Batch) -> None:
        self._flights, self._ours, self._answers = flights, ours, answers
        self.again, self.batch = again, batch

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
        led_now = self._flights.pop(key, future)
        if led_now is not future:  # someone else leads it now: leave theirs in place
            self._flights[key] = led_now
        return future


class Flights(Generic[K]):
    """Answers on their way, by key: the first asker sends; later askers await its answer."""

    def __init__(self) -> None:
        self._futures: dict[K, asyncio.Future[Any]] = {}

    async def fetch(self, wanted: Mapping[K, Any], send: Callable[[Mapping[K, Any], Lead[K]], Awaitable[None]],
                    *, again: bool = False, batch: _Batch | None = None) -> dict[K, Any]:
        """The answers to ``wanted`` (distinct key -> request).

        Keys nobody has in flight go to ``send(requests, lead)``, which calls
        ``lead.answer`` as each answer arrives (or ``lead.fail`` for keys whose
        call failed) before it returns or raises. The other keys' answers come
        from whoever sends them, marked ``cached=True``, or their error; a key
        whose sender gave up (cancelled, or stopped before sending it) is asked
        for again at once. Our own call's error is raised at once; another's
        once the requests we have on the wire are back and stored.
        """
        loop = asyncio.get_running_loop()
        futures = self._futures
        ours: dict[K, asyncio.Future[Any]] = {}
        theirs: dict[K, asyncio.Future[Any]] = {}
        for key in wanted:
            future = futures.get(key)
            if future is None:
                ours[key] = futures[key] = loop.create_future()
            else:
                theirs[key] = future
        answers: dict[K, Any] = {}
        batch = batch or _Batch()
        lead = Lead(futures, ours, answers, again=again, batch=batch)
        if not theirs:  # the usual case: nobody else is asking for any of these
            await self._lead(wanted, lead, send)
            return answers
        follows = [asyncio.ensure_future(self._follow(key, future, wanted[key], send, answers, batch))
                   for key, future in theirs.items()]
        try:
            if ours:  # our own failure is raised at once; a followed key's failure lets our sends on the wire finish
                await self._lead({key: wanted[key] for key in ours}, lead, send)
            outcomes = await asyncio.gather(*follows, return_exceptions=True)
        finally:
            for follow in follows:
                follow.cancel()  # a sender followed goes on for its other askers; a re-ask stops, its waiters ask again
            await asyncio.gather(*follows, return_exceptions=True)  # settled, exceptions retrieved
        for outcome in outcomes:
            if isinstance(outcome, BaseException):
                raise outcome
        return answers

    @staticmethod
    async def _lead(requests: Mapping[K, Any], lead: Lead[K],
                    send: Callable[[Mapping[K, Any], Lead[K]], Awaitable[None]]) -> None:
        try:
            await send(requests, lead)
        except Exception:
            lead.batch.failed = True
            raise
        finally:
            unanswered = lead.abandon()
        if unanswered and not lead.batch.failed:  # a sender must settle every key; asking again would loop
            raise RuntimeError(f"{len(unanswered)} requests were sent without an answer or an error")

    async def _follow(self, key: K, future: asyncio.Future[Any], request: Any,
                      send: Callable[[Mapping[K, Any], Lead[K]], Awaitable[None]], answers: dict[K, Any],
                      batch: _Batch) -> None:
        future.add_done_callback(batch.note)
        # asyncio.wait, not shield: it raises only if we are cancelled ourselves, never for the sender's cancellation.
        await asyncio.wait((future,))
        if not future.cancelled():
            answers[key] = replace(future.result(), cached=True)  # or the sender's error
        elif not batch.failed:  # its sender gave up: lead it ourselves, or follow whoever leads it now
            try:
                answers[key] = (await self.fetch({key: request}, send, again=True, batch=batch))[key]
            except Exception:
                batch.failed = True
                raise
        # else: the batch fails with an error one of its steps raised; asking again would pay for nothing


class DedupingBackend(WrappingBackend):
    """Sends each distinct request once while it is in flight; repeats await the first's answer.

    If the first asker's request fails, every waiter gets the same error (it was
    the same request); if the first asker is cancelled, the waiters send it
    themselves. (With the response cache on, the cache does this by key and
    this layer is left out.)
    """

    def __init__(self, inner: Backend) -> None:
        super().__init__(inner)
        self._flights: Flights[Any] = Flights()

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
