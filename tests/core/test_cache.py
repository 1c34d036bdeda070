from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
from collections.abc import Sequence
from pathlib import Path

import pytest

from promptopt.backends import CachedBackend, ResponseCache, RetryingBackend
from promptopt.exceptions import BackendError
from promptopt.testing import FakeBackend
from promptopt.types import Completion, Message, Request, ScoreRequest

MSG = (Message("user", "hello"),)


def test_second_identical_request_is_replayed(tmp_path: Path) -> None:
    fake = FakeBackend()
    cached = CachedBackend(fake, ResponseCache(tmp_path / "c.sqlite"))
    first = asyncio.run(cached.agenerate([Request(MSG)]))[0]
    second = asyncio.run(cached.agenerate([Request(MSG)]))[0]
    assert fake.n_calls == 1
    assert not first.cached and second.cached and second.text == first.text


def test_cache_survives_reopening(tmp_path: Path) -> None:
    path = tmp_path / "c.sqlite"
    asyncio.run(CachedBackend(FakeBackend(), ResponseCache(path)).ascore([ScoreRequest(MSG, "yes")]))
    fresh = FakeBackend()
    again = asyncio.run(CachedBackend(fresh, ResponseCache(path)).ascore([ScoreRequest(MSG, "yes")]))
    assert fresh.n_calls == 0 and again[0].cached


def test_key_covers_sampling_params_and_sample_index_but_not_role(tmp_path: Path) -> None:
    fake = FakeBackend()
    cached = CachedBackend(fake, ResponseCache(tmp_path / "c.sqlite"))
    variants = [Request(MSG), Request(MSG, temperature=0.7), Request(MSG, max_tokens=5),
                Request(MSG, sample_index=1), Request(MSG, seed=3), Request(MSG, stop=("\n",))]
    asyncio.run(cached.agenerate(variants))
    assert fake.n_calls == len(variants)
    asyncio.run(cached.agenerate([Request(MSG, role="optimizer")]))
    assert fake.n_calls == len(variants)


def test_key_covers_the_model(tmp_path: Path) -> None:
    cache = ResponseCache(tmp_path / "c.sqlite")
    a, b = FakeBackend("a"), FakeBackend("b")
    asyncio.run(CachedBackend(a, cache).agenerate([Request(MSG)]))
    asyncio.run(CachedBackend(b, cache).agenerate([Request(MSG)]))
    assert a.n_calls == b.n_calls == 1


def test_duplicates_in_one_batch_are_sent_once(tmp_path: Path) -> None:
    fake = FakeBackend()
    cached = CachedBackend(fake, ResponseCache(tmp_path / "c.sqlite"))
    out = asyncio.run(cached.agenerate([Request(MSG)] * 4))
    assert fake.n_calls == 1 and len({c.text for c in out}) == 1


def test_answers_are_stored_as_they_arrive_so_a_failure_loses_none(tmp_path: Path) -> None:
    from promptopt.exceptions import BackendError

    def reply(req: Request) -> str:
        if req.messages[0].content == "boom":
            raise BackendError("server went away", retryable=False)
        return "fine"

    path = tmp_path / "c.sqlite"
    reqs = [Request((Message("user", f"q{i}"),)) for i in range(3)] + [Request((Message("user", "boom"),))]
    cache = ResponseCache(path)
    with contextlib.suppress(BackendError):
        asyncio.run(CachedBackend(FakeBackend(reply=reply), cache).agenerate(reqs))
    cache.close()  # as the session does when a run fails (a killed process: test_answer_log_*)
    fresh = FakeBackend(reply=reply)
    asyncio.run(CachedBackend(fresh, ResponseCache(path)).agenerate(reqs[:3]))
    assert fresh.n_calls == 0


class _AnswersInGroups(FakeBackend):
    """Holds each call until ``width`` calls wait (fewer for the last group), then answers them together."""

    def __init__(self, width: int, total: int) -> None:
        super().__init__(reply=lambda r: "echo: " + r.messages[-1].content, max_concurrency=width)
        self.width, self.left = width, total
        self.waiting: list[asyncio.Future[None]] = []
        self.unstored_at_send: list[int] = []  # paid answers not yet stored, seen as each call starts
        self.cache: ResponseCache | None = None

    async def agenerate(self, requests: Sequence[Request]) -> list[Completion]:
        assert self.cache is not None
        self.unstored_at_send.append(self.n_calls - len(self.cache))
        gate = asyncio.get_running_loop().create_future()
        self.waiting.append(gate)
        if len(self.waiting) == min(self.width, self.left):
            self.left -= len(self.waiting)
            for waiting in self.waiting:
                waiting.set_result(None)
            self.waiting = []
        await gate
        return await super().agenerate(requests)


