"""Reading TOML files whose errors name the line: run configurations and router files.

``tomllib`` keeps no positions, so :func:`toml_lines` scans the text for where
each table and key starts, and :class:`Where` turns a key's path into
``"<file> line <n>"`` for messages.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from promptopt.exceptions import ConfigError

__all__ = ["KeyPath", "Where", "parse_toml", "read_toml_file", "toml_lines"]

#: a key's place in parsed data: table names, keys and array indices
KeyPath = tuple[str | int, ...]


class Where:
    """Turns a field's path in the parsed data into ``"<file> line <n>"`` for messages."""

    def __init__(self, source: str, lines: Mapping[KeyPath, int] | None = None) -> None:
        self.source = source
        self.lines = dict(lines or {})

    def __call__(self, path: KeyPath) -> str:
        # A missing field has no line of its own: point at the nearest enclosing one.
        for end in range(len(path), 0, -1):
            line = self.lines.get(path[:end])
            if line is not None:
                return f"{self.source} line {line}"
        return self.source

    def fail(self, path: KeyPath, message: str) -> ConfigError:
        return ConfigError(f"{self(path)}: {message}")


def read_toml_file(path: str | Path, what: str, flag: str) -> tuple[Any, dict[KeyPath, int]]:
    """:func:`parse_toml` of a file; a missing or unreadable file is a ConfigError naming ``what``
    (``"config file"``) and the ``flag`` that gave the path."""
    source = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{what} {source!r} does not exist; check the path given to {flag}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read {what} {source!r}: {exc}") from None
    return parse_toml(text, source)


def parse_toml(text: str, source: str) -> tuple[Any, dict[KeyPath, int]]:
    """Parse ``text``; return the data and where each key starts.

    Raises:
        ConfigError: not valid TOML; the message names ``source``, the line and what is wrong.
    """
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover - Python 3.10
        try:
            import tomli as tomllib
        except ModuleNotFoundError:
            raise ConfigError(f"reading {source!r} on Python 3.10 needs tomli; run `pip install tomli`") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        message = str(exc)
        found = re.search(r"\(at line (\d+), column (\d+)\)", message)
        line = getattr(exc, "lineno", None) or (int(found.group(1)) if found else None)
        detail = re.sub(r"\s*\(at line \d+, column \d+\)", "", message).rstrip(".")
        where = f"{source} line {line}" if line else source
        raise ConfigError(f"{where}: not valid TOML ({detail}){_shown_line(text, line)}") from None
    return data, toml_lines(text)


def _shown_line(text: str, line: int | None) -> str:
    """The key of the offending line, so the message names it; never the value (it may be a secret)."""
    if line is None or not 1 <= line <= len(text.splitlines()):
        return ""
    key, sep, _ = text.splitlines()[line - 1].partition("=")
    key = key.strip()
    return f" in key {key!r}" if sep and _BARE_KEY.fullmatch(key) else ""


_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+(?:\s*\.\s*[A-Za-z0-9_-]+)*")
_HEADER = re.compile(r"\s*(\[\[?)\s*([^\[\]]+?)\s*\]\]?\s*(?:#.*)?$")
_KEY = re.compile(r"""\s*("[^"]*"|'[^']*'|[A-Za-z0-9_-]+(?:\s*\.\s*[A-Za-z0-9_-]+)*)\s*=\s*(.*)$""")
_INLINE_KEY = re.compile(r"""[{,]\s*("[^"]*"|'[^']*'|[A-Za-z0-9_-]+)\s*=""")


def _key_parts(key: str) -> tuple[str, ...]:
    if key[0] in "\"'":
        return (key[1:-1],)
    return tuple(part.strip() for part in key.split("."))


def toml_lines(text: str) -> dict[KeyPath, int]:
    """Where each table, array-of-tables entry and key of a TOML text starts (best effort).

    Scans the lines: ``[table]`` and ``[[array]]`` headers, ``key = value``
    lines, and one inline table per line inside a multi-line array
    (``deployments = [ {...}, {...} ]``).
    """
    lines: dict[KeyPath, int] = {}
    counts: dict[str, int] = {}
    table: KeyPath = ()
    inline: tuple[KeyPath, int] | None = None  # an open multi-line array: its path, items seen
    for number, raw in enumerate(text.splitlines(), start=1):
        stripped = raw.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if inline is not None:
            array, seen = inline
            if stripped.startswith("{"):
                lines.setdefault((*array, seen), number)
                for match in _INLINE_KEY.finditer(stripped):
                    lines.setdefault((*array, seen, match.group(1).strip("\"'")), number)
                inline = (array, seen + 1)
            if stripped.startswith("]"):
                inline = None
            continue
        header = _HEADER.match(raw)
        if header:
            name = header.group(2)
            if header.group(1) == "[[":
                index = counts.get(name, 0)
                counts[name] = index + 1
                table = (*_key_parts(name), index)
            else:
                table = _key_parts(name)
            lines.setdefault(table, number)
            continue
        key = _KEY.match(raw)
        if key:
            path = (*table, *_key_parts(key.group(1)))
            lines.setdefault(path, number)
            value = key.group(2).strip()
            if value.startswith("[") and "]" not in value:
                inline = (path, 0)
            for match in _INLINE_KEY.finditer(value if value.startswith("{") else ""):
                lines.setdefault((*path, match.group(1).strip("\"'")), number)
    return lines
