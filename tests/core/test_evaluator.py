from __future__ import annotations

import asyncio

import pytest
from parity_fixtures import MAGIC, parity_target

from promptopt.evaluator import Evaluator, resolve_answer_mode
from promptopt.exceptions import CapabilityError, ConfigError
from promptopt.tasks import Task, load_task
from promptopt.testing import FakeBackend
from promptopt.types import ScoreRequest


def test_generate_mode_parses_and_scores(parity_task: Task) -> None:
    fake = FakeBackend(reply=parity_target)
    ev = Evaluator(parity_task, fake, "generate")
    seed = parity_task.seed_prompt
    good = seed.with_instruction(f"{MAGIC} please.")
    dev = parity_task.splits.dev
    res_seed, res_good = asyncio.run(ev.aevaluate([seed, good], dev))
    assert res_good.mean == 1.0
    expected = sum(ex.target == "even" for ex in dev) / len(dev)
    assert res_seed.mean == pytest.approx(expected)
    assert {e.answer for e in res_seed.examples} == {"even"}


def test_duplicates_and_repeats_are_evaluated_once(parity_task: Task) -> None:
    fake = FakeBackend(reply=parity_target)
    ev = Evaluator(parity_task, fake, "generate")
    p, dev = parity_task.seed_prompt, parity_task.splits.dev
    asyncio.run(ev.aevaluate([p, p, p], dev))
    asyncio.run(ev.aevaluate([p], dev[:3]))
    assert fake.n_calls == len(dev)


def test_choice_mode_picks_the_most_likely_label(parity_task: Task) -> None:
    def score(req: ScoreRequest) -> float:
        return -0.1 if req.continuation == "odd" else -2.0

    ev = Evaluator(parity_task, FakeBackend(score=score), "choice")
    res = asyncio.run(ev.aevaluate([parity_task.seed_prompt], parity_task.splits.dev))[0]
    assert {e.answer for e in res.examples} == {"odd"}
    dev = parity_task.splits.dev
    assert res.mean == pytest.approx(sum(ex.target == "odd" for ex in dev) / len(dev))


def test_answer_mode_resolution(parity_task: Task, tmp_path: object) -> None:
    assert resolve_answer_mode(parity_task, FakeBackend(), "auto") == "choice"
    assert resolve_answer_mode(parity_task, FakeBackend(can_score=False), "auto") == "generate"
    assert resolve_answer_mode(parity_task, FakeBackend(), "generate") == "generate"
    with pytest.raises(CapabilityError, match="generate"):
        resolve_answer_mode(parity_task, FakeBackend(can_score=False), "choice")
    with pytest.raises(ConfigError, match="'bogus'"):
        resolve_answer_mode(parity_task, FakeBackend(), "bogus")
    arithmetic = load_task("synthetic:arithmetic", data_dir=tmp_path)  # type: ignore[arg-type]
    assert resolve_answer_mode(arithmetic, FakeBackend(), "auto") == "generate"
    with pytest.raises(ConfigError, match="label"):
        resolve_answer_mode(arithmetic, FakeBackend(), "choice")


def test_a_sequential_backend_gets_each_prompts_requests_together(parity_task: Task) -> None:
    """llama.cpp reuses a prompt across labels only if the labels of an example arrive back to back."""
    fake = FakeBackend()  # max_concurrency=1
    ev = Evaluator(parity_task, fake, "choice")
    a = parity_task.seed_prompt
    b = a.with_instruction("Another instruction.")
    asyncio.run(ev.aevaluate([a, b], parity_task.splits.dev[:4]))
    owners = ["Another" in r.messages[-1].content for r in fake.score_requests]
    assert owners == [False] * 8 + [True] * 8
    firsts = [r.messages[-1].content for r in fake.score_requests[:8]]
    assert firsts[0] == firsts[1] and firsts[2] == firsts[3]  # both labels of one example in a row


def test_a_task_s_own_feedback_is_kept_and_the_default_matches_feedback(parity_task: Task) -> None:
    import copy

    class OwnFeedback(type(parity_task)):  # type: ignore[misc]
        def feedback(self, answer: str | None, example: object) -> str:
            return f"custom:{answer}"

    own = copy.copy(parity_task)
    own.__class__ = OwnFeedback
    fake = FakeBackend(reply=parity_target)
    dev = parity_task.splits.dev[:4]
    (mine,) = asyncio.run(Evaluator(own, fake, "generate").aevaluate([own.seed_prompt], dev))
    assert [e.feedback for e in mine.examples] == ["custom:even"] * 4
    (default,) = asyncio.run(Evaluator(parity_task, fake, "generate").aevaluate([parity_task.seed_prompt], dev))
    assert [e.feedback for e in default.examples] == [parity_task.feedback(e.answer, ex)
                                                      for e, ex in zip(default.examples, dev, strict=True)]
