"""Task options as the API and CLI take them, resolved against the environment at the edge."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from promptopt.exceptions import ConfigError
from promptopt.tasks import Task, default_data_dir, load_task
from promptopt.tasks._set import SetMember, TaskSet
from promptopt.tasks._spec import GROUPS, MemberSpec, SetSpec, expand_members, parse_set_spec

if TYPE_CHECKING:
    from promptopt.config import RunConfig
    from promptopt.strategies import Strategy

__all__ = ["TaskOptions", "check_run_inputs", "check_strategy_for_set", "check_task_count", "load_task_from_options",
           "load_task_set", "resolve_data_dir"]


def resolve_data_dir(data_dir: str | Path | None, env: Mapping[str, str] | None = None) -> Path:
    """``data_dir`` if given, else ``$PROMPTOPT_DATA_DIR``, else the user cache dir."""
    env = os.environ if env is None else env
    if data_dir is not None:
        return Path(data_dir)
    if env.get("PROMPTOPT_DATA_DIR"):
        return Path(env["PROMPTOPT_DATA_DIR"])
    return Path(default_data_dir())


@dataclass(frozen=True, kw_only=True)
class TaskOptions:
    """Split sizes, seed, data location and ``file:`` task fields, as a checked
    :class:`~promptopt.config.RunConfig` holds them."""

    n_train: int | None = None
    n_dev: int | None = None
    n_test: int | None = None
    seed: int = 0
    data_dir: str | Path | None = None
    offline: bool = False
    input_field: str | None = None
    target_field: str | None = None
    metric: str | None = None
    labels: tuple[str, ...] | None = None
    gold: str | None = None
    instruction: str | None = None

    def to_config(self) -> dict[str, Any]:
        """What changes the examples (the data location does not)."""
        return {"n_train": self.n_train, "n_dev": self.n_dev, "n_test": self.n_test,
                "input_field": self.input_field, "target_field": self.target_field,
                "metric": self.metric, "labels": list(self.labels) if self.labels else None} | (
            {} if self.gold is None else {"gold": self.gold})  # absent by default: earlier run ids stay


def check_run_inputs(config: RunConfig) -> tuple[Strategy, Task]:
    """The strategy and the loaded task of a configuration, with the checks that need the task:
    its data, whether its answer mode applies, and whether its training pool can give a held-out
    selection its search split. Returns the strategy and the task."""
    from promptopt.evaluator import check_answer_mode
    from promptopt.strategies import get_strategy

    strat = get_strategy(config.strategy, dict(config.strategy_params or {}))
    spec = parse_set_spec(config.task, config.unseen, config.task_set)
    if spec.is_set:
        check_strategy_for_set(strat)
        _check_select_on_for_set(config.select_on)
        task_set = load_task_set(spec, config.task_options())
        for member in (*task_set.members, *task_set.unseen):
            check_answer_mode(member.task, member.answer_mode or config.answer_mode)
        check_task_count(strat, task_set)
        return strat, task_set
    task_obj = load_task_from_options(spec.members[0].task, config.task_options())
    if isinstance(task_obj, TaskSet):  # a TaskSet made in Python
        check_strategy_for_set(strat)
        _check_select_on_for_set(config.select_on)
        for member in (*task_obj.members, *task_obj.unseen):
            check_answer_mode(member.task, member.answer_mode or config.answer_mode)
    else:
        check_answer_mode(task_obj, config.answer_mode)
        if config.select_on == "held-out":
            from promptopt._held_out import check_train_size

            check_train_size(task_obj, n_train=config.n_train, n_dev=config.n_dev)
    check_task_count(strat, task_obj)
    return strat, task_obj


def check_strategy_for_set(strategy: Strategy) -> None:
    """Raise ConfigError, naming the strategies that can, unless ``strategy`` can search a set of tasks."""
    if type(strategy).supports_task_sets:
        return
    from promptopt.strategies import BUILTIN

    able = sorted(name for name, cls in BUILTIN.items() if cls.supports_task_sets)
    raise ConfigError(f"strategy {strategy.name!r} cannot search a set of tasks (it rewrites one task's prompt); "
                      f"strategies that can: {', '.join(able)} (or give one task and no --unseen)")


def check_task_count(strategy: Strategy, task: Task) -> None:
    """Raise ConfigError when ``strategy`` needs more tasks (``min_tasks``) than ``task`` searches."""
    names = task.member_names if isinstance(task, TaskSet) else (task.name,)
    if len(names) >= type(strategy).min_tasks:
        return
    got = f"{len(names)} task ({names[0]!r})" if len(names) == 1 else f"{len(names)} tasks"
    raise ConfigError(f"strategy {strategy.name!r} needs a set of at least {type(strategy).min_tasks} tasks to "
                      f"search; got {got}; name several, e.g. --task sst2,mr,subj (or use a strategy that "
                      "searches one task)")


def _check_select_on_for_set(select_on: str) -> None:
    """A held-out selection split is drawn from one task's train split; a set has none of its own yet."""
    if select_on == "held-out":
        raise ConfigError("select_on='held-out' works on one task, not on a set of tasks; "
                          "leave it at 'dev' (the default) for a set")


