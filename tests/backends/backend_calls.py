"""Driving a backend from a test: batches in turn on one event loop, then close it."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from promptopt.types import Completion, Request


def generate(backend: Any, *batches: Sequence[Request]) -> list[list[Completion]]:
    """Run each batch in turn on one event loop, then close the backend."""

    async def main() -> list[list[Completion]]:
        try:
            return [await backend.agenerate(batch) for batch in batches]
        finally:
            await backend.aclose()

    return asyncio.run(main())
