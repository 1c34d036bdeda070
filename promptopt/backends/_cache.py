"""A content-addressed SQLite cache that wraps any backend.

The key hashes the backend's identity (backend, model, endpoint — never
credentials) with the full request (messages, sampling parameters, sample
index). Values are JSON. A repeated or resumed run therefore replays answers
instead of paying for them again.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import os
import random
import sqlite3
import threading
import time
import weakref
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any, TypeVar

from promptopt.backends._answer_log import AnswerLog, move_in_logs_of_dead_processes
from promptopt.backends._base import Backend, WrappingBackend
from promptopt.backends._inflight import Flights, Lead
from promptopt.exceptions import ConfigError
from promptopt.types import Completion, LogProb, Request, ScoreRequest

__all__ = ["CachedBackend", "ResponseCache"]

T = TypeVar("T", Completion, LogProb)
logger = logging.getLogger(__name__)

_INSERT = "INSERT OR REPLACE INTO responses (key, value) VALUES (?, ?)"
# Built once: json.dumps with options builds an encoder per call (~6% of a stored answer's profiled time).
_CANONICAL = json.JSONEncoder(sort_keys=True, ensure_ascii=False, separators=(",", ":"))
_VALUE = json.JSONEncoder(ensure_ascii=False)


class ResponseCache:
    """Key-value store of JSON responses in one SQLite file (WAL mode, safe across processes).

    A new answer is stored by one ``write`` to this process's answer log beside
    the file (see ``_answer_log``), which ``kill -9`` cannot undo, and moved into
    SQLite in batches: ``flush_seconds`` after the first answer of a batch (a
    timer thread), at ``flush_answers`` waiting, and on :meth:`close`. (A commit
    per answer cost several times the rest of an evaluation: WAL checkpoints
    sync the disk every thousand or so.) Other processes see an answer once it
    is moved in; opening the cache moves in the logs of processes that died.
    Where files cannot be locked (Windows), each answer is committed at once.
    A forked child process must open a cache of its own.
    """

    def __init__(self, path: str | Path, *, flush_seconds: float = 0.5, flush_answers: int = 1000) -> None:
        self.path = Path(path)
        self.flush_seconds, self.flush_answers = flush_seconds, flush_answers
        # Writes come from the caller's thread and the timer's; reads need no lock (the
        # sqlite3 connection is serialized) and so never wait behind a write.
        self._lock = threading.Lock()
        self._pid = os.getpid()
        self._waiting: dict[str, str] = {}  # logged, not yet in SQLite: key -> JSON
        self._timer: threading.Timer | None = None
        self._log: AnswerLog | None = None
        self._closed = False
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(self.path, timeout=30.0, check_same_thread=False)
            self._set_up()
            move_in_logs_of_dead_processes(self.path, self._insert_missing)
            self._log = AnswerLog.create(self.path)
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

    def _insert_missing(self, rows: list[tuple[str, str]]) -> None:
        with self._db:  # an old log must not overwrite an answer stored since
            self._db.executemany("INSERT OR IGNORE INTO responses (key, value) VALUES (?, ?)", rows)

    def _in_this_process(self) -> None:
        if os.getpid() != self._pid:  # its lock, log and connection belong to the parent
            raise ConfigError(f"the response cache {str(self.path)!r} was opened before this process forked; "
                              "open a new ResponseCache(path) in the child")

    def get_many(self, keys: Sequence[str]) -> dict[str, dict[str, Any]]:
        self._in_this_process()
        unique = list(dict.fromkeys(keys))
        waiting = self._waiting  # the timer thread replaces it once moved in, never empties it in place
        found = {k: json.loads(waiting[k]) for k in unique if k in waiting}
        rest = [k for k in unique if k not in found]
        for start in range(0, len(rest), 500):  # SQLite limits bound parameters
            chunk = rest[start:start + 500]
            marks = ",".join("?" * len(chunk))
            rows = self._db.execute(f"SELECT key, value FROM responses WHERE key IN ({marks})", chunk)
            found.update((k, json.loads(v)) for k, v in rows)
        return found

    def put_many(self, items: dict[str, dict[str, Any]]) -> None:
        """Store answers; once this returns they survive the process being killed."""
        self._in_this_process()
        encoded = {k: _VALUE.encode(v) for k, v in items.items()}
        with self._lock:
            if self._log is None:
                with self._db:
                    self._db.executemany(_INSERT, encoded.items())
                return
            self._log.append(encoded)
            self._waiting.update(encoded)
            if len(self._waiting) >= self.flush_answers:
                self._flush_or_retry_later()
            elif self._timer is None:
                self._start_timer()

    def _start_timer(self) -> None:
        # A weak reference: a cache dropped without close() is still collected, and closed, at once.
        timer = threading.Timer(self.flush_seconds, _flush_if_alive, args=(weakref.ref(self),))
        timer.daemon = True
        timer.start()
        self._timer = timer

    def _flush_when_due(self) -> None:
        with self._lock:
            self._timer = None
            if not self._closed:
                self._flush_or_retry_later()

    def _flush_or_retry_later(self) -> None:
        try:
            self._flush()
        except (OSError, sqlite3.Error) as exc:  # e.g. the file is busy: the answers are safe in the log
            logger.warning("response cache %s: moving answers into SQLite failed (%s); trying again",
                           self.path, exc)
            if self._timer is None:
                self._start_timer()

    def flush(self) -> None:
        """Move the logged answers into SQLite now, where other processes see them."""
        self._in_this_process()
        with self._lock:
            self._flush()

    def _flush(self) -> None:
        if self._waiting and self._log is not None:
            with self._db:
                self._db.executemany(_INSERT, self._waiting.items())
            self._log.clear()
            self._waiting = {}

    def __len__(self) -> int:
        self.flush()
        return int(self._db.execute("SELECT COUNT(*) FROM responses").fetchone()[0])

    def close(self) -> None:
        """Move the logged answers into SQLite and close. If that fails, the log stays for the next opener."""
        if os.getpid() != self._pid:
            # A forked child: let go of its copy of the log's descriptor (the parent keeps its lock), touch nothing.
            if self._log is not None:
                self._log.close(delete=False)
            self._closed = True
            return
        with self._lock:
            if self._closed:
                return
            self._closed = True
            if self._timer is not None:
                self._timer.cancel()
            log, self._log = self._log, None
            try:
                if log is not None and self._waiting:
                    with self._db:
                        self._db.executemany(_INSERT, self._waiting.items())
                    self._waiting = {}
                if log is not None:
                    log.close(delete=True)
            finally:
                if log is not None:
                    log.close(delete=False)  # a no-op once closed; if moving in failed, the next opener does it
                self._db.close()

    def __del__(self) -> None:
        # An instance dropped without close() (say, by a script) still moves its answers in.
        if not getattr(self, "_closed", True):
            with contextlib.suppress(Exception):  # the log stays on disk and the next opener moves it in
                self.close()


def _flush_if_alive(cache: weakref.ref[ResponseCache]) -> None:
    alive = cache()
    if alive is not None:
        alive._flush_when_due()


def canonical_json(value: Any) -> str:
    return _CANONICAL.encode(value)


def cache_key(identity_json: str, payload: dict[str, Any]) -> str:
    """SHA-256 of ``{"backend": identity, "request": payload}`` as canonical JSON.

    The identity comes encoded (``canonical_json``) so a batch encodes it once;
    the text is the same as encoding the whole dict, so existing caches stay valid.
    """
    blob = '{"backend":' + identity_json + ',"request":' + canonical_json(payload) + "}"
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


class CachedBackend(WrappingBackend):
    """Answers requests seen before from a :class:`ResponseCache`; sends only the misses.

    Misses go out one request at a time (up to the backend's ``max_concurrency``
    at once) and each answer is stored as it arrives. A request missed while an
    identical one is between its miss and its store waits for that answer
    (``Flights``: the in-flight merging rules) instead of being sent again.
    Replayed values come back with ``cached=True`` so the meter can tell them apart.
    """

    def __init__(self, inner: Backend, cache: ResponseCache) -> None:
        super().__init__(inner)
        self.cache = cache
        self._slots: asyncio.Semaphore | None = None
        self._flights: Flights[str] = Flights()  # identical misses in flight are sent once

    async def agenerate(self, requests: Sequence[Request]) -> list[Completion]:
        return await self._through(requests, self.inner.agenerate, Completion)

    async def ascore(self, requests: Sequence[ScoreRequest]) -> list[LogProb]:
        return await self._through(requests, self.inner.ascore, LogProb)

    async def _through(self, requests: Sequence[Any], send: Any, kind: type[T]) -> list[T]:
        ident = canonical_json(self.inner.identity())
        keys = [cache_key(ident, r.key_payload()) for r in requests]
        hits = self.cache.get_many(keys)
        missing: dict[str, Any] = {}
        for key, req in zip(keys, requests, strict=True):
            if key not in hits:
                missing.setdefault(key, req)  # identical requests are sent once

        async def send_missing(wanted: Mapping[str, Any], lead: Lead[str]) -> None:
            if lead.again:  # asked for by an asker who gave up: another may have stored the answer since
                stored = self.cache.get_many(list(wanted))
                for key, value in stored.items():
                    lead.answer(key, kind(**{**value, "cached": True}))
                wanted = {key: req for key, req in wanted.items() if key not in stored}
            await self._send_missing(wanted, send, lead)

        fresh = await self._flights.fetch(missing, send_missing) if missing else {}
        out: list[T] = []
        for key in keys:
            if key in hits:
                out.append(kind(**{**hits[key], "cached": True}))  # not replace(): ~14% of a replay
            elif key in missing:
                out.append(fresh[key])
                del missing[key]  # a repeat later in this batch was not paid again
            else:
                out.append(replace(fresh[key], cached=True))
        return out

    async def _send_missing(self, missing: Mapping[str, Any], send: Any, lead: Lead[str]) -> None:
        """Send each miss, store its answer as it arrives, then hand it to ``lead``.

        At most ``max_concurrency`` requests are between sending and storing, so
        a crash loses at most that many paid answers. An engine that batches
        (``capabilities.batches``) gets up to that many per call, stored when the
        call returns; any other backend gets one request per call. After the
        first failure (or once a request this batch waits on failed) no new
        request is sent; those in flight finish and are stored; then the
        failure is raised, with no request left running.
        """
        width = max(1, self.capabilities.max_concurrency)
        if self._slots is None:
            self._slots = asyncio.Semaphore(1 if self.capabilities.batches else width)
        slots = self._slots
        failures: list[Exception] = []
        items = list(missing.items())
        size = width if self.capabilities.batches else 1
        groups = [items[i:i + size] for i in range(0, len(items), size)]

        async def worker(todo: Iterator[list[tuple[str, Any]]]) -> None:
            for group in todo:  # shared by the workers: each group is taken once
                async with slots:
                    if failures or lead.batch.failed:
                        return
                    try:
                        answers = await send([req for _, req in group])
                        paid = {key: answer for (key, _), answer in zip(group, answers, strict=True)}
                        # vars(), not asdict(): the values are flat, and asdict's deep copy cost ~25 us an answer
                        self.cache.put_many({key: vars(answer) for key, answer in paid.items()})
                    except Exception as exc:  # e.g. a full disk: send nothing more, raise it once the rest settle
                        lead.fail([key for key, _ in group], exc)
                        failures.append(exc)
                        return
                    for key, answer in paid.items():
                        lead.answer(key, answer)

        # As many workers as calls may run at once, not a task per miss (a task costs more than a miss's store).
        todo = iter(groups)
        n_workers = min(len(groups), 1 if self.capabilities.batches else width)
        if n_workers == 1:
            await worker(todo)
        else:  # every worker settles before this returns or raises: none is left sending unwatched
            for outcome in await asyncio.gather(*(worker(todo) for _ in range(n_workers)), return_exceptions=True):
                if isinstance(outcome, BaseException):  # not an Exception: the worker let it through
                    raise outcome
        if failures:
            raise failures[0]
