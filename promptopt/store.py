"""RunStore: the files of one run under ``runs/<id>/``.

* ``config.json`` — everything needed to rerun (written atomically, once);
* ``events.jsonl`` — append-only, one typed JSON object per line (candidates,
  evaluations, proposals, skips); a torn last line from a crash is ignored
  when read back;
* ``result.json`` and ``best_prompt.txt`` — written atomically at the end.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from promptopt.events import read_events

__all__ = ["RunStore", "write_atomic"]


def write_atomic(path: Path, text: str) -> None:
    """Write ``text`` so that readers see the old file or the new one, never half of it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class RunStore:
    """Reads and writes the files of one run directory."""

    def __init__(self, run_dir: str | Path) -> None:
        self.dir = Path(run_dir)
        self._events: Any = None

    @property
    def events_path(self) -> Path:
        return self.dir / "events.jsonl"

    def write_json(self, name: str, data: Any) -> None:
        write_atomic(self.dir / name, json.dumps(data, indent=2, ensure_ascii=False, sort_keys=True) + "\n")

    def write_text(self, name: str, text: str) -> None:
        write_atomic(self.dir / name, text)

    def read_json(self, name: str) -> Any:
        return json.loads((self.dir / name).read_text(encoding="utf-8"))

    def start_events(self) -> None:
        """Start a fresh event log (a rerun of the same run id replays into a new one)."""
        self.dir.mkdir(parents=True, exist_ok=True)
        self._events = open(self.events_path, "w", encoding="utf-8")  # noqa: SIM115 - held open for appends

    def append(self, event: dict[str, Any]) -> None:
        if self._events is None:
            self.start_events()
        self._events.write(json.dumps(event, ensure_ascii=False, sort_keys=True) + "\n")
        self._events.flush()

    def events(self) -> Iterator[dict[str, Any]]:
        """The logged events (:func:`promptopt.events.read_events`); a torn last line is skipped."""
        return read_events(self.events_path)

    def close(self) -> None:
        if self._events is not None:
            self._events.close()
            self._events = None
