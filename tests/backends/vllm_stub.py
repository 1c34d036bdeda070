"""A tiny stand-in for ``vllm serve``'s scoring endpoints, for tests that run without vLLM.

Tokens are characters (``ord``); the chat template is ``<role>:<content>\\n`` per message
then ``assistant:``; the log-prob of token ``t`` is :func:`token_logprob` whatever precedes
it, so a test can compute the expected score by hand.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


def token_logprob(token: int) -> float:
    return -((token % 7) + 1) / 8


def render(messages: list[dict[str, str]]) -> str:
    return "".join(f"{m['role']}:{m['content']}\n" for m in messages) + "assistant:"


@dataclass
class StubState:
    """How the stub answers, and what it saw."""

    owned_by: str = "vllm"
    #: False: /v1/completions ignores prompt_logprobs (as llama.cpp's server does)
    prompt_logprobs: bool = True
    #: answer /v1/completions with prompt_logprobs one entry short
    truncate: bool = False
    gets: list[str] = field(default_factory=list)
    posts: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def do_GET(self) -> None:
        state = self.server.state
        with state.lock:
            state.gets.append(self.path)
        if self.path == "/v1/models":
            self._reply(200, {"object": "list", "data": [{"id": "stub", "object": "model",
                                                          "owned_by": state.owned_by}]})
        else:
            self._reply(404, {"error": {"message": f"no route {self.path}"}})

    def do_POST(self) -> None:
        state = self.server.state
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        with state.lock:
            state.posts.append((self.path, body))
        if self.path == "/tokenize":
            text = render(body["messages"]) if "messages" in body else body["prompt"]
            self._reply(200, {"count": len(text), "max_model_len": 4096, "tokens": [ord(c) for c in text]})
        elif self.path == "/v1/completions":
            self._reply(200, self._completion(body["prompt"], state))
        elif self.path == "/v1/chat/completions":
            self._reply(200, {"id": "x", "object": "chat.completion", "created": 0, "model": "stub",
                              "choices": [{"index": 0, "finish_reason": "stop",
                                           "message": {"role": "assistant", "content": "ok"}}],
                              "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}})
        else:
            self._reply(404, {"error": {"message": f"no route {self.path}"}})

    @staticmethod
    def _completion(prompt: list[int], state: StubState) -> dict[str, Any]:
        choice: dict[str, Any] = {"index": 0, "text": "x", "finish_reason": "length", "logprobs": None}
        if state.prompt_logprobs:
            rows: list[Any] = [None] + [{str(t): {"logprob": token_logprob(t), "rank": 1, "decoded_token": chr(t)}}
                                        for t in prompt[1:]]
            choice["prompt_logprobs"] = rows[:-1] if state.truncate else rows
        return {"id": "cmpl-x", "object": "text_completion", "created": 0, "model": "stub", "choices": [choice],
                "usage": {"prompt_tokens": len(prompt), "completion_tokens": 1, "total_tokens": len(prompt) + 1}}

    def _reply(self, status: int, payload: dict[str, Any]) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        pass


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    state: StubState


@contextmanager
def run_vllm_stub(state: StubState) -> Iterator[str]:
    """Serve on a free port of 127.0.0.1 for a ``with`` block; yield the base URL (``.../v1``)."""
    server = _Server(("127.0.0.1", 0), _Handler)
    server.state = state
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
