"""In-process vLLM: one engine in this process, one ``LLM.generate`` call per batch.

``vllm:<model>`` is a Hugging Face model id or a local model directory
(``vllm:Qwen/Qwen2.5-7B-Instruct``, ``vllm:/models/smollm2``). vLLM is an
extra (``pip install 'promptopt[vllm]'``), imported on first use; the model is
loaded on the first call, not when the backend is made.

Prompts are built the way the llama.cpp backend builds them: the messages are
rendered with the model's own chat template up to the start of the assistant
reply, and tokenized without adding a BOS token; a score appends the
continuation's own tokens. The engine gets token ids, so generation and scoring
see the same prompt. log P(continuation) is the sum of vLLM's
``prompt_logprobs`` at the continuation's positions.

vLLM batches internally, so the backend declares ``batches`` with a high
``max_concurrency``: the cache hands it up to that many requests per call, and
calls that arrive while the engine is busy (several prompts' batches evaluated
at once, or target and optimizer sharing the backend) go out together in the
next ``generate`` call. Which requests share a call can depend on timing; vLLM
does not promise bit-identical numbers across batch compositions, and the
response cache is what makes a resumed run repeat its answers.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import hashlib
import importlib.util
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from promptopt.backends._base import Backend, Capabilities
from promptopt.exceptions import BackendError, ConfigError
from promptopt.types import Completion, LogProb, Message, Request, ScoreRequest

__all__ = ["VLLMBackend"]

T = TypeVar("T")

_INSTALL = "run `pip install 'promptopt[vllm]'` (on a machine without a GPU: scripts/vllm-cpu-test.sh)"

# One pending call: what it asks ("generate" or "score"), its requests, and who waits for the answers.
_Pending = tuple[str, list[Any], "asyncio.Future[list[Any]]"]


def _looks_like_path(model: str) -> bool:
    return model.startswith(("/", "./", "../", "~")) or Path(model).exists()


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    line = text[0] if text else type(exc).__name__
    return line if len(line) <= 200 else line[:197] + "..."


class VLLMBackend(Backend):
    """vLLM's offline ``LLM`` engine in this process.

    Args:
        model: Hugging Face model id or local model directory (with ``config.json``).
        dtype: weights and activations, as vLLM takes it (``"auto"``, ``"bfloat16"``,
            ``"float32"``, ...); part of the cache identity.
        max_model_len: context window in tokens (default: the model's).
        seed: base sampling seed; a request's own ``seed`` wins, else
            ``seed + sample_index`` so repeated samples differ but repeat across runs.
        max_concurrency: most requests the layers above hand over in one call.
        enforce_eager: skip CUDA graphs / compilation (faster start, slower steps).
        engine_args: any other ``vllm.LLM`` keyword arguments (e.g.
            ``tensor_parallel_size``, ``gpu_memory_utilization``). Not part of the
            cache identity, so keep answer-changing settings in the named arguments.

    Raises:
        ConfigError: vLLM is not installed, or ``model`` names a missing local path.

    Example:
        >>> backend = VLLMBackend("Qwen/Qwen2.5-0.5B-Instruct")  # doctest: +SKIP
        >>> backend.identity()  # doctest: +SKIP
        {'backend': 'vllm', 'model': 'Qwen/Qwen2.5-0.5B-Instruct', 'dtype': 'auto', 'seed': 0}
    """

    name = "vllm"

    def __init__(self, model: str, *, dtype: str = "auto", max_model_len: int | None = None, seed: int = 0,
                 max_concurrency: int = 256, enforce_eager: bool = False,
                 engine_args: dict[str, Any] | None = None) -> None:
        if isinstance(max_concurrency, bool) or not isinstance(max_concurrency, int) or max_concurrency < 1:
            raise ConfigError(f"the `max_concurrency` parameter of VLLMBackend must be an int >= 1; "
                              f"got {max_concurrency!r}")
        if _looks_like_path(model) and not (Path(model).expanduser() / "config.json").is_file():
            raise ConfigError(f"vllm model {model!r} is not a model directory (no config.json there); pass a "
                              "Hugging Face model id or a local directory, e.g. vllm:Qwen/Qwen2.5-7B-Instruct")
        if importlib.util.find_spec("vllm") is None:
            raise ConfigError(f"the vllm backend needs the `vllm` package, which is not installed; {_INSTALL}")
        self.model = model
        self._source = str(Path(model).expanduser()) if _looks_like_path(model) else model
        self.dtype, self.max_model_len, self.seed = dtype, max_model_len, seed
        self.enforce_eager = enforce_eager
        self.engine_args = dict(engine_args or {})
        self.capabilities = Capabilities(chat=True, score=True, max_concurrency=max_concurrency, seeds=True,
                                         batches=True, tokenize=True, vocabulary=True)
        self._llm: Any = None
        self._lock = threading.Lock()  # the engine is not thread-safe
        self._pool: ThreadPoolExecutor | None = None
        self._pending: list[_Pending] = []
        self._drainer: asyncio.Task[None] | None = None

    def __repr__(self) -> str:
        return f"VLLMBackend(model={self.model!r}, dtype={self.dtype!r})"

    def identity(self) -> dict[str, Any]:
        """Model, dtype and seed (plus a digest of a local model's files); never ``engine_args``."""
        ident: dict[str, Any] = {"backend": self.name, "model": self.model, "dtype": self.dtype, "seed": self.seed}
        folder = Path(self._source)
        if _looks_like_path(self.model) and folder.is_dir():
            files = sorted((p.name, p.stat().st_size) for p in folder.iterdir() if p.is_file())
            ident["files"] = hashlib.sha256(repr(files).encode()).hexdigest()[:16]
        return ident

    # -- the engine -------------------------------------------------------------------------
    def _engine(self) -> Any:
        if self._llm is None:
            self._llm = self._load()
        return self._llm

    def _load(self) -> Any:
        try:
            from vllm import LLM
        except ImportError as exc:
            raise ConfigError(f"vllm is installed but does not import ({_first_line(exc)}); {_INSTALL}") from exc
        except Exception as exc:  # e.g. a torchvision built for another torch fails inside vllm's import
            raise ConfigError(f"vllm failed to import: {type(exc).__name__}: {_first_line(exc)}; reinstall it "
                              "beside a matching torch (scripts/vllm-cpu-test.sh shows a working set)") from exc
        # prefix caching: the labels of one example (choice mode) and a gold loss share the prompt, which is
        # then computed once; engine_args may turn it off
        args = {"dtype": self.dtype, "seed": self.seed, "enforce_eager": self.enforce_eager,
                "enable_prefix_caching": True, **self.engine_args}
        if self.max_model_len is not None:
            args["max_model_len"] = self.max_model_len
        try:
            return LLM(model=self._source, **args)
        except Exception as exc:
            raise ConfigError(f"vLLM could not load model {self.model!r}: {type(exc).__name__}: {_first_line(exc)}; "
                              "check the model name or directory, dtype and max_model_len (its log is above)") from exc

    def render_prefix(self, messages: Sequence[Message]) -> str:
        """The prompt text the chat template gives, up to the start of the assistant reply."""
        tokenizer = self._engine().get_tokenizer()
        try:
            text = tokenizer.apply_chat_template([{"role": m.role, "content": m.content} for m in messages],
                                                 tokenize=False, add_generation_prompt=True)
        except ValueError as exc:  # transformers' answer for a tokenizer without a template
            raise BackendError(f"vllm:{self.model} has no usable chat template ({_first_line(exc)}); "
                               "use a chat (instruct) model") from exc
        return str(text)

    def _tokens(self, text: str) -> list[int]:
        return list(self._engine().get_tokenizer().encode(text, add_special_tokens=False))

    async def atokenize(self, texts: Sequence[str]) -> list[list[int]]:
        return await self._on_worker(lambda: [self._tokens(t) for t in texts])

    async def adetokenize(self, ids: Sequence[Sequence[int]]) -> list[str]:
        def decode() -> list[str]:
            tokenizer = self._engine().get_tokenizer()
            return [str(tokenizer.decode(list(i), skip_special_tokens=False)) for i in ids]
        return await self._on_worker(decode)

    async def avocabulary(self) -> list[str]:
        def read() -> list[str]:
            tokenizer = self._engine().get_tokenizer()
            return [str(tokenizer.decode([i], skip_special_tokens=False)) for i in range(len(tokenizer))]
        return await self._on_worker(read)

    async def _on_worker(self, fn: Callable[[], T]) -> T:
        """``fn`` on the engine's worker thread (it may load the engine: never on the event loop)."""
        if self._pool is None:
            self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="vllm")
        return await asyncio.get_running_loop().run_in_executor(self._pool, fn)

    def _context_limit(self) -> int:
        return int(self._engine().model_config.max_model_len)

    # -- one batch, on the worker thread ----------------------------------------------------
    def _run(self, items: list[tuple[str, Any]]) -> list[Any]:
        """Answer each ``(kind, request)``; a request that cannot run gets its error in its slot.

        Every runnable request goes to the engine in one ``generate`` call.
        """
        with self._lock:
            self._engine()  # loads vllm (and the model) with its errors translated
            from vllm import SamplingParams
            from vllm.inputs import TokensPrompt

            results: list[Any] = [None] * len(items)
            jobs: list[tuple[int, list[int], Any, int]] = []  # slot, prompt ids, params, prompt length
            for slot, (kind, req) in enumerate(items):
                try:
                    jobs.append((slot, *self._prepare(kind, req, SamplingParams)))
                except BackendError as exc:
                    results[slot] = exc
                except ValueError as exc:  # SamplingParams refused a value
                    results[slot] = BackendError(f"vllm:{self.model} refused the request: {_first_line(exc)}; "
                                                 "check temperature, top_p and max_tokens")
            runnable = [j for j in jobs if j[2] is not None]
            outputs = self._generate([TokensPrompt(prompt_token_ids=ids) for _, ids, _, _ in runnable],
                                     [params for _, _, params, _ in runnable]) if runnable else []
            for (slot, ids, _, n_prefix), out in zip(runnable, outputs, strict=True):
                kind, req = items[slot]
                results[slot] = self._completion(out) if kind == "generate" else self._logprob(out, ids, n_prefix)
            for slot, ids, params, _ in jobs:
                if params is None:  # an empty continuation: nothing to score
                    results[slot] = LogProb(logprob=0.0, n_tokens=0, prompt_tokens=len(ids))
            return results

    def _prepare(self, kind: str, req: Any, sampling: Any) -> tuple[list[int], Any, int]:
        """Prompt ids, sampling parameters (None: no engine call needed) and prefix length."""
        prefix = self._tokens(self.render_prefix(req.messages))
        if kind == "generate":
            ids, params = prefix, self._sampling(req, sampling)
        else:
            cont = self._tokens(req.continuation)
            ids = prefix + cont
            # prompt_logprobs=0: the log-prob of each prompt token itself, no alternatives.
            params = sampling(max_tokens=1, temperature=0.0, prompt_logprobs=0) if cont else None
        limit = self._context_limit()
        if len(ids) >= limit:
            raise BackendError(f"the prompt is {len(ids)} tokens but vllm:{self.model} takes fewer than {limit}; "
                               "shorten the prompt or raise max_model_len")
        return ids, params, len(prefix)

    def _sampling(self, req: Request, sampling: Any) -> Any:
        seed = req.seed if req.seed is not None else self.seed + req.sample_index
        return sampling(max_tokens=req.max_tokens, temperature=req.temperature, top_p=req.top_p,
                        stop=list(req.stop) or None, seed=seed)

    def _generate(self, prompts: list[Any], params: list[Any]) -> list[Any]:
        try:
            return list(self._engine().generate(prompts, params, use_tqdm=False))
        except (ConfigError, BackendError):
            raise
        except ValueError as exc:  # a request vLLM refuses (vllm's validation errors are ValueErrors)
            raise BackendError(f"vllm:{self.model} refused the batch: {_first_line(exc)}; "
                               "shorten the prompts or raise max_model_len") from exc
        except Exception as exc:  # the engine died (out of memory, a crashed worker)
            raise BackendError(f"the vLLM engine failed: {type(exc).__name__}: {_first_line(exc)}; "
                               "see its log above; the backend has to be made again") from exc

    @staticmethod
    def _completion(out: Any) -> Completion:
        sample = out.outputs[0]
        return Completion(text=sample.text, prompt_tokens=len(out.prompt_token_ids),
                          completion_tokens=len(sample.token_ids), finish_reason=sample.finish_reason or "stop")

    def _logprob(self, out: Any, ids: list[int], n_prefix: int) -> LogProb | BackendError:
        # Entry i is log P(token i | tokens before it); the first is None (nothing before it).
        rows = out.prompt_logprobs or []
        try:
            total = sum(float(rows[i][ids[i]].logprob) for i in range(n_prefix, len(ids)))
        except (IndexError, KeyError, TypeError) as exc:
            return BackendError(f"vllm:{self.model} returned prompt log-probs of the wrong shape "
                                f"({type(exc).__name__}: {exc}); this is a bug in vLLM or in promptopt")
        return LogProb(logprob=total, n_tokens=len(ids) - n_prefix, prompt_tokens=len(ids))

    # -- async batch API --------------------------------------------------------------------
    async def agenerate(self, requests: Sequence[Request]) -> list[Completion]:
        return await self._submit("generate", requests)

    async def ascore(self, requests: Sequence[ScoreRequest]) -> list[LogProb]:
        return await self._submit("score", requests)

    async def _submit(self, kind: str, requests: Sequence[Any]) -> list[Any]:
        """Queue the requests for the next engine call; wait for their answers."""
        if not requests:
            return []
        loop = asyncio.get_running_loop()
        future: asyncio.Future[list[Any]] = loop.create_future()
        self._pending.append((kind, list(requests), future))
        if self._drainer is None or self._drainer.done() or self._drainer.get_loop() is not loop:
            self._drainer = loop.create_task(self._drain())
        return await future

    async def _drain(self) -> None:
        """Send everything queued in one engine call, again and again until nothing is queued."""
        loop = asyncio.get_running_loop()
        while self._pending:
            calls, self._pending = self._pending, []
            calls = [c for c in calls if not c[2].done()]  # cancelled while waiting: not sent
            items = [(kind, req) for kind, reqs, _ in calls for req in reqs]
            if not items:
                continue
            if self._pool is None:
                self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="vllm")
            try:
                results = await loop.run_in_executor(self._pool, self._run, items)
            except Exception as exc:  # the engine did not load or died: every caller gets it
                for _, _, future in calls:
                    if not future.done():
                        future.set_exception(exc)
                continue
            start = 0
            for _, reqs, future in calls:
                part, start = results[start:start + len(reqs)], start + len(reqs)
                failed = next((r for r in part if isinstance(r, BaseException)), None)
                if future.done():
                    continue
                if failed is not None:
                    future.set_exception(failed)
                else:
                    future.set_result(part)

    async def aclose(self) -> None:
        """Stop the engine and the worker thread; a later call loads the model again."""
        drainer, self._drainer = self._drainer, None
        if drainer is not None and not drainer.done() and drainer.get_loop() is asyncio.get_running_loop():
            with contextlib.suppress(Exception):
                await drainer
        self.close()

    def close(self) -> None:
        """Free the engine (its worker processes too) and the worker thread."""
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None
        llm, self._llm = self._llm, None
        if llm is not None:
            # LLM has no public shutdown; its engine client stops the engine-core process.
            with contextlib.suppress(Exception):
                llm.llm_engine.engine_core.shutdown()
            del llm
            gc.collect()
        self._pending = []
