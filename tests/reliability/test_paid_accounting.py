"""``paid_calls`` is what the server answered: the number a user is billed for."""

from __future__ import annotations

import asyncio
from pathlib import Path

from promptopt.backends import CachedBackend, ResponseCache, RetryingBackend
from promptopt.backends.openai import OpenAIBackend
from promptopt.budget import Meter, MeteredBackend
from promptopt.testing.fault_server import run_fault_server
from promptopt.types import Message, Request


def paid_and_answered(tmp_path: Path, batch: list[Request]) -> tuple[int, int]:
    """Send one batch through the run's stack (meter, cache, retry, openai); return (paid, answered)."""
    with run_fault_server() as server:
        meter = Meter()
        cache = ResponseCache(tmp_path / "cache.sqlite")
        backend = MeteredBackend(CachedBackend(RetryingBackend(
            OpenAIBackend(model="fault", base_url=server.base_url)), cache), meter)

        async def main() -> None:
            try:
                await backend.agenerate(batch)
            finally:
                await backend.aclose()

        asyncio.run(main())
        cache.close()
        return meter.usage.paid_calls, server.stats.completions


def ask(text: str) -> Request:
    return Request((Message("user", text),), max_tokens=4)


def test_paid_calls_are_the_answers_served(tmp_path: Path) -> None:
    assert paid_and_answered(tmp_path, [ask("a"), ask("b"), ask("c")]) == (3, 3)


def test_a_request_repeated_in_a_batch_is_paid_once(tmp_path: Path) -> None:
    assert paid_and_answered(tmp_path, [ask("a"), ask("a"), ask("b")]) == (2, 2)
