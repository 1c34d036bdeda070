"""A deterministic OpenAI-compatible server that injects faults, for reliability tests.

Replies are a pure function of the request: a classification-style request is
answered with a label picked by a hash of the request, and the prompts of the
APO strategy (critiques, edits, paraphrases) get short tagged answers built the
same way. So a promptopt run against it is reproducible, whatever faults hit
it on the way.

Faults are drawn per request from a seeded RNG at a configurable rate:
``429`` with and without ``Retry-After``, ``500``, ``502``, ``503``, a hang
past the client's timeout, a dropped connection, a truncated JSON body and a
well-formed body of the wrong shape. Non-transient modes answer ``400``,
``401`` or ``404`` on every request, or after the first N. The server stops by
itself after ``max_requests`` requests or ``idle_timeout`` seconds without
one, and always when its ``with`` block ends.

Example:
    >>> from promptopt.backends.openai import OpenAIBackend
    >>> with run_fault_server(FaultPlan(rate=0.2, seed=1)) as server:  # doctest: +SKIP
    ...     backend = OpenAIBackend(model="fault", base_url=server.base_url, timeout=0.5)
"""

from __future__ import annotations

import hashlib
import json
import random
import re
import socket
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

__all__ = ["TRANSIENT_FAULTS", "FaultPlan", "FaultServer", "FaultStats", "default_reply", "run_fault_server"]

#: Transient fault kinds, each one a retryable error for a well-behaved client.
TRANSIENT_FAULTS = ("429-retry-after", "429", "500", "502", "503", "timeout", "drop", "truncated", "wrong-shape")

_ERROR_STATUSES = {"429-retry-after": 429, "429": 429, "500": 500, "502": 502, "503": 503}

Reply = Callable[[dict[str, Any]], str]


@dataclass(frozen=True, kw_only=True)
class FaultPlan:
    """What the server does wrong, and how often.

    Args:
        rate: chance that a request gets a transient fault instead of an answer.
        kinds: transient faults to draw from (uniformly); see :data:`TRANSIENT_FAULTS`.
        seed: seeds the fault RNG (drawn in arrival order).
        max_faults_per_request: consecutive faults one request (same body) can get
            before it is answered, so a client with a few retries always gets through.
        fatal_status: a non-transient status (400, 401, 403, 404) to answer ...
        fatal_after: ... once this many requests have been received (since the
            last :meth:`FaultServer.reset_stats`).
        latency: seconds to wait before each answer.
        hang_seconds: how long a ``timeout`` fault holds the connection open
            before closing it; set it past the client's timeout.
        retry_after: the ``Retry-After`` value (seconds) of ``429-retry-after``.
        echo_key: put the request's API key in every error body (a 401 always
            does, as some real servers do), to check that clients never show it.
    """

    rate: float = 0.0
    kinds: tuple[str, ...] = TRANSIENT_FAULTS
    seed: int = 0
    max_faults_per_request: int = 2
    fatal_status: int | None = None
    fatal_after: int = 0
    latency: float = 0.0
    hang_seconds: float = 1.0
    retry_after: float = 1.0
    echo_key: bool = False

    def __post_init__(self) -> None:
        unknown = sorted(set(self.kinds) - set(TRANSIENT_FAULTS))
        if unknown:
            raise ValueError(f"unknown fault kinds {unknown}; known: {', '.join(TRANSIENT_FAULTS)}")
        if not 0.0 <= self.rate <= 1.0:
            raise ValueError(f"the rate of FaultPlan must be in [0, 1]; got {self.rate!r}")


@dataclass
class FaultStats:
    """What the server saw and did. Read it after the requests you care about have finished.

    Attributes:
        received: requests received (every attempt, including retries).
        completions: well-formed completions served.
        statuses: HTTP responses sent, by status code.
        faults: injected faults (transient and fatal), by kind.
        served: successful completions per request body hash (a request paid twice shows as 2).
        bodies: every JSON request body, in arrival order.
        api_keys: the bearer tokens requests carried (to check that a client sent its key).
        prompt_tokens / completion_tokens: the ``usage`` of the completions served.
        max_in_flight: most requests handled at the same time.
    """

    received: int = 0
    completions: int = 0
    statuses: Counter[int] = field(default_factory=Counter)
    faults: Counter[str] = field(default_factory=Counter)
    served: Counter[str] = field(default_factory=Counter)
    bodies: list[dict[str, Any]] = field(default_factory=list)
    api_keys: set[str] = field(default_factory=set)
    prompt_tokens: int = 0
    completion_tokens: int = 0
    in_flight: int = 0
    max_in_flight: int = 0

    @property
    def tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    @property
    def n_faults(self) -> int:
        return sum(self.faults.values())

    @property
    def duplicates(self) -> int:
        """Completions served for a request body that had been answered before."""
        return sum(n - 1 for n in self.served.values())


