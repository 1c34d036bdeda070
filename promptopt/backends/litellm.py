"""A backend for the hosted providers litellm covers, and litellm's Router over many endpoints.

``litellm:<provider>/<model>`` calls one model through ``litellm.acompletion``
(``litellm:anthropic/claude-3-5-haiku``, ``litellm:openai/gpt-4o-mini``, or
``litellm:openai/<name>`` with ``api_base`` for a local OpenAI-compatible
server). With a ``router`` config, ``litellm:<model_name>`` is served by a
``litellm.Router`` that spreads calls over that model name's deployments,
honours their rpm/tpm limits and falls back to other model names.

Requests in a batch are sent concurrently, at most ``max_concurrency`` at a
time. litellm never retries here (``num_retries=0``): the retry wrapper does,
driven by the ``retryable`` flag and ``retry_after`` of the errors raised.
Every completion carries its dollar cost from litellm's offline price map
(0 for a model the map does not know, such as a local one).

Credentials: an explicit ``api_key`` is used as given. Without one, litellm
finds the provider's credentials itself (``ANTHROPIC_API_KEY``, AWS or Google
credential chains, ...); with ``api_base`` and no ``api_key`` a placeholder is
sent, so a key from the environment never reaches a local server. Router
deployments name the variable holding their key (``api_key_env``); its value
comes in through ``api_keys``, read by the caller when the run starts.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import math
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

from promptopt._loop import gather_or_cancel
from promptopt.backends._base import Backend, Capabilities, check_endpoint_limits
from promptopt.backends._rate_limit import RateLimitedError, parse_retry_after
from promptopt.backends._router_config import (
    load_router_config,
    router_arguments,
    router_key_envs,
    validate_router_config,
)
from promptopt.exceptions import BackendError, ConfigError
from promptopt.types import Completion, Request

if TYPE_CHECKING:
    from types import ModuleType

    from aiohttp import ClientSession

__all__ = ["LiteLLMBackend", "RateLimitedError"]

# Local servers accept any key; sending a placeholder also keeps litellm from
# sending a key it found in the environment (OPENAI_API_KEY) to them.
_NO_KEY = "no-key"

_MODEL_SHAPE = ("write it as litellm:<provider>/<model>, e.g. litellm:openai/gpt-4o-mini or "
                "litellm:anthropic/claude-3-5-haiku (providers: https://docs.litellm.ai/docs/providers)")

# Where litellm's own helper (validate_environment) has nothing to say, e.g. when
# the variable is set but its key was rejected.
_KEY_ENVS = {
    "openai": "OPENAI_API_KEY", "anthropic": "ANTHROPIC_API_KEY", "azure": "AZURE_API_KEY",
    "gemini": "GEMINI_API_KEY", "mistral": "MISTRAL_API_KEY", "groq": "GROQ_API_KEY",
    "cohere": "COHERE_API_KEY", "together_ai": "TOGETHERAI_API_KEY", "deepseek": "DEEPSEEK_API_KEY",
    "openrouter": "OPENROUTER_API_KEY", "fireworks_ai": "FIREWORKS_AI_API_KEY", "xai": "XAI_API_KEY",
}

_RETRYABLE_STATUSES = frozenset({408, 409, 429})


def _litellm() -> ModuleType:
    """Import litellm on first use, with its price map read from the package, not the network."""
    # setdefault: a user who set the variable (to fetch a fresh map) keeps their choice.
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    try:
        import litellm
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise ConfigError("the litellm backend needs the `litellm` package; "
                          "run `pip install 'litellm>=1.60,<2,!=1.82.7,!=1.82.8'`") from exc
    # Our errors carry the message; litellm's own red "Provider List" lines on stdout would only repeat it.
    litellm.suppress_debug_info = True
    return litellm


def _provider(model: str, api_base: str | None = None) -> str:
    """litellm's provider for ``model``; a ConfigError showing the expected shape if it has none."""
    litellm = _litellm()
    try:
        provider: str = litellm.get_llm_provider(model=model, api_base=api_base)[1]
    except Exception:
        raise ConfigError(f"litellm does not know which provider serves model {model!r}; {_MODEL_SHAPE}") from None
    return provider


def key_env_names(model: str) -> list[str]:
    """The environment variables litellm reads an API key for ``model`` from (best effort).

    Example:
        >>> key_env_names("anthropic/claude-3-5-haiku")
        ['ANTHROPIC_API_KEY']
    """
    litellm = _litellm()
    try:
        provider = litellm.get_llm_provider(model=model)[1]
        missing = [str(k) for k in litellm.validate_environment(model=model)["missing_keys"]]
    except Exception:
        return []
    return missing or [_KEY_ENVS.get(provider, f"{provider.upper()}_API_KEY")]


