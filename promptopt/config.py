"""One run's configuration, whichever way it is given: Python, CLI flags or a TOML file.

:func:`~promptopt.optimize`, :func:`~promptopt.estimate` (``--dry-run``) and
:func:`~promptopt.evaluate` take a :class:`RunConfig`, built once and checked
when it is made. Each field maps one to one to a keyword argument, a flag and a
key of a ``--config run.toml`` file:

=============================  =================================  ======================================
Python                         CLI                                TOML
=============================  =================================  ======================================
``n_dev=50``                   ``--n-dev 50``                     ``n_dev = 50``
``budget=Budget(tokens=9)``    ``--budget-tokens 9``              ``[budget]`` then ``tokens = 9``
``retry=RetryPolicy(...)``     ``--retry-max-attempts 3``         ``[retry]`` then ``max_attempts = 3``
``strategy_params={...}``      ``--param beam_size=2``            ``[strategy_params]`` then ``beam_size = 2``
``model_options={...}``        ``--base-url URL`` (a few)         ``[model_options]`` then ``base_url = "..."``
=============================  =================================  ======================================

On the command line a flag given explicitly wins over the file, which wins over
the defaults; tables merge key by key.
"""

from __future__ import annotations

import functools
import re
import types
from collections.abc import Callable, Mapping, Sequence
from dataclasses import MISSING, dataclass, field, fields, is_dataclass
from pathlib import Path
from typing import Any, get_type_hints

from promptopt._fields import describe, did_you_mean, given, matches, members, merged, shown
from promptopt._toml import Where, read_toml_file
from promptopt.backends import Backend, RetryPolicy, parse_model_string
from promptopt.budget import Budget
from promptopt.exceptions import ConfigError, UnknownNameError
from promptopt.replacement import DEFAULT_RULE, check_rule
from promptopt.strategies import Strategy, get_strategy
from promptopt.task_options import TaskOptions, check_strategy_for_set
from promptopt.tasks import Task
from promptopt.tasks._spec import SpecError, parse_set_spec

__all__ = ["ANSWER_MODES", "DEFAULT_MODEL", "SELECT_ON", "RunConfig", "config_from_call", "default_budget"]

DEFAULT_MODEL = "llamacpp:smollm2"
ANSWER_MODES = ("auto", "generate", "choice")
#: where the final prompt is picked: the dev split the strategy searched on, or one held out from it
SELECT_ON = ("dev", "held-out")


def default_budget(answer_mode: str) -> Budget:
    """A quick search that fits a laptop; raise it for real work.

    Choice mode spends one cheap scoring call per label per example, so it gets more calls.
    """
    return Budget(target_calls=1500 if answer_mode == "choice" else 200)


