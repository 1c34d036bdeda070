"""Gold loss, the tokenizer and prompt reuse on the embedded model, checked against llama.cpp directly."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import numpy as np
import pytest

from promptopt.backends.llamacpp import LlamaCppBackend, smollm2_path
from promptopt.evaluator import Evaluator
from promptopt.prompt import Prompt
from promptopt.tasks import Task, load_task

DATA = Path(os.environ.get("PROMPTOPT_DATA_DIR", Path(__file__).resolve().parents[3] / "shared" / "data"))


@pytest.fixture(scope="module")
def sst2() -> Task:
    return load_task("sst2", data_dir=DATA, n_train=10, n_dev=200, n_test=10, offline=True)


def _direct_mean_logprob(prefix_text: str, continuation: str) -> float:
    """All tokens in one forward pass of a separate Llama with every position's logits."""
    from llama_cpp import Llama

    llm = Llama(model_path=smollm2_path(), n_ctx=1024, logits_all=True, verbose=False)
    try:
        prefix = llm.tokenize(prefix_text.encode(), add_bos=False, special=True)
        cont = llm.tokenize(continuation.encode(), add_bos=False, special=False)
        llm.eval(prefix + cont)
        logits = np.asarray(llm.scores[: len(prefix) + len(cont)], dtype=np.float64)
    finally:
        llm.close()
    rows = logits[len(prefix) - 1: len(prefix) - 1 + len(cont)]
    top = rows.max(axis=1, keepdims=True)
    logsoftmax = rows - top - np.log(np.exp(rows - top).sum(axis=1, keepdims=True))
    return float(np.mean([logsoftmax[j, tok] for j, tok in enumerate(cont)]))


def test_loss_is_the_mean_per_token_log_prob_of_a_direct_forward_pass(backend: LlamaCppBackend) -> None:
    task = load_task("gsm8k", data_dir=DATA, n_train=2, n_dev=2, n_test=2, offline=True)
    example = task.splits.dev[0]
    (res,) = asyncio.run(Evaluator(task, backend, "generate").aloss([task.seed_prompt], [example]))
    gold = task.gold_text(example)
    want = _direct_mean_logprob(backend.render_prefix(task.render(task.seed_prompt, example)), gold)
    assert res.examples[0].n_tokens == len(asyncio.run(backend.atokenize([gold]))[0]) > 10
    assert res.examples[0].loss == pytest.approx(-want, abs=1e-3)


def test_stating_the_label_set_lowers_the_gold_loss_on_sst2(backend: LlamaCppBackend, sst2: Task) -> None:
    """A measurement the issue asks for, kept as a test of the loss's direction on a clear case."""
    bare = Prompt(template="Text: {input}\nSentiment:")
    stated = Prompt(instruction="Classify the sentiment of the text as positive or negative.",
                    template="Text: {input}\nSentiment:")
    dev = sst2.splits.dev[:40]
    bare_res, stated_res = asyncio.run(Evaluator(sst2, backend, "choice").aloss([bare, stated], dev))
    print(f"sst2 dev[:40] gold loss: bare {bare_res.mean:.3f}, label set stated {stated_res.mean:.3f}")
    assert stated_res.mean < bare_res.mean


def test_tokenize_detokenize_round_trips_on_200_dev_inputs(backend: LlamaCppBackend, sst2: Task) -> None:
    texts = [ex.input for ex in sst2.splits.dev]
    assert len(texts) == 200
    ids = asyncio.run(backend.atokenize(texts))
    assert asyncio.run(backend.adetokenize(ids)) == texts
    vocabulary = asyncio.run(backend.avocabulary())
    assert "".join(vocabulary[i] for i in ids[0]) == texts[0]


def test_a_choice_evaluation_reads_each_examples_prompt_once(backend: LlamaCppBackend, sst2: Task) -> None:
    """Prompt reuse across labels: scoring both labels costs about what scoring one continuation does."""
    dev = sst2.splits.dev[:10]
    before = backend.tokens_evaluated
    asyncio.run(Evaluator(sst2, backend, "choice").aevaluate([sst2.seed_prompt], dev))
    choice = backend.tokens_evaluated - before
    before = backend.tokens_evaluated
    asyncio.run(Evaluator(sst2, backend, "choice").aloss([sst2.seed_prompt], dev))
    one_continuation = backend.tokens_evaluated - before
    print(f"tokens evaluated for 10 sst2 examples: 2 labels {choice}, one gold continuation {one_continuation}")
    assert choice <= 1.2 * one_continuation  # without reuse, two labels read every prompt twice
