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
import sqlite3
from collections.abc import Sequence
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any, TypeVar

from promptopt.backends._base import Backend
from promptopt.types import Completion, LogProb, Request, ScoreRequest

__all__ = ["CachedBackend", "ResponseCache"]

T = TypeVar("T", Completion, LogProb)


class ResponseCache:
    """Key-value store of JSON responses in one SQLite file (WAL mode, safe across processes)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(self.path, timeout=30.0, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
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

    Misses go out one request at a time (concurrently where the backend serves
    requests concurrently) and each answer is stored the moment it arrives.
    Replayed values come back with ``cached=True`` so the meter can tell them apart.
    """

    def __init__(self, inner: Backend, cache: ResponseCache) -> None:
        self.inner, self.cache = inner, cache
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
        for key, req in zip(keys, requests, strict=False):
            if key not in hits:
                missing.setdefault(key, req)  # identical requests are sent once
        fresh: dict[str, T] = {}

        async def one(key: str, req: Any) -> None:
            # Stored as soon as it arrives: a crash mid-batch loses no paid answer.
            answer = (await send([req]))[0]
            self.cache.put_many({key: asdict(answer)})
            fresh[key] = answer

        if self.capabilities.max_concurrency <= 1:
            for key, req in missing.items():
                await one(key, req)
        else:
            await asyncio.gather(*(one(key, req) for key, req in missing.items()))
        return [replace(kind(**hits[key]), cached=True) if key in hits else fresh[key] for key in keys]

    async def aclose(self) -> None:
        await self.inner.aclose()
