"""Builds the backend stack for a run, on one event loop.

From the model outwards: backend → throttle (only with limits set) → retry →
in-flight merging → cache → meter. Retries pass through the throttle; a
request already on the wire is never sent again by a concurrent batch; the
meter sees every logical call, replayed or paid.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from promptopt._loop import LoopThread
from promptopt.backends import (
    Backend,
    CachedBackend,
    ResponseCache,
    RetryingBackend,
    RetryPolicy,
    backend_class,
    make_backend,
    parse_model_string,
)
from promptopt.backends._inflight import DedupingBackend
from promptopt.backends._throttle import Throttle, ThrottledBackend
from promptopt.budget import Budget, Meter, MeteredBackend

__all__ = ["THROTTLE_OPTIONS", "Session", "backend_options_from_env", "split_throttle"]

#: options of the shared call layer, not of any one backend
THROTTLE_OPTIONS = ("max_in_flight", "requests_per_second", "tokens_per_minute")


def split_throttle(options: Mapping[str, Any]) -> tuple[Throttle, dict[str, Any]]:
    """The throttle settings among a model's options, and the options left for its backend."""
    rest = dict(options)
    limits = {k: rest.pop(k, None) for k in THROTTLE_OPTIONS}
    return Throttle(**{k: v for k, v in limits.items() if v is not None}), rest


def backend_options_from_env(model: str | Backend, options: Mapping[str, Any] | None,
                             env: Mapping[str, str] | None = None) -> dict[str, Any]:
    """A model's options completed from the environment at the edge (never logged or stored).

    Each backend reads its own variables (:meth:`Backend.resolve_options`), e.g.
    ``OPENAI_BASE_URL``/``OPENAI_API_KEY`` for ``openai:`` models; a Backend
    instance was configured by whoever made it.
    """
    env = os.environ if env is None else env
    if not isinstance(model, str):
        return dict(options or {})
    prefix, _ = parse_model_string(model)
    return backend_class(prefix).resolve_options(options or {}, env)


class Session:
    """The event loop, the meter and the wrapped target/optimizer backends of one run.

    The optimizer shares the target's backend object when both name the same
    model, so an embedded model is loaded once. ``budget`` is the meter's, fixed
    for the session: the caps, or a function of the (unwrapped) target backend
    that returns them. Use as a context manager.
    """

    def __init__(self, model: str | Backend, optimizer_model: str | Backend | None, *,
                 budget: Budget | Callable[[Backend], Budget], cache_path: Path | None,
                 model_options: Mapping[str, Any] | None = None,
                 optimizer_options: Mapping[str, Any] | None = None, retry: RetryPolicy | None = None) -> None:
        self.retry = retry or RetryPolicy()
        self.loop = LoopThread()
        self.cache: ResponseCache | None = None
        self._raw: list[Backend] = []
        try:
            target_throttle, target_opts = split_throttle(backend_options_from_env(model, model_options))
            raw_target = make_backend(model, **target_opts)
            self._raw.append(raw_target)
            same = optimizer_model is None or (optimizer_model == model and not optimizer_options)
            optimizer_throttle, optimizer_opts = (target_throttle, {}) if same else split_throttle(
                backend_options_from_env(optimizer_model, optimizer_options))  # type: ignore[arg-type]
            raw_optimizer = raw_target if same else make_backend(optimizer_model, **optimizer_opts)  # type: ignore[arg-type]
            if raw_optimizer is not raw_target:
                self._raw.append(raw_optimizer)
            # A run's default budget depends on what the target can do (its answer mode), so it is
            # worked out here, from the backend itself, before the meter that enforces it exists.
            self.meter = Meter(budget if isinstance(budget, Budget) else budget(raw_target))
        except BaseException:
            self.close()
            raise
        self.cache = ResponseCache(cache_path) if cache_path else None
        self.target = self._wrap(raw_target, target_throttle)
        self.optimizer = self.target if raw_optimizer is raw_target else self._wrap(raw_optimizer, optimizer_throttle)

    def _wrap(self, backend: Backend, throttle: Throttle) -> MeteredBackend:
        policy = self.retry
        inner = ThrottledBackend(backend, throttle) if throttle.limits else backend
        inner = RetryingBackend(inner, max_attempts=policy.max_attempts,
                                initial_wait=policy.initial_wait, max_wait=policy.max_wait)
        # Identical requests in flight are merged once: by the cache, by key, when it is on.
        inner = DedupingBackend(inner) if self.cache is None else CachedBackend(inner, self.cache)
        return MeteredBackend(inner, self.meter)

    def close(self) -> None:
        for backend in self._raw:
            self.loop.run(backend.aclose())
        self.loop.close()
        if self.cache is not None:
            self.cache.close()

    def __enter__(self) -> Session:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
