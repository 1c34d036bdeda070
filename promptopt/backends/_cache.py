"""A content-addressed SQLite cache that wraps any backend.

The key hashes the backend's identity (backend, model, endpoint — never
credentials) with the full request (messages, sampling parameters, sample
index). Values are JSON. A repeated or resumed run therefore replays answers
instead of paying for them again.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import random
import sqlite3
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any, TypeVar

from promptopt.backends._base import Backend
from promptopt.exceptions import ConfigError
from promptopt.types import Completion, LogProb, Request, ScoreRequest

__all__ = ["CachedBackend", "ResponseCache"]

T = TypeVar("T", Completion, LogProb)


class ResponseCache:
    """Key-value store of JSON responses in one SQLite file (WAL mode, safe across processes)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(self.path, timeout=30.0, check_same_thread=False)
            self._set_up()
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

    def get_many(self, keys: Sequence[str]) -> dict[str, dict[str, Any]]:
        found: dict[str, dict[str, Any]] = {}
        unique = list(dict.fromkeys(keys))
        for start in range(0, len(unique), 500):  # SQLite limits bound parameters
            chunk = unique[start:start + 500]
            marks = ",".join("?" * len(chunk))
            rows = self._db.execute(f"SELECT key, value FROM responses WHERE key IN ({marks})", chunk)
            found.update((k, json.loads(v)) for k, v in rows)
        return found

    def put_many(self, items: dict[str, dict[str, Any]]) -> None:
        rows = [(k, json.dumps(v, ensure_ascii=False)) for k, v in items.items()]
        with self._db:
            self._db.executemany("INSERT OR REPLACE INTO responses (key, value) VALUES (?, ?)", rows)

    def __len__(self) -> int:
        return int(self._db.execute("SELECT COUNT(*) FROM responses").fetchone()[0])

    def close(self) -> None:
        self._db.close()


def cache_key(identity: dict[str, Any], payload: dict[str, Any]) -> str:
    blob = json.dumps({"backend": identity, "request": payload}, sort_keys=True,
                      ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


class CachedBackend(Backend):
    """Answers requests seen before from a :class:`ResponseCache`; sends only the misses.

    Misses go out one request at a time (up to the backend's ``max_concurrency``
    at once) and each answer is stored as it arrives (those arriving together
    share one commit).
    Replayed values come back with ``cached=True`` so the meter can tell them apart.
    """

    def __init__(self, inner: Backend, cache: ResponseCache) -> None:
        self.inner, self.cache = inner, cache
        self._slots: asyncio.Semaphore | None = None
        self._unsaved: dict[str, dict[str, Any]] = {}  # answers waiting for the next commit
        self._saved: asyncio.Future[None] | None = None  # resolved by that commit
        self._alone = True  # one call at a time: each answer is committed at once
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
            self._alone = self.capabilities.batches or width == 1
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
                    await self._store({key: dict(vars(answer))
                                       for (key, _), answer in zip(group, answers, strict=True)})
                except Exception as exc:  # e.g. a full disk: send nothing more, raise it once the rest settle
                    failures.append(exc)

        await asyncio.gather(*(one(group) for group in groups))
        if failures:
            raise failures[0]
        return fresh

    async def _store(self, items: dict[str, dict[str, Any]]) -> None:
        """Store answers; with several calls in flight, those arriving in the same pass of
        the event loop share one commit.

        The caller still holds its slot while it waits, so answers paid for and not
        yet stored never outnumber the requests allowed in flight.
        """
        if self._alone:  # no other answer can arrive meanwhile: waiting for one would only add a loop pass
            self.cache.put_many(items)
            return
        loop = asyncio.get_running_loop()
        if self._saved is not None and self._saved.get_loop() is not loop:
            # left behind by a loop that stopped before its commit ran: store it now (nobody waits there)
            left, self._unsaved, self._saved = self._unsaved, {}, None
            self.cache.put_many(left)
        self._unsaved.update(items)
        if self._saved is None:
            self._saved = loop.create_future()
            loop.call_soon(self._commit)
        await asyncio.shield(self._saved)  # a cancelled waiter must not cancel the others' commit

    def _commit(self) -> None:
        items, self._unsaved = self._unsaved, {}
        saved, self._saved = self._saved, None
        assert saved is not None
        try:
            self.cache.put_many(items)
        except BaseException as exc:  # e.g. a full disk: every waiter raises it
            saved.set_exception(exc)
            saved.exception()  # retrieved, even if every waiter was cancelled
            if not isinstance(exc, Exception):
                raise
        else:
            saved.set_result(None)

    async def aclose(self) -> None:
        await self.inner.aclose()
