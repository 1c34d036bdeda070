"""Router files: the deployments litellm's Router spreads calls over, read from TOML or YAML.

A router file lists deployments (one endpoint each) under model names, plus how
to pick among them and where to fall back. API keys never appear in it: a
deployment names the environment variable that holds its key (``api_key_env``),
and the caller (CLI or config) reads that variable when the run starts.

Example ``router.toml``::

    routing_strategy = "simple-shuffle"      # optional; see ROUTING_STRATEGIES

    [[deployments]]
    name = "a"                               # optional; "<model_name>-<n>" by default
    model_name = "smollm2"                   # what litellm:smollm2 calls
    model = "openai/smollm2"                 # litellm's <provider>/<model>
    api_base = "http://127.0.0.1:8001/v1"
    rpm = 600                                # optional requests per minute
    tpm = 200000                             # optional tokens per minute

    [[deployments]]
    name = "hosted"
    model_name = "smollm2-backup"
    model = "openai/gpt-4o-mini"
    api_key_env = "OPENAI_API_KEY"           # the variable's name, never the key

    [fallbacks]
    smollm2 = ["smollm2-backup"]             # when every smollm2 deployment fails

The same shape works in YAML (``deployments:`` as a list of mappings) when
PyYAML is installed. Every error names the file, the line and the field.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from promptopt._toml import KeyPath as _Path
from promptopt._toml import Where as _Where
from promptopt._toml import parse_toml as _parse_toml
from promptopt.exceptions import ConfigError

__all__ = ["ROUTING_STRATEGIES", "load_router_config", "router_arguments", "router_key_envs",
           "validate_router_config"]

#: How the Router picks a deployment among those of one model name.
ROUTING_STRATEGIES = (
    "simple-shuffle", "least-busy", "latency-based-routing", "usage-based-routing-v2", "cost-based-routing")

_TOP_FIELDS = ("deployments", "routing_strategy", "fallbacks")
_TEXT_FIELDS = ("name", "model_name", "model", "api_base", "api_key_env")
_LIMIT_FIELDS = ("rpm", "tpm")
_DEPLOYMENT_FIELDS = (*_TEXT_FIELDS, *_LIMIT_FIELDS)
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")

# --- reading files ------------------------------------------------------------------------


def load_router_config(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read and check a router file (``.toml``, or ``.yaml``/``.yml`` with PyYAML installed).

    Args:
        path: the file, e.g. ``"router.toml"``.

    Returns:
        The checked config: ``deployments`` (each with ``name``, ``model_name``,
        ``model``, ``api_base``, ``api_key_env``, ``rpm``, ``tpm``; ``None`` when
        not given), ``routing_strategy`` and ``fallbacks``. It holds no keys.

    Raises:
        ConfigError: the file is missing, unreadable, not valid TOML/YAML, or
            breaks a rule; the message names the file, the line and the field.

    Example:
        >>> import pathlib, tempfile
        >>> path = pathlib.Path(tempfile.mkdtemp()) / "router.toml"
        >>> _ = path.write_text('[[deployments]]\\nmodel_name = "m"\\nmodel = "openai/m"\\n'
        ...                     'api_base = "http://127.0.0.1:8000/v1"\\n')
        >>> load_router_config(path)["deployments"][0]["name"]
        'm-1'
    """
    source = str(path)
    file = Path(path)
    suffix = file.suffix.lower()
    if suffix not in (".toml", ".yaml", ".yml"):
        raise ConfigError(f"router file {source!r} must end in .toml, .yaml or .yml; got {suffix or 'no suffix'!r}")
    try:
        text = file.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"router file {source!r} does not exist; check the path given to --router") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read router file {source!r}: {exc}") from None
    data, lines = _parse_toml(text, source) if suffix == ".toml" else _parse_yaml(text, source)
    return _validate(data, _Where(source, lines))


def _parse_yaml(text: str, source: str) -> tuple[Any, dict[_Path, int]]:
    try:
        import yaml
    except ModuleNotFoundError:
        raise ConfigError(
            f"reading {source!r} needs PyYAML; run `pip install pyyaml`, or write the router file in TOML") from None
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{source} line {mark.line + 1}" if mark is not None else source
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(f"{where}: not valid YAML ({problem})") from None
    lines: dict[_Path, int] = {}
    if root is not None:
        _yaml_lines(root, (), lines)
    return data, lines