def test_no_answer_waits_unstored_past_its_slot(tmp_path: Path) -> None:
    cache = ResponseCache(tmp_path / "c.sqlite")
    fake = _AnswersInGroups(width=4, total=10)
    fake.cache = cache
    requests = [Request((Message("user", f"q{i}"),)) for i in range(10)]
    answers = asyncio.run(CachedBackend(fake, cache).agenerate(requests))
    assert len(cache) == 10 and [a.text for a in answers] == [f"echo: q{i}" for i in range(10)]
    assert max(fake.unstored_at_send) == 0  # a slot frees only once its answer is stored


class _FullDisk(ResponseCache):
    def put_many(self, items: dict[str, dict[str, object]]) -> None:
        raise OSError("database or disk is full")


def _refuse_q0(req: Request) -> str:
    if req.messages[-1].content == "q0":
        raise BackendError("refused", retryable=False)
    return "fine"


class _NoAnswers(FakeBackend):
    async def agenerate(self, requests: Sequence[Request]) -> list[Completion]:
        await super().agenerate(requests)
        return []  # fewer answers than requests


@pytest.mark.parametrize("failure", ["store", "call", "malformed reply"])
def test_a_failure_stops_sending_and_leaves_nothing_running(tmp_path: Path, failure: str) -> None:
    fake = (_NoAnswers if failure == "malformed reply" else FakeBackend)(
        reply=_refuse_q0 if failure == "call" else None, max_concurrency=2, latency=0.01)
    cache = (_FullDisk if failure == "store" else ResponseCache)(tmp_path / "c.sqlite")

    async def main() -> tuple[int, int]:
        backend = CachedBackend(fake, cache)
        with contextlib.suppress(OSError, BackendError, ValueError):
            await backend.agenerate([Request((Message("user", f"q{i}"),)) for i in range(8)])
            raise AssertionError("the failure was not raised")
        sent = fake.n_calls
        await asyncio.sleep(0.1)  # anything still running would send more now
        return sent, fake.n_calls

    sent, later = asyncio.run(main())
    assert sent <= 2 and later == sent


class _BatchEngine(FakeBackend):
    """A FakeBackend that declares it serves whole batches, and records each call's size."""

    def __init__(self, fail_first: bool = False) -> None:
        super().__init__(max_concurrency=4)
        self.capabilities = dataclasses.replace(self.capabilities, batches=True)
        self.sizes: list[int] = []
        self.fail_first = fail_first

    async def agenerate(self, requests: Sequence[Request]) -> list[Completion]:
        self.sizes.append(len(requests))
        if self.fail_first and len(self.sizes) == 1:
            raise BackendError("engine hiccup", retryable=True)
        return await super().agenerate(requests)


def test_a_batch_engine_gets_its_misses_in_batches_of_its_width(tmp_path: Path) -> None:
    engine = _BatchEngine()
    cache = ResponseCache(tmp_path / "c.sqlite")
    requests = [Request((Message("user", f"q{i}"),)) for i in range(10)]
    answers = asyncio.run(CachedBackend(engine, cache).agenerate(requests))
    assert engine.sizes == [4, 4, 2]  # three engine calls, not ten
    assert len(cache) == 10 and len(answers) == 10 and not any(a.cached for a in answers)
    replay = asyncio.run(CachedBackend(_BatchEngine(), cache).agenerate(requests))
    assert all(a.cached for a in replay) and [a.text for a in replay] == [a.text for a in answers]


def test_a_batch_engine_is_retried_per_batch(tmp_path: Path) -> None:
    engine = _BatchEngine(fail_first=True)
    backend = CachedBackend(RetryingBackend(engine, initial_wait=0, max_wait=0), ResponseCache(tmp_path / "c.sqlite"))
    asyncio.run(backend.agenerate([Request((Message("user", f"q{i}"),)) for i in range(3)]))
    assert engine.sizes == [3, 3]  # the failed batch was sent again whole, not as three single requests


def test_request_keys_cover_every_field_but_the_role() -> None:
    # key_payload is built by hand for speed; a field added to Request later must reach the key.
    req = Request(MSG, max_tokens=5, temperature=0.3, top_p=0.9, stop=("\n",), seed=2, sample_index=1)
    for r, kind in ((req, "generate"), (ScoreRequest(MSG, "yes"), "score")):
        full = dataclasses.asdict(r)
        full.pop("role")
        assert json.dumps(r.key_payload(), sort_keys=True) == json.dumps({**full, "kind": kind}, sort_keys=True)


def test_cache_keys_are_those_of_earlier_versions() -> None:
    # The identity is encoded once per batch now; the key must stay what it was, or
    # existing caches would stop replaying.
    import hashlib

    from promptopt.backends._cache import cache_key, canonical_json

    identity = {"backend": "openai", "model": "smollm2", "base_url": "http://127.0.0.1:8000/v1", "é": "ü"}
    for req in (Request(MSG, max_tokens=5, stop=("\n",)), ScoreRequest((Message("user", "naïve ☃"),), "yes")):
        whole = json.dumps({"backend": identity, "request": req.key_payload()}, sort_keys=True,
                           ensure_ascii=False, separators=(",", ":"))
        assert cache_key(canonical_json(identity), req.key_payload()) == hashlib.sha256(whole.encode()).hexdigest()
