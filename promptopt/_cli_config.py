"""The CLI's configuration flags, derived from :class:`~promptopt.config.RunConfig`'s fields.

One rule per kind of field, so that a new field, Budget cap or RetryPolicy
setting gets its flag with no edit here:

* a plain value: ``--<field>`` (``--<field>/--no-<field>`` when it is true or false);
* a dataclass (``budget``, ``retry``): ``--<field>-<its field>`` for each of its fields;
* the forms a field's metadata names (``cli=``): ``params`` (``--param name=value``),
  ``backend_options`` (endpoint and throttle flags; ``--optimizer-...`` for the
  optimizer's), ``cache`` (``--cache``/``--no-cache``), ``labels`` (comma-separated)
  and ``mlflow`` (``--mlflow``, ``--mlflow-experiment``).

Only the flags given on the command line count: they win over a ``--config``
file, which wins over the defaults (the same as the Python API's).
"""

from __future__ import annotations

import inspect
import json
import re
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import Field, dataclass, fields, is_dataclass
from pathlib import Path
from typing import Any, Optional, get_type_hints

import typer
from rich.markup import escape

from promptopt._fields import field_docs, members
from promptopt.backends._throttle import Throttle
from promptopt.config import RunConfig
from promptopt.exceptions import ConfigError

__all__ = ["Flag", "config_flags", "parse_params", "with_run_config"]

#: endpoint options some backends take, as flags (any other option: the [model_options] table of --config)
_ENDPOINT_FLAGS: dict[str, tuple[type, str]] = {
    "base_url": (str, "endpoint of an openai: model (else $OPENAI_BASE_URL; the API key is read from "
                      "$OPENAI_API_KEY), or of a litellm: model."),
    "max_concurrency": (int, "openai: and litellm: models: requests in flight (default 8)."),
    "timeout": (float, "openai: and litellm: models: seconds before a request is given up and retried."),
    "router": (Path, "litellm: models: a router file (.toml, or .yaml with PyYAML) listing deployments; "
                     "--model litellm:<model_name> then spreads calls over them."),
}

Apply = Callable[[dict[str, Any], Any], None]


@dataclass(frozen=True)
class Flag:
    """One command-line option and where its value goes in the configuration's data."""

    param: str
    decls: tuple[str, ...]
    annotation: Any
    default: Any
    help: str
    apply: Apply

    def parameter(self) -> inspect.Parameter:
        # typer renders help as rich markup, where [budget] would vanish
        option = typer.Option(self.default, *self.decls, help=escape(self.help))
        return inspect.Parameter(self.param, inspect.Parameter.KEYWORD_ONLY, default=option,
                                 annotation=self.annotation)


def _put(*path: str) -> Apply:
    def apply(data: dict[str, Any], value: Any) -> None:
        node = data
        for part in path[:-1]:
            node = node.setdefault(part, {})
        node[path[-1]] = value

    return apply


def _dash(name: str) -> str:
    return name.replace("_", "-")


def _flag_type(hint: Any) -> tuple[type, bool]:
    """What a flag parses a field's value as, and whether the field may be None."""
    allowed = members(hint)
    for kind in (Path, str, bool, float, int):
        if kind in allowed:
            return kind, type(None) in allowed
    raise TypeError(f"no flag type for {hint!r}")  # pragma: no cover - a new kind of field needs a form


def _optional(kind: type) -> Any:
    return Optional[kind]  # noqa: UP045 - typer reads typing.Optional on every version we support


def _plain(f: Field[Any], hint: Any, doc: str) -> list[Flag]:
    kind, nullable = _flag_type(hint)
    name, short = _dash(f.name), f.metadata["short"]
    if kind is bool:
        return [Flag(f.name, (f"--{name}/--no-{name}",), bool, f.default, doc, _put(f.name))]
    default: Any = f.default
    if kind is Path and default is not None:
        default = Path(default)
    decls = (f"--{name}", short) if short else (f"--{name}",)
    return [Flag(f.name, decls, _optional(kind) if nullable else kind, default, doc, _put(f.name))]


def _dataclass_flags(owner: str, kind: type, label: str, data_path: tuple[str, ...]) -> list[Flag]:
    """``--<owner>-<field>`` for each field of a dataclass, documented by its docstring."""
    docs, hints = field_docs(kind), get_type_hints(kind)
    flags = []
    for sub in fields(kind):
        flag_kind, _ = _flag_type(hints[sub.name])
        param = f"{owner}_{sub.name}" if owner else sub.name
        decl = f"--{_dash(owner)}-{_dash(sub.name)}" if owner else f"--{_dash(sub.name)}"
        flags.append(Flag(param, (decl,), _optional(flag_kind), None,
                          _help(f"{label}{docs.get(sub.name, sub.name)}"), _put(*data_path, sub.name)))
    return flags


def _nested(f: Field[Any], hint: Any, doc: str) -> list[Flag]:
    (kind,) = [m for m in members(hint) if isinstance(m, type) and is_dataclass(m)]
    return _dataclass_flags(f.name, kind, f"{f.name.capitalize()}: ", (f.name,))


def _params(f: Field[Any], hint: Any, doc: str) -> list[Flag]:
    def apply(data: dict[str, Any], items: list[str]) -> None:
        data.setdefault(f.name, {}).update(parse_params(items))

    decls = ("--param", f.metadata["short"]) if f.metadata["short"] else ("--param",)
    return [Flag("param", decls, list[str], [], "Strategy hyper-parameter name=value (repeatable).", apply)]


