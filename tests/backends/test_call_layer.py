"""The shared call layer: identical in-flight requests merged, and the throttle (in flight, per second, per minute)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from promptopt import Budget
from promptopt.backends import Backend, CachedBackend, Capabilities, ResponseCache, RetryingBackend
from promptopt.backends._inflight import DedupingBackend
from promptopt.backends._throttle import Throttle, ThrottledBackend
from promptopt.exceptions import BackendError, ConfigError
from promptopt.session import Session
from promptopt.testing.fault_server import FaultPlan, run_fault_server
from promptopt.types import Completion, Message, Request


def ask(text: str) -> Request:
    return Request(messages=(Message("user", text),), max_tokens=8)


class Recorder(Backend):
    """Answers after ``delay`` seconds with ``tokens`` prompt tokens; records start times and concurrency."""

    name, model = "recorder", "r"

    def __init__(self, delay: float = 0.05, tokens: int = 10, fail: Exception | None = None) -> None:
        self.delay, self.tokens, self.fail = delay, tokens, fail
        self.capabilities = Capabilities(max_concurrency=64)
        self.starts: list[float] = []
        self.sent: list[str] = []
        self.in_flight = self.max_in_flight = 0

    async def agenerate(self, requests: Sequence[Request]) -> list[Completion]:
        self.starts.extend(time.monotonic() for _ in requests)
        self.sent.extend(str(r.messages[-1].content) for r in requests)
        self.in_flight += len(requests)
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            await asyncio.sleep(self.delay)
            if self.fail is not None:
                raise self.fail
            return [Completion(text=f"re: {r.messages[-1].content}", prompt_tokens=self.tokens) for r in requests]
        finally:
            self.in_flight -= len(requests)


def run(coro: Any) -> Any:
    return asyncio.run(coro)


# --- identical requests in flight ------------------------------------------------------------
# Without the response cache DedupingBackend merges them; with it, the cache does, by key.


@pytest.fixture(params=["in-flight layer", "response cache"])
def merging(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Callable[[Backend], Backend]]:
    caches: list[ResponseCache] = []

    def wrap(inner: Backend) -> Backend:
        if request.param == "in-flight layer":
            return DedupingBackend(inner)
        caches.append(ResponseCache(tmp_path / f"cache-{len(caches)}.sqlite"))
        return CachedBackend(inner, caches[-1])

    yield wrap
    for cache in caches:
        cache.close()


def test_concurrent_batches_send_an_identical_request_once(merging: Callable[[Backend], Backend]) -> None:
    inner = Recorder()
    backend = merging(inner)

    async def both() -> list[list[Completion]]:
        return list(await asyncio.gather(backend.agenerate([ask("a"), ask("b")]),
                                         backend.agenerate([ask("b"), ask("c"), ask("c")])))

    first, second = run(both())
    assert sorted(inner.sent) == ["a", "b", "c"]
    assert [c.text for c in first] == ["re: a", "re: b"] and [c.text for c in second] == ["re: b", "re: c", "re: c"]
    # paid once: the first asker's answer is fresh, every repeat is marked as not paid
    assert [c.cached for c in first] == [False, False] and [c.cached for c in second] == [True, False, True]


def test_a_request_asked_again_after_its_answer_came_back_is_sent_again() -> None:
    # Merging covers requests on the wire; answered ones are the response cache's job.
    inner = Recorder()
    backend = DedupingBackend(inner)
    run(backend.agenerate([ask("a")]))
    run(backend.agenerate([ask("a")]))
    assert inner.sent == ["a", "a"]


def test_waiters_get_the_first_askers_error(merging: Callable[[Backend], Backend]) -> None:
    inner = Recorder(fail=BackendError("boom", retryable=False))
    backend = merging(inner)

    async def both() -> list[Any]:
        return list(await asyncio.gather(backend.agenerate([ask("a")]), backend.agenerate([ask("a")]),
                                         return_exceptions=True))

    errors = run(both())
    assert inner.sent == ["a"]
    assert all(isinstance(e, BackendError) and "boom" in str(e) for e in errors)


def test_waiters_send_it_themselves_when_the_first_asker_is_cancelled(merging: Callable[[Backend], Backend]) -> None:
    inner = Recorder(delay=0.2)
    backend = merging(inner)

    async def scenario() -> list[Completion]:
        first = asyncio.ensure_future(backend.agenerate([ask("a")]))
        await asyncio.sleep(0.01)
        second = asyncio.ensure_future(backend.agenerate([ask("a")]))
        await asyncio.sleep(0.01)
        first.cancel()
        return await second

    [answer] = run(scenario())
    assert answer.text == "re: a" and not answer.cached  # the waiter paid for it itself
    assert inner.sent == ["a", "a"]


def test_a_waiter_asks_again_as_soon_as_its_sender_gives_up(merging: Callable[[Backend], Backend]) -> None:
    # The waiter also waits on a slow request of its own; it must not wait for that before re-asking "a".
    inner = Recorder(delay=1.0)  # wide margins: a loaded machine delays the re-ask by up to ~0.1 s
    backend = merging(inner)

    async def scenario() -> tuple[list[Completion], float]:
        first = asyncio.ensure_future(backend.agenerate([ask("a")]))
        await asyncio.sleep(0.01)
        second = asyncio.ensure_future(backend.agenerate([ask("slow"), ask("a")]))
        await asyncio.sleep(0.01)
        first.cancel()
        answers = await second
        return answers, inner.starts[-1] - inner.starts[0]

    answers, last_start = run(scenario())
    assert [(c.text, c.cached) for c in answers] == [("re: slow", False), ("re: a", False)]
    assert sorted(inner.sent) == ["a", "a", "slow"]
    assert last_start < 0.5  # "a" was sent again at once, not after "slow" came back (1 s)


class Scripted(Recorder):
    """Answers each text after its own delay (0.05 s unless given); a call carrying ``bad`` fails."""

    def __init__(self, delays: dict[str, float], bad: str, max_concurrency: int = 64) -> None:
        super().__init__()
        self.delays, self.bad = delays, bad
        self.capabilities = Capabilities(max_concurrency=max_concurrency)

    async def agenerate(self, requests: Sequence[Request]) -> list[Completion]:
        texts = [str(r.messages[-1].content) for r in requests]
        self.sent.extend(texts)
        await asyncio.sleep(max(self.delays.get(t, 0.05) for t in texts))
        if self.bad in texts:
            raise BackendError(f"{self.bad} refused", retryable=False)
        return [Completion(text=f"re: {t}") for t in texts]


def test_a_failing_batch_raises_at_once_and_asks_nothing_again(merging: Callable[[Backend], Backend]) -> None:
    # The second batch follows "b" and sends "d", which fails at 0.05 s; "b"'s sender gives up at 0.1 s.
    inner = Scripted({"b": 0.3, "d": 0.04}, bad="d")
    backend = merging(inner)

    async def scenario() -> tuple[bool, Any]:
        first = asyncio.ensure_future(backend.agenerate([ask("b")]))
        await asyncio.sleep(0.01)
        second = asyncio.ensure_future(backend.agenerate([ask("b"), ask("d")]))
        await asyncio.sleep(0.09)
        failed_before_b_settled = second.done()
        first.cancel()
        [error] = await asyncio.gather(second, return_exceptions=True)
        await asyncio.sleep(0.1)  # time for a needless re-send to show
        return failed_before_b_settled, error

    failed_before_b_settled, error = run(scenario())
    assert failed_before_b_settled and isinstance(error, BackendError) and "d refused" in str(error)
    assert sorted(inner.sent) == ["b", "d"]  # "b" not paid again for a batch that had already failed


def test_a_waiter_cancelled_with_its_sender_stays_cancelled(merging: Callable[[Backend], Backend]) -> None:
    # Both cancelled together (their gather failed, a timeout): the waiter must not send it again.
    inner = Recorder(delay=0.1)
    backend = merging(inner)

    async def scenario() -> list[bool]:
        first = asyncio.ensure_future(backend.agenerate([ask("a")]))
        second = asyncio.ensure_future(backend.agenerate([ask("a")]))
        await asyncio.sleep(0.01)
        first.cancel()
        second.cancel()
        outcomes = await asyncio.gather(first, second, return_exceptions=True)
        await asyncio.sleep(0.2)  # time for a wrongly re-sent request to show
        return [isinstance(o, asyncio.CancelledError) for o in outcomes]

    assert run(scenario()) == [True, True]
    assert inner.sent == ["a"]


def test_the_cache_merges_a_miss_still_waiting_for_its_turn(tmp_path: Path) -> None:
    # The cache covers a miss from the moment it misses, not only while it is on the wire:
    # "b" waits behind "a" on a serial backend when the second batch asks for it.
    inner = Recorder()
    inner.capabilities = Capabilities(max_concurrency=1)
    with contextlib.closing(ResponseCache(tmp_path / "c.sqlite")) as cache:
        backend = CachedBackend(inner, cache)

        async def both() -> list[list[Completion]]:
            first = asyncio.ensure_future(backend.agenerate([ask("a"), ask("b")]))
            await asyncio.sleep(0.01)  # "a" is on the wire, "b" is queued
            return [await backend.agenerate([ask("b")]), await first]

        second, first = run(both())
    assert inner.sent == ["a", "b"]
    assert [c.cached for c in first] == [False, False] and [c.cached for c in second] == [True]


def test_a_batch_whose_awaited_request_failed_starts_no_new_request(tmp_path: Path) -> None:
    # The second batch waits on "x", which fails; it is going to fail too, so it must not pay for k0..k4.
    inner = Scripted({}, bad="x", max_concurrency=1)  # serial
    with contextlib.closing(ResponseCache(tmp_path / "c.sqlite")) as cache:
        backend = CachedBackend(inner, cache)

        async def both() -> list[Any]:
            first = asyncio.ensure_future(backend.agenerate([ask("x")]))
            await asyncio.sleep(0.01)
            second = backend.agenerate([ask("x")] + [ask(f"k{i}") for i in range(5)])
            return list(await asyncio.gather(first, second, return_exceptions=True))

        errors = run(both())
    assert all(isinstance(e, BackendError) and "x refused" in str(e) for e in errors)
    assert inner.sent == ["x"]


def test_a_waiter_sends_a_miss_its_leader_never_sent(tmp_path: Path) -> None:
    # The leader stops sending after "x" fails; the waiter on "y" gets "y"'s answer, not "x"'s error.
    inner = Scripted({}, bad="x", max_concurrency=1)  # serial
    with contextlib.closing(ResponseCache(tmp_path / "c.sqlite")) as cache:
        backend = CachedBackend(inner, cache)

        async def both() -> list[Any]:
            first = asyncio.ensure_future(backend.agenerate([ask("x"), ask("y")]))
            await asyncio.sleep(0.01)
            return list(await asyncio.gather(first, backend.agenerate([ask("y")]), return_exceptions=True))

        error, [answer] = run(both())
    assert isinstance(error, BackendError) and "x refused" in str(error)
    assert answer.text == "re: y" and not answer.cached
    assert inner.sent == ["x", "y"]


@pytest.mark.parametrize("cache", [False, True])
def test_through_a_session_the_server_sees_one_request(tmp_path: Path, cache: bool) -> None:
    with run_fault_server(FaultPlan(latency=0.2)) as server, Session(
            "openai:fault", None, budget=Budget(), cache_path=tmp_path / "c.sqlite" if cache else None,
            model_options={"base_url": server.base_url, "max_concurrency": 8}) as session:
        async def both() -> list[list[Completion]]:
            return list(await asyncio.gather(session.target.agenerate([ask("same question")]),
                                             session.target.agenerate([ask("same question")])))

        first, second = session.loop.run(both())
        assert first[0].text == second[0].text
        assert server.stats.received == 1
        assert session.meter.usage.target.calls == 2 and session.meter.usage.target.paid_calls == 1


# --- the throttle ----------------------------------------------------------------------------


def test_requests_per_second_spaces_request_starts() -> None:
    inner = Recorder(delay=0.0)
    backend = ThrottledBackend(inner, Throttle(requests_per_second=20))
    run(backend.agenerate([ask(str(i)) for i in range(8)]))
    offsets = [t - inner.starts[0] for t in inner.starts]
    # the k-th request starts no earlier than its slot, k × 50 ms after the first, and the batch is not
    # held back much beyond its schedule
    assert len(offsets) == 8 and all(t >= k * 0.05 - 0.003 for k, t in enumerate(offsets)), offsets
    assert offsets[-1] < 7 * 0.05 + 0.15, offsets


def test_max_in_flight_bounds_concurrency() -> None:
    inner = Recorder(delay=0.05)
    backend = ThrottledBackend(inner, Throttle(max_in_flight=3))
    answers = run(backend.agenerate([ask(str(i)) for i in range(10)]))
    assert [a.text for a in answers] == [f"re: {i}" for i in range(10)]  # in order
    assert inner.max_in_flight == 3


def test_tokens_per_minute_holds_new_requests_until_the_window_has_room(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("promptopt.backends._throttle.WINDOW", 0.5)  # a half-second "minute"
    inner = Recorder(delay=0.0, tokens=100)
    backend = ThrottledBackend(inner, Throttle(tokens_per_minute=250, max_in_flight=1))
    run(backend.agenerate([ask(str(i)) for i in range(5)]))
    t0 = inner.starts[0]
    offsets = [round(t - t0, 2) for t in inner.starts]
    # three replies (300 tokens) fill the window; the 4th waits until the 1st leaves it, half a second later
    assert offsets[2] < 0.1 and offsets[3] >= 0.45, offsets


def test_a_session_applies_the_throttle_to_a_real_server() -> None:
    with run_fault_server(FaultPlan()) as server, Session(
            "openai:fault", None, budget=Budget(), cache_path=None,
            model_options={"base_url": server.base_url, "requests_per_second": 10, "max_in_flight": 2}) as session:
        session.loop.run(session.target.agenerate([ask("warm-up")]))  # the client's first-call set-up is not timed
        started = time.monotonic()
        session.loop.run(session.target.agenerate([ask(f"q{i}") for i in range(6)]))
        elapsed = time.monotonic() - started
    assert server.stats.received == 7 and server.stats.max_in_flight <= 2
    assert elapsed >= 0.5 - 0.02  # six starts 100 ms apart (the first one's slot follows the warm-up's)


def test_retries_pass_through_the_throttle() -> None:
    # Every attempt is a request the provider counts, so a retry waits for its turn too.
    class FailsOnce(Recorder):
        async def agenerate(self, requests: Sequence[Request]) -> list[Completion]:
            self.fail = None if self.starts else BackendError("503", retryable=True)
            return await super().agenerate(requests)

    inner = FailsOnce(delay=0.0)
    backend = RetryingBackend(ThrottledBackend(inner, Throttle(requests_per_second=4)), initial_wait=0, max_wait=0)
    [answer] = run(backend.agenerate([ask("q")]))
    assert answer.text == "re: q" and len(inner.starts) == 2
    assert inner.starts[1] - inner.starts[0] >= 0.25 - 0.003  # the retry waited for its slot, not 0 s


@pytest.mark.parametrize(("kwargs", "fragment"), [
    ({"requests_per_second": 0}, "requests_per_second must be a number > 0; got 0"),
    ({"tokens_per_minute": -5}, "tokens_per_minute must be a whole number > 0; got -5"),
    ({"tokens_per_minute": 1.5}, "--tokens-per-minute"),
    ({"max_in_flight": True}, "max_in_flight must be a whole number > 0; got True"),
])
def test_bad_limits_are_config_errors(kwargs: dict[str, Any], fragment: str) -> None:
    with pytest.raises(ConfigError, match=fragment.replace("(", r"\(")):
        Throttle(**kwargs)
