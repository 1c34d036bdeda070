"""Budget caps hold with 16 requests in flight: the server never receives a call past a cap.

The run uses ``max_concurrency=16`` on the openai backend against a server with
latency, so batches really overlap. The cache is off, so every call the meter
admits is sent. Requests the server received before the ``budget_exhausted``
event are the search; after it comes the final test evaluation, which is
outside the budget by design.
"""

from __future__ import annotations

import importlib.util
import math
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from reliability_helpers import APO, SEED, TASK, optimize

import promptopt
from promptopt import Budget
from promptopt.budget import Meter
from promptopt.testing.fault_server import FaultPlan, FaultServer, run_fault_server
from promptopt.types import Role

CONCURRENCY = {"max_concurrency": 16}
SIZES = {"n_dev": 24, "n_test": 20}  # the seed's dev batch alone is 24 requests: more than 16 at once


def is_optimizer(body: dict[str, Any]) -> bool:
    text = str(body["messages"][-1]["content"])
    return "I am improving a prompt" in text or "Rewrite the following instruction" in text


class SearchSnapshot:
    """What the server had received when the search stopped (the ``budget_exhausted`` event)."""

    def __init__(self, server: FaultServer) -> None:
        self.server = server
        self.bodies: list[dict[str, Any]] = []
        self.tokens = self.prompt_tokens = self.completion_tokens = 0

    def __call__(self, event: dict[str, Any]) -> None:
        if event["type"] == "budget_exhausted":
            stats = self.server.stats
            assert stats.in_flight == 0  # the search is over: nothing of it still on the wire
            self.bodies, self.tokens = list(stats.bodies), stats.tokens
            self.prompt_tokens, self.completion_tokens = stats.prompt_tokens, stats.completion_tokens

    def count(self, role: Role) -> int:
        return sum(1 for b in self.bodies if is_optimizer(b) == (role == "optimizer"))


def run(server: FaultServer, tmp_path: Path, budget: Budget) -> tuple[Any, SearchSnapshot]:
    snapshot = SearchSnapshot(server)
    result = optimize(server.base_url, tmp_path, budget=budget, cache=False, model_options=CONCURRENCY,
                      on_event=snapshot, **SIZES)
    return result, snapshot


def record_admissions(monkeypatch: pytest.MonkeyPatch, spent: Callable[[Meter], float]) -> list[tuple[float, int]]:
    """(what was spent when a batch was admitted, its size) for every batch the meter admits."""
    admitted: list[tuple[float, int]] = []
    reserve = Meter.reserve

    def recording_reserve(self: Meter, role: Role, n_calls: int) -> None:
        before = spent(self)
        reserve(self, role, n_calls)
        if self.enforce and n_calls:
            admitted.append((before, n_calls))

    monkeypatch.setattr(Meter, "reserve", recording_reserve)
    return admitted


@pytest.fixture
def server() -> Iterator[FaultServer]:
    with run_fault_server(FaultPlan(latency=0.05), idle_timeout=60) as srv:
        yield srv


@pytest.mark.parametrize("cap", [30, 70])
def test_target_call_cap(server: FaultServer, tmp_path: Path, cap: int) -> None:
    result, search = run(server, tmp_path, Budget(target_calls=cap))
    assert "target call cap" in (result.stopped_by or "")
    assert search.bodies, "the search never hit the cap"
    assert search.count("target") <= cap
    assert search.count("target") == result.usage["search"]["target"]["calls"]
    n_test = len(server.stats.bodies) - len(search.bodies)
    assert n_test == result.usage["total"]["target"]["calls"] - result.usage["search"]["target"]["calls"]
    assert server.stats.max_in_flight == 16
    print(f"\ntarget cap {cap}: {search.count('target')} target requests reached the server in the search, "
          f"{n_test} in the final test; at most {server.stats.max_in_flight} in flight")


def test_optimizer_call_cap(server: FaultServer, tmp_path: Path) -> None:
    result, search = run(server, tmp_path, Budget(optimizer_calls=3))
    assert "optimizer call cap" in (result.stopped_by or "")
    assert search.count("optimizer") == 3 == result.usage["total"]["optimizer"]["calls"]
    assert sum(1 for b in server.stats.bodies if is_optimizer(b)) == 3  # none after the search either


def test_token_cap(server: FaultServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The meter admits a batch only while fewer tokens than the cap have been spent; a reply's
    # size is known only once it is back, so the batch admitted last may end past the cap.
    admitted = record_admissions(monkeypatch, lambda meter: meter.usage.tokens)
    cap = 2500
    result, search = run(server, tmp_path, Budget(tokens=cap))
    assert "token cap" in (result.stopped_by or "")
    assert all(tokens < cap for tokens, _ in admitted)  # no batch admitted once the cap was reached
    assert sum(n for _, n in admitted) == len(search.bodies)  # and nothing sent that was not admitted
    spent = result.usage["search"]["target"]["tokens"] + result.usage["search"]["optimizer"]["tokens"]
    assert search.tokens == spent >= cap  # the meter counted exactly what the server served
    last_batch = admitted[-1][1]
    print(f"\ntoken cap {cap}: {spent} tokens spent in the search ({spent - cap} over, from the last "
          f"admitted batch of {last_batch} calls, admitted at {admitted[-1][0]} tokens)")


@pytest.fixture
def slow_server() -> Iterator[FaultServer]:
    # litellm takes tens of milliseconds to send each request, more on a busy machine: at 0.05 s
    # latency the first reply could come back before the 16th request left (max_in_flight 15).
    with run_fault_server(FaultPlan(latency=0.3), idle_timeout=60) as srv:
        yield srv


def test_dollar_cap(slow_server: FaultServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # litellm prices each reply from its offline price map (gpt-4o-mini's price, served by the fault
    # server); the meter admits a batch only while less than the cap has been spent, so, as with
    # tokens, the batch admitted last may end past the cap, never one admitted after it.
    if importlib.util.find_spec("litellm") is None:
        pytest.skip("litellm is not installed (extra promptopt[litellm])")
    server = slow_server
    from promptopt.backends.litellm import _litellm

    litellm = _litellm()  # with the offline price map
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-placeholder")
    admitted = record_admissions(monkeypatch, lambda meter: meter.usage.usd)
    cap = 0.0006
    snapshot = SearchSnapshot(server)
    result = promptopt.optimize(
        TASK, "apo", "litellm:openai/gpt-4o-mini", answer_mode="generate", strategy_params=APO, seed=SEED,
        runs_dir=tmp_path, model_options={"api_base": server.base_url, **CONCURRENCY}, budget=Budget(usd=cap),
        cache=False, on_event=snapshot, **SIZES)
    assert "dollar cap" in (result.stopped_by or "")
    assert all(usd < cap for usd, _ in admitted)
    assert sum(n for _, n in admitted) == len(snapshot.bodies)
    assert server.stats.max_in_flight == 16
    # The meter's dollars are the price of exactly the tokens the server served in the search.
    prompt_usd, completion_usd = litellm.cost_per_token(model="gpt-4o-mini", prompt_tokens=1, completion_tokens=1)
    served = prompt_usd * snapshot.prompt_tokens + completion_usd * snapshot.completion_tokens
    spent = result.usage["search"]["target"]["usd"] + result.usage["search"]["optimizer"]["usd"]
    assert math.isclose(spent, served, rel_tol=1e-9) and spent >= cap
    print(f"\ndollar cap ${cap}: ${spent:.6f} spent in the search over {len(snapshot.bodies)} requests, "
          f"last batch of {admitted[-1][1]} admitted at ${admitted[-1][0]:.6f}")