def _backend_options(f: Field[Any], hint: Any, doc: str) -> list[Flag]:
    """The target model's options take bare flags (``--base-url``); another role's take its name as a prefix."""
    role = f.name.removesuffix("_options")
    prefix, label = ("", "") if role == "model" else (f"{role}_", f"{role.capitalize()} model, ")
    flags = [Flag(f"{prefix}{name}", (f"--{_dash(prefix + name)}",), _optional(kind), None, _help(label + text),
                  _put(f.name, name)) for name, (kind, text) in _ENDPOINT_FLAGS.items()]
    return flags + _dataclass_flags(prefix.rstrip("_"), Throttle, label or "any model: ", (f.name,))


def _cache(f: Field[Any], hint: Any, doc: str) -> list[Flag]:
    def no_cache(data: dict[str, Any], value: bool) -> None:
        if value:
            data[f.name] = False

    return [Flag("cache", ("--cache",), _optional(Path), None, "Cache file (default: <runs-dir>/cache.sqlite).",
                 _put(f.name)),
            Flag("no_cache", ("--no-cache",), bool, False, "Do not read or write the response cache.", no_cache)]


def _labels(f: Field[Any], hint: Any, doc: str) -> list[Flag]:
    def apply(data: dict[str, Any], value: str) -> None:
        data[f.name] = [x.strip() for x in value.split(",") if x.strip()]

    return [Flag(f.name, (f"--{_dash(f.name)}",), _optional(str), None, f"{doc} Comma-separated.", apply)]


def _mlflow(f: Field[Any], hint: Any, doc: str) -> list[Flag]:
    return [Flag(f.name, ("--mlflow/--no-mlflow",), bool, False, doc, _put(f.name)),
            Flag("mlflow_experiment", ("--mlflow-experiment",), _optional(str), None,
                 "MLflow experiment name (implies --mlflow; default: promptopt).", _put(f.name))]


_FORMS: dict[str, Callable[[Field[Any], Any, str], list[Flag]]] = {
    "params": _params, "backend_options": _backend_options, "cache": _cache, "labels": _labels, "mlflow": _mlflow}


def _help(doc: str) -> str:
    """A field's description as flag help: capitalised, without what only Python can pass."""
    doc = re.sub(r";\s*in Python also [^.;]*", "", doc).replace("``", "")
    return doc[:1].upper() + doc[1:]


def config_flags(*, search: bool) -> list[Flag]:
    """The flags of every RunConfig field (without those only a search uses, unless ``search``)."""
    hints, docs = get_type_hints(RunConfig), field_docs(RunConfig)
    flags: list[Flag] = []
    for f in fields(RunConfig):
        if f.metadata["search"] and not search:
            continue
        hint = hints[f.name]
        form = _FORMS.get(f.metadata["cli"] or "") or (
            _nested if any(isinstance(m, type) and is_dataclass(m) for m in members(hint)) else _plain)
        flags.extend(form(f, hint, _help(docs[f.name])))
    return flags


def parse_params(items: list[str]) -> dict[str, Any]:
    """``name=value`` pairs; a value is read as JSON when it is JSON (``2``, ``true``), else as text."""
    params: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--param expects name=value (e.g. --param beam_size=2); got {item!r}")
        try:
            params[key.strip()] = json.loads(raw)
        except json.JSONDecodeError:
            params[key.strip()] = raw
    return params


CONFIG_FILE = typer.Option(None, "--config", "-c", help=escape(
    "A run configuration file (TOML): a key per option (n_dev = 50), tables [budget], [retry], "
    "[strategy_params], [model_options]; flags given on the command line win over it."))


def with_run_config(*, search: bool, errors: Callable[[], AbstractContextManager[None]]
                    ) -> Callable[[Callable[..., None]], Callable[..., None]]:
    """Give a command the configuration flags and ``--config``; it is called with the built
    ``config`` (a RunConfig) and its own options. A bad configuration goes through ``errors``."""
    flags = config_flags(search=search)

    def decorate(command: Callable[..., None]) -> Callable[..., None]:
        hints = get_type_hints(command)
        own = [p.replace(annotation=hints[p.name]) for p in inspect.signature(command).parameters.values()
               if p.name != "config"]

        def run(ctx: typer.Context, **values: Any) -> None:
            with errors():
                config = _build(ctx, flags, values)
            command(config=config, **{p.name: values[p.name] for p in own})

        params = [inspect.Parameter("ctx", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=typer.Context),
                  inspect.Parameter("config_file", inspect.Parameter.KEYWORD_ONLY, default=CONFIG_FILE,
                                    annotation=_optional(Path)),
                  *(flag.parameter() for flag in flags),
                  *(p.replace(kind=inspect.Parameter.KEYWORD_ONLY) for p in own)]
        run.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]  # what typer reads
        run.__annotations__ = {p.name: p.annotation for p in params}
        run.__name__, run.__doc__ = command.__name__, command.__doc__
        return run

    return decorate


def _build(ctx: typer.Context, flags: list[Flag], values: dict[str, Any]) -> RunConfig:
    """The configuration: the flags given on the command line, over the ``--config`` file, over the defaults."""
    given: dict[str, Any] = {}
    for flag in flags:
        if _on_command_line(ctx, flag.param):
            flag.apply(given, values[flag.param])
    path = values["config_file"]
    return RunConfig.from_toml(path, given) if path is not None else RunConfig.from_dict(given)


def _on_command_line(ctx: typer.Context, param: str) -> bool:
    source = ctx.get_parameter_source(param)
    return source is not None and source.name == "COMMANDLINE"