def load_task_set(spec: SetSpec, options: TaskOptions, env: Mapping[str, str] | None = None) -> TaskSet:
    """Load every task of a set: groups expanded against the data folder, each task with the run's
    options under its own (split sizes, ``file:`` fields, gold form), its own answer mode kept.

    Raises:
        ConfigError: a group leaves nothing to search, or a task's options do not apply to it.
        DataError: data files missing, corrupt or malformed.
    """
    env = os.environ if env is None else env
    data_dir = resolve_data_dir(options.data_dir, env)
    members = expand_members(spec.members, data_dir, leave_out=_named(spec.unseen))
    unseen = expand_members(spec.unseen, data_dir, leave_out=_named(spec.members))
    if not members:
        raise ConfigError(f"the task set {spec.name!r} has no task left to search once the unseen ones are "
                          "left out; name tasks to search in --task")
    return TaskSet([_load_member(m, options, env) for m in members],
                   unseen=[_load_member(m, options, env) for m in unseen], system=spec.system, name=spec.name)


def _named(members: Sequence[MemberSpec]) -> list[str]:
    return [m.name for m in members if m.task not in GROUPS]


def _load_member(spec: MemberSpec, options: TaskOptions, env: Mapping[str, str]) -> SetMember:
    if isinstance(spec.task, Task):
        return SetMember(spec.task)
    own = dict(spec.options)
    mode = own.pop("answer_mode", None)
    if not spec.name.startswith("file:"):  # the run's file fields are for its file tasks
        options = replace(options, input_field=None, target_field=None, metric=None, labels=None, instruction=None)
    own = {k: tuple(v) if k == "labels" else v for k, v in own.items()}
    config = {k: v for k, v in spec.options.items() if k != "answer_mode"}
    return SetMember(load_task_from_options(spec.task, replace(options, **own), env), mode, config)


def load_task_from_options(task: str | Task | Sequence[str | Task], options: TaskOptions,
                           env: Mapping[str, str] | None = None) -> Task:
    """Load a task by name (or pass an instance through) with these options.

    Raises:
        ConfigError: ``task`` names a set of tasks (a list, a comma list or a group), not one task.
    """
    env = os.environ if env is None else env
    if not isinstance(task, (str, Task)) or (isinstance(task, str) and ("," in task or task.strip() in GROUPS)):
        raise ConfigError(f"this command takes one task, not a set; got {task!r}")
    loaded = load_task(task, data_dir=resolve_data_dir(options.data_dir, env),
                       base_url=env.get("PROMPTOPT_DATA_URL") or None,
                       offline=options.offline or env.get("PROMPTOPT_OFFLINE", "") not in ("", "0"),
                       n_train=options.n_train, n_dev=options.n_dev, n_test=options.n_test, seed=options.seed,
                       input_field=options.input_field, target_field=options.target_field,
                       metric=options.metric, labels=list(options.labels) if options.labels else None,
                       instruction=options.instruction)
    return loaded if options.gold is None else loaded.with_gold(options.gold)
