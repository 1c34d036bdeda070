"""Builds the backend stack for a run, on one event loop.

From the model outwards: backend → throttle (only with limits set) → retry →
in-flight merging → cache → meter. Retries pass through the throttle; a
request already on the wire is never sent again by a concurrent batch; the
meter sees every logical call, replayed or paid.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from promptopt._loop import LoopThread
from promptopt.backends import Backend, CachedBackend, ResponseCache, RetryingBackend, RetryPolicy, make_backend
from promptopt.backends._inflight import DedupingBackend
from promptopt.backends._throttle import Throttle, ThrottledBackend
from promptopt.budget import Budget, Meter, MeteredBackend
from promptopt.exceptions import ConfigError

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
    """Fill endpoint options from the environment at the edge (never logged or stored).

    For ``openai:`` models: ``OPENAI_BASE_URL`` and ``OPENAI_API_KEY`` unless given.
    For ``llamacpp:`` models: ``PROMPTOPT_LLAMACPP_THREADS`` (CPU threads) unless given.
    For ``litellm:`` models with a ``router`` (a file path is read here): the keys of the
    variables its deployments name in ``api_key_env``, as ``api_keys``, unless given.
    Without a router, litellm finds a hosted provider's key itself.
    """
    env = os.environ if env is None else env
    opts = dict(options or {})
    if isinstance(model, str) and model.startswith("llamacpp:") and "n_threads" not in opts:
        threads = env.get("PROMPTOPT_LLAMACPP_THREADS", "").strip()
        if threads:
            if not threads.isdigit() or int(threads) < 1:
                raise ConfigError(f"PROMPTOPT_LLAMACPP_THREADS must be a whole number >= 1; got {threads!r}")
            opts["n_threads"] = int(threads)
    if isinstance(model, str) and model.startswith("openai:"):
        if "base_url" not in opts and env.get("OPENAI_BASE_URL"):
            opts["base_url"] = env["OPENAI_BASE_URL"]
        if "api_key" not in opts and env.get("OPENAI_API_KEY"):
            opts["api_key"] = env["OPENAI_API_KEY"]
    if isinstance(model, str) and model.startswith("litellm:") and opts.get("router") is not None:
        from promptopt.backends._router_config import load_router_config, router_key_envs, validate_router_config
        router = opts["router"]
        router = opts["router"] = (validate_router_config(router) if isinstance(router, Mapping)
                                   else load_router_config(router))
        if "api_keys" not in opts:
            opts["api_keys"] = {name: env[name] for name in router_key_envs(router) if env.get(name)}
    return opts


class Session:
    """The event loop, the meter and the wrapped target/optimizer backends of one run.

    The optimizer shares the target's backend object when both name the same
    model, so an embedded model is loaded once. Use as a context manager.
    """

    def __init__(self, model: str | Backend, optimizer_model: str | Backend | None, *,
                 budget: Budget, cache_path: Path | None, model_options: Mapping[str, Any] | None = None,
                 optimizer_options: Mapping[str, Any] | None = None, retry: RetryPolicy | None = None) -> None:
        self.retry = retry or RetryPolicy()
        self.loop = LoopThread()
        self.meter = Meter(budget)
        self.cache: ResponseCache | None = None
        try:
            target_throttle, target_opts = split_throttle(backend_options_from_env(model, model_options))
            raw_target = make_backend(model, **target_opts)
            same = optimizer_model is None or (optimizer_model == model and not optimizer_options)
            optimizer_throttle, optimizer_opts = (target_throttle, {}) if same else split_throttle(
                backend_options_from_env(optimizer_model, optimizer_options))  # type: ignore[arg-type]
            raw_optimizer = raw_target if same else make_backend(optimizer_model, **optimizer_opts)  # type: ignore[arg-type]
        except BaseException:
            self.close()
            raise
        self.cache = ResponseCache(cache_path) if cache_path else None
        self._raw = [raw_target] if raw_optimizer is raw_target else [raw_target, raw_optimizer]
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
        for backend in getattr(self, "_raw", []):
            self.loop.run(backend.aclose())
        self.loop.close()
        if self.cache is not None:
            self.cache.close()

    def __enter__(self) -> Session:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
