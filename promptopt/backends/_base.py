"""The backend contract: the only code that talks to an LLM."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from promptopt.exceptions import CapabilityError, ConfigError
from promptopt.types import Completion, LogProb, Request, ScoreRequest

__all__ = ["SCORING_BACKENDS", "TOKENIZING_BACKENDS", "VOCABULARY_BACKENDS", "Backend", "Capabilities",
           "WrappingBackend", "check_endpoint_limits", "missing_tokenizer"]

#: the built-in backends that can tokenize (named in the error of one that cannot)
TOKENIZING_BACKENDS = "llamacpp:<model>, vllm:<model>, or openai:<model> pointed at a vLLM server"
#: the built-in backends that can list their whole vocabulary
VOCABULARY_BACKENDS = "llamacpp:<model> or vllm:<model>"
#: the built-in backends that can score log-probabilities
SCORING_BACKENDS = "llamacpp:<model>, vllm:<model>, or openai:<model> pointed at a vLLM server"


def check_endpoint_limits(owner: str, max_concurrency: object, timeout: object) -> None:
    """The checks every remote backend makes on its concurrency and timeout settings."""
    if isinstance(max_concurrency, bool) or not isinstance(max_concurrency, int) or max_concurrency < 1:
        raise ConfigError(f"the `max_concurrency` parameter of {owner} must be an int >= 1; "
                          f"got {max_concurrency!r} (e.g. --max-concurrency 8)")
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not timeout > 0:
        raise ConfigError(f"the `timeout` parameter of {owner} must be a number > 0; got {timeout!r} "
                          "(e.g. --timeout 60)")


def missing_tokenizer(model_string: str) -> CapabilityError:
    """The error for a backend asked for a tokenizer it does not have."""
    return CapabilityError(f"backend {model_string} cannot tokenize; use a backend that can: {TOKENIZING_BACKENDS}")


@dataclass(frozen=True)
class Capabilities:
    """What a backend can do.

    Attributes:
        chat: takes chat messages (all built-ins do).
        score: can return log P(continuation | prompt) (needed for ``choice`` mode
            and loss-based strategies).
        max_concurrency: how many requests it usefully serves at once.
        seeds: honours a sampling seed, so samples at temperature > 0 repeat.
        batches: an engine that serves a whole batch in one call (vLLM): the
            layers above hand it up to ``max_concurrency`` requests at once
            instead of one request per call.
        tokenize: exposes the model's tokenizer (:meth:`Backend.atokenize`,
            :meth:`~Backend.adetokenize`), for strategies that edit or count
            prompts in the model's own tokens.
        vocabulary: can also list every token (:meth:`Backend.avocabulary`), for
            strategies that choose among them (a vLLM server cannot).
    """

    chat: bool = True
    score: bool = False
    max_concurrency: int = 1
    seeds: bool = True
    batches: bool = False
    tokenize: bool = False
    vocabulary: bool = False


class Backend(ABC):
    """Batch-first access to one model.

    Subclasses implement :meth:`agenerate` and, if they can, :meth:`ascore`.
    Both take a whole batch so that engines that batch internally (llama.cpp,
    vLLM) can, and concurrent clients (OpenAI-compatible) can fan out.
    Errors are raised as :class:`~promptopt.exceptions.BackendError` with
    ``retryable`` set; library exceptions never leak past the backend module.

    Call order: any number of ``agenerate``/``ascore`` calls, then ``aclose``.

    A backend named by a model string (``<prefix>:<name>``) is built by the
    registry as ``cls(name, **cls.resolve_options(options, env))``.
    """

    #: backend family, e.g. ``"llamacpp"``
    name: str = "backend"
    #: model name within the backend, e.g. ``"smollm2"``
    model: str = ""
    capabilities: Capabilities = Capabilities()

    @classmethod
    def resolve_options(cls, options: Mapping[str, Any], env: Mapping[str, str]) -> dict[str, Any]:
        """The constructor's keyword arguments, from the options the caller gave.

        Called where a run starts, with the process environment: a backend that
        takes endpoints or keys from environment variables reads them here, for
        the options not given, and never in its constructor. The result is
        passed to the constructor only; it is never logged or stored.

        Args:
            options: the caller's options (API ``model_options``, CLI flags, config file).
            env: the environment variables.

        Returns:
            The options unchanged (the default); backends override it.
        """
        return dict(options)

    @abstractmethod
    async def agenerate(self, requests: Sequence[Request]) -> list[Completion]:
        """Generate one completion per request, in order."""

    async def ascore(self, requests: Sequence[ScoreRequest]) -> list[LogProb]:
        """Log-probability of each request's continuation, in order."""
        raise CapabilityError(
            f"backend {self.name!r} (model {self.model!r}) cannot score log-probabilities; "
            "use --answer-mode generate, or a backend that can score (e.g. llamacpp:smollm2)")

    # -- the tokenizer (capability ``tokenize``): free, not metered, never cached on disk ------
    async def atokenize(self, texts: Sequence[str]) -> list[list[int]]:
        """Each text as the model's token ids, as the model would read it inside a prompt
        (no BOS token added, special-token text left as plain text)."""
        raise missing_tokenizer(self.model_string)

    async def adetokenize(self, ids: Sequence[Sequence[int]]) -> list[str]:
        """Each id sequence back to text."""
        raise missing_tokenizer(self.model_string)

    async def avocabulary(self) -> list[str]:
        """Every token id's text, indexed by id (a piece that is not valid UTF-8 on its own,
        such as a lone byte, is given with U+FFFD in place of the bytes)."""
        raise missing_tokenizer(self.model_string)

    def identity(self) -> dict[str, Any]:
        """What makes two backends give the same answers (part of every cache key).

        Never includes credentials.
        """
        return {"backend": self.name, "model": self.model}

    @property
    def model_string(self) -> str:
        return f"{self.name}:{self.model}"

    async def aclose(self) -> None:
        """Release clients, threads and models. Optional."""  # noqa: B027 - an optional hook
        return None


class WrappingBackend(Backend):
    """A layer around another backend (cache, meter, retry, throttle, merging).

    It answers as the backend it wraps: same name, model, capabilities and cache
    identity; the tokenizer and ``aclose`` pass straight through. Subclasses
    implement :meth:`agenerate` and :meth:`ascore`.
    """

    def __init__(self, inner: Backend) -> None:
        self.inner = inner
        self.name, self.model = inner.name, inner.model
        self.capabilities = inner.capabilities

    def identity(self) -> dict[str, Any]:
        return self.inner.identity()

    async def atokenize(self, texts: Sequence[str]) -> list[list[int]]:
        return await self.inner.atokenize(texts)

    async def adetokenize(self, ids: Sequence[Sequence[int]]) -> list[str]:
        return await self.inner.adetokenize(ids)

    async def avocabulary(self) -> list[str]:
        return await self.inner.avocabulary()

    async def aclose(self) -> None:
        await self.inner.aclose()
