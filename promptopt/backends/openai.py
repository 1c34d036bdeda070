"""A backend for any OpenAI-compatible chat endpoint.

Works with OpenAI itself, ``vllm serve``, llama.cpp's server and anything else
that speaks ``/v1/chat/completions``. Requests in a batch are sent concurrently,
at most ``max_concurrency`` at a time. The ``openai`` client does not retry
(``max_retries=0``): the retry wrapper does, driven by the ``retryable`` flag
and ``retry_after`` of the errors raised here.

Every transient failure (rate limit, 5xx, timeout, dropped connection, a
truncated or malformed reply) becomes a retryable :class:`BackendError`, never
an empty or made-up completion. A rejected key, a refused or unknown model
(401, 403, 404) applies to every request, so once one is seen the requests
still waiting are failed without being sent.

Scoring (log P(continuation | messages)) uses vLLM's ``prompt_logprobs``
extension of ``/v1/completions``, so it works against ``vllm serve`` only. The
``score`` option says whether to use it; its default, ``"auto"``, asks the
endpoint's ``/v1/models`` once, the first time the capabilities are read
(vLLM lists its models as ``owned_by: "vllm"``). The prompt is built as the
llamacpp and vllm backends build it: the server's ``/tokenize`` renders the
messages with the model's chat template, the continuation is tokenized on its
own and appended, and the log-probs of those tokens are summed.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal, NoReturn

from promptopt._loop import gather_or_cancel
from promptopt.backends._base import Backend, Capabilities, check_endpoint_limits, missing_tokenizer
from promptopt.backends._rate_limit import RateLimitedError, parse_retry_after
from promptopt.exceptions import BackendError, CapabilityError, ConfigError
from promptopt.types import Completion, LogProb, Request, ScoreRequest

if TYPE_CHECKING:
    from openai import AsyncOpenAI

__all__ = ["DEFAULT_BASE_URL", "OpenAIBackend", "RateLimitedError"]

#: Used when no ``base_url`` is given (the client's own env lookup is bypassed).
DEFAULT_BASE_URL = "https://api.openai.com/v1"

# Local servers (llama.cpp, vllm) accept any key, but the openai client refuses to
# start without one; passing a placeholder also stops it reading OPENAI_API_KEY itself.
_NO_KEY = "no-key"

# Statuses worth trying again, as the openai client itself would (besides 5xx).
_RETRYABLE_STATUSES = frozenset({408, 409, 429})

# Statuses about the key, the model or the endpoint: every other request would get them too.
_FATAL_FOR_ALL = frozenset({401, 403, 404})

# The auto-detection's GET /models waits at most this long (capped by ``timeout``): it runs
# before the first call, and an endpoint that does not answer it quickly is not used for scoring.
_PROBE_TIMEOUT = 10.0

# Tokenizations kept per client (chat prefixes and continuations repeat across labels and examples).
_MAX_TOKENIZED = 4096


class OpenAIBackend(Backend):
    """Chat completions from an OpenAI-compatible endpoint, fanned out concurrently.

    Credentials and endpoints are never read from the environment here; the
    caller (CLI or config) passes them in.

    Args:
        model: model name the endpoint knows, e.g. ``"gpt-4o-mini"``.
        base_url: endpoint root ending in ``/v1``; defaults to OpenAI's.
        api_key: secret key; local servers usually need none.
        max_concurrency: requests in flight at once.
        timeout: seconds before one request is given up (and retryable).
        score: whether :meth:`ascore` may use vLLM's ``prompt_logprobs``: ``True``,
            ``False``, or ``"auto"`` (default) to use it where ``/v1/models`` says
            ``owned_by: "vllm"``. Auto asks once, when :attr:`capabilities` is first
            read (so not when the backend is made); an endpoint that cannot be reached
            then counts as not vLLM. OpenAI's own endpoint is never asked.

    Raises:
        ConfigError: if ``max_concurrency``, ``timeout`` or ``score`` is out of range.

    Example:
        >>> backend = OpenAIBackend(model="smollm2", base_url="http://127.0.0.1:8000/v1")
        >>> backend.identity()
        {'backend': 'openai', 'model': 'smollm2', 'base_url': 'http://127.0.0.1:8000/v1'}
    """

    name = "openai"

    @classmethod
    def resolve_options(cls, options: Mapping[str, Any], env: Mapping[str, str]) -> dict[str, Any]:
        """``OPENAI_BASE_URL`` and ``OPENAI_API_KEY`` fill ``base_url`` and ``api_key`` unless given."""
        opts = dict(options)
        for option, variable in (("base_url", "OPENAI_BASE_URL"), ("api_key", "OPENAI_API_KEY")):
            if option not in opts and env.get(variable):
                opts[option] = env[variable]
        return opts

    def __init__(
        self,
        model: str,
        *,
        base_url: str | None = None,
        api_key: str | None = None,
        max_concurrency: int = 8,
        timeout: float = 120.0,
        score: bool | Literal["auto"] = "auto",
    ) -> None:
        check_endpoint_limits("OpenAIBackend", max_concurrency, timeout)
        if score not in (True, False, "auto"):
            raise ConfigError(f"the `score` parameter of OpenAIBackend must be True, False or 'auto'; got {score!r}")
        self.model = model
        self.base_url = (base_url or DEFAULT_BASE_URL).rstrip("/")
        self.max_concurrency = max_concurrency
        self.timeout = timeout
        self._score = score
        self._capabilities: Capabilities | None = None
        self._api_key = api_key
        self._client: AsyncOpenAI | None = None
        self._semaphore: asyncio.Semaphore | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        # Set by a 401/403/404: the requests still waiting fail with it, unsent.
        self._fatal: BackendError | None = None
        self._tokenized: dict[tuple[str, ...], asyncio.Future[list[int]]] = {}

    @property
    def capabilities(self) -> Capabilities:
        """What the endpoint can do; with ``score="auto"`` the first read asks it (see the module doc).

        A property rather than a value set in ``__init__``, so that making a backend never
        touches the network, and the one question is asked before a run picks its answer mode.
        """
        if self._capabilities is None:
            score = self._score if isinstance(self._score, bool) else self._is_vllm_server()
            # a vLLM server scores through /tokenize, and the same endpoints give its tokenizer
            self._capabilities = Capabilities(
                chat=True, score=score, max_concurrency=self.max_concurrency, seeds=True, tokenize=score)
        return self._capabilities

    @capabilities.setter
    def capabilities(self, value: Capabilities) -> None:
        self._capabilities = value

    def _is_vllm_server(self) -> bool:
        """Whether ``GET <base_url>/models`` answers as vLLM does; any failure counts as no."""
        if self.base_url == DEFAULT_BASE_URL:
            return False  # OpenAI has no prompt_logprobs; do not spend a request finding that out
        import httpx

        headers = {"Authorization": f"Bearer {self._api_key}"} if self._api_key else {}
        try:
            reply = httpx.get(f"{self.base_url}/models", headers=headers,
                              timeout=min(self.timeout, _PROBE_TIMEOUT))
            cards = reply.json().get("data") if reply.status_code == 200 else None
        except (httpx.HTTPError, ValueError, AttributeError):
            return False  # unreachable or not JSON: the first real call reports the problem
        return isinstance(cards, list) and any(isinstance(c, dict) and c.get("owned_by") == "vllm" for c in cards)

    def __repr__(self) -> str:
        return f"OpenAIBackend(model={self.model!r}, base_url={self.base_url!r})"

    def identity(self) -> dict[str, Any]:
        """Backend, model and endpoint; never the key."""
        return {"backend": self.name, "model": self.model, "base_url": self.base_url}

    async def agenerate(self, requests: Sequence[Request]) -> list[Completion]:
        """Send every request concurrently; return completions in request order.

        Raises:
            BackendError: the first failure; ``retryable`` says if trying again may help.
                A 429 (or 503 with ``Retry-After``) is a :class:`RateLimitedError`.
        """
        if not requests:
            return []
        client, semaphore = self._client_for_running_loop()
        # One failure fails the batch: the rest are cancelled, not paid for.
        return await gather_or_cancel(self._generate_one(client, semaphore, r) for r in requests)

    async def aclose(self) -> None:
        """Close the HTTP client; call it on the loop that made the requests."""
        client, self._client, self._semaphore, self._loop = self._client, None, None, None
        self._fatal = None
        self._tokenized.clear()
        if client is not None:
            await client.close()

    def _client_for_running_loop(self) -> tuple[AsyncOpenAI, asyncio.Semaphore]:
        # The client's connection pool belongs to the loop it was first used on, so
        # make it inside that loop and keep it for every later call there.
        loop = asyncio.get_running_loop()
        if self._client is None or self._semaphore is None or self._loop is not loop:
            self._client = self._make_client()
            self._semaphore = asyncio.Semaphore(self.max_concurrency)
            self._loop = loop
            self._fatal = None
            self._tokenized.clear()
        return self._client, self._semaphore

    def _make_client(self) -> AsyncOpenAI:
        try:
            from openai import AsyncOpenAI
        except ImportError as exc:  # pragma: no cover - depends on the install
            raise ConfigError(
                "the openai backend needs the `openai` package; "
                "run `pip install openai`") from exc
        return AsyncOpenAI(
            api_key=self._api_key or _NO_KEY,
            base_url=self.base_url,
            timeout=self.timeout,
            max_retries=0,
        )

    async def _generate_one(
        self, client: AsyncOpenAI, semaphore: asyncio.Semaphore, request: Request,
    ) -> Completion:
        kwargs = _chat_kwargs(self.model, request)
        async with semaphore:
            if self._fatal is not None:
                raise BackendError(str(self._fatal), retryable=False)
            try:
                # The raw JSON, not the SDK's typed reply: building that model cost ~30% of
                # the client's throughput at 64 in flight (bench/README.md, backends).
                response = await client.post("/chat/completions", cast_to=object, body=kwargs)
            except Exception as exc:
                self._fail(exc)
        return self._completion(response)

    async def ascore(self, requests: Sequence[ScoreRequest]) -> list[LogProb]:
        """log P(continuation | messages) of each request, from vLLM's ``prompt_logprobs``.

        Raises:
            CapabilityError: the endpoint is not known to score (see the ``score`` option).
            BackendError: as for :meth:`agenerate`; also when a ``score=True`` endpoint
                does not return ``prompt_logprobs`` (not retryable).
        """
        if not self.capabilities.score:
            return await super().ascore(requests)
        if not requests:
            return []
        client, semaphore = self._client_for_running_loop()
        return await gather_or_cancel(self._score_one(client, semaphore, r) for r in requests)

    async def _score_one(
        self, client: AsyncOpenAI, semaphore: asyncio.Semaphore, request: ScoreRequest,
    ) -> LogProb:
        messages = [{"role": m.role, "content": m.content} for m in request.messages]
        async with semaphore:
            if self._fatal is not None:
                raise BackendError(str(self._fatal), retryable=False)
            prefix = await self._tokenize(client, ("chat", *(f"{m.role}\0{m.content}" for m in request.messages)),
                                          {"messages": messages, "add_generation_prompt": True})
            cont = await self._tokenize(client, ("text", request.continuation),
                                        {"prompt": request.continuation, "add_special_tokens": False})
            if not cont:
                return LogProb(logprob=0.0, n_tokens=0, prompt_tokens=len(prefix))
            # prompt_logprobs=0: each prompt token's own log-prob, no alternatives; one token is generated
            # because vLLM refuses max_tokens=0 here.
            body = {"model": self.model, "prompt": prefix + cont, "max_tokens": 1, "temperature": 0.0,
                    "prompt_logprobs": 0}
            try:
                reply = await client.post("/completions", cast_to=object, body=body)
            except Exception as exc:
                self._fail(exc)
        return self._summed_logprob(reply, len(prefix), cont)

    async def atokenize(self, texts: Sequence[str]) -> list[list[int]]:
        """Token ids from the vLLM server's ``/tokenize`` (needs the ``tokenize`` capability)."""
        if not self.capabilities.tokenize:
            raise missing_tokenizer(self.model_string)
        client, semaphore = self._client_for_running_loop()
        return await gather_or_cancel(self._tokenize_text(client, semaphore, t) for t in texts)

    async def _tokenize_text(self, client: AsyncOpenAI, semaphore: asyncio.Semaphore, text: str) -> list[int]:
        async with semaphore:
            return await self._tokenize(client, ("text", text), {"prompt": text, "add_special_tokens": False})

    async def adetokenize(self, ids: Sequence[Sequence[int]]) -> list[str]:
        """Text from the vLLM server's ``/detokenize``."""
        if not self.capabilities.tokenize:
            raise missing_tokenizer(self.model_string)
        client, semaphore = self._client_for_running_loop()
        return await gather_or_cancel(self._detokenize_one(client, semaphore, list(i)) for i in ids)

    async def avocabulary(self) -> list[str]:
        """Not served: vLLM's OpenAI-compatible server has no endpoint listing the vocabulary."""
        raise CapabilityError(f"{self.model_string} cannot list its vocabulary (the server has no endpoint for "
                              "it); give a word list instead where a strategy takes one, or use the model "
                              "in-process: vllm:<model> or llamacpp:<model>")

    async def _detokenize_one(self, client: AsyncOpenAI, semaphore: asyncio.Semaphore, ids: list[int]) -> str:
        url = self.base_url.removesuffix("/v1") + "/detokenize"
        async with semaphore:
            try:
                reply = _json_of(await client.post(url, cast_to=object, body={"model": self.model, "tokens": ids}))
            except Exception as exc:
                self._fail(exc)
        text = reply.get("prompt") if isinstance(reply, dict) else None
        if not isinstance(text, str):
            raise BackendError(f"{url} sent a reply without the text; check that {self.base_url} is a vLLM server",
                               retryable=True)
        return text

    async def _tokenize(self, client: AsyncOpenAI, key: tuple[str, ...], body: dict[str, Any]) -> list[int]:
        """Token ids from vLLM's ``/tokenize``; requests that need the same text share one call."""
        task = self._tokenized.get(key)
        if task is None:
            if len(self._tokenized) >= _MAX_TOKENIZED:
                self._tokenized.clear()
            task = self._tokenized[key] = asyncio.ensure_future(self._fetch_tokens(client, body))
            # its failure is raised to the callers still waiting; none left must not make it "never retrieved"
            task.add_done_callback(lambda t: t.cancelled() or t.exception())
        try:
            # shielded: one caller cancelled (a sibling failed) does not cancel it for the others
            return list(await asyncio.shield(task))
        except Exception:
            if self._tokenized.get(key) is task and task.done():
                del self._tokenized[key]  # a failure is not remembered; the next request asks again
            raise

    async def _fetch_tokens(self, client: AsyncOpenAI, body: dict[str, Any]) -> list[int]:
        url = self.base_url.removesuffix("/v1") + "/tokenize"  # at the server root, beside /v1
        try:
            reply = await client.post(url, cast_to=object, body={"model": self.model, **body})
        except Exception as exc:
            self._fail(exc)
        reply = _json_of(reply)
        tokens = reply.get("tokens") if isinstance(reply, dict) else None
        if not isinstance(tokens, list) or not all(isinstance(t, int) and not isinstance(t, bool) for t in tokens):
            raise BackendError(f"{url} sent a reply without a list of token ids; check that {self.base_url} is "
                               "a vLLM server (retrying may help if it is a passing fault)", retryable=True)
        return tokens

    def _summed_logprob(self, reply: object, n_prefix: int, cont: list[int]) -> LogProb:
        """The continuation's summed log-prob from a ``prompt_logprobs`` reply.

        Entry ``i`` of ``prompt_logprobs`` maps token ids (as strings) to the log-prob of
        prompt token ``i`` given the tokens before it.
        """
        reply = _json_of(reply)
        choice = reply["choices"][0] if isinstance(reply, dict) and reply.get("choices") else None
        if isinstance(choice, dict) and "prompt_logprobs" not in choice:
            raise BackendError(
                f"{self._where()} answered without prompt_logprobs, so it cannot score; it is not a vLLM "
                "server: pass score=False (or 'auto'), or use --answer-mode generate", retryable=False)
        try:
            rows = choice["prompt_logprobs"]  # type: ignore[index]
            if len(rows) != n_prefix + len(cont):
                raise ValueError(f"{len(rows)} entries for {n_prefix + len(cont)} prompt tokens")
            total = sum(float(rows[n_prefix + i][str(token)]["logprob"]) for i, token in enumerate(cont))
        except (KeyError, IndexError, TypeError, ValueError) as exc:
            raise BackendError(
                f"{self._where()} sent prompt_logprobs of the wrong shape ({type(exc).__name__}: {exc}); "
                "retrying may help if it is a passing fault", retryable=True) from None
        return LogProb(logprob=total, n_tokens=len(cont), prompt_tokens=n_prefix + len(cont))

    def _fail(self, exc: Exception) -> NoReturn:
        """Raise ``exc`` as a :class:`BackendError`; remember errors that every request would get."""
        import openai

        error = self._translate(exc)
        status = exc.status_code if isinstance(exc, openai.APIStatusError) else None
        if status in _FATAL_FOR_ALL:
            self._fatal = error
        # An error body may echo the key (some servers do on a 401), so a status
        # error is not chained: a traceback shows our message, not the server's.
        raise error from (None if status is not None else exc)

    def _completion(self, response: object) -> Completion:
        """The completion in a reply's JSON; a reply of the wrong shape is a retryable error."""
        response = _json_of(response)
        try:
            choice = response["choices"][0]  # type: ignore[index]
            message = choice["message"]
            if not isinstance(message, dict):
                raise TypeError(f"message is {type(message).__name__}")
            text = message.get("content")  # left out (not null) by some servers when there is none
            if text is not None and not isinstance(text, str):
                raise TypeError(type(text).__name__)
        except (IndexError, KeyError, TypeError) as exc:
            choices = response.get("choices") if isinstance(response, dict) else None
            shape = "no choices" if not choices else f"a malformed choice ({type(exc).__name__}: {exc})"
            raise BackendError(
                f"{self._where()} returned a reply with {shape}; check that the endpoint implements "
                "/chat/completions (retrying may help if it is a passing fault)", retryable=True) from None
        usage = response.get("usage") if isinstance(response, dict) else None
        usage = usage if isinstance(usage, dict) else {}
        return Completion(
            text=text or "",
            prompt_tokens=_count(usage.get("prompt_tokens", 0)),
            completion_tokens=_count(usage.get("completion_tokens", 0)),
            finish_reason=(choice.get("finish_reason") if isinstance(choice, dict) else None) or "stop",
        )

    def _where(self) -> str:
        return f"model {self.model!r} at {self.base_url}"

    def _translate(self, exc: Exception) -> BackendError:
        """Turn an ``openai`` exception into a :class:`BackendError` for a person."""
        import openai

        if isinstance(exc, openai.APITimeoutError):
            return BackendError(
                f"request to {self._where()} timed out after {self.timeout:g}s; "
                "raise timeout= or lower max_concurrency", retryable=True)
        if isinstance(exc, openai.APIConnectionError):
            cause = exc.__cause__ or exc
            detail = self._redact(f"{type(cause).__name__}: {cause}")
            if type(cause).__name__.startswith("Connect"):
                return BackendError(
                    f"could not connect to {self.base_url} ({detail}); "
                    "check that the server is running and base_url is right", retryable=True)
            return BackendError(
                f"the connection to {self._where()} broke before a complete reply ({detail}); "
                "retrying may help", retryable=True)
        if isinstance(exc, openai.APIStatusError):
            return self._translate_status(
                exc.status_code, exc.response.headers, _server_message(exc.body))
        if isinstance(exc, (json.JSONDecodeError, openai.APIResponseValidationError)):
            return BackendError(
                f"{self._where()} sent a reply that is not a valid completion ({type(exc).__name__}: "
                f"{self._redact(str(exc))[:200]}); it may have been cut off, retrying may help", retryable=True)
        return BackendError(
            f"call to {self._where()} failed: {self._redact(str(exc))}", retryable=False)

    def _translate_status(
        self, status: int, headers: Mapping[str, str], server_message: str,
    ) -> BackendError:
        where = self._where()
        retry_after = parse_retry_after(headers)
        if status == 429 or (status == 503 and retry_after is not None):
            wait = f"; the server asked to wait {retry_after:g}s" if retry_after else ""
            return RateLimitedError(
                f"{where} is rate limited (HTTP {status}){wait}; lower max_concurrency "
                "if this persists", retry_after=retry_after)
        if status >= 500 or status in _RETRYABLE_STATUSES:
            return BackendError(
                f"{where} failed with a server error (HTTP {status}): "
                f"{self._redact(server_message)}; retrying may help", retryable=True)
        if status == 401:
            # The server's text may echo (part of) the key, so it is left out.
            return BackendError(
                f"{self.base_url} rejected the API key (HTTP 401) for model {self.model!r}; "
                "set OPENAI_API_KEY or pass api_key", retryable=False)
        if status == 403:
            return BackendError(
                f"{self.base_url} refused access to model {self.model!r} (HTTP 403); "
                "check that this key's organization or project may use it", retryable=False)
        if status == 404:
            return BackendError(
                f"{self.base_url} does not know model {self.model!r} (HTTP 404); check the "
                "model name (GET <base_url>/models lists them) and that base_url ends in /v1",
                retryable=False)
        return BackendError(
            f"{where} rejected the request (HTTP {status}): {self._redact(server_message)}; "
            "check max_tokens, stop and the other request parameters", retryable=False)

    def _redact(self, text: str) -> str:
        if self._api_key:
            text = text.replace(self._api_key, "<api_key>")
        return text


