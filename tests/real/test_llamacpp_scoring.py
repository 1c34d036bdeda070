"""The embedded llama.cpp backend, checked against computations that do not share its code path."""

from __future__ import annotations

import asyncio
import math
from collections.abc import Iterator

import numpy as np
import pytest

from promptopt.backends.llamacpp import LlamaCppBackend, smollm2_path
from promptopt.types import Message, Request, ScoreRequest

MESSAGES = (Message("user", "Is this review positive or negative?\n\nText: a gorgeous, witty film\nAnswer:"),)


@pytest.fixture(scope="module")
def reference() -> Iterator[object]:
    from llama_cpp import Llama

    llm = Llama(model_path=smollm2_path(), n_ctx=1024, logits_all=True, verbose=False)
    yield llm
    llm.close()


def _direct_logprob(llm: object, prefix_text: str, continuation: str) -> float:
    """All tokens in one forward pass; log-softmax of each continuation token at the position before it."""
    prefix = llm.tokenize(prefix_text.encode(), add_bos=False, special=True)  # type: ignore[attr-defined]
    cont = llm.tokenize(continuation.encode(), add_bos=False, special=False)  # type: ignore[attr-defined]
    llm.reset()  # type: ignore[attr-defined]
    llm.eval(prefix + cont)  # type: ignore[attr-defined]
    logits = np.asarray(llm.scores[: len(prefix) + len(cont)], dtype=np.float64)  # type: ignore[attr-defined]
    total = 0.0
    for j, tok in enumerate(cont):
        row = logits[len(prefix) - 1 + j]
        total += float(row[tok] - np.log(np.sum(np.exp(row - row.max()))) - row.max())
    return total


@pytest.mark.parametrize("continuation", ["positive", "negative", "The review is positive."])
def test_score_matches_a_direct_logits_computation(backend: LlamaCppBackend, reference: object,
                                                   continuation: str) -> None:
    got = asyncio.run(backend.ascore([ScoreRequest(MESSAGES, continuation)]))[0]
    want = _direct_logprob(reference, backend.render_prefix(MESSAGES), continuation)
    assert got.logprob == pytest.approx(want, abs=2e-3)
    assert got.logprob < 0 and got.n_tokens >= 1


def test_first_token_score_matches_the_sampling_path(backend: LlamaCppBackend, reference: object) -> None:
    """The greedy token's log-probability reported by generation equals our score of that token."""
    out = reference.create_completion(backend.render_prefix(MESSAGES), max_tokens=1, temperature=0.0,  # type: ignore[attr-defined]
                                      logprobs=1)
    token_text = out["choices"][0]["text"]
    reported = out["choices"][0]["logprobs"]["token_logprobs"][0]
    got = asyncio.run(backend.ascore([ScoreRequest(MESSAGES, token_text)]))[0]
    assert got.n_tokens == 1
    assert got.logprob == pytest.approx(reported, abs=2e-3)


def test_label_probabilities_are_a_distribution_over_the_vocabulary(backend: LlamaCppBackend) -> None:
    lps = asyncio.run(backend.ascore([ScoreRequest(MESSAGES, w) for w in ("positive", "negative")]))
    assert sum(math.exp(lp.logprob) for lp in lps) < 1.0


def test_answers_do_not_depend_on_the_previous_request(backend: LlamaCppBackend) -> None:
    """Prefix reuse must not change numbers: same request after different ones gives the same answer."""
    other = (Message("user", "Is this review positive or negative?\n\nText: dull and long\nAnswer:"),)
    req = Request(MESSAGES, max_tokens=12)
    first = asyncio.run(backend.agenerate([req]))[0].text
    asyncio.run(backend.agenerate([Request(other, max_tokens=12)]))
    assert asyncio.run(backend.agenerate([req]))[0].text == first
    a = asyncio.run(backend.ascore([ScoreRequest(MESSAGES, "negative")]))[0].logprob
    asyncio.run(backend.ascore([ScoreRequest(other, "negative"), ScoreRequest(MESSAGES, "positive")]))
    assert asyncio.run(backend.ascore([ScoreRequest(MESSAGES, "negative")]))[0].logprob == a


def test_sampling_is_reproducible_with_a_seed(backend: LlamaCppBackend) -> None:
    req = Request((Message("user", "Write one short sentence about rain."),), max_tokens=16, temperature=1.0, seed=7)
    a = asyncio.run(backend.agenerate([req]))[0].text
    b = asyncio.run(backend.agenerate([req]))[0].text
    assert a == b and a


def test_an_empty_continuation_has_probability_one(backend: LlamaCppBackend) -> None:
    got = asyncio.run(backend.ascore([ScoreRequest(MESSAGES, "")]))[0]
    assert got.logprob == 0.0 and got.n_tokens == 0


def test_n_threads_also_bounds_prompt_evaluation() -> None:
    one = LlamaCppBackend("smollm2", n_ctx=256, n_threads=1)
    try:
        asyncio.run(one.ascore([ScoreRequest((Message("user", "Is water wet?"),), "Yes")]))
        llm = one._llm
        assert llm is not None and (llm.n_threads, llm.n_threads_batch) == (1, 1)
        assert (llm.context_params.n_threads, llm.context_params.n_threads_batch) == (1, 1)
    finally:
        one.close()
