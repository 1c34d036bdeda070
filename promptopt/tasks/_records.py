"""Read rows from JSONL and CSV files, with errors that name the file and line.

Each row comes back with its 1-based line number, so later checks (a missing
field, a label outside the declared set) can point at the line to fix.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from promptopt.exceptions import ConfigError, DataError

__all__ = ["Record", "read_json", "read_jsonl", "read_records"]

SUFFIXES = (".jsonl", ".csv")


@dataclass(frozen=True)
class Record:
    """One row of a data file and the 1-based line it starts on."""

    line: int
    fields: dict[str, Any]


def _read_bytes(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise DataError(f"cannot read task file {path} ({exc.strerror or exc}); "
                        "check the path and its permissions") from exc


def _decode_lines(path: Path, data: bytes) -> list[str]:
    """The file's lines as text; a non-UTF-8 line is an error naming its number."""
    lines = data.split(b"\n")
    out = []
    for number, raw in enumerate(lines, start=1):
        try:
            out.append(raw.decode("utf-8-sig" if number == 1 else "utf-8"))
        except UnicodeDecodeError as exc:
            raise DataError(
                f"line {number} of {path} is not valid UTF-8 (byte {raw[exc.start]:#04x} at "
                f"column {exc.start + 1}); save the file as UTF-8") from None
    return out


def read_jsonl(path: Path) -> list[Record]:
    """Every non-blank line of a JSONL file, each a JSON object.

    Raises:
        DataError: unreadable file, non-UTF-8 bytes, bad JSON, or a line
            that is not an object (each naming the line number).
    """
    records = []
    for number, line in enumerate(_decode_lines(path, _read_bytes(path)), start=1):
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DataError(f"line {number} of {path} is not valid JSON ({exc.msg} at column "
                            f"{exc.colno}); fix or remove that line") from None
        if not isinstance(value, dict):
            raise DataError(f"line {number} of {path} is a JSON {type(value).__name__}, not an "
                            'object; write one object per line, like {"input": ..., "target": ...}')
        records.append(Record(number, value))
    return records


def read_csv(path: Path) -> list[Record]:
    """Every data row of a CSV file with a header row, as header → value.

    Raises:
        DataError: unreadable file, non-UTF-8 bytes, malformed CSV, no
            header, or a row with more cells than the header.
    """
    text = "\n".join(_decode_lines(path, _read_bytes(path)))
    reader = csv.DictReader(io.StringIO(text, newline=""), restkey="\0extra")
    records = []
    try:
        for row in reader:
            line = reader.line_num  # where the row ends: its line unless a quoted cell spans lines
            if "\0extra" in row:
                raise DataError(f"line {line} of {path} has more cells than the header "
                                f"({', '.join(reader.fieldnames or [])}); quote cells that hold commas")
            if any(v not in (None, "") for v in row.values()):
                records.append(Record(line, dict(row)))
    except csv.Error as exc:
        raise DataError(f"line {reader.line_num} of {path} is not valid CSV ({exc}); "
                        "fix the quoting on that line") from None
    if reader.fieldnames is None:
        raise DataError(f"{path} is empty; a CSV task file needs a header row and data rows")
    return records


def read_records(path: Path) -> list[Record]:
    """Rows of a ``.jsonl`` or ``.csv`` task file.

    Raises:
        ConfigError: the file name has another extension.
        DataError: see :func:`read_jsonl` and :func:`read_csv`.
    """
    suffix = path.suffix.lower()
    if suffix == ".jsonl":
        return read_jsonl(path)
    if suffix == ".csv":
        return read_csv(path)
    raise ConfigError(f"task file {path} must end in .jsonl or .csv; got {suffix or 'no extension'!r}")


def read_json(path: Path) -> Any:
    """A whole JSON document (a built-in data file)."""
    try:
        return json.loads(_read_bytes(path).decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DataError(f"{path} is not valid UTF-8 JSON ({exc}); delete it to download "
                        "it again") from None