class _SettingError(ConfigError):
    """A bad value of one setting; ``key`` names it (``n_dev``, ``budget.tokens``) so a file can point at its line."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(message)
        self.key = key


class _UnknownSettingError(_SettingError, UnknownNameError):
    """A setting that names something not registered (a strategy, a backend)."""


def _about(key: str, exc: ConfigError) -> _SettingError:
    """``exc`` as the error of one setting, keeping whether it is an unknown name."""
    return (_UnknownSettingError if isinstance(exc, UnknownNameError) else _SettingError)(key, str(exc))


# --- checks of single settings (each raises ConfigError with the whole message) ---------------


def _split_size(name: str, value: object) -> None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
        raise ConfigError(f"{name} must be a whole number >= 1 (or None for the whole split); "
                          f"got {value!r}; e.g. --{name.replace('_', '-')} 50")


def _finalist_reserve(name: str, value: object) -> None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
        raise ConfigError(f"finalist_reserve must be a whole number >= 0; got {value!r} "
                          "(e.g. --finalist-reserve 1, or 0 to give the strategy the whole cap)")


def _answer_mode(name: str, value: object) -> None:
    if value not in ANSWER_MODES:
        raise ConfigError(f"--answer-mode (answer_mode=) must be auto, generate or choice; got {value!r}")


def _select_on(name: str, value: object) -> None:
    if value not in SELECT_ON:
        raise ConfigError(f"select_on must be 'dev' or 'held-out'; got {value!r} "
                          "(e.g. --select-on held-out to pick the final prompt on dev examples the search never saw)")


def _select_top(name: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"select_top must be a whole number >= 1; got {value!r} (e.g. --select-top 3)")


def _mlflow(name: str, value: object) -> None:
    if value is not False and not (value is True or (isinstance(value, str) and value.strip())):
        raise ConfigError(f"mlflow must be True, False or an experiment name; got {value!r}")


def _model(name: str, value: object) -> None:
    _check_type(name, value)
    if isinstance(value, str):
        parse_model_string(value)  # the shape and a known prefix; nothing is imported or opened


def _run_id(name: str, value: object) -> None:
    _check_type(name, value)
    if isinstance(value, str) and (not value.strip() or value in (".", "..") or re.search(r"[/\\]", value)):
        raise ConfigError(f"run_id must be a directory name (no / or \\); got {value!r}")


def _setting(default: Any, *, check: Callable[[str, object], None] | None = None, short: str | None = None,
             search: bool = False, cli: str | None = None) -> Any:
    """A RunConfig field. ``check`` replaces the type check made from its annotation; ``short`` is its
    one-letter flag; ``search`` marks what only a search uses (``promptopt evaluate`` has no such flag);
    ``cli`` names a flag form other than one flag for one value (see promptopt._cli_config)."""
    return field(default=default, metadata={"check": check, "short": short, "search": search, "cli": cli})


@dataclass(frozen=True, kw_only=True, repr=False)
class RunConfig:
    """Everything that defines a run, checked when it is made.

    ``optimize(config=RunConfig(...))`` is ``optimize(...)`` with the same
    keyword arguments. Mappings are copied read-only, ``labels`` becomes a
    tuple, paths become :class:`~pathlib.Path`. Secrets in ``model_options``
    (``api_key``) are never shown in its repr or in an error.

    Attributes:
        task: the task: gsm8k, sst2, agnews, bbh:<subtask>, synthetic:<kind>,
            file:<path.jsonl|csv> or a plugin's name (see `promptopt tasks`); or a set of tasks whose
            shared system prompt is searched: names separated by commas (sst2,mr,bbh:navigate), with
            the groups bbh:all (the BBH subtasks in the data folder) and cls:all (every classification
            set); in Python also a Task, or a list of names and Tasks.
        task_set: a task-set file (TOML) listing the tasks of a set with their own options
            (n_train, n_dev, n_test, answer_mode, file: fields), unseen tasks and the seed system prompt;
            it replaces task.
        unseen: tasks scored only at the end, on their test split, with the seed's and the best
            prompt's system text (transfer to tasks the search never saw); names as in task.
        system: the seed system prompt (default on a set of tasks: the target model's own default
            system prompt, made explicit; on one task: none).
        strategy: the search strategy (see `promptopt strategies`); in Python also a Strategy.
        model: the target model as backend:model, e.g. llamacpp:smollm2 (embedded),
            openai:<name> (with --base-url or OPENAI_BASE_URL); in Python also a Backend.
        optimizer_model: the model that writes prompts (default: the target model).
        budget: caps on the search (default: 200 target calls in generate mode,
            1500 in choice mode, whose calls are single cheap scores). The final
            test evaluation is outside the budget and reported separately.
        seed: seeds splits, minibatches, sampling and the search.
        answer_mode: how answers are read: auto (choice where the task has labels and
            the model can score), generate (parse the reply) or choice (most likely label).
        strategy_params: the strategy's hyper-parameters, by name.
        n_train: training examples (default: all); seeded, stratified samples.
        n_dev: dev examples used to select prompts.
        n_test: test examples for the final score (raise it to compare prompts).
        data_dir: dataset folder (else $PROMPTOPT_DATA_DIR, else the user cache).
        offline: never download datasets; missing data is an error saying where to put it.
        input_field: for file: tasks, the field holding the input.
        target_field: for file: tasks, the field holding the gold answer.
        metric: for file: tasks, exact, contains or numeric.
        labels: for file: tasks, the closed label set (enables choice mode).
        gold: which gold continuation loss-based strategies score, for tasks that offer more
            than one (gsm8k: solution or answer; BBH: answer or sentence); default: the task's own.
        runs_dir: where run directories and the cache go.
        run_id: the run directory name (default: derived from the configuration,
            so the same configuration reuses its directory and cache).
        cache: the response cache: True for <runs_dir>/cache.sqlite, a file, or False for none.
        model_options: backend options of the target model (base_url, api_key,
            max_concurrency, timeout for openai:; n_threads for llamacpp:; throttles for any).
        optimizer_options: backend options of the optimizer model.
        retry: how transient failures are retried (default: RetryPolicy()).
        mlflow: also log the run to MLflow (extra promptopt[mlflow]; the store is MLflow's
            choice, MLFLOW_TRACKING_URI): true for the experiment "promptopt", or an experiment name.
        finalist_reserve: leaders or partly scored candidates to keep target calls back for, so
            they can still be scored on all of dev when the strategy runs out (0: the strategy gets
            the whole cap; default: 1 for a strategy whose candidates can lack part of dev: apo,
            fewshot and gepa scoring on samples of dev, ape, promptwizard, and opro scoring on
            train; else 0). Applies only when the kept calls are at most half of the cap left
            after scoring the seed.
        replace_if: when the search's winner replaces the seed: better (any higher dev mean),
            sign-test:ALPHA (a one-sided exact sign test on the dev examples), or auto (default:
            sign-test:0.05 in generate mode, better in choice mode).
        select_on: where the final prompt is picked: dev (default: the strategy searches on the dev
            split and the best dev mean wins) or held-out (the strategy searches on as many examples
            drawn from train; the best of its finalists, the seed included, on dev wins, and replace_if
            judges on dev). Held-out needs more training examples than n_dev.
        select_top: with select_on held-out, how many of the best candidates on the search split are
            scored on dev, besides the seed and those the strategy returned or offered; the target
            calls to score them there are kept back from the search.
        scale_to_budget: shrink the strategy's step-size parameters not set explicitly (score-set
            size, population, beam, proposals per step) until one full step and three new candidates
            scored on all of dev fit the budget (default: true); false runs the paper's defaults as they
            are (--no-scale-to-budget).

    Example:
        >>> RunConfig(task="sst2", n_dev=10, model_options={"api_key": "sk-..."})
        RunConfig(task='sst2', n_dev=10, model_options={'api_key': ***})
    """

    task: str | Task | Sequence[str | Task] = _setting("gsm8k", short="-t")
    task_set: str | Path | None = _setting(None, search=True)
    unseen: str | Sequence[str | Task] | None = _setting(None, search=True)
    system: str | None = _setting(None, search=True)
    strategy: str | Strategy = _setting("apo", short="-s", search=True)
    model: str | Backend = _setting(DEFAULT_MODEL, short="-m", check=_model)
    optimizer_model: str | Backend | None = _setting(None, search=True, check=_model)
    budget: Budget | None = _setting(None, search=True)
    seed: int = _setting(0)
    answer_mode: str = _setting("auto", check=_answer_mode)
    strategy_params: Mapping[str, Any] | None = _setting(None, search=True, cli="params")
    n_train: int | None = _setting(None, check=_split_size)
    n_dev: int | None = _setting(30, check=_split_size)
    n_test: int | None = _setting(50, check=_split_size)
    data_dir: str | Path | None = _setting(None)
    offline: bool = _setting(False)
    input_field: str | None = _setting(None)
    target_field: str | None = _setting(None)
    metric: str | None = _setting(None)
    labels: Sequence[str] | None = _setting(None, cli="labels")
    gold: str | None = _setting(None)
    runs_dir: str | Path = _setting("runs")
    run_id: str | None = _setting(None, search=True, check=_run_id)
    cache: bool | str | Path = _setting(True, cli="cache")
    model_options: Mapping[str, Any] | None = _setting(None, cli="backend_options")
    optimizer_options: Mapping[str, Any] | None = _setting(None, search=True, cli="backend_options")
    retry: RetryPolicy | None = _setting(None)
    mlflow: bool | str = _setting(False, search=True, check=_mlflow, cli="mlflow")
    finalist_reserve: int | None = _setting(None, search=True, check=_finalist_reserve)
    replace_if: str = _setting(DEFAULT_RULE, search=True, check=lambda name, value: check_rule(value))
    select_on: str = _setting("dev", search=True, check=_select_on)
    select_top: int = _setting(3, search=True, check=_select_top)
    scale_to_budget: bool = _setting(True, search=True)

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            try:
                (f.metadata["check"] or _check_type)(f.name, value)
            except _SettingError:
                raise
            except ConfigError as exc:
                raise _about(f.name, exc) from None
        self._check_strategy()
        self._check_tasks()
        normal: dict[str, Any] = {
            "labels": tuple(self.labels) if self.labels else None, "runs_dir": Path(self.runs_dir),
            "data_dir": None if self.data_dir is None else Path(self.data_dir),
            "cache": Path(self.cache) if isinstance(self.cache, str) else self.cache,
            "task": self.task if isinstance(self.task, (str, Task)) else tuple(self.task),
            "unseen": self.unseen if self.unseen is None or isinstance(self.unseen, str) else tuple(self.unseen),
            "task_set": None if self.task_set is None else Path(self.task_set)}
        for name in ("strategy_params", "model_options", "optimizer_options"):
            value = getattr(self, name)
            normal[name] = None if value is None else types.MappingProxyType(dict(value))
        for name, value in normal.items():
            object.__setattr__(self, name, value)  # frozen: normalised once, here

    def _check_strategy(self) -> None:
        """The strategy name and its hyper-parameters (a strategy's constructor only stores them)."""
        params = dict(self.strategy_params or {})
        try:
            get_strategy(self.strategy, params).validate()
        except UnknownNameError as exc:
            raise _about("strategy", exc) from None
        except ConfigError as exc:
            named = [k for k in params if repr(k) in str(exc) or f"`{k}`" in str(exc)]
            raise _SettingError(f"strategy_params.{named[0]}" if named else "strategy_params", str(exc)) from None

    def _check_tasks(self) -> None:
        """The names of a set of tasks and its task-set file (no data is read), and that the strategy
        can search a set."""
        try:
            spec = parse_set_spec(self.task, self.unseen, self.task_set)
        except SpecError as exc:
            raise _about(exc.param, exc) from None
        except ConfigError as exc:  # the task-set file's own errors name the file and the line
            raise _about("task_set", exc) from None
        if spec.is_set:
            try:
                check_strategy_for_set(get_strategy(self.strategy, dict(self.strategy_params or {})))
            except ConfigError as exc:
                raise _about("strategy", exc) from None

    def __repr__(self) -> str:
        defaults = _default_config()
        changed = [f"{f.name}={shown(getattr(self, f.name))}" for f in fields(self)
                   if getattr(self, f.name) != getattr(defaults, f.name)]
        return f"RunConfig({', '.join(changed)})"

    def task_options(self) -> TaskOptions:
        """The split sizes, seed, data location and file-task fields."""
        return TaskOptions(n_train=self.n_train, n_dev=self.n_dev, n_test=self.n_test, seed=self.seed,
                           data_dir=self.data_dir, offline=self.offline, input_field=self.input_field,
                           target_field=self.target_field, metric=self.metric,
                           labels=tuple(self.labels) if self.labels else None, gold=self.gold)

    def budget_for(self, answer_mode: str) -> Budget:
        """The budget given, else :func:`default_budget` for the answer mode the run resolved."""
        return self.budget if self.budget is not None else default_budget(answer_mode)

    def cache_path(self) -> Path | None:
        """The response cache file, or None when the cache is off."""
        if self.cache is False:
            return None
        return Path(self.runs_dir) / "cache.sqlite" if self.cache is True else Path(self.cache)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RunConfig:
        """A configuration from plain data (a parsed TOML file): a value per field, a mapping for
        ``budget`` and ``retry`` (their fields), ``strategy_params`` and the ``*_options``.

        Raises:
            ConfigError: an unknown key, or a value a field does not take; the message names the key.
        """
        hints = _hints()
        kwargs: dict[str, Any] = {}
        for key, value in data.items():
            if key not in hints:
                raise _SettingError(key, f"unknown key {key!r}{did_you_mean(key, hints)}; the keys are the "
                                         f"fields of RunConfig: {', '.join(hints)}")
            kwargs[key] = _table_to_object(key, hints[key], value)
        return cls(**kwargs)

    @classmethod
    def from_toml(cls, path: str | Path, overrides: Mapping[str, Any] | None = None) -> RunConfig:
        """Read a run configuration file (its keys are the fields; ``[budget]`` and the other
        mappings are tables). ``overrides`` (the same shape) win over the file, key by key.

        Raises:
            ConfigError: a missing or unreadable file, a line that is not TOML, an unknown key
                or a bad value; the message names the file, the line and the key.

        Example:
            >>> import pathlib, tempfile
            >>> path = pathlib.Path(tempfile.mkdtemp()) / "run.toml"
            >>> _ = path.write_text('task = "sst2"\\n[budget]\\ntarget_calls = 100\\n')
            >>> RunConfig.from_toml(path, {"n_dev": 10}).budget.target_calls
            100
        """
        source = str(path)
        data, lines = read_toml_file(path, "config file", "--config")
        try:
            return cls.from_dict(merged(data, overrides or {}))
        except _SettingError as exc:
            key = tuple(exc.key.split("."))
            if given(overrides or {}, key):
                raise  # the value came from a flag or an argument, which the message names
            named = "" if repr(exc.key) in str(exc) else f"key {exc.key!r}: "
            kind = UnknownNameError if isinstance(exc, UnknownNameError) else ConfigError
            raise kind(f"{Where(source, lines)(key)}: {named}{exc}") from None


# --- fields, defaults and tables ---------------------------------------------------------------


@functools.cache
def _hints() -> dict[str, Any]:
    return {name: hint for name, hint in get_type_hints(RunConfig).items() if not name.startswith("_")}


@functools.cache
def _default_config() -> RunConfig:
    return RunConfig()


def _default(name: str) -> Any:
    (f,) = [f for f in fields(RunConfig) if f.name == name]
    return None if f.default is MISSING else f.default


def _check_type(name: str, value: object) -> None:
    hint = _hints()[name]
    if not matches(value, hint):
        raise ConfigError(f"{name} must be {describe(hint)}; got {shown(value, name)}")


def _table_to_object(key: str, hint: Any, value: Any) -> Any:
    """A ``[budget]``-like table as the dataclass its field holds, each key checked on its own so that
    an error names it; any other value as it is."""
    kinds = [m for m in members(hint) if isinstance(m, type) and is_dataclass(m)]
    if not kinds or not isinstance(value, Mapping):
        return value
    kind = kinds[0]
    names = [f.name for f in fields(kind)]
    for sub, item in value.items():
        if sub not in names:
            hint_ = did_you_mean(sub, dict.fromkeys(names))
            raise _SettingError(f"{key}.{sub}", f"{key} has no setting {sub!r}{hint_}; "
                                                f"its settings are: {', '.join(names)}")
        try:
            kind(**{sub: item})
        except ConfigError as exc:
            raise _SettingError(f"{key}.{sub}", str(exc)) from None
    return kind(**value)


def config_from_call(config: RunConfig | None, arguments: Mapping[str, Any], owner: str) -> RunConfig:
    """The configuration of a call that took keyword arguments or ``config=``, not both.

    Raises:
        ConfigError: ``config`` is not a RunConfig, or came with an argument other than its default.
    """
    if config is None:
        return RunConfig(**arguments)
    if not isinstance(config, RunConfig):
        raise ConfigError(f"config must be a promptopt.RunConfig; got {type(config).__name__}")
    changed = [k for k, v in arguments.items() if v is not _default(k) and v != _default(k)]
    if changed:
        raise ConfigError(f"{owner}() got both config= and {changed[0]}=; give the configuration one way "
                          f"(dataclasses.replace(config, {changed[0]}=...) makes a changed copy)")
    return config


