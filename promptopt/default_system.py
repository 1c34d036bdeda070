"""The system prompt a chat model gets when it is given none: the seed of a search across tasks.

Some chat templates put in a system message of their own when a conversation
has none; SmolLM2's says "You are a helpful AI assistant named SmolLM, trained
by Hugging Face". A search over a set of tasks rewrites the system prompt, so
it starts from that text made explicit: the seed then asks the model exactly
what each task's own seed prompt asks it (the same rendered text, so the same
scores), and the optimizer sees what it is improving.

The text is read from the model's chat template by rendering a conversation
without a system message and one with a marker as system message, and taking
what the first has where the second has the marker. Only a backend that renders
on the calling thread is asked (``llamacpp``); for the others the seed is empty
(the model still applies its default) unless one is given (``system=``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from promptopt.backends._base import Backend, WrappingBackend
from promptopt.exceptions import BackendError
from promptopt.types import Message

__all__ = ["default_system_prompt", "default_system_text"]

_MARKER = "\u2063SYSTEM-MARKER\u2063"
_QUESTION = Message("user", "\u2063QUESTION\u2063")
#: backends whose chat template can be rendered here, before any call (vLLM's engine lives on its worker thread)
_RENDERING_BACKENDS = ("llamacpp",)


def default_system_text(render: Callable[[Sequence[Message]], str]) -> str:
    """The system text a chat template adds when none is given ("" when it adds none).

    Args:
        render: messages → the prompt text the model reads (its chat template applied).

    Example:
        >>> def chatml(messages):
        ...     head = "" if messages[0].role == "system" else "<|system|>Be kind.<|end|>"
        ...     return head + "".join(f"<|{m.role}|>{m.content}<|end|>" for m in messages)
        >>> default_system_text(chatml)
        'Be kind.'
    """
    marked = render([Message("system", _MARKER), _QUESTION])
    plain = render([_QUESTION])
    before, found, after = marked.partition(_MARKER)
    fits = len(plain) >= len(before) + len(after) and plain.startswith(before) and plain.endswith(after)
    if not found or not fits:
        return ""
    text = plain[len(before): len(plain) - len(after)]
    return "" if _QUESTION.content in text else text


def default_system_prompt(backend: Backend) -> str:
    """The target model's default system prompt, read from its chat template ("" when unknown)."""
    while isinstance(backend, WrappingBackend):
        backend = backend.inner
    render = getattr(backend, "render_prefix", None)
    if backend.name not in _RENDERING_BACKENDS or not callable(render):
        return ""
    try:
        return default_system_text(render)
    except BackendError:  # no chat template: nothing is added either
        return ""
