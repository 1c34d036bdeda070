"""A content-addressed SQLite cache that wraps any backend.

The key hashes the backend's identity (backend, model, endpoint — never
credentials) with the full request (messages, sampling parameters, sample
index). Values are JSON. A repeated or resumed run therefore replays answers
instead of paying for them again.
"""

from __future__ import annotations

import asyncio
import contextlib
import glob
import hashlib
import json
import os
import random
import sqlite3
import threading
import time
import uuid
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any, TypeVar

from promptopt.backends._base import Backend
from promptopt.exceptions import ConfigError
from promptopt.types import Completion, LogProb, Request, ScoreRequest

try:
    import fcntl
except ImportError:  # Windows: no advisory file locks, so no answer log (see ResponseCache)
    fcntl = None  # type: ignore[assignment]

__all__ = ["CachedBackend", "ResponseCache"]

T = TypeVar("T", Completion, LogProb)

_INSERT = "INSERT OR REPLACE INTO responses (key, value) VALUES (?, ?)"


class ResponseCache:
    """Key-value store of JSON responses in one SQLite file (WAL mode, safe across processes).

    A new answer is appended to this process's answer log beside the database
    (``<file>.answers-<id>.log``, one ``write`` per call of :meth:`put_many`),
    so a killed process loses none, and moved into SQLite in batches: when an
    answer comes ``flush_seconds`` or more after the oldest one waiting, when
    ``flush_answers`` wait, and on :meth:`close`. A commit per answer cost more
    than the rest of an evaluation (WAL checkpoints sync the disk every
    thousand or so).
    Other processes see an answer once it is moved. Each log is locked by its
    process (``flock``); opening the cache moves in the logs of processes that
    died. Where file locks do not exist (Windows), every answer is committed
    to SQLite at once instead.
    """

    def __init__(self, path: str | Path, *, flush_seconds: float = 0.5, flush_answers: int = 1000) -> None:
        self.path = Path(path)
        self.flush_seconds, self.flush_answers = flush_seconds, flush_answers
        self._lock = threading.Lock()
        self._waiting: dict[str, str] = {}  # logged, not yet in SQLite: key -> JSON
        self._flush_due: float | None = None
        self._log: int | None = None
        self._log_path: Path | None = None
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(self.path, timeout=30.0, check_same_thread=False)
            self._set_up()
            if fcntl is not None:
                self._adopt_logs_of_dead_processes()
                self._open_log()
        except (OSError, sqlite3.Error) as exc:
            raise ConfigError(f"cannot use the response cache {str(self.path)!r}: {exc}; "
                              "pass another file with --cache PATH, or --no-cache") from exc

    def _set_up(self) -> None:
        # Switching a fresh file to WAL needs a moment alone with it: several processes
        # opening one new cache at once get "database is locked" and try again.
        deadline = time.monotonic() + 30.0
        while True:
            try:
                self._db.execute("PRAGMA journal_mode=WAL")
                break
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or time.monotonic() > deadline:
                    raise
                time.sleep(random.uniform(0.01, 0.05))
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute("CREATE TABLE IF NOT EXISTS responses (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
        self._db.commit()

    def _log_paths(self) -> list[Path]:
        return sorted(self.path.parent.glob(glob.escape(self.path.name) + ".answers-*.log"))

    def _adopt_logs_of_dead_processes(self) -> None:
        """Move into SQLite the answer logs nobody holds (their process died), then delete them."""
        assert fcntl is not None
        for log_path in self._log_paths():
            try:
                fd = os.open(log_path, os.O_RDONLY)
            except FileNotFoundError:
                continue  # its process closed it meanwhile
            try:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    continue  # its process is alive
                with open(fd, "rb", closefd=False) as log:
                    rows = _parse_log(log.read())
                with self._db:
                    self._db.executemany(_INSERT, rows)
                log_path.unlink(missing_ok=True)  # another opener may have moved it in first
            finally:
                os.close(fd)

    def _open_log(self) -> None:
        assert fcntl is not None
        while True:
            log_path = self.path.with_name(f"{self.path.name}.answers-{uuid.uuid4().hex[:12]}.log")
            fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND, 0o644)
            fcntl.flock(fd, fcntl.LOCK_EX)
            try:
                if os.stat(log_path).st_ino == os.fstat(fd).st_ino:
                    break
            except FileNotFoundError:
                pass
            os.close(fd)  # an opener took the new, still unlocked file for a dead one's and deleted it
        self._log, self._log_path = fd, log_path

    def get_many(self, keys: Sequence[str]) -> dict[str, dict[str, Any]]:
        unique = list(dict.fromkeys(keys))
        with self._lock:
            found = {k: json.loads(self._waiting[k]) for k in unique if k in self._waiting}
        rest = [k for k in unique if k not in found]
        for start in range(0, len(rest), 500):  # SQLite limits bound parameters
            chunk = rest[start:start + 500]
            marks = ",".join("?" * len(chunk))
            rows = self._db.execute(f"SELECT key, value FROM responses WHERE key IN ({marks})", chunk)
            found.update((k, json.loads(v)) for k, v in rows)
        return found

    def put_many(self, items: dict[str, dict[str, Any]]) -> None:
        """Store answers; once this returns they survive the process being killed."""
        encoded = {k: json.dumps(v, ensure_ascii=False) for k, v in items.items()}
        if self._log is None:
            with self._lock, self._db:
                self._db.executemany(_INSERT, encoded.items())
            return
        # One line per answer: the key as JSON, a tab, the value (JSON escapes tabs and newlines).
        lines = "".join(f"{json.dumps(k, ensure_ascii=False)}\t{v}\n" for k, v in encoded.items())
        with self._lock:
            _write_all(self._log, lines.encode("utf-8"))
            self._waiting.update(encoded)
            now = time.monotonic()
            if self._flush_due is None:
                self._flush_due = now + self.flush_seconds
            if len(self._waiting) >= self.flush_answers or now >= self._flush_due:
                self._flush()

    def flush(self) -> None:
        """Move the logged answers into SQLite now, where other processes see them."""
        with self._lock:
            self._flush()

    def _flush(self) -> None:
        if self._waiting:
            with self._db:
                self._db.executemany(_INSERT, self._waiting.items())
            if self._log is not None:
                os.ftruncate(self._log, 0)  # before this, a crash would only move the same rows in again
            self._waiting = {}
        self._flush_due = None

    def __len__(self) -> int:
        self.flush()
        return int(self._db.execute("SELECT COUNT(*) FROM responses").fetchone()[0])

    def close(self) -> None:
        """Move the logged answers into SQLite and close. If that fails, the log stays for the next opener."""
        if self._log is None:
            self._db.close()
            return
        log, log_path, self._log = self._log, self._log_path, None
        try:
            self.flush()
            assert log_path is not None
            log_path.unlink(missing_ok=True)
        finally:
            os.close(log)
            self._db.close()

    def __del__(self) -> None:
        # An instance dropped without close() (say, by a script) still moves its answers in.
        if getattr(self, "_log", None) is not None:
            with contextlib.suppress(Exception):  # the log stays on disk and the next opener moves it in
                self.close()


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def _parse_log(data: bytes) -> list[tuple[str, str]]:
    """The (key, JSON value) rows of an answer log; a line cut short by a crash is skipped."""
    rows = []
    for line in data.decode("utf-8", errors="replace").splitlines():
        key, tab, value = line.partition("\t")
        try:
            if tab and isinstance(key := json.loads(key), str):
                json.loads(value)
                rows.append((key, value))
        except ValueError:
            continue
    return rows


