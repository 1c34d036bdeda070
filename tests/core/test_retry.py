from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence

import pytest

from promptopt.backends import RetryingBackend
from promptopt.exceptions import BackendError
from promptopt.testing import FakeBackend
from promptopt.types import Completion, Message, Request

REQ = Request((Message("user", "hi"),))


class Flaky(FakeBackend):
    def __init__(self, failures: list[BackendError], **kw: object) -> None:
        super().__init__(**kw)  # type: ignore[arg-type]
        self.failures, self.attempts = failures, 0

    async def agenerate(self, requests: Sequence[Request]) -> list[Completion]:
        self.attempts += 1
        if self.failures:
            raise self.failures.pop(0)
        return await super().agenerate(requests)


def test_transient_errors_are_retried_until_success() -> None:
    flaky = Flaky([BackendError("503", retryable=True), BackendError("reset", retryable=True)])
    out = asyncio.run(RetryingBackend(flaky, initial_wait=0.001, max_wait=0.01).agenerate([REQ]))
    assert flaky.attempts == 3 and out[0].text


def test_permanent_errors_fail_at_once() -> None:
    flaky = Flaky([BackendError("401 bad key", retryable=False)])
    with pytest.raises(BackendError, match="401"):
        asyncio.run(RetryingBackend(flaky, initial_wait=0.001).agenerate([REQ]))
    assert flaky.attempts == 1


def test_attempts_are_bounded() -> None:
    flaky = Flaky([BackendError("503", retryable=True) for _ in range(10)])
    with pytest.raises(BackendError):
        asyncio.run(RetryingBackend(flaky, max_attempts=3, initial_wait=0.001, max_wait=0.01).agenerate([REQ]))
    assert flaky.attempts == 3


def test_retry_after_hint_is_honoured() -> None:
    err = BackendError("429", retryable=True)
    err.retry_after = 0.3  # type: ignore[attr-defined]
    flaky = Flaky([err])
    start = time.monotonic()
    asyncio.run(RetryingBackend(flaky, initial_wait=0.001, max_wait=5).agenerate([REQ]))
    assert time.monotonic() - start >= 0.29


def test_concurrent_backends_retry_only_the_failed_request() -> None:
    flaky = Flaky([BackendError("503", retryable=True)], max_concurrency=4)
    reqs = [Request((Message("user", f"q{i}"),)) for i in range(3)]
    asyncio.run(RetryingBackend(flaky, initial_wait=0.001).agenerate(reqs))
    assert len(flaky.generate_requests) == 3 and flaky.attempts == 4
