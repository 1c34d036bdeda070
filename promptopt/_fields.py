"""Dataclass fields as settings: checked against their annotations, described, documented, merged.

What :class:`~promptopt.config.RunConfig` (and the CLI flags made from it)
needs from a field's annotation and its class docstring, kept apart from the
fields themselves.
"""

from __future__ import annotations

import difflib
import inspect
import re
import types
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Union, get_args, get_origin

__all__ = ["describe", "did_you_mean", "field_docs", "given", "matches", "members", "merged", "shown"]

#: option names whose values are never shown (in a repr or a message)
_SECRET = re.compile(r"(^|_)(key|keys|secret|password|token)$", re.IGNORECASE)


def members(hint: Any) -> tuple[Any, ...]:
    """The types a union annotation allows (the annotation itself if it is not a union)."""
    return get_args(hint) if get_origin(hint) in (Union, types.UnionType) else (hint,)


def matches(value: object, hint: Any) -> bool:
    """Whether ``value`` is of the annotated type (a bool is not a number; a string is not a list)."""
    if hint is Any:
        return True
    if hint is type(None):
        return value is None
    origin = get_origin(hint)
    if origin in (Union, types.UnionType):
        return any(matches(value, member) for member in get_args(hint))
    if origin is not None:  # Mapping[str, Any], Sequence[str]
        if not isinstance(value, origin) or isinstance(value, (str, bytes)):
            return False
        if isinstance(value, Mapping):
            return all(isinstance(k, str) for k in value)
        return all(matches(item, get_args(hint)[0]) for item in value)
    if hint in (int, float) and isinstance(value, bool):
        return False
    return isinstance(value, (int, float) if hint is float else hint)


_WORDS = {str: "a string", int: "a whole number", float: "a number", bool: "true or false", Path: "a path",
          type(None): "None"}


def describe(hint: Any) -> str:
    """An annotation in words, for messages: ``int | None`` is "a whole number or None"."""
    words = []
    for member in members(hint):
        origin = get_origin(member)
        if origin is not None:
            words.append("a table of names to values" if issubclass(origin, Mapping) else "a list of strings")
        else:
            words.append(_WORDS.get(member, f"a {getattr(member, '__name__', member)}"))
    return " or ".join(dict.fromkeys(words))


def shown(value: object, name: str = "") -> str:
    """A value for a person: secret options (and whatever a ``*_options`` setting holds, if it
    is not even a mapping) are never printed."""
    if isinstance(value, Mapping):
        inner = ", ".join(f"{k!r}: {'***' if _SECRET.search(str(k)) else shown(v)}" for k, v in value.items())
        return "{" + inner + "}"
    if name.endswith("_options"):
        return f"a {type(value).__name__}"
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def did_you_mean(key: str, known: Mapping[str, Any]) -> str:
    """`` (did you mean 'n_dev'?)`` when a known name is close to ``key``, else nothing."""
    close = difflib.get_close_matches(key, list(known), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def merged(base: Mapping[str, Any], top: Mapping[str, Any]) -> dict[str, Any]:
    """``top`` over ``base``; where both hold a table, key by key."""
    out = dict(base)
    for key, value in top.items():
        below = out.get(key)
        out[key] = merged(below, value) if isinstance(below, Mapping) and isinstance(value, Mapping) else value
    return out


def given(overrides: Mapping[str, Any], key: tuple[str, ...]) -> bool:
    """Whether ``key`` (or the table or value holding it) is among the overrides."""
    node: Any = overrides
    for part in key:
        if not isinstance(node, Mapping) or part not in node:
            return False
        node = node[part]
        if not isinstance(node, Mapping):
            return True
    return True


def field_docs(cls: type) -> dict[str, str]:
    """Each field's description from a Google-style class docstring (its Args or Attributes), on one line.

    Example:
        >>> from promptopt.budget import Budget
        >>> field_docs(Budget)["tokens"]
        'prompt + completion tokens over both roles.'
    """
    docs: dict[str, str] = {}
    current, inside = None, False
    for line in inspect.cleandoc(cls.__doc__ or "").splitlines():
        if line.strip() in ("Args:", "Attributes:"):
            inside = True
            continue
        entry = re.match(r"    (\w+)(?: \([^)]*\))?: (.*)$", line)
        if inside and entry:
            current = entry.group(1)
            docs[current] = entry.group(2).strip()
        elif inside and current and line.startswith("        "):
            docs[current] += " " + line.strip()
        elif line.strip() and not line.startswith(" "):
            inside, current = False, None
    return docs
