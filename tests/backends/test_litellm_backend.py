"""LiteLLMBackend against a real llama.cpp server and the fault-injecting OpenAI-compatible server."""

from __future__ import annotations

import asyncio
import importlib.util
import math
import os
import time
from typing import Any

import pytest
from backend_calls import generate

from promptopt.backends.litellm import LiteLLMBackend, RateLimitedError, _litellm, key_env_names
from promptopt.budget import Meter, MeteredBackend
from promptopt.exceptions import BackendError, CapabilityError, ConfigError
from promptopt.testing.fault_server import FaultPlan, run_fault_server
from promptopt.testing.llama_server import free_port
from promptopt.types import Message, Request, ScoreRequest

# Not importorskip: litellm must be imported by the backend, which first points it at its offline price map.
pytestmark = pytest.mark.skipif(importlib.util.find_spec("litellm") is None,
                                reason="needs `pip install 'litellm>=1.60,<2,!=1.82.7,!=1.82.8'`")

SECRET = "sk-test-SECRET123"
ENV_SECRET = "sk-env-ELSEWHERE456"


def ask(text: str, **kwargs: Any) -> Request:
    return Request(messages=(Message("user", text),), **{"max_tokens": 8, **kwargs})




def fails_with(backend: LiteLLMBackend, *requests: Request) -> BackendError:
    with pytest.raises(BackendError) as info:
        generate(backend, list(requests) or [ask("hi")])
    return info.value


def local(url: str, model: str = "openai/fault", **kwargs: Any) -> LiteLLMBackend:
    return LiteLLMBackend(model, api_base=url, **kwargs)


# --- against a real llama.cpp server -------------------------------------------------------


def test_generates_a_short_reply_with_tokens_and_a_cost(llama_server_url: str) -> None:
    backend = local(llama_server_url, "openai/smollm2", max_concurrency=2)
    [[completion]] = generate(backend, [ask("Say the word apple", max_tokens=4)])
    assert completion.text.strip()
    assert completion.prompt_tokens > 0
    assert 0 < completion.completion_tokens <= 4
    assert completion.finish_reason in {"stop", "length"}
    assert completion.usd == 0.0  # a local model has no price in litellm's map


# --- against the fault server ----------------------------------------------------------------


def test_cost_comes_from_the_price_map_and_the_meter_sums_it() -> None:
    with run_fault_server() as server:
        meter = Meter()
        backend = MeteredBackend(local(server.base_url, "openai/gpt-4o-mini"), meter)
        [completions] = generate(backend, [ask("one two three"), ask("four")])
    litellm = _litellm()
    for c in completions:
        prompt_usd, completion_usd = litellm.cost_per_token(
            model="gpt-4o-mini", prompt_tokens=c.prompt_tokens, completion_tokens=c.completion_tokens)
        assert c.usd > 0 and math.isclose(c.usd, prompt_usd + completion_usd)
    assert math.isclose(meter.usage.target.usd, sum(c.usd for c in completions))


def test_sends_sampling_parameters_and_a_placeholder_key(monkeypatch: pytest.MonkeyPatch) -> None:
    # A key found in the environment must never reach a local server.
    monkeypatch.setenv("OPENAI_API_KEY", ENV_SECRET)
    with run_fault_server() as server:
        generate(local(server.base_url), [
            ask("a", temperature=0.5, top_p=0.9),
            ask("b", max_tokens=5, stop=("\n", "END"), seed=7),
        ])
        bodies = {b["messages"][0]["content"]: b for b in server.stats.bodies}
        assert server.stats.api_keys == {"no-key"}
    assert bodies["a"]["model"] == "fault"
    assert bodies["a"]["temperature"] == 0.5 and bodies["a"]["top_p"] == 0.9
    assert "stop" not in bodies["a"] and "seed" not in bodies["a"]
    assert bodies["b"]["max_tokens"] == 5
    assert bodies["b"]["stop"] == ["\n", "END"] and bodies["b"]["seed"] == 7


def test_batch_comes_back_in_order_with_bounded_concurrency() -> None:
    with run_fault_server(FaultPlan(latency=0.05), reply=lambda body: body["messages"][0]["content"]) as server:
        [completions] = generate(local(server.base_url, max_concurrency=2), [ask(str(i)) for i in range(6)])
        assert server.stats.max_in_flight == 2
    assert [c.text for c in completions] == [str(i) for i in range(6)]


def test_backend_survives_a_new_event_loop_after_aclose() -> None:
    with run_fault_server() as server:
        backend = local(server.base_url)
        assert generate(backend, [ask("hi")]) == generate(backend, [ask("hi")])


@pytest.mark.parametrize("retry_after", [1.5, None])
def test_429_is_a_rate_limit_with_retry_after(retry_after: float | None) -> None:
    kind = "429-retry-after" if retry_after else "429"
    plan = FaultPlan(rate=1.0, kinds=(kind,), retry_after=retry_after or 1.0)
    with run_fault_server(plan) as server:
        error = fails_with(local(server.base_url))
        assert server.stats.received == 1  # litellm itself did not retry
    assert isinstance(error, RateLimitedError) and error.retryable
    assert error.retry_after == retry_after


