"""The target model's tokenizer, as strategies use it (capability ``tokenize``)."""

from __future__ import annotations

from collections.abc import Sequence

from promptopt._loop import LoopThread
from promptopt.backends._base import Backend

__all__ = ["Tokenizer"]


class Tokenizer:
    """Synchronous access to a backend's tokenizer, for a strategy's own thread.

    Tokenizing is not a model call: it is neither metered nor counted toward a
    budget, and answers are not stored in the response cache. The vocabulary is
    read once.

    Example:
        >>> from promptopt._loop import LoopThread
        >>> from promptopt.testing import FakeBackend
        >>> loop = LoopThread()
        >>> tok = Tokenizer(FakeBackend(), loop)
        >>> tok.detokenize(tok.tokenize("héllo")) == "héllo"
        True
        >>> loop.close()
    """

    def __init__(self, backend: Backend, loop: LoopThread) -> None:
        self._backend, self._loop = backend, loop
        self._vocabulary: tuple[str, ...] | None = None

    def tokenize(self, text: str) -> list[int]:
        """``text`` as token ids, as the model reads it inside a prompt (no BOS token)."""
        return self._loop.run(self._backend.atokenize([text]))[0]

    def tokenize_many(self, texts: Sequence[str]) -> list[list[int]]:
        """Several texts in one request to the backend."""
        return self._loop.run(self._backend.atokenize(list(texts)))

    def detokenize(self, ids: Sequence[int]) -> str:
        """Token ids back to text."""
        return self._loop.run(self._backend.adetokenize([list(ids)]))[0]

    def count(self, text: str) -> int:
        """How many tokens ``text`` is."""
        return len(self.tokenize(text))

    def vocabulary(self) -> tuple[str, ...]:
        """Every token's text, indexed by id."""
        if self._vocabulary is None:
            self._vocabulary = tuple(self._loop.run(self._backend.avocabulary()))
        return self._vocabulary
