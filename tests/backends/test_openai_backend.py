"""OpenAIBackend against a real llama.cpp server and a tiny fake HTTP endpoint."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar

import pytest
from backend_calls import generate

from promptopt.backends.openai import OpenAIBackend, RateLimitedError
from promptopt.exceptions import BackendError, CapabilityError, ConfigError
from promptopt.testing.llama_server import free_port
from promptopt.types import Completion, Message, Request, ScoreRequest

SECRET = "sk-test-SECRET123"
WORDS = ("apple", "river", "seven", "banana", "mountain", "cherry")


def ask(text: str, **kwargs: Any) -> Request:
    return Request(messages=(Message("user", text),), **{"max_tokens": 12, **kwargs})




def fails_with(backend: OpenAIBackend, request: Request) -> BackendError:
    with pytest.raises(BackendError) as info:
        generate(backend, [request])
    return info.value


# --- against a real llama.cpp server -------------------------------------------------


def test_generates_a_short_reply_with_token_counts(llama_server_url: str) -> None:
    backend = OpenAIBackend(model="smollm2", base_url=llama_server_url)
    [[completion]] = generate(backend, [ask("Say the word apple", max_tokens=8)])
    assert completion.text.strip()
    assert completion.prompt_tokens > 0
    assert 0 < completion.completion_tokens <= 8
    assert completion.finish_reason in {"stop", "length"}


def test_batch_comes_back_in_request_order(llama_server_url: str) -> None:
    backend = OpenAIBackend(model="smollm2", base_url=llama_server_url, max_concurrency=4)
    batch = [ask(f"Say the word {word}") for word in WORDS]
    together, *alone = generate(backend, batch, *([r] for r in batch))
    assert [c.text for c in together] == [c[0].text for c in alone]
    assert len({c.text for c in together}) > 1  # distinct replies, so order is tested


def test_temperature_zero_is_deterministic(llama_server_url: str) -> None:
    # Repeating a request right away and after another one puts the server's prefix
    # cache in different states; the reply must not depend on it.
    backend = OpenAIBackend(model="smollm2", base_url=llama_server_url)
    request = ask("Name a colour.", temperature=0.0, seed=1)
    first, _, second, third = generate(backend, [request], [ask("Hi")], [request], [request])
    assert first == second == third


def test_backend_survives_a_new_event_loop_after_aclose(llama_server_url: str) -> None:
    backend = OpenAIBackend(model="smollm2", base_url=llama_server_url)
    first = generate(backend, [ask("Say hi", max_tokens=4)])
    second = generate(backend, [ask("Say hi", max_tokens=4)])
    assert first == second


# --- without a server ------------------------------------------------------------------


def test_declares_capabilities_and_identity_without_the_key() -> None:
    backend = OpenAIBackend(model="m", base_url="http://127.0.0.1:9/v1/", api_key=SECRET,
                            max_concurrency=3)
    assert backend.capabilities.chat and backend.capabilities.seeds
    assert not backend.capabilities.score
    assert backend.capabilities.max_concurrency == 3
    assert backend.identity() == {
        "backend": "openai", "model": "m", "base_url": "http://127.0.0.1:9/v1"}
    assert backend.model_string == "openai:m"
    assert SECRET not in repr(backend)


def test_score_raises_capability_error() -> None:
    backend = OpenAIBackend(model="m", base_url="http://127.0.0.1:9/v1")
    with pytest.raises(CapabilityError):
        asyncio.run(backend.ascore([ScoreRequest((Message("user", "2+2="),), "4")]))


@pytest.mark.parametrize("kwargs", [{"max_concurrency": 0}, {"timeout": 0}])
def test_rejects_bad_settings(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ConfigError, match="OpenAIBackend"):
        OpenAIBackend(model="m", **kwargs)


def test_connection_refused_is_retryable_and_quick() -> None:
    backend = OpenAIBackend(model="m", base_url=f"http://127.0.0.1:{free_port()}/v1",
                            timeout=5)
    start = time.monotonic()
    error = fails_with(backend, ask("hi"))
    assert time.monotonic() - start < 5
    assert error.retryable
    assert "could not connect" in str(error)


# --- against a fake endpoint: the model name picks the reply ------------------------------


class FakeEndpoint(BaseHTTPRequestHandler):
    """Answers ``/v1/chat/completions`` according to the requested model name."""

    bodies: ClassVar[list[dict[str, Any]]] = []
    in_flight = 0
    max_in_flight = 0
    lock = threading.Lock()

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        FakeEndpoint.bodies.append(body)
        model = body["model"]
        if model.startswith("status-"):
            status = int(model.split("-")[1])
            headers = {"Retry-After": "2"} if status in (429, 503) else {}
            self.reply(status, {"error": {"message": f"Incorrect API key provided: {SECRET}",
                                          "type": "error", "code": None}}, headers)
        elif model == "slow":
            time.sleep(1.0)
            self.reply(200, completion_body(None))
        elif model == "json-as-text":  # valid JSON labelled as plain text
            self.reply(200, completion_body("labelled wrong"), {"Content-Type": "text/plain"})
        elif model == "no-content-key":  # a server that leaves out a null content
            body = completion_body(None)
            del body["choices"][0]["message"]["content"]
            self.reply(200, body)
        else:
            with FakeEndpoint.lock:
                FakeEndpoint.in_flight += 1
                FakeEndpoint.max_in_flight = max(FakeEndpoint.max_in_flight,
                                                 FakeEndpoint.in_flight)
            time.sleep(0.05)
            with FakeEndpoint.lock:
                FakeEndpoint.in_flight -= 1
            self.reply(200, completion_body(None))

    def reply(self, status: int, payload: dict[str, Any],
              headers: dict[str, str] | None = None) -> None:
        data = json.dumps(payload).encode()
        try:
            self.send_response(status)
            for key, value in {"Content-Type": "application/json",
                               "Content-Length": str(len(data)), **(headers or {})}.items():
                self.send_header(key, value)
            self.end_headers()
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up (the timeout test)

    def log_message(self, format: str, *args: Any) -> None:
        pass


def completion_body(content: str | None) -> dict[str, Any]:
    return {
        "id": "x", "object": "chat.completion", "created": 0, "model": "fake",
        "choices": [{"index": 0, "finish_reason": "stop",
                     "message": {"role": "assistant", "content": content}}],
        "usage": {"prompt_tokens": 3, "completion_tokens": 0, "total_tokens": 3},
    }


@pytest.fixture(scope="module")
def fake_url() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeEndpoint)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def fake_backend(url: str, model: str, **kwargs: Any) -> OpenAIBackend:
    return OpenAIBackend(model=model, base_url=url, api_key=SECRET, **kwargs)


def test_401_is_not_retryable_and_never_shows_the_key(fake_url: str) -> None:
    error = fails_with(fake_backend(fake_url, "status-401"), ask("hi"))
    assert not error.retryable
    message = str(error)
    assert SECRET not in message
    assert "401" in message and "OPENAI_API_KEY" in message and fake_url in message


@pytest.mark.parametrize("status", [400, 403, 404, 422])
def test_client_errors_are_not_retryable(fake_url: str, status: int) -> None:
    error = fails_with(fake_backend(fake_url, f"status-{status}"), ask("hi"))
    assert not error.retryable
    assert str(status) in str(error) and SECRET not in str(error)


@pytest.mark.parametrize("status", [429, 503])
def test_rate_limits_are_retryable_with_retry_after(fake_url: str, status: int) -> None:
    error = fails_with(fake_backend(fake_url, f"status-{status}"), ask("hi"))
    assert isinstance(error, RateLimitedError)
    assert error.retryable
    assert error.retry_after == 2


def test_server_errors_are_retryable(fake_url: str) -> None:
    error = fails_with(fake_backend(fake_url, "status-500"), ask("hi"))
    assert error.retryable
    assert "500" in str(error) and SECRET not in str(error)


def test_timeout_is_retryable(fake_url: str) -> None:
    error = fails_with(fake_backend(fake_url, "slow", timeout=0.2), ask("hi"))
    assert error.retryable
    assert "timed out" in str(error)


def test_sends_sampling_parameters_and_empty_content_becomes_empty_text(fake_url: str) -> None:
    FakeEndpoint.bodies.clear()
    backend = fake_backend(fake_url, "ok")
    [[plain, _]] = generate(backend, [
        ask("a", temperature=0.5, top_p=0.9),
        ask("b", max_tokens=5, stop=("\n", "END"), seed=7),
    ])
    assert plain == Completion(text="", prompt_tokens=3, completion_tokens=0)
    bodies = {b["messages"][0]["content"]: b for b in FakeEndpoint.bodies}
    assert bodies["a"]["temperature"] == 0.5 and bodies["a"]["top_p"] == 0.9
    assert "stop" not in bodies["a"] and "seed" not in bodies["a"]
    assert bodies["b"]["max_tokens"] == 5
    assert bodies["b"]["stop"] == ["\n", "END"] and bodies["b"]["seed"] == 7


def test_json_labelled_as_text_is_read_and_a_left_out_content_is_empty_text(fake_url: str) -> None:
    [[labelled]] = generate(fake_backend(fake_url, "json-as-text"), [ask("a")])
    assert labelled == Completion(text="labelled wrong", prompt_tokens=3, completion_tokens=0)
    [[left_out]] = generate(fake_backend(fake_url, "no-content-key"), [ask("a")])
    assert left_out == Completion(text="", prompt_tokens=3, completion_tokens=0)


def test_concurrency_is_bounded(fake_url: str) -> None:
    FakeEndpoint.max_in_flight = 0
    backend = fake_backend(fake_url, "ok", max_concurrency=2)
    [completions] = generate(backend, [ask(str(i)) for i in range(6)])
    assert len(completions) == 6
    assert FakeEndpoint.max_in_flight == 2


@pytest.mark.parametrize(("kwargs", "fragment"), [
    ({"max_concurrency": 0}, "max_concurrency"), ({"max_concurrency": True}, "max_concurrency"),
    ({"timeout": 0}, "timeout"), ({"timeout": "60"}, "timeout"), ({"timeout": False}, "timeout"),
])
def test_endpoint_limits_are_checked_with_one_message(kwargs: dict[str, Any], fragment: str) -> None:
    from promptopt.backends.litellm import LiteLLMBackend

    for make in (lambda: OpenAIBackend(model="m", **kwargs),
                 lambda: LiteLLMBackend("openai/m", api_base="http://127.0.0.1:9/v1", **kwargs)):
        with pytest.raises(ConfigError, match=f"`{fragment}` parameter of (OpenAI|LiteLLM)Backend"):
            make()
