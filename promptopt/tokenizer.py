"""The target model's tokenizer, as strategies use it (capability ``tokenize``)."""

from __future__ import annotations

from collections.abc import Callable, Coroutine, Sequence
from typing import Any

from promptopt._loop import LoopThread
from promptopt.backends._base import Backend

__all__ = ["Tokenizer"]


class Tokenizer:
    """Synchronous access to a backend's tokenizer, for a strategy's own thread.

    Tokenizing is not a model call: it is neither metered nor counted toward a
    budget, and answers are not stored in the response cache. The vocabulary is
    read once. ``wait`` runs a call on the backend's event loop (the Context passes
    its own, so that time spent tokenizing counts as waiting, not strategy compute).

    Example:
        >>> from promptopt._loop import LoopThread
        >>> from promptopt.testing import FakeBackend
        >>> loop = LoopThread()
        >>> tok = Tokenizer(FakeBackend(), loop)
        >>> tok.detokenize(tok.tokenize("héllo")) == "héllo"
        True
        >>> loop.close()
    """

    def __init__(self, backend: Backend, loop: LoopThread,
                 wait: Callable[[Coroutine[Any, Any, Any]], Any] | None = None) -> None:
        self._backend = backend
        self._run = wait or loop.run
        self._vocabulary: tuple[str, ...] | None = None

    def tokenize(self, text: str) -> list[int]:
        """``text`` as token ids, as the model reads it inside a prompt (no BOS token)."""
        return list(self._run(self._backend.atokenize([text]))[0])

    def tokenize_many(self, texts: Sequence[str]) -> list[list[int]]:
        """Several texts in one request to the backend."""
        return list(self._run(self._backend.atokenize(list(texts))))

    def detokenize(self, ids: Sequence[int]) -> str:
        """Token ids back to text."""
        return str(self._run(self._backend.adetokenize([list(ids)]))[0])

    def count(self, text: str) -> int:
        """How many tokens ``text`` is."""
        return len(self.tokenize(text))

    def vocabulary(self) -> tuple[str, ...]:
        """Every token's text, indexed by id."""
        if self._vocabulary is None:
            self._vocabulary = tuple(self._run(self._backend.avocabulary()))
        return self._vocabulary
