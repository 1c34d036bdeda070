"""A deterministic in-memory backend."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Callable, Sequence

from promptopt.backends._base import Backend, Capabilities
from promptopt.types import Completion, LogProb, Request, ScoreRequest

__all__ = ["FakeBackend"]


def _unit(text: str) -> float:
    """A stable number in [0, 1) from a string."""
    return int(hashlib.sha256(text.encode("utf-8")).hexdigest()[:8], 16) / 2**32


class FakeBackend(Backend):
    """Answers from functions instead of a model; records every request it receives.

    Args:
        model: a name, part of the cache identity.
        reply: request -> reply text. Default: a stable pseudo-random word per request.
        score: score request -> log-probability. Default: stable pseudo-random in [-5, 0).
        latency: seconds to sleep per batch (0 for overhead measurements).
        can_score: whether to declare the ``score`` capability.
        max_concurrency: declared concurrency.
        can_tokenize: whether to declare the ``tokenize`` capability. Its tokenizer is
            byte-level: a token per UTF-8 byte, id = the byte's value (256 tokens).

    Example:
        >>> import asyncio
        >>> from promptopt.types import Message, Request
        >>> fake = FakeBackend(reply=lambda r: "42")
        >>> asyncio.run(fake.agenerate([Request((Message("user", "hi"),))]))[0].text
        '42'
    """

    name = "fake"

    def __init__(self, model: str = "fake", *, reply: Callable[[Request], str] | None = None,
                 score: Callable[[ScoreRequest], float] | None = None, latency: float = 0.0,
                 can_score: bool = True, max_concurrency: int = 1, can_tokenize: bool = True) -> None:
        self.model = model
        self._reply = reply or (lambda r: f"answer-{int(_unit(r.key()) * 10)}")
        self._score = score or (lambda r: -5.0 * _unit(r.key()))
        self.latency = latency
        self.capabilities = Capabilities(chat=True, score=can_score, max_concurrency=max_concurrency,
                                         tokenize=can_tokenize, vocabulary=can_tokenize)
        self.generate_requests: list[Request] = []
        self.score_requests: list[ScoreRequest] = []

    @property
    def n_calls(self) -> int:
        """Requests received so far (generate + score)."""
        return len(self.generate_requests) + len(self.score_requests)

    async def agenerate(self, requests: Sequence[Request]) -> list[Completion]:
        if self.latency:
            await asyncio.sleep(self.latency)
        self.generate_requests.extend(requests)
        out = []
        for r in requests:
            text = self._reply(r)
            n_prompt = sum(len(m.content.split()) for m in r.messages)
            out.append(Completion(text=text, prompt_tokens=n_prompt, completion_tokens=len(text.split())))
        return out

    async def atokenize(self, texts: Sequence[str]) -> list[list[int]]:
        if not self.capabilities.tokenize:
            return await super().atokenize(texts)
        return [list(t.encode("utf-8")) for t in texts]

    async def adetokenize(self, ids: Sequence[Sequence[int]]) -> list[str]:
        if not self.capabilities.tokenize:
            return await super().adetokenize(ids)
        return [bytes(i).decode("utf-8", errors="replace") for i in ids]

    async def avocabulary(self) -> list[str]:
        if not self.capabilities.tokenize:
            return await super().avocabulary()
        return [bytes([i]).decode("utf-8", errors="replace") for i in range(256)]

    async def ascore(self, requests: Sequence[ScoreRequest]) -> list[LogProb]:
        if not self.capabilities.score:
            return await super().ascore(requests)
        if self.latency:
            await asyncio.sleep(self.latency)
        self.score_requests.extend(requests)
        return [LogProb(logprob=self._score(r), n_tokens=max(1, len(r.continuation.split())),
                        prompt_tokens=sum(len(m.content.split()) for m in r.messages)) for r in requests]
