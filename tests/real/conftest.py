"""Fixtures of the real-model tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from promptopt.backends.llamacpp import LlamaCppBackend


@pytest.fixture(scope="module")
def backend() -> Iterator[LlamaCppBackend]:
    """The embedded SmolLM2, loaded once per test module."""
    b = LlamaCppBackend("smollm2", n_ctx=1024)
    yield b
    b.close()