class LiteLLMBackend(Backend):
    """Chat completions through litellm, from one model or a Router over many endpoints.

    Args:
        model: ``<provider>/<model>`` (``"anthropic/claude-3-5-haiku"``), or with
            ``router``, one of its deployments' ``model_name``.
        api_base: endpoint root, e.g. ``http://127.0.0.1:8000/v1`` for a local
            OpenAI-compatible server (``openai/<name>``).
        api_key: secret key; without one litellm looks up the provider's own
            credentials (a placeholder is sent when ``api_base`` is given).
        max_concurrency: requests in flight at once.
        timeout: seconds before one request is given up (and retryable).
        router: a router config (dict, see :mod:`promptopt.backends._router_config`)
            or the path of a router file; its deployments serve ``model``.
        api_keys: API keys by environment-variable name, for router deployments
            with ``api_key_env``; the caller reads them from the environment.

    Raises:
        ConfigError: an unknown provider, a bad router config, ``model`` not in
            the router, or settings out of range.

    Example:
        >>> backend = LiteLLMBackend("openai/smollm2", api_base="http://127.0.0.1:8000/v1")
        >>> backend.identity()
        {'backend': 'litellm', 'model': 'openai/smollm2', 'api_base': 'http://127.0.0.1:8000/v1'}
    """

    name = "litellm"

    @classmethod
    def resolve_options(cls, options: Mapping[str, Any], env: Mapping[str, str]) -> dict[str, Any]:
        """``base_url`` (the CLI's ``--base-url``) is litellm's ``api_base``. A ``router`` (a file
        path is read here) takes the keys of the variables its deployments name in ``api_key_env``,
        as ``api_keys``, unless given. Without a router, litellm finds a hosted provider's key itself.
        """
        opts = dict(options)
        if "base_url" in opts:
            opts["api_base"] = opts.pop("base_url")
        router = opts.get("router")
        if router is not None:
            router = opts["router"] = (validate_router_config(router) if isinstance(router, Mapping)
                                       else load_router_config(router))
            if "api_keys" not in opts:
                opts["api_keys"] = {name: env[name] for name in router_key_envs(router) if env.get(name)}
        return opts

    def __init__(
        self,
        model: str,
        *,
        api_base: str | None = None,
        api_key: str | None = None,
        max_concurrency: int = 8,
        timeout: float = 120.0,
        router: Mapping[str, Any] | str | os.PathLike[str] | None = None,
        api_keys: Mapping[str, str] | None = None,
    ) -> None:
        check_endpoint_limits("LiteLLMBackend", max_concurrency, timeout)
        if not isinstance(model, str) or not model.strip():
            raise ConfigError(f"the `model` parameter of LiteLLMBackend must be a model name; got {model!r}; "
                              + _MODEL_SHAPE)
        self.model = model.strip()
        self.api_base = api_base.rstrip("/") if api_base else None
        self.max_concurrency = max_concurrency
        self.timeout = float(timeout)
        self.capabilities = Capabilities(chat=True, score=False, max_concurrency=max_concurrency, seeds=False)
        self._api_key = api_key
        self._api_keys = dict(api_keys or {})
        self.router = self._check_router(router) if router is not None else None
        #: litellm's provider of ``model`` (``None`` with a router: each deployment has its own)
        self.provider = _provider(self.model, self.api_base) if self.router is None else None
        self._session: ClientSession | None = None
        self._semaphore: asyncio.Semaphore | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._router: Any = None
        # Set by a rejected key or unknown model: the requests still waiting fail with it, unsent.
        self._fatal: BackendError | None = None

    def __repr__(self) -> str:
        if self.router is not None:
            return f"LiteLLMBackend(model={self.model!r}, router={len(self.router['deployments'])} deployments)"
        return f"LiteLLMBackend(model={self.model!r}, api_base={self.api_base!r})"

    def identity(self) -> dict[str, Any]:
        """Backend, model and endpoint (for a router: the deployments it may use); never a key."""
        ident: dict[str, Any] = {"backend": self.name, "model": self.model, "api_base": self.api_base}
        if self.router is not None:
            groups = {self.model, *self.router["fallbacks"].get(self.model, [])}
            ident["deployments"] = sorted(f"{d['model_name']}={d['model']}@{d['api_base'] or 'hosted'}"
                                          for d in self.router["deployments"] if d["model_name"] in groups)
        return ident

    def _check_router(self, router: Mapping[str, Any] | str | os.PathLike[str]) -> dict[str, Any]:
        if self.api_base is not None or self._api_key is not None:
            raise ConfigError("LiteLLMBackend takes either `router` or `api_base`/`api_key`, not both; "
                              "give each router deployment its own api_base and api_key_env")
        if isinstance(router, (str, os.PathLike)):
            config = load_router_config(Path(router))
        elif isinstance(router, Mapping):
            config = validate_router_config(router, source="the `router` parameter of LiteLLMBackend")
        else:
            raise ConfigError("the `router` parameter of LiteLLMBackend must be a dict or the path of a router "
                              f"file; got {type(router).__name__}")
        names = sorted({d["model_name"] for d in config["deployments"]})
        if self.model not in names:
            raise ConfigError(f"model {self.model!r} is not a model_name of the router's deployments; "
                              f"use litellm:<model_name> with one of: {', '.join(names)}")
        for d in config["deployments"]:
            try:
                _provider(d["model"], d["api_base"])
            except ConfigError as exc:
                raise ConfigError(f"router deployment {d['name']!r}: {exc}") from None
        return config

    # --- calls -----------------------------------------------------------------------------

    async def agenerate(self, requests: Sequence[Request]) -> list[Completion]:
        """Send every request concurrently; return completions in request order.

        Raises:
            BackendError: the first failure; ``retryable`` says if trying again may help.
                A rate limit is a :class:`~promptopt.backends._rate_limit.RateLimitedError`.
        """
        if not requests:
            return []
        session, semaphore = self._state_for_running_loop()
        # One failure fails the batch: the rest are cancelled, not paid for.
        return await gather_or_cancel(self._generate_one(session, semaphore, r) for r in requests)

    async def aclose(self) -> None:
        """Close the HTTP session and litellm's logging task; call it on the loop that made the requests."""
        session, self._session, self._semaphore, self._loop = self._session, None, None, None
        self._router, self._fatal = None, None
        if session is not None:
            await session.close()
            await _stop_logging_worker()

    def _state_for_running_loop(self) -> tuple[ClientSession, asyncio.Semaphore]:
        # Connections belong to the loop they were opened on: one HTTP session per loop,
        # handed to litellm so that we, not the garbage collector, close it.
        loop = asyncio.get_running_loop()
        if self._session is None or self._semaphore is None or self._loop is not loop:
            from aiohttp import ClientSession

            self._router = self._make_router(self.router) if self.router is not None else None
            self._fatal = None if self.router is not None else self._missing_key()
            self._session = ClientSession()
            self._semaphore = asyncio.Semaphore(self.max_concurrency)
            self._loop = loop
        return self._session, self._semaphore

    def _missing_key(self) -> BackendError | None:
        """An error if no key can be found for a hosted provider, so nothing is sent without one."""
        if self._api_key is not None or self.api_base is not None:
            return None
        missing = [str(k) for k in _litellm().validate_environment(model=self.model)["missing_keys"]]
        # Only plain API keys: cloud credentials (AWS, Google) may come from elsewhere.
        if not missing or not all(k.endswith(("_API_KEY", "_API_TOKEN")) for k in missing):
            return None
        return BackendError(f"litellm:{self.model} needs an API key: set {' or '.join(missing)} "
                            "in the environment, or pass api_key", retryable=False)

    def _make_router(self, config: Mapping[str, Any]) -> Any:
        return _litellm().Router(**router_arguments(config, self._api_keys, placeholder_key=_NO_KEY),
                                 timeout=self.timeout)

    async def _generate_one(self, session: ClientSession, semaphore: asyncio.Semaphore, request: Request) -> Completion:
        kwargs = _completion_kwargs(request, self.timeout)
        async with semaphore:
            if self._fatal is not None:
                raise BackendError(str(self._fatal), retryable=False)
            try:
                if self._router is not None:
                    response = await self._router.acompletion(model=self.model, shared_session=session, **kwargs)
                else:
                    response = await _litellm().acompletion(
                        model=self.model, api_base=self.api_base,
                        api_key=self._api_key or (_NO_KEY if self.api_base else None),
                        shared_session=session, **kwargs)
            except Exception as exc:
                self._fail(exc)
        return self._completion(response)

    def _completion(self, response: Any) -> Completion:
        """The completion in a reply, with its cost; a reply of the wrong shape is a retryable error."""
        try:
            choice = response.choices[0]
            text = choice.message.content
            if text is not None and not isinstance(text, str):
                raise TypeError(type(text).__name__)
        except (AttributeError, IndexError, KeyError, TypeError) as exc:
            raise BackendError(f"{self._where()} returned a reply without a usable choice ({exc}); "
                               "retrying may help if it is a passing fault", retryable=True) from None
        usage = getattr(response, "usage", None)
        return Completion(
            text=text or "",
            prompt_tokens=_count(getattr(usage, "prompt_tokens", 0)),
            completion_tokens=_count(getattr(usage, "completion_tokens", 0)),
            finish_reason=getattr(choice, "finish_reason", None) or "stop",
            usd=_cost(response),
        )

    # --- errors ----------------------------------------------------------------------------

    def _fail(self, exc: Exception) -> NoReturn:
        """Raise ``exc`` as a promptopt error; remember errors that every request would get."""
        error = self._translate(exc)
        if isinstance(error, BackendError) and not error.retryable and self.router is None:
            status = getattr(exc, "status_code", None)
            if status in (401, 403, 404):
                self._fatal = error
        # litellm's messages may quote a server's reply, which may echo the key:
        # the error is not chained, and its message is redacted.
        raise error from None

    def _where(self) -> str:
        if self.router is not None:
            return f"litellm:{self.model} (router)"
        return f"litellm:{self.model}" + (f" at {self.api_base}" if self.api_base else "")

    def _translate(self, exc: Exception) -> BackendError | ConfigError:
        """Turn a litellm exception into a promptopt error for a person."""
        litellm = _litellm()
        where, detail = self._where(), self._detail(exc)
        status = getattr(exc, "status_code", None)
        if isinstance(exc, litellm.Timeout):
            return BackendError(f"request to {where} timed out after {self.timeout:g}s; "
                                "raise timeout or lower max_concurrency", retryable=True)
        if "LLM Provider NOT provided" in detail:
            return ConfigError(f"litellm does not know which provider serves model {self.model!r}; {_MODEL_SHAPE}")
        retry_after = self._retry_after(exc)
        if isinstance(exc, litellm.RateLimitError) or status == 429 or (status == 503 and retry_after is not None):
            wait = f"; it asked to wait {retry_after:g}s" if retry_after else ""
            limits = " or raise the deployments' rpm/tpm" if self.router is not None else ""
            return RateLimitedError(f"{where} is rate limited ({detail}){wait}; lower max_concurrency{limits} "
                                    "if this persists", retry_after=retry_after)
        if isinstance(exc, litellm.AuthenticationError) or status == 401 or "Missing credentials" in detail:
            return BackendError(self._auth_message(), retryable=False)
        if status == 403:
            return BackendError(f"{where} refused access (HTTP 403); check that this key may use the model",
                                retryable=False)
        if isinstance(exc, litellm.NotFoundError) or status == 404:
            return BackendError(f"{where} does not know the model (HTTP 404: {detail}); check the model name "
                                "and that api_base ends in /v1", retryable=False)
        if isinstance(exc, litellm.ContextWindowExceededError):
            return BackendError(f"the prompt is too long for {where} ({detail}); use fewer or shorter demos, "
                                "or lower max_tokens", retryable=False)
        if isinstance(exc, (litellm.APIConnectionError, litellm.InternalServerError,
                            litellm.ServiceUnavailableError, litellm.BadGatewayError)) or (
                isinstance(status, int) and (status >= 500 or status in _RETRYABLE_STATUSES)):
            return BackendError(f"{where} failed with a transient error ({detail}); retrying may help",
                                retryable=True)
        if isinstance(exc, litellm.BadRequestError) or isinstance(status, int):
            code = f"HTTP {status}: " if isinstance(status, int) else ""
            return BackendError(f"{where} rejected the request ({code}{detail}); check max_tokens, stop and the "
                                "other request parameters", retryable=False)
        return BackendError(f"call to {where} failed: {type(exc).__name__}: {detail}", retryable=False)

    def _auth_message(self) -> str:
        if self.router is not None:
            names = sorted({d["api_key_env"] for d in self.router["deployments"] if d["api_key_env"]})
            hint = f"check {', '.join(names)}" if names else "give the deployments an api_key_env"
            return f"a deployment of {self._where()} rejected its API key (HTTP 401); {hint}"
        if self._api_key is not None:
            return f"{self._where()} rejected the api_key given (HTTP 401); check it"
        if self.api_base is not None:
            return f"{self._where()} wants an API key (HTTP 401); pass api_key"
        names = key_env_names(self.model) or ["the provider's API key variable"]
        return (f"{self._where()} has no valid API key (HTTP 401); set {' or '.join(names)} "
                "in the environment, or pass api_key")

    def _retry_after(self, exc: Exception) -> float | None:
        cooldown = getattr(exc, "cooldown_time", None)  # litellm.Router: every deployment is cooling down
        if isinstance(cooldown, (int, float)) and not isinstance(cooldown, bool) and math.isfinite(cooldown):
            return max(float(cooldown), 0.0)
        for headers in (getattr(exc, "litellm_response_headers", None),
                        getattr(getattr(exc, "response", None), "headers", None)):
            if isinstance(headers, Mapping):
                lowered = {str(k).lower(): str(v) for k, v in headers.items()}
                found = parse_retry_after(lowered)
                if found is not None:
                    return found
        return None

    def _detail(self, exc: Exception) -> str:
        """litellm's message on one line, without its class prefixes and router footer, keys redacted."""
        text = str(getattr(exc, "message", None) or exc)
        text = text.split("\nLiteLLM: model group", 1)[0].split("LiteLLM Retried:", 1)[0]
        text = re.sub(r"\s*Handle with `litellm\.\w+`\.?", "", text)
        text = re.sub(r"^(?:\s*litellm\.\w+:\s*|\s*\w+(?:Error|Exception)\s*(?:-|:)\s*)+", "", text)
        for secret in (self._api_key, *self._api_keys.values()):
            if secret and secret != _NO_KEY:
                text = text.replace(secret, "<api_key>")
        text = " ".join(text.split())
        return (text if len(text) <= 300 else text[:297] + "...") or type(exc).__name__


