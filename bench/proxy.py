"""A counting HTTP proxy in front of one OpenAI-compatible server, for the peer benchmarks.

Each role (``target``, ``optimizer``) gets its own listening port on 127.0.0.1,
and every port forwards to the same upstream server. Whatever a system under
test reports about itself, the proxy sees every request it sends, so calls and
tokens are counted the same way for promptopt and for DSPy: a call is one
request to a ``.../completions`` path, and its tokens are the ``usage`` the
server put in the reply. The one change it makes to a request: a reply length
given only as ``max_completion_tokens`` is forwarded as ``max_tokens`` (see
``_capped``), so that llama_cpp.server honours it.

The proxy runs its own asyncio loop in a daemon thread, so a benchmark driver
can read the counts between runs while the systems under test run in other
processes (or in the driver itself, through HTTP like everyone else).

    with CountingProxy("http://127.0.0.1:8000", roles=("target", "optimizer")) as proxy:
        proxy.base_url("target")      # -> "http://127.0.0.1:<port>/v1"
        n = len(proxy.records())      # every request so far, oldest first
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

__all__ = ["CallRecord", "CountingProxy", "summarize_calls"]

# Headers that describe one hop, not the message: never forwarded as they came.
_HOP_HEADERS = frozenset({"connection", "keep-alive", "proxy-connection", "transfer-encoding", "te",
                          "trailer", "upgrade", "content-length", "host"})


@dataclass(frozen=True)
class CallRecord:
    """One request that went through the proxy.

    ``last_user`` is the text of the last user message (chat) or the prompt
    (completions), kept so that a driver can tell which split's example a call
    was about, the same way for every system. ``max_tokens`` is the reply
    length the client asked for (None if it did not say).
    """

    role: str
    path: str
    status: int
    prompt_tokens: int
    completion_tokens: int
    started: float
    seconds: float
    last_user: str
    max_tokens: int | None = None

    @property
    def is_completion(self) -> bool:
        return self.path.rstrip("/").endswith("completions")


def summarize_calls(records: Iterable[CallRecord]) -> dict[str, dict[str, int]]:
    """Calls, failed calls, tokens and server time per role, counting completion requests only."""
    out: dict[str, dict[str, int]] = {}
    for r in records:
        if not r.is_completion:
            continue
        row = out.setdefault(r.role, {"calls": 0, "failed": 0, "prompt_tokens": 0, "completion_tokens": 0,
                                      "milliseconds": 0})
        row["calls"] += 1
        row["failed"] += 0 if r.status == 200 else 1
        row["prompt_tokens"] += r.prompt_tokens
        row["completion_tokens"] += r.completion_tokens
        row["milliseconds"] += round(r.seconds * 1000)
    return out


class CountingProxy:
    """Forward HTTP/1.1 requests from one port per role to ``upstream``, recording each one.

    Args:
        upstream: the server root, e.g. ``http://127.0.0.1:8000`` (a trailing ``/v1`` is ignored).
        roles: one listening port is opened per role.
    """

    def __init__(self, upstream: str, *, roles: Sequence[str] = ("target", "optimizer")) -> None:
        parts = urlsplit(upstream)
        self._up_host, self._up_port = parts.hostname or "127.0.0.1", parts.port or 80
        self.roles = tuple(roles)
        self.ports: dict[str, int] = {}
        self._records: list[CallRecord] = []
        self._in_flight = 0  # forwarded, not answered yet (touched on the proxy's loop only)
        self._lock = threading.Lock()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="counting-proxy", daemon=True)
        self._servers: list[asyncio.Server] = []
        self._connections: set[asyncio.Task[None]] = set()

    def base_url(self, role: str) -> str:
        """The OpenAI-style base URL a client of this role should use."""
        return f"http://127.0.0.1:{self.ports[role]}/v1"

    def records(self) -> list[CallRecord]:
        """A snapshot of every request so far, oldest first."""
        with self._lock:
            return list(self._records)

    def in_flight(self) -> int:
        """Requests sent upstream and not answered yet (a killed client leaves some behind)."""
        return self._in_flight

    def count(self, role: str) -> int:
        """Completion requests seen so far for ``role`` (cheap enough to poll)."""
        with self._lock:
            return sum(1 for r in self._records if r.role == role and r.is_completion)

    def start(self) -> CountingProxy:
        self._thread.start()
        for role in self.roles:
            server = asyncio.run_coroutine_threadsafe(self._listen(role), self._loop).result(timeout=10)
            self._servers.append(server)
            self.ports[role] = server.sockets[0].getsockname()[1]
        return self

    def stop(self) -> None:
        async def close_all() -> None:
            for server in self._servers:
                server.close()
            for task in list(self._connections):  # idle keep-alive clients would wait forever
                task.cancel()
            await asyncio.gather(*self._connections, return_exceptions=True)

        if self._thread.is_alive():
            asyncio.run_coroutine_threadsafe(close_all(), self._loop).result(timeout=10)
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=10)

    def __enter__(self) -> CountingProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    async def _listen(self, role: str) -> asyncio.Server:
        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            task = asyncio.current_task()
            assert task is not None  # a stream handler always runs in a task
            self._connections.add(task)
            try:
                await self._serve_connection(role, reader, writer)
            finally:
                self._connections.discard(task)

        return await asyncio.start_server(handle, "127.0.0.1", 0)

    async def _serve_connection(self, role: str, reader: asyncio.StreamReader,
                                writer: asyncio.StreamWriter) -> None:
        """Serve keep-alive requests from one client connection until it closes."""
        try:
            while True:
                request = await _read_message(reader, is_request=True)
                if request is None:
                    break
                head, headers, body = request
                started = time.time()
                self._in_flight += 1
                try:
                    status, reply_headers, reply_body = await self._forward(head, headers, _capped(body))
                finally:
                    self._in_flight -= 1
                # Counted before answering: the server did the work even if the client died meanwhile.
                self._record(role, head, status, body, reply_body, started)
                writer.write(_encode_response(status, reply_headers, reply_body))
                await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass  # the client went away (e.g. a benchmark killed it on purpose)
        finally:
            writer.close()

    async def _forward(self, head: str, headers: list[tuple[str, str]], body: bytes,
                       ) -> tuple[int, list[tuple[str, str]], bytes]:
        """Send one request upstream on a fresh connection; return the whole reply."""
        method, target, _ = head.split(" ", 2)
        up_reader, up_writer = await asyncio.open_connection(self._up_host, self._up_port)
        try:
            kept = [(k, v) for k, v in headers if k.lower() not in _HOP_HEADERS]
            lines = [f"{method} {target} HTTP/1.1", f"Host: {self._up_host}:{self._up_port}",
                     "Connection: close", f"Content-Length: {len(body)}", *(f"{k}: {v}" for k, v in kept)]
            up_writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body)
            await up_writer.drain()
            reply = await _read_message(up_reader, is_request=False)
        finally:
            up_writer.close()
        if reply is None:
            return 502, [("Content-Type", "text/plain")], b"upstream closed the connection"
        status_line, reply_headers, reply_body = reply
        return int(status_line.split(" ", 2)[1]), reply_headers, reply_body

    def _record(self, role: str, head: str, status: int, body: bytes, reply_body: bytes, started: float) -> None:
        usage = _json(reply_body).get("usage")
        tokens = usage if isinstance(usage, dict) else {}
        request = _json(body)
        asked = request.get("max_tokens", request.get("max_completion_tokens"))
        record = CallRecord(role=role, path=head.split(" ", 2)[1].split("?")[0], status=status,
                            prompt_tokens=int(tokens.get("prompt_tokens") or 0),
                            completion_tokens=int(tokens.get("completion_tokens") or 0),
                            started=started, seconds=round(time.time() - started, 4),
                            last_user=_last_user_text(request),
                            max_tokens=asked if isinstance(asked, int) else None)
        with self._lock:
            self._records.append(record)


def _capped(body: bytes) -> bytes:
    """The request with ``max_completion_tokens`` sent as ``max_tokens`` when only the former is set.

    llama_cpp.server knows only ``max_tokens`` and drops the newer field, so a
    client that says ``max_completion_tokens`` (DSPy 3.4's own OpenAI client
    does) would get replies running to the end of the context. Renaming it lets
    the server honour the length every system asks for.
    """
    request = _json(body)
    if request.get("max_completion_tokens") is None or request.get("max_tokens") is not None:
        return body
    request["max_tokens"] = request.pop("max_completion_tokens")
    return json.dumps(request).encode("utf-8")


async def _read_message(reader: asyncio.StreamReader, *, is_request: bool,
                        ) -> tuple[str, list[tuple[str, str]], bytes] | None:
    """Read one HTTP/1.1 message: start line, headers, and a body (length, chunked, or to EOF)."""
    try:
        raw = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError as exc:
        if exc.partial.strip():
            raise
        return None
    head, *header_lines = raw.decode("latin-1").split("\r\n")
    headers = [(k.strip(), v.strip()) for k, _, v in (line.partition(":") for line in header_lines if line)]
    fields = {k.lower(): v for k, v in headers}
    if "chunked" in fields.get("transfer-encoding", "").lower():
        body = await _read_chunked(reader)
    elif "content-length" in fields:
        body = await reader.readexactly(int(fields["content-length"]))
    elif is_request:
        body = b""
    else:  # a reply without a length ends when the server closes the connection
        body = await reader.read()
    return head, headers, body


async def _read_chunked(reader: asyncio.StreamReader) -> bytes:
    parts: list[bytes] = []
    while True:
        size = int((await reader.readuntil(b"\r\n")).split(b";")[0].strip(), 16)
        if size == 0:
            await reader.readuntil(b"\r\n")  # the empty trailer
            return b"".join(parts)
        parts.append(await reader.readexactly(size))
        await reader.readexactly(2)


def _encode_response(status: int, headers: list[tuple[str, str]], body: bytes) -> bytes:
    kept = [(k, v) for k, v in headers if k.lower() not in _HOP_HEADERS]
    lines = [f"HTTP/1.1 {status} {'OK' if status == 200 else 'Error'}", f"Content-Length: {len(body)}",
             "Connection: keep-alive", *(f"{k}: {v}" for k, v in kept)]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def _json(data: bytes) -> dict[str, object]:
    try:
        value = json.loads(data)
    except (ValueError, UnicodeDecodeError):
        return {}
    return value if isinstance(value, dict) else {}


def _last_user_text(request: dict[str, object]) -> str:
    messages = request.get("messages")
    if isinstance(messages, list):
        for message in reversed(messages):
            if isinstance(message, dict) and message.get("role") == "user":
                content = message.get("content")
                return content if isinstance(content, str) else json.dumps(content)
        return ""
    prompt = request.get("prompt")
    return prompt if isinstance(prompt, str) else ""
