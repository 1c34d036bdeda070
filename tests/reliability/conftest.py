"""Fixtures of the reliability tests (fault server runs, kills, shared caches, secrets, budgets)."""

from __future__ import annotations

import asyncio
import functools

import pytest

from promptopt.backends import RetryingBackend
from promptopt.session import Session


@pytest.fixture
def fast_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    """Retry after 10-50 ms instead of 0.5-30 s: optimize() has no knob for the retry waits."""
    fast = functools.partial(RetryingBackend, initial_wait=0.01, max_wait=0.05)
    monkeypatch.setattr("promptopt.session.RetryingBackend", fast)


@pytest.fixture
def leftover_tasks(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """How many tasks were still running on a run's event loop when its Session closed.

    They are then cancelled and awaited, so that none is destroyed pending later
    (which would surface as an unraisable-exception error in some other test).
    """
    counts: list[int] = []
    close = Session.close

    def reaping_close(self: Session) -> None:
        async def reap() -> int:
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task() and not t.done()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            return len(tasks)

        counts.append(self.loop.run(reap()))
        close(self)

    monkeypatch.setattr(Session, "close", reaping_close)
    return counts
