"""LLM backends and the wrappers that compose around them.

A model is named ``backend:model``; the prefix picks the backend:

* ``llamacpp:smollm2`` (default, embedded, offline) or ``llamacpp:/path/model.gguf``;
* ``openai:<model>`` — any OpenAI-compatible endpoint (``base_url`` option);
* ``litellm:<provider>/<model>`` — the providers litellm covers (``api_base`` option), or
  ``litellm:<model_name>`` with a ``router`` config spreading calls over many endpoints;
* ``vllm:<hf-model-id>`` or ``vllm:/path/model-dir`` — vLLM in this process (extra ``promptopt[vllm]``);
* ``fake:<name>`` — :class:`~promptopt.testing.FakeBackend`, for tests.

Third-party backends plug in through the ``promptopt.backends`` entry-point
group: the entry point's name is the prefix, its object a :class:`Backend`
subclass. ``<prefix>:<name>`` is then built as ``cls(name, **options)``, with
the options first passed through ``cls.resolve_options(options, env)`` (where a
backend reads its environment variables). Built-in prefixes win over plugins.
"""

from __future__ import annotations

import importlib
from importlib.metadata import EntryPoint, entry_points
from typing import Any

from promptopt._plugins import load_plugin_class
from promptopt.backends._base import Backend, Capabilities
from promptopt.backends._cache import CachedBackend, ResponseCache
from promptopt.backends._retry import RetryingBackend, RetryPolicy
from promptopt.exceptions import ConfigError, UnknownNameError

__all__ = ["BACKENDS", "Backend", "CachedBackend", "Capabilities", "ResponseCache", "RetryPolicy",
           "RetryingBackend", "backend_class", "list_backends", "make_backend", "parse_model_string"]

ENTRY_POINT_GROUP = "promptopt.backends"

#: the built-in backends by prefix, as ``module:class``; a module is imported only when its prefix is
#: used, so the optional extras (vllm, litellm) are needed only by those who name them
_BUILTIN = {
    "llamacpp": "promptopt.backends.llamacpp:LlamaCppBackend",
    "openai": "promptopt.backends.openai:OpenAIBackend",
    "litellm": "promptopt.backends.litellm:LiteLLMBackend",
    "vllm": "promptopt.backends.vllm:VLLMBackend",
    "fake": "promptopt.testing:FakeBackend",
}
#: the built-in prefixes
BACKENDS = tuple(_BUILTIN)


def _plugins() -> dict[str, EntryPoint]:
    return {ep.name: ep for ep in entry_points(group=ENTRY_POINT_GROUP) if ep.name not in _BUILTIN}


def list_backends() -> list[str]:
    """Every prefix a model string may start with: the built-ins, then installed plugins.

    Example:
        >>> list_backends()[:3]
        ['llamacpp', 'openai', 'litellm']
    """
    return [*BACKENDS, *sorted(_plugins())]


def _load_plugin(ep: EntryPoint) -> type[Backend]:
    cls: type[Backend] = load_plugin_class(ep, Backend, "backend")
    return cls


def backend_class(prefix: str) -> type[Backend]:
    """The Backend subclass registered under ``prefix`` (imported now, not before).

    Raises:
        UnknownNameError: no backend has that prefix (the message lists those that do).
        ConfigError: the prefix belongs to a plugin that cannot be imported.
    """
    if prefix in _BUILTIN:
        module, _, name = _BUILTIN[prefix].partition(":")
        cls: type[Backend] = getattr(importlib.import_module(module), name)
        return cls
    plugins = _plugins()
    if prefix in plugins:
        return _load_plugin(plugins[prefix])
    raise UnknownNameError(f"unknown backend {prefix!r}; known backends: {', '.join(list_backends())}")


def parse_model_string(model: str) -> tuple[str, str]:
    """Split ``"backend:model"``; raise a ConfigError that shows the expected shape."""
    backend, sep, name = model.partition(":")
    if not sep or not backend or not name.strip():
        raise ConfigError(f"model {model!r} is not of the form backend:model; "
                          "e.g. llamacpp:smollm2 or openai:gpt-4o-mini")
    if backend not in _BUILTIN and backend not in _plugins():
        raise UnknownNameError(f"unknown backend {backend!r} in model {model!r}; "
                               f"known backends: {', '.join(list_backends())}")
    return backend, name


def make_backend(model: str | Backend, **options: Any) -> Backend:
    """A backend from a model string (or an instance, returned as is).

    Args:
        model: ``backend:model`` string or a Backend.
        **options: the backend's constructor options (e.g. ``base_url``, ``api_key``
            for ``openai``; ``n_ctx`` for ``llamacpp``), as its ``resolve_options`` returns them.

    Raises:
        UnknownNameError: an unknown prefix.
        ConfigError: a malformed model string, or an option the backend does not take.
    """
    if isinstance(model, Backend):
        return model
    prefix, name = parse_model_string(model)
    cls = backend_class(prefix)
    try:
        return cls(name, **options)  # type: ignore[call-arg]  # the registry's constructor contract
    except TypeError as exc:
        raise ConfigError(f"bad option for backend {prefix!r}: {exc}") from exc
