"""LLM backends and the wrappers that compose around them.

A model is named ``backend:model``:

* ``llamacpp:smollm2`` (default, embedded, offline) or ``llamacpp:/path/model.gguf``;
* ``openai:<model>`` — any OpenAI-compatible endpoint (``base_url`` option);
* ``litellm:<provider>/<model>`` — the providers litellm covers (``api_base`` option), or
  ``litellm:<model_name>`` with a ``router`` config spreading calls over many endpoints;
* ``vllm:<hf-model-id>`` or ``vllm:/path/model-dir`` — vLLM in this process (extra ``promptopt[vllm]``);
* ``fake:<name>`` — :class:`~promptopt.testing.FakeBackend`, for tests.
"""

from __future__ import annotations

from typing import Any

from promptopt.backends._base import Backend, Capabilities
from promptopt.backends._cache import CachedBackend, ResponseCache
from promptopt.backends._retry import RetryingBackend, RetryPolicy
from promptopt.exceptions import ConfigError, UnknownNameError

__all__ = ["BACKENDS", "Backend", "CachedBackend", "Capabilities", "ResponseCache", "RetryPolicy",
           "RetryingBackend", "make_backend", "parse_model_string"]

BACKENDS = ("llamacpp", "openai", "litellm", "vllm", "fake")


def parse_model_string(model: str) -> tuple[str, str]:
    """Split ``"backend:model"``; raise a ConfigError that shows the expected shape."""
    backend, sep, name = model.partition(":")
    if not sep or not backend or not name.strip():
        raise ConfigError(f"model {model!r} is not of the form backend:model; "
                          "e.g. llamacpp:smollm2 or openai:gpt-4o-mini")
    if backend not in BACKENDS:
        raise UnknownNameError(f"unknown backend {backend!r} in model {model!r}; "
                               f"known backends: {', '.join(BACKENDS)}")
    return backend, name


def make_backend(model: str | Backend, **options: Any) -> Backend:
    """A backend from a model string (or an instance, returned as is).

    Args:
        model: ``backend:model`` string or a Backend.
        **options: passed to the backend's constructor (e.g. ``base_url``,
            ``api_key`` for ``openai``; ``n_ctx`` for ``llamacpp``).
    """
    if isinstance(model, Backend):
        return model
    backend, name = parse_model_string(model)
    try:
        if backend == "llamacpp":
            from promptopt.backends.llamacpp import LlamaCppBackend
            return LlamaCppBackend(name, **options)
        if backend == "openai":
            from promptopt.backends.openai import OpenAIBackend
            return OpenAIBackend(model=name, **options)
        if backend == "litellm":
            from promptopt.backends.litellm import LiteLLMBackend
            if "base_url" in options:  # the CLI's --base-url is litellm's api_base
                options["api_base"] = options.pop("base_url")
            return LiteLLMBackend(name, **options)
        if backend == "vllm":
            from promptopt.backends.vllm import VLLMBackend
            return VLLMBackend(name, **options)
        from promptopt.testing import FakeBackend
        return FakeBackend(name, **options)
    except TypeError as exc:
        raise ConfigError(f"bad option for backend {backend!r}: {exc}") from exc