def _yaml_lines(node: Any, path: _Path, lines: dict[_Path, int]) -> None:
    import yaml

    lines.setdefault(path, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            child = (*path, str(key.value))
            lines.setdefault(child, key.start_mark.line + 1)
            _yaml_lines(value, child, lines)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            _yaml_lines(item, (*path, index), lines)


# --- checking -----------------------------------------------------------------------------


def validate_router_config(data: Mapping[str, Any], *, source: str = "router config") -> dict[str, Any]:
    """Check a router config given as a dict (the shape of a router file) and fill defaults.

    Args:
        data: ``{"deployments": [...], "routing_strategy": ..., "fallbacks": {...}}``.
        source: what to call it in messages.

    Returns:
        The checked config, as :func:`load_router_config` returns it.

    Raises:
        ConfigError: a rule is broken; the message names the field.
    """
    return _validate(data, _Where(source))


def router_key_envs(config: Mapping[str, Any]) -> list[str]:
    """The environment variables a checked router config takes API keys from, sorted."""
    return sorted({d["api_key_env"] for d in config["deployments"] if d.get("api_key_env")})


def router_arguments(config: Mapping[str, Any], api_keys: Mapping[str, str], *,
                     placeholder_key: str = "no-key") -> dict[str, Any]:
    """Keyword arguments of ``litellm.Router`` for a checked config (pure data, no litellm needed).

    Args:
        config: a checked router config.
        api_keys: keys by environment-variable name, for deployments with ``api_key_env``.
        placeholder_key: sent to deployments with an ``api_base`` and no ``api_key_env``,
            so that litellm never sends them a key it found in the environment.

    Raises:
        ConfigError: a deployment's ``api_key_env`` has no key in ``api_keys``.
    """
    model_list = []
    for d in config["deployments"]:
        params: dict[str, Any] = {"model": d["model"]}
        if d["api_base"]:
            params["api_base"] = d["api_base"]
        if d["api_key_env"]:
            if not api_keys.get(d["api_key_env"]):
                raise ConfigError(f"router deployment {d['name']!r} takes its API key from {d['api_key_env']}, "
                                  "which is not set; export it before the run")
            params["api_key"] = api_keys[d["api_key_env"]]
        elif d["api_base"]:
            params["api_key"] = placeholder_key
        params.update({k: d[k] for k in _LIMIT_FIELDS if d[k] is not None})
        model_list.append({"model_name": d["model_name"], "litellm_params": params, "model_info": {"id": d["name"]}})
    limits = any(d[k] is not None for d in config["deployments"] for k in _LIMIT_FIELDS)
    return {
        "model_list": model_list,
        "routing_strategy": config["routing_strategy"],
        "fallbacks": [{group: list(targets)} for group, targets in config["fallbacks"].items()],
        "num_retries": 0,  # promptopt's retry wrapper retries, with backoff and Retry-After
        "retry_after": 0,
        # Without it rpm/tpm only weight the shuffle; with it a deployment at its limit is refused.
        "optional_pre_call_checks": ["enforce_model_rate_limits"] if limits else None,
    }


def _validate(data: Any, where: _Where) -> dict[str, Any]:
    if not isinstance(data, Mapping):
        raise where.fail((), f"a router config must be a table of fields; got {type(data).__name__}")
    unknown = sorted(str(k) for k in data if k not in _TOP_FIELDS)
    if unknown:
        raise where.fail((unknown[0],), f"unknown field {unknown[0]!r}; known fields: {', '.join(_TOP_FIELDS)}")
    raw = data.get("deployments")
    if not isinstance(raw, list) or not raw:
        got = "nothing" if raw is None else f"{type(raw).__name__} {raw!r}"[:80]
        raise where.fail(("deployments",), "`deployments` must be a non-empty list of tables "
                         f"(one [[deployments]] per endpoint); got {got}")
    deployments = [_deployment(item, i, where) for i, item in enumerate(raw)]
    _check_unique_names(deployments, where)
    strategy = data.get("routing_strategy")
    if strategy is None:
        strategy = "simple-shuffle"
    if strategy not in ROUTING_STRATEGIES:
        raise where.fail(("routing_strategy",), f"`routing_strategy` must be one of {', '.join(ROUTING_STRATEGIES)}; "
                         f"got {strategy!r}")
    fallbacks = _fallbacks(data.get("fallbacks"), {d["model_name"] for d in deployments}, where)
    return {"routing_strategy": strategy, "fallbacks": fallbacks, "deployments": deployments}


def _deployment(item: Any, index: int, where: _Where) -> dict[str, Any]:
    path: _Path = ("deployments", index)
    label = f"deployment #{index + 1}"
    if not isinstance(item, Mapping):
        raise where.fail(path, f"{label} must be a table of fields; got {type(item).__name__}")
    if isinstance(item.get("name"), str) and item["name"].strip():
        label = f"deployment {item['name']!r}"
    if "api_key" in item:
        # The value is never shown: it may be a real key.
        raise where.fail((*path, "api_key"), f"{label} has an api_key; keys do not belong in a router file: "
                         "put the key in an environment variable and name it with api_key_env = \"...\"")
    unknown = sorted(str(k) for k in item if k not in _DEPLOYMENT_FIELDS)
    if unknown:
        raise where.fail((*path, unknown[0]), f"{label} has an unknown field {unknown[0]!r}; "
                         f"known fields: {', '.join(_DEPLOYMENT_FIELDS)}")
    out: dict[str, Any] = {}
    for field in _TEXT_FIELDS:
        value = item.get(field)
        if value is not None and (not isinstance(value, str) or not value.strip()):
            shown = "a value that is not a variable name" if field == "api_key_env" else repr(value)
            raise where.fail((*path, field), f"{label}: `{field}` must be a non-empty string; got {shown}")
        out[field] = value.strip() if isinstance(value, str) else None
    for field in _LIMIT_FIELDS:
        value = item.get(field)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            raise where.fail((*path, field), f"{label}: `{field}` must be a whole number >= 1; got {value!r}")
        out[field] = value
    for field in ("model_name", "model"):
        if out[field] is None:
            raise where.fail(path, f"{label} has no {field} (e.g. {field} = "
                             f"{'smollm2' if field == 'model_name' else 'openai/smollm2'!r})")
    _check_endpoint(out, path, label, where)
    out["name"] = out["name"] or f"{out['model_name']}-{index + 1}"
    return {field: out[field] for field in _DEPLOYMENT_FIELDS}


def _check_endpoint(out: dict[str, Any], path: _Path, label: str, where: _Where) -> None:
    base, env = out["api_base"], out["api_key_env"]
    if base is not None and not base.startswith(("http://", "https://")):
        raise where.fail((*path, "api_base"), f"{label}: `api_base` must be an http:// or https:// URL; got {base!r}")
    if env is not None and not _ENV_NAME.fullmatch(env):
        # Not echoed: a pasted key is the usual reason for this.
        raise where.fail((*path, "api_key_env"), f"{label}: `api_key_env` must name an environment variable "
                         "(letters, digits and _, like OPENAI_API_KEY); got a value that is not a variable name")
    if base is None and env is None:
        raise where.fail(path, f"{label} has no api_base (the URL of a local or self-hosted server) "
                         "and no api_key_env (the variable holding a hosted provider's key); give one of them")


def _check_unique_names(deployments: list[dict[str, Any]], where: _Where) -> None:
    seen: dict[str, int] = {}
    for index, d in enumerate(deployments):
        first = seen.setdefault(d["name"], index)
        if first != index:
            raise where.fail(("deployments", index, "name"), f"two deployments are named {d['name']!r} "
                             f"(#{first + 1} and #{index + 1}); names must be unique")


def _fallbacks(raw: Any, model_names: set[str], where: _Where) -> dict[str, list[str]]:
    if raw is None:
        return {}
    if not isinstance(raw, Mapping):
        raise where.fail(("fallbacks",), "`fallbacks` must be a table of model_name = [other model_names]; "
                         f"got {type(raw).__name__}")
    known = ", ".join(sorted(model_names))
    out: dict[str, list[str]] = {}
    for group, targets in raw.items():
        path: _Path = ("fallbacks", group)
        if group not in model_names:
            raise where.fail(path, f"fallbacks for {group!r}, which no deployment serves; model names: {known}")
        if isinstance(targets, str):
            targets = [targets]
        if not isinstance(targets, list) or not targets or not all(isinstance(t, str) for t in targets):
            raise where.fail(path, f"fallbacks.{group} must be a non-empty list of model names; got {targets!r}")
        for target in targets:
            if target not in model_names or target == group:
                raise where.fail(path, f"fallbacks.{group} names {target!r}, which is "
                                 f"{'the same model name' if target == group else 'no deployment'}; "
                                 f"model names: {known}")
        out[str(group)] = list(targets)
    return out
