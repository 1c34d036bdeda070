"""The response cache's answer log: new answers appended to a file of this process's own.

One ``write`` stores an answer so that ``kill -9`` cannot lose it, which a
SQLite commit does too but at several times the cost (see ResponseCache). The
log sits beside the cache file as ``<file>.answers-<12 hex>.log`` and is held
with ``flock`` while its process lives, so a process opening the cache moves
in only the logs of processes that died.
"""

from __future__ import annotations

import glob
import json
import os
import uuid
from collections.abc import Callable
from pathlib import Path

try:
    import fcntl
except ImportError:  # Windows: no advisory file locks, so no answer log
    fcntl = None  # type: ignore[assignment]

__all__ = ["AnswerLog", "move_in_logs_of_dead_processes"]

Rows = list[tuple[str, str]]  # (key, value as JSON)

# Logs open in this process (resolved paths): never taken for a dead process's, whatever flock does here.
_OPEN_HERE: set[Path] = set()


class AnswerLog:
    """This process's append-only file of answers not yet moved into SQLite."""

    def __init__(self, fd: int, path: Path) -> None:
        self._fd, self.path = fd, path
        _OPEN_HERE.add(path.resolve())

    @classmethod
    def create(cls, db_path: Path) -> AnswerLog | None:
        """A new log for ``db_path``, locked by this process; None where files cannot be locked."""
        if fcntl is None:
            return None
        while True:
            path = db_path.with_name(f"{db_path.name}.answers-{uuid.uuid4().hex[:12]}.log")
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
            except OSError:  # a file system without flock (ENOLCK, EOPNOTSUPP)
                os.close(fd)
                path.unlink(missing_ok=True)
                return None
            try:
                if os.stat(path).st_ino == os.fstat(fd).st_ino:
                    return cls(fd, path)
            except FileNotFoundError:
                pass
            os.close(fd)  # another opener took the new, not yet locked file for a dead one's and deleted it

    def append(self, rows: dict[str, str]) -> None:
        """Write the rows in one go. A line a failed write cut short ends at the next write's first byte."""
        # key as JSON, a tab, the value: JSON escapes tabs and newlines, so a line is one answer
        data = ("\n" + "".join(f"{_key_json(key)}\t{value}\n" for key, value in rows.items())).encode("utf-8")
        written = os.write(self._fd, data)
        while written < len(data):  # a short write (a signal, a nearly full disk): write the rest
            written += os.write(self._fd, data[written:])

    def clear(self) -> None:
        """Empty the log once its answers are in SQLite (a crash before this only moves them in again)."""
        os.ftruncate(self._fd, 0)

    def close(self, *, delete: bool) -> None:
        """Let go of the log (once); ``delete=False`` leaves it for the next opener (or the parent, after a fork)."""
        if self._fd < 0:
            return
        fd, self._fd = self._fd, -1
        _OPEN_HERE.discard(self.path.resolve())
        try:
            if delete:
                self.path.unlink(missing_ok=True)
        finally:
            os.close(fd)


def move_in_logs_of_dead_processes(db_path: Path, store: Callable[[Rows], None]) -> None:
    """Hand the rows of every log nobody holds to ``store``, then delete the log."""
    if fcntl is None:
        return
    pattern = glob.escape(db_path.name) + ".answers-" + "[0-9a-f]" * 12 + ".log"
    for path in sorted(db_path.parent.glob(pattern)):
        if path.resolve() in _OPEN_HERE:
            continue
        try:
            fd = os.open(path, os.O_RDONLY)
        except FileNotFoundError:
            continue  # its process closed it meanwhile
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                continue  # its process is alive (or locks do not work here, so we cannot tell)
            with open(fd, "rb", closefd=False) as log:
                store(parse_log(log.read()))
            path.unlink(missing_ok=True)  # another opener may have moved it in first
        finally:
            os.close(fd)


def _key_json(key: str) -> str:
    # The cache's keys are hex digests, which JSON quotes as they are; the encoder is for any other key.
    return f'"{key}"' if key.isascii() and key.isalnum() else json.dumps(key, ensure_ascii=False)


def parse_log(data: bytes) -> Rows:
    """The (key, JSON value) rows of a log; a line cut short by a crash or a failed write is skipped."""
    rows = []
    for raw in data.split(b"\n"):
        try:
            key, tab, value = raw.decode("utf-8").partition("\t")
            if tab and isinstance(key := json.loads(key), str):
                json.loads(value)
                rows.append((key, value))
        except ValueError:  # UnicodeDecodeError and JSONDecodeError included
            continue
    return rows
