from __future__ import annotations

import asyncio

import pytest

from promptopt import Budget, BudgetExhausted, ConfigError
from promptopt.budget import Meter, MeteredBackend
from promptopt.testing import FakeBackend
from promptopt.types import Message, Request


def _requests(n: int, role: str = "target") -> list[Request]:
    return [Request((Message("user", f"q{i}"),), role=role) for i in range(n)]  # type: ignore[arg-type]


@pytest.mark.parametrize("field", ["target_calls", "optimizer_calls", "tokens", "usd", "seconds"])
def test_negative_caps_are_rejected_with_the_field_named(field: str) -> None:
    with pytest.raises(ConfigError, match=field):
        Budget(**{field: -1})


def test_non_numbers_are_rejected() -> None:
    with pytest.raises(ConfigError, match="target_calls"):
        Budget(target_calls="10")  # type: ignore[arg-type]


def test_a_batch_that_would_cross_the_cap_is_refused_before_sending() -> None:
    fake = FakeBackend()
    metered = MeteredBackend(fake, Meter(Budget(target_calls=5)))
    asyncio.run(metered.agenerate(_requests(3)))
    with pytest.raises(BudgetExhausted):
        asyncio.run(metered.agenerate(_requests(3)))
    assert fake.n_calls == 3  # nothing of the refused batch was sent
    asyncio.run(metered.agenerate(_requests(2)))
    assert fake.n_calls == 5 and metered.meter.usage.target.calls == 5


def test_roles_have_separate_caps() -> None:
    metered = MeteredBackend(FakeBackend(), Meter(Budget(target_calls=1, optimizer_calls=2)))
    asyncio.run(metered.agenerate(_requests(2, "optimizer")))
    asyncio.run(metered.agenerate(_requests(1, "target")))
    with pytest.raises(BudgetExhausted, match="optimizer"):
        asyncio.run(metered.agenerate(_requests(1, "optimizer")))
    usage = metered.meter.usage
    assert (usage.target.calls, usage.optimizer.calls) == (1, 2)


def test_concurrent_batches_never_overshoot_the_cap() -> None:
    fake = FakeBackend(latency=0.01, max_concurrency=16)
    metered = MeteredBackend(fake, Meter(Budget(target_calls=10)))

    async def many() -> list[object]:
        return await asyncio.gather(*(metered.agenerate(_requests(3)) for _ in range(16)),
                                    return_exceptions=True)

    outcomes = asyncio.run(many())
    sent = sum(1 for o in outcomes if not isinstance(o, BaseException))
    assert sent == 3 and fake.n_calls == 9 <= 10


def test_token_cap_stops_the_next_batch() -> None:
    metered = MeteredBackend(FakeBackend(reply=lambda r: "one two three"), Meter(Budget(tokens=4)))
    asyncio.run(metered.agenerate(_requests(1)))  # 1 prompt word + 3 reply words
    with pytest.raises(BudgetExhausted, match="token"):
        asyncio.run(metered.agenerate(_requests(1)))


def test_wall_time_cap_uses_the_clock() -> None:
    now = [0.0]
    meter = Meter(Budget(seconds=5), clock=lambda: now[0])
    meter.reserve("target", 1)
    now[0] = 5.0
    with pytest.raises(BudgetExhausted, match="wall-time"):
        meter.reserve("target", 1)


def test_enforcement_can_be_switched_off_for_the_final_test() -> None:
    meter = Meter(Budget(target_calls=0))
    meter.enforce = False
    meter.reserve("target", 50)
    assert meter.usage.target.calls == 50
