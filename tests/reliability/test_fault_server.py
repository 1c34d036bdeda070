"""The fault server itself: deterministic replies, and it always stops."""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request
from typing import Any

import pytest

from promptopt.testing.fault_server import FaultPlan, default_reply, run_fault_server


def post(base_url: str, body: dict[str, Any], timeout: float = 5) -> tuple[int, dict[str, Any]]:
    request = urllib.request.Request(f"{base_url}/chat/completions", data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def chat(text: str, **extra: Any) -> dict[str, Any]:
    return {"model": "fault", "messages": [{"role": "user", "content": text}], **extra}


def test_replies_are_a_pure_function_of_the_request() -> None:
    with run_fault_server() as server, run_fault_server() as other:
        body = chat("Text: The meal was great.\nAnswer:")
        (s1, a), (s2, b), (s3, c) = post(server.base_url, body), post(server.base_url, body), post(other.base_url, body)
    assert s1 == s2 == s3 == 200
    assert a == b == c
    assert a["choices"][0]["message"]["content"] in ("negative", "positive")
    assert a["usage"] == {"prompt_tokens": 6, "completion_tokens": 1, "total_tokens": 7}
    labels = {default_reply(chat(f"Text: sentence {i}\nAnswer:")) for i in range(20)}
    assert labels == {"negative", "positive"}
    assert default_reply(chat("Give 1 reasons why ...")).startswith("<START>")


def test_faults_follow_the_seed() -> None:
    def kinds(seed: int) -> list[str]:
        with run_fault_server(FaultPlan(rate=0.5, seed=seed, kinds=("500", "502", "503"))) as server:
            for i in range(20):
                post(server.base_url, chat(str(i)))
            return [str(s) for s in sorted(server.stats.statuses.elements())]

    assert kinds(1) == kinds(1) != kinds(2)


def test_non_transient_modes_start_after_n_requests() -> None:
    with run_fault_server(FaultPlan(fatal_status=404, fatal_after=2)) as server:
        statuses = [post(server.base_url, chat(str(i)))[0] for i in range(4)]
        _, body = post(server.base_url, chat("x"))
    assert statuses == [200, 200, 404, 404]
    assert "`fault` does not exist" in body["error"]["message"]


def test_stops_after_max_requests() -> None:
    with run_fault_server(max_requests=3) as server:
        assert [post(server.base_url, chat(str(i)))[0] for i in range(3)] == [200, 200, 200]
        with pytest.raises((urllib.error.URLError, ConnectionError)):
            post(server.base_url, chat("one too many"), timeout=2)
        assert server.stopped.wait(2)


def test_stops_when_idle() -> None:
    with run_fault_server(idle_timeout=0.3) as server:
        assert server.stopped.wait(3)
        time.sleep(0.2)
        with pytest.raises((urllib.error.URLError, ConnectionError)):
            post(server.base_url, chat("too late"), timeout=2)


def test_leaving_the_block_wakes_a_hanging_request() -> None:
    outcome: list[object] = []
    started = time.monotonic()
    with run_fault_server(FaultPlan(rate=1.0, kinds=("timeout",), hang_seconds=60)) as server:

        def call() -> None:
            try:
                outcome.append(post(server.base_url, chat("hang"), timeout=30))
            except (urllib.error.URLError, ConnectionError) as exc:
                outcome.append(exc)

        thread = threading.Thread(target=call)
        thread.start()
        while server.stats.in_flight == 0:
            time.sleep(0.01)
    thread.join(timeout=5)
    assert not thread.is_alive() and time.monotonic() - started < 5
    assert isinstance(outcome[0], (urllib.error.URLError, ConnectionError))


class _ClientGone:
    """A request handler whose client left before the body was written."""

    close_connection = False
    headers: dict[str, str] = {}

    def send_response(self, status: int) -> None:
        pass

    def send_header(self, name: str, value: str) -> None:
        pass

    def end_headers(self) -> None:
        pass

    class wfile:  # noqa: N801 - the handler's attribute name
        @staticmethod
        def write(data: bytes) -> None:
            raise BrokenPipeError

        @staticmethod
        def flush() -> None:
            pass


def test_a_response_the_client_never_got_leaves_no_count() -> None:
    # counted before the body is written (so a client holding its answer finds it counted), taken back
    # when the write fails, with no key left at zero
    with run_fault_server() as server:
        stats = server.stats
        server._answer(_ClientGone(), chat("x"), stats)  # type: ignore[arg-type]
        server._fault(_ClientGone(), "503", chat("y"), stats)  # type: ignore[arg-type]
        assert (stats.completions, stats.prompt_tokens, stats.duplicates) == (0, 0, 0)
        assert not stats.served and not stats.statuses
        assert post(server.base_url, chat("z"))[0] == 200 and stats.completions == 1 and len(stats.served) == 1