@pytest.mark.parametrize("kind", ["500", "502", "503", "timeout", "drop", "truncated", "wrong-shape"])
def test_transient_faults_are_retryable(kind: str) -> None:
    with run_fault_server(FaultPlan(rate=1.0, kinds=(kind,), hang_seconds=1.0)) as server:
        error = fails_with(local(server.base_url, timeout=0.3))
    assert error.retryable
    if kind == "timeout":
        assert "timed out" in str(error)


def test_connection_refused_is_retryable_and_quick() -> None:
    start = time.monotonic()
    error = fails_with(local(f"http://127.0.0.1:{free_port()}/v1", timeout=5))
    assert time.monotonic() - start < 5
    assert error.retryable


@pytest.mark.parametrize("status", [400, 401, 403, 404])
def test_client_errors_are_not_retryable_and_never_show_the_key(status: int) -> None:
    with run_fault_server(FaultPlan(fatal_status=status, echo_key=True)) as server:
        error = fails_with(local(server.base_url, api_key=SECRET))
        assert server.stats.api_keys == {SECRET}
    assert not error.retryable
    assert SECRET not in str(error) and error.__cause__ is None
    assert str(status) in str(error)


def test_a_rejected_key_stops_the_requests_still_waiting() -> None:
    with run_fault_server(FaultPlan(fatal_status=401)) as server:
        error = fails_with(local(server.base_url, api_key=SECRET, max_concurrency=1), *(ask(str(i)) for i in range(4)))
        assert server.stats.received == 1
    assert "rejected the api_key" in str(error)


# --- keys and model names, without a server ----------------------------------------------------


@pytest.mark.parametrize(("model", "env_var"), [("anthropic/claude-3-5-haiku", "ANTHROPIC_API_KEY"),
                                                ("openai/gpt-4o-mini", "OPENAI_API_KEY")])
def test_missing_key_names_the_variable_and_sends_nothing(
        monkeypatch: pytest.MonkeyPatch, model: str, env_var: str) -> None:
    for name in ("ANTHROPIC_API_KEY", "ANTHROPIC_AUTH_TOKEN", "OPENAI_API_KEY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("COHERE_API_KEY", ENV_SECRET)
    start = time.monotonic()
    error = fails_with(LiteLLMBackend(model, timeout=2))
    assert time.monotonic() - start < 2  # refused before any network call
    assert not error.retryable
    assert env_var in str(error) and ENV_SECRET not in str(error)


def test_key_env_names_uses_litellm_then_a_table(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    monkeypatch.delenv("ANTHROPIC_AUTH_TOKEN", raising=False)
    assert key_env_names("anthropic/claude-3-5-haiku") == ["ANTHROPIC_API_KEY"]
    monkeypatch.setenv("ANTHROPIC_API_KEY", ENV_SECRET)  # set but (say) rejected: still named
    assert key_env_names("anthropic/claude-3-5-haiku") == ["ANTHROPIC_API_KEY"]


@pytest.mark.parametrize("model", ["nosuchprovider/model-x", "smollm2"])
def test_unknown_provider_is_a_config_error_showing_the_shape(model: str) -> None:
    with pytest.raises(ConfigError, match=r"litellm:<provider>/<model>"):
        LiteLLMBackend(model, api_base="http://127.0.0.1:9/v1")


def test_declares_capabilities_and_identity_without_the_key() -> None:
    backend = LiteLLMBackend("anthropic/claude-3-5-haiku", api_key=SECRET, max_concurrency=3)
    assert backend.capabilities.chat and not backend.capabilities.score
    assert backend.capabilities.max_concurrency == 3
    assert backend.identity() == {"backend": "litellm", "model": "anthropic/claude-3-5-haiku", "api_base": None}
    assert backend.model_string == "litellm:anthropic/claude-3-5-haiku"
    assert SECRET not in repr(backend) and SECRET not in str(backend.identity())


def test_score_raises_capability_error() -> None:
    backend = local("http://127.0.0.1:9/v1")
    with pytest.raises(CapabilityError):
        asyncio.run(backend.ascore([ScoreRequest((Message("user", "2+2="),), "4")]))


@pytest.mark.parametrize("kwargs", [{"max_concurrency": 0}, {"timeout": 0}, {"max_concurrency": True}])
def test_rejects_bad_settings(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ConfigError, match="LiteLLMBackend"):
        LiteLLMBackend("openai/gpt-4o-mini", **kwargs)


def test_offline_price_map_is_the_default_but_a_users_choice_stands(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LITELLM_LOCAL_MODEL_COST_MAP", raising=False)
    _litellm()
    assert os.environ["LITELLM_LOCAL_MODEL_COST_MAP"] == "True"
    monkeypatch.setenv("LITELLM_LOCAL_MODEL_COST_MAP", "False")
    _litellm()
    assert os.environ["LITELLM_LOCAL_MODEL_COST_MAP"] == "False"
