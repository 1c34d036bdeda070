"""Immutable values that flow between tasks, the evaluator and backends."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any, Literal

__all__ = ["Completion", "Example", "LogProb", "Message", "Request", "Role", "ScoreRequest"]

Role = Literal["target", "optimizer"]


@dataclass(frozen=True)
class Example:
    """One task example. ``target`` is the gold answer as text; ``id`` is stable across runs."""

    id: str
    input: str
    target: str
    meta: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)


@dataclass(frozen=True)
class Message:
    """One chat message."""

    role: str
    content: str


def _key(payload: dict[str, Any]) -> str:
    blob = json.dumps(payload, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class Request:
    """A generation request: chat messages plus sampling parameters.

    ``sample_index`` tells apart repeated samples of the same request at
    temperature > 0, so each gets its own cache entry. ``role`` says who pays
    (the target model being optimised, or the optimizer model); it is not part
    of the cache key.
    """

    messages: tuple[Message, ...]
    max_tokens: int = 256
    temperature: float = 0.0
    top_p: float = 1.0
    stop: tuple[str, ...] = ()
    seed: int | None = None
    sample_index: int = 0
    role: Role = "target"

    def key_payload(self) -> dict[str, Any]:
        """Everything that changes the answer (the role does not)."""
        return {"messages": [{"role": m.role, "content": m.content} for m in self.messages],
                "max_tokens": self.max_tokens, "temperature": self.temperature, "top_p": self.top_p,
                "stop": list(self.stop), "seed": self.seed, "sample_index": self.sample_index, "kind": "generate"}

    def key(self) -> str:
        """Hash of the payload; identical requests share it."""
        return _key(self.key_payload())


@dataclass(frozen=True)
class ScoreRequest:
    """Ask for log P(continuation | messages), the continuation starting the assistant turn."""

    messages: tuple[Message, ...]
    continuation: str
    role: Role = "target"

    def key_payload(self) -> dict[str, Any]:
        return {"messages": [{"role": m.role, "content": m.content} for m in self.messages],
                "continuation": self.continuation, "kind": "score"}

    def key(self) -> str:
        return _key(self.key_payload())


@dataclass(frozen=True)
class Completion:
    """A generated reply and what it cost (``usd``: dollars, 0 where the backend knows no price)."""

    text: str
    prompt_tokens: int = 0
    completion_tokens: int = 0
    finish_reason: str = "stop"
    cached: bool = False
    usd: float = 0.0


@dataclass(frozen=True)
class LogProb:
    """Summed log-probability of a continuation and what it cost."""

    logprob: float
    n_tokens: int
    prompt_tokens: int = 0
    cached: bool = False