def _chat_kwargs(model: str, request: Request) -> dict[str, Any]:
    """The JSON body of ``/chat/completions`` for one request."""
    kwargs: dict[str, Any] = {
        "model": model,
        "messages": [{"role": m.role, "content": m.content} for m in request.messages],
        "max_tokens": request.max_tokens,
        "temperature": request.temperature,
        "top_p": request.top_p,
    }
    if request.stop:
        kwargs["stop"] = list(request.stop)
    if request.seed is not None:
        kwargs["seed"] = request.seed
    return kwargs


def _json_of(reply: object) -> object:
    """A raw reply as JSON: the SDK hands back the text when a server labels JSON as something else."""
    if isinstance(reply, str):
        try:
            return json.loads(reply)
        except ValueError:
            return reply  # not JSON either: the caller reports a reply of the wrong shape
    return reply


def _count(value: object) -> int:
    """A token count from a reply's ``usage``; anything but a whole number >= 0 counts as 0."""
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else 0


def _server_message(body: object) -> str:
    """The ``error.message`` of an error body, else the body itself, on one line."""
    message: object = body
    if isinstance(body, Mapping):
        error = body.get("error", body)
        message = error.get("message", error) if isinstance(error, Mapping) else error
    text = " ".join(str(message).split()) if message is not None else "no details"
    return text if len(text) <= 300 else text[:297] + "..."