def request_hash(body: dict[str, Any]) -> str:
    """A stable hash of a request body (all of it: model, messages, sampling parameters)."""
    blob = json.dumps(body, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


_FOCUS = ("intensifiers such as 'really'", "exclamations", "the object being reviewed", "mixed wording")
_OPENERS = ("Classify", "Label", "Decide", "Judge", "Determine", "Identify")
_ENDINGS = (".", ". Answer with one word.", ". Reply with the label only.", ", reading the adjective carefully.")


def default_reply(body: dict[str, Any], labels: Sequence[str] = ("negative", "positive")) -> str:
    """The reply to a chat request: a pure function of its body.

    APO's critique, edit and paraphrase prompts get tagged answers; anything
    else is treated as a classification and answered with one of ``labels``.
    """
    h = int(request_hash(body)[:12], 16)
    messages = body.get("messages") or [{}]
    last = str(messages[-1].get("content", ""))
    if "reasons why" in last:
        return f"<START>The prompt does not say how to treat {_FOCUS[h % len(_FOCUS)]}.<END>"
    if "improved versions" in last or "Rewrite the following instruction" in last:
        verb, ending = _OPENERS[h % len(_OPENERS)], _ENDINGS[(h // 7) % len(_ENDINGS)]
        return f"<START>{verb} the sentiment of the sentence as {' or '.join(labels)}{ending}<END>"
    return labels[h % len(labels)]


def _words(text: str) -> int:
    return len(re.findall(r"\S+", text))


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as real endpoints do
    timeout = 30  # an idle keep-alive connection is dropped after this many seconds
    server: _HTTPServer

    def do_POST(self) -> None:
        self.server.owner._handle(self)

    def do_GET(self) -> None:
        owner = self.server.owner
        if self.path.rstrip("/").endswith("/models"):
            names = owner.model_names or ("fault",)
            owner._send(self, 200, {"object": "list", "data": [{"id": n, "object": "model"} for n in names]})
        else:
            owner._send(self, 404, {"error": {"message": f"no route {self.path}"}})

    def setup(self) -> None:
        super().setup()
        self.server.owner._track(self.connection, True)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.server.owner._track(self.connection, False)

    def log_message(self, format: str, *args: Any) -> None:
        pass


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    owner: FaultServer

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that was killed or gave up resets its connection: expected here, not news.
        if not isinstance(sys.exc_info()[1], OSError):
            super().handle_error(request, client_address)


class FaultServer:
    """A running fault server. Made by :func:`run_fault_server`; change ``plan`` at any time.

    Attributes:
        base_url: ``http://127.0.0.1:<port>/v1``.
        plan: the current :class:`FaultPlan` (assign a new one to change behaviour).
        stats: the current :class:`FaultStats` (see :meth:`reset_stats`).
    """

    def __init__(self, plan: FaultPlan, *, model_names: Sequence[str] | None = None,
                 reply: Reply | None = None, max_requests: int = 10_000, idle_timeout: float = 120.0) -> None:
        self.plan = plan
        self.model_names = tuple(model_names) if model_names else None
        self.reply = reply or default_reply
        self.max_requests, self.idle_timeout = max_requests, idle_timeout
        self.stats = FaultStats()
        self.stopped = threading.Event()
        self._lock = threading.Lock()
        self._rng = random.Random(plan.seed)
        self._rng_plan = plan  # a new plan restarts the fault RNG from its seed
        self._consecutive: Counter[str] = Counter()
        self._n_received = 0
        self._last_activity = time.monotonic()
        self._connections: set[socket.socket] = set()
        self._http = _HTTPServer(("127.0.0.1", 0), _Handler)
        self._http.owner = self
        self.base_url = f"http://127.0.0.1:{self._http.server_address[1]}/v1"
        self._serving = threading.Thread(target=self._http.serve_forever, kwargs={"poll_interval": 0.05},
                                         name="fault-server", daemon=True)
        self._watchdog = threading.Thread(target=self._watch, name="fault-server-watchdog", daemon=True)

    def start(self) -> None:
        self._serving.start()
        self._watchdog.start()

    def reset_stats(self) -> FaultStats:
        """Start counting afresh; return what was counted so far."""
        with self._lock:
            old, self.stats = self.stats, FaultStats()
            self._consecutive.clear()
        return old

    def close(self) -> None:
        """Stop serving, wake any hanging handler and close every open connection."""
        self.stopped.set()
        if self._serving.is_alive():
            self._http.shutdown()
        self._http.server_close()
        with self._lock:
            connections = list(self._connections)
        for conn in connections:
            with suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        if self._watchdog.is_alive() and threading.current_thread() is not self._watchdog:
            self._watchdog.join()

    def _watch(self) -> None:
        """Stop after ``idle_timeout`` seconds without a request (or when asked to)."""
        while not self.stopped.wait(0.1):
            if time.monotonic() - self._last_activity > self.idle_timeout:
                self.stopped.set()
        if self._serving.is_alive():
            self._http.shutdown()
        self._http.server_close()  # new connections are refused, not left waiting

    def _track(self, conn: socket.socket, add: bool) -> None:
        with self._lock:
            (self._connections.add if add else self._connections.discard)(conn)

    # -- one request ------------------------------------------------------------------------
    def _handle(self, h: _Handler) -> None:
        raw = h.rfile.read(int(h.headers.get("Content-Length") or 0))
        with self._lock:
            self._last_activity = time.monotonic()
            self._n_received += 1
            if self.stopped.is_set() or self._n_received > self.max_requests:
                self.stopped.set()  # bounded: past max_requests nobody is answered
                h.close_connection = True
                return
            stats = self.stats
            stats.received += 1
            stats.in_flight += 1
            stats.max_in_flight = max(stats.max_in_flight, stats.in_flight)
        try:
            self._respond(h, raw, stats)
        finally:
            with self._lock:
                stats.in_flight -= 1
                self._last_activity = time.monotonic()

    def _respond(self, h: _Handler, raw: bytes, stats: FaultStats) -> None:
        try:
            body = json.loads(raw)
        except ValueError:
            body = None
        if not isinstance(body, dict):
            self._send(h, 400, {"error": {"message": "request body is not a JSON object"}}, stats)
            return
        action = self._decide(h, body, stats)
        if action == "ok":
            self._answer(h, body, stats)
        elif action.startswith("fatal-"):
            self._fatal(h, body, int(action[6:]), stats)
        else:
            self._fault(h, action, body, stats)

    def _decide(self, h: _Handler, body: dict[str, Any], stats: FaultStats) -> str:
        plan = self.plan
        with self._lock:
            stats.bodies.append(body)
            stats.api_keys.add(_bearer(h))
            if plan is not self._rng_plan:
                self._rng, self._rng_plan = random.Random(plan.seed), plan
            if not h.path.rstrip("/").endswith("/chat/completions"):
                return "fatal-404"
            if plan.fatal_status is not None and stats.received > plan.fatal_after:
                return f"fatal-{plan.fatal_status}"
            if self.model_names is not None and body.get("model") not in self.model_names:
                return "fatal-404"
            key = request_hash(body)
            if self._rng.random() < plan.rate and plan.kinds and self._consecutive[key] < plan.max_faults_per_request:
                self._consecutive[key] += 1
                kind = self._rng.choice(plan.kinds)
                stats.faults[kind] += 1
                return kind
            self._consecutive[key] = 0
            return "ok"

    def _answer(self, h: _Handler, body: dict[str, Any], stats: FaultStats) -> None:
        if self.plan.latency and self.stopped.wait(self.plan.latency):
            h.close_connection = True
            return
        text = self.reply(body)
        messages = body.get("messages") or []
        usage = {"prompt_tokens": sum(_words(str(m.get("content", ""))) for m in messages),
                 "completion_tokens": max(1, _words(text))}
        usage["total_tokens"] = usage["prompt_tokens"] + usage["completion_tokens"]
        self._send(h, 200, _completion(body, text, usage),  # counted as a completion, not by status
                   count=lambda sign: self._count_completion(stats, body, usage, sign))

    @staticmethod
    def _count_completion(stats: FaultStats, body: dict[str, Any], usage: dict[str, int], sign: int) -> None:
        stats.completions += sign
        _add(stats.served, request_hash(body), sign)
        stats.prompt_tokens += sign * usage["prompt_tokens"]
        stats.completion_tokens += sign * usage["completion_tokens"]

    def _fault(self, h: _Handler, kind: str, body: dict[str, Any], stats: FaultStats) -> None:
        if kind in _ERROR_STATUSES:
            headers = {"Retry-After": f"{self.plan.retry_after:g}"} if kind == "429-retry-after" else {}
            message = "Rate limit reached; slow down" if kind.startswith("429") else "upstream failure"
            message += _echo(h, self.plan)
            self._send(h, _ERROR_STATUSES[kind], {"error": {"message": message, "type": "server_error"}},
                       stats, headers)
        elif kind == "timeout":
            self.stopped.wait(self.plan.hang_seconds)
            h.close_connection = True
        elif kind == "drop":
            h.close_connection = True  # no status line at all
        elif kind == "truncated":
            full = json.dumps(_completion(body, "positive", {"prompt_tokens": 1, "completion_tokens": 1}))
            self._send(h, 200, full[: len(full) // 2], stats, close=True)
        else:  # wrong-shape: valid JSON, no choices
            self._send(h, 200, {"id": "chatcmpl-fault", "object": "chat.completion", "created": 0,
                                "model": body.get("model", "")}, stats)

    def _fatal(self, h: _Handler, body: dict[str, Any], status: int, stats: FaultStats) -> None:
        with self._lock:
            stats.faults[str(status)] += 1
        model = body.get("model")
        if status == 401:
            # Like some real servers, echo the key back: clients must not show it.
            error = {"message": f"Incorrect API key provided: {_bearer(h)}.", "code": "invalid_api_key"}
        elif status == 404:
            error = {"message": f"The model `{model}` does not exist or you do not have access to it.",
                     "code": "model_not_found"}
        else:
            error = {"message": f"Invalid request (HTTP {status}): 'max_tokens' is too large for model {model}.",
                     "code": "invalid_request"}
        if status != 401:
            error["message"] += _echo(h, self.plan)
        self._send(h, status, {"error": {**error, "type": "invalid_request_error"}}, stats)

    def _send(self, h: _Handler, status: int, payload: Any, stats: FaultStats | None = None,
              headers: dict[str, str] | None = None, *, close: bool = False,
              count: Callable[[int], None] | None = None) -> bool:
        """Write one response; False if the client had gone.

        The response is counted (its status in ``stats``, and ``count(+1)``) before its body is
        written, so a client holding the answer finds it counted; a failed write takes it back."""
        data = (payload if isinstance(payload, str) else json.dumps(payload)).encode("utf-8")
        counted = False
        try:
            h.send_response(status)
            for name, value in {"Content-Type": "application/json", "Content-Length": str(len(data)),
                                **(headers or {})}.items():
                h.send_header(name, value)
            if close:
                h.send_header("Connection", "close")
                h.close_connection = True
            h.end_headers()
            counted = self._count(stats, status, count, +1)
            h.wfile.write(data)
            h.wfile.flush()
        except OSError:
            h.close_connection = True
            if counted:
                self._count(stats, status, count, -1)
            return False
        return True

    def _count(self, stats: FaultStats | None, status: int, count: Callable[[int], None] | None, sign: int) -> bool:
        with self._lock:
            if stats is not None:
                _add(stats.statuses, status, sign)
            if count is not None:
                count(sign)
        return stats is not None or count is not None


def _add(counter: Counter[Any], key: Any, sign: int) -> None:
    """Count ``key`` once more (``sign`` 1) or take a count back (-1), leaving no key at zero, so a
    response taken back leaves the stats as if it had never been counted."""
    counter[key] += sign
    if counter[key] <= 0:
        del counter[key]


def _bearer(h: _Handler) -> str:
    return h.headers.get("Authorization", "").removeprefix("Bearer ")


def _echo(h: _Handler, plan: FaultPlan) -> str:
    return f" (request made with key {_bearer(h)})" if plan.echo_key else ""


def _completion(body: dict[str, Any], text: str, usage: dict[str, int]) -> dict[str, Any]:
    return {"id": "chatcmpl-" + request_hash(body)[:12], "object": "chat.completion", "created": 0,
            "model": body.get("model", ""), "usage": usage,
            "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": text}}]}


@contextmanager
def run_fault_server(plan: FaultPlan | None = None, *, model_names: Sequence[str] | None = None,
                     reply: Reply | None = None, max_requests: int = 10_000,
                     idle_timeout: float = 120.0) -> Iterator[FaultServer]:
    """Serve ``/v1/chat/completions`` on a free port of 127.0.0.1 for a ``with`` block.

    Args:
        plan: faults to inject (default: none).
        model_names: models the server knows; others get a 404 (default: any name).
        reply: request body -> reply text (default: :func:`default_reply`).
        max_requests: after this many requests the server stops answering.
        idle_timeout: the server stops after this many seconds without a request.

    Yields:
        The :class:`FaultServer`, with ``base_url`` and ``stats``.
    """
    server = FaultServer(plan or FaultPlan(), model_names=model_names, reply=reply,
                         max_requests=max_requests, idle_timeout=idle_timeout)
    server.start()
    try:
        yield server
    finally:
        server.close()
