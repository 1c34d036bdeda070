"""One event loop on a background thread, so sync code (strategies, the CLI,
notebooks with their own loop) can drive async backends whose clients must
stay on a single loop."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Coroutine, Iterable
from typing import Any, TypeVar

T = TypeVar("T")


async def gather_or_cancel(coros: Iterable[Awaitable[T]]) -> list[T]:
    """Run ``coros`` concurrently and return their results in order.

    On the first failure the others are cancelled and awaited before the error
    is raised, so no request outlives the call (nor keeps being paid for).
    """
    coros = list(coros)
    if len(coros) == 1:  # the common case below the cache (one request per call): no task to make
        return [await coros[0]]
    tasks = [asyncio.ensure_future(c) for c in coros]
    try:
        return list(await asyncio.gather(*tasks))
    except BaseException:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise


class LoopThread:
    """Runs coroutines on a private event loop thread; ``close`` stops it."""

    def __init__(self) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="promptopt-loop", daemon=True)
        self._thread.start()

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run ``coro`` to completion on the loop and return its result (or raise its error)."""
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result()

    def close(self) -> None:
        if self._loop.is_closed():
            return
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join()
        self._loop.close()
