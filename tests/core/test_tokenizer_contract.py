"""The tokenizer through the call layer, and the capabilities strategies are checked against."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Sequence
from pathlib import Path

import pytest

import promptopt
from promptopt.backends import RetryingBackend
from promptopt.budget import Budget
from promptopt.evaluator import Evaluator
from promptopt.exceptions import BackendError, CapabilityError, DataError
from promptopt.session import Session
from promptopt.strategies import get_strategy
from promptopt.tasks import Task
from promptopt.testing import FakeBackend
from promptopt.types import LogProb, ScoreRequest


@pytest.mark.parametrize("cache", [True, False])
def test_the_tokenizer_passes_through_every_layer_and_is_not_metered(tmp_path: Path, cache: bool) -> None:
    fake = FakeBackend()
    with Session(fake, None, budget=Budget(target_calls=1), cache_path=tmp_path / "c.sqlite" if cache else None,
                 model_options={"requests_per_second": 1000}) as session:
        target = session.target
        ids = session.loop.run(target.atokenize(["héllo", "a b"]))
        assert ids == [list("héllo".encode()), list(b"a b")]
        assert session.loop.run(target.adetokenize(ids)) == ["héllo", "a b"]
        assert len(session.loop.run(target.avocabulary())) == 256
        assert session.meter.usage.target.calls == 0 and fake.n_calls == 0


class _FlakyTokenizer(FakeBackend):
    def __init__(self) -> None:
        super().__init__()
        self.attempts = 0

    async def atokenize(self, texts: Sequence[str]) -> list[list[int]]:
        self.attempts += 1
        if self.attempts == 1:
            raise BackendError("503 from /tokenize", retryable=True)
        return await super().atokenize(texts)


def test_a_transient_tokenizer_failure_is_retried() -> None:
    inner = _FlakyTokenizer()
    retrying = RetryingBackend(inner, initial_wait=0.001, max_wait=0.001)
    assert asyncio.run(retrying.atokenize(["ab"])) == [[97, 98]] and inner.attempts == 2


def _without_vocabulary() -> FakeBackend:
    fake = FakeBackend()
    fake.capabilities = dataclasses.replace(fake.capabilities, vocabulary=False)  # as openai: against vLLM
    return fake


def test_a_strategy_that_needs_the_vocabulary_is_refused_before_any_call(parity_task: Task, tmp_path: Path) -> None:
    fake = _without_vocabulary()
    with pytest.raises(CapabilityError, match="whole vocabulary .*llamacpp:<model> or vllm:<model>"):
        promptopt.optimize(parity_task, "rlprompt", fake, cache=False, runs_dir=tmp_path / "runs")
    assert fake.n_calls == 0 and not (tmp_path / "runs").exists()
    get_strategy("rlprompt", {"words": ["good", "bad"]}).check_backend(fake, "choice")  # a word list needs none


def test_pruning_by_word_needs_no_tokenizer() -> None:
    no_tokenizer = FakeBackend(can_tokenize=False)
    get_strategy("tapruning", {"unit": "word"}).check_backend(no_tokenizer, "choice")
    with pytest.raises(CapabilityError, match="tokenizer"):
        get_strategy("tapruning", {"unit": "token"}).check_backend(no_tokenizer, "choice")


class _EmptyGold(FakeBackend):
    async def ascore(self, requests: Sequence[ScoreRequest]) -> list[LogProb]:
        return [LogProb(logprob=0.0, n_tokens=0) for _ in requests]


def test_an_empty_gold_continuation_is_a_data_error_not_a_perfect_loss(parity_task: Task) -> None:
    ev = Evaluator(parity_task, _EmptyGold(), "choice")
    with pytest.raises(DataError, match="empty gold continuation"):
        asyncio.run(ev.aloss([parity_task.seed_prompt], parity_task.splits.dev[:1]))