async def _stop_logging_worker() -> None:
    """Stop the task litellm starts on the running loop to log calls, so it does not outlive the loop.

    litellm starts it again on its next call, on whatever loop that runs.
    """
    try:
        from litellm.litellm_core_utils.logging_worker import GLOBAL_LOGGING_WORKER as worker
    except ImportError:  # pragma: no cover - an older or newer litellm without it
        return
    task = getattr(worker, "_worker_task", None)
    bound = getattr(worker, "_bound_loop", None) or (task.get_loop() if isinstance(task, asyncio.Task) else None)
    if bound is not asyncio.get_running_loop():
        return
    # Private and changing across litellm versions: any failure here is left for the loop's own shutdown.
    with contextlib.suppress(Exception):
        await asyncio.wait_for(worker.flush(), timeout=2.0)
    with contextlib.suppress(Exception):
        accepted = inspect.signature(worker.stop).parameters
        options: dict[str, Any] = {k: v for k, v in (("discard_pending", True), ("timeout", 2.0)) if k in accepted}
        await asyncio.wait_for(worker.stop(**options), timeout=5.0)


def _completion_kwargs(request: Request, timeout: float) -> dict[str, Any]:
    """Keyword arguments of ``litellm.acompletion`` for one request."""
    kwargs: dict[str, Any] = {
        "messages": [{"role": m.role, "content": m.content} for m in request.messages],
        "max_tokens": request.max_tokens,
        "temperature": request.temperature,
        "top_p": request.top_p,
        "timeout": timeout,
        "num_retries": 0,
        "max_retries": 0,
        # A provider that lacks a parameter (seed, top_p) gets the call without it, not a 400.
        "drop_params": True,
    }
    if request.stop:
        kwargs["stop"] = list(request.stop)
    if request.seed is not None:
        kwargs["seed"] = request.seed
    return kwargs


def _count(value: object) -> int:
    """A token count from a reply's ``usage``; anything but a whole number >= 0 counts as 0."""
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else 0


def _cost(response: Any) -> float:
    """The reply's price in dollars from litellm's price map; 0 for a model the map does not know."""
    hidden = getattr(response, "_hidden_params", None)
    cost = hidden.get("response_cost") if isinstance(hidden, Mapping) else None
    if cost is None:
        try:
            cost = _litellm().completion_cost(completion_response=response)
        except Exception:  # not in the price map (a local model): free as far as we know
            return 0.0
    if isinstance(cost, bool) or not isinstance(cost, (int, float)) or not math.isfinite(cost) or cost < 0:
        return 0.0
    return float(cost)