def cache_key(identity: dict[str, Any], payload: dict[str, Any]) -> str:
    blob = json.dumps({"backend": identity, "request": payload}, sort_keys=True,
                      ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


class CachedBackend(Backend):
    """Answers requests seen before from a :class:`ResponseCache`; sends only the misses.

    Misses go out one request at a time (up to the backend's ``max_concurrency``
    at once) and each answer is stored as it arrives.
    Replayed values come back with ``cached=True`` so the meter can tell them apart.
    """

    def __init__(self, inner: Backend, cache: ResponseCache) -> None:
        self.inner, self.cache = inner, cache
        self._slots: asyncio.Semaphore | None = None
        self.name, self.model = inner.name, inner.model
        self.capabilities = inner.capabilities

    def identity(self) -> dict[str, Any]:
        return self.inner.identity()

    async def agenerate(self, requests: Sequence[Request]) -> list[Completion]:
        return await self._through(requests, self.inner.agenerate, Completion)

    async def ascore(self, requests: Sequence[ScoreRequest]) -> list[LogProb]:
        return await self._through(requests, self.inner.ascore, LogProb)

    async def _through(self, requests: Sequence[Any], send: Any, kind: type[T]) -> list[T]:
        ident = self.inner.identity()
        keys = [cache_key(ident, r.key_payload()) for r in requests]
        hits = self.cache.get_many(keys)
        missing: dict[str, Any] = {}
        for key, req in zip(keys, requests, strict=True):
            if key not in hits:
                missing.setdefault(key, req)  # identical requests are sent once
        fresh = await self._send_missing(missing, send)
        out: list[T] = []
        for key in keys:
            if key in hits:
                out.append(replace(kind(**hits[key]), cached=True))
            elif key in missing:
                out.append(fresh[key])
                del missing[key]  # a repeat later in this batch was not paid again
            else:
                out.append(replace(fresh[key], cached=True))
        return out

    async def _send_missing(self, missing: dict[str, Any], send: Any) -> dict[str, Any]:
        """Send each miss and store its answer as it arrives.

        At most ``max_concurrency`` requests are between sending and storing, so
        a crash loses at most that many paid answers. An engine that batches
        (``capabilities.batches``) gets up to that many per call, stored when the
        call returns; any other backend gets one request per call. After the
        first failure no new request is sent; those in flight finish and are
        stored; then the failure is raised, with no request left running.
        """
        width = max(1, self.capabilities.max_concurrency)
        if self._slots is None:
            self._slots = asyncio.Semaphore(1 if self.capabilities.batches else width)
        slots = self._slots
        fresh: dict[str, Any] = {}
        failures: list[Exception] = []
        items = list(missing.items())
        size = width if self.capabilities.batches else 1
        groups = [items[i:i + size] for i in range(0, len(items), size)]

        async def one(group: list[tuple[str, Any]]) -> None:
            async with slots:
                if failures:
                    return
                try:
                    answers = await send([req for _, req in group])
                except Exception as exc:  # kept to raise after the siblings settle
                    failures.append(exc)
                    return
                fresh.update((key, answer) for (key, _), answer in zip(group, answers, strict=True))
                try:
                    # vars(), not asdict(): the values are flat, and asdict's deep copy cost ~25 us an answer
                    self.cache.put_many({key: dict(vars(answer))
                                         for (key, _), answer in zip(group, answers, strict=True)})
                except Exception as exc:  # e.g. a full disk: send nothing more, raise it once the rest settle
                    failures.append(exc)

        await asyncio.gather(*(one(group) for group in groups))
        if failures:
            raise failures[0]
        return fresh

    async def aclose(self) -> None:
        await self.inner.aclose()
