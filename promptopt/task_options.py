"""Task options as the API and CLI take them, resolved against the environment at the edge."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from promptopt.tasks import Task, default_data_dir, load_task

if TYPE_CHECKING:
    from promptopt.config import RunConfig
    from promptopt.strategies import Strategy

__all__ = ["TaskOptions", "check_run_inputs", "load_task_from_options", "resolve_data_dir"]


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
    task_obj = load_task_from_options(config.task, config.task_options())
    check_answer_mode(task_obj, config.answer_mode)
    if config.select_on == "held-out":
        from promptopt._held_out import check_train_size

        check_train_size(task_obj, n_train=config.n_train, n_dev=config.n_dev)
    return strat, task_obj


def load_task_from_options(task: str | Task, options: TaskOptions,
                           env: Mapping[str, str] | None = None) -> Task:
    """Load a task by name (or pass an instance through) with these options."""
    env = os.environ if env is None else env
    loaded = load_task(task, data_dir=resolve_data_dir(options.data_dir, env),
                       base_url=env.get("PROMPTOPT_DATA_URL") or None,
                       offline=options.offline or env.get("PROMPTOPT_OFFLINE", "") not in ("", "0"),
                       n_train=options.n_train, n_dev=options.n_dev, n_test=options.n_test, seed=options.seed,
                       input_field=options.input_field, target_field=options.target_field,
                       metric=options.metric, labels=list(options.labels) if options.labels else None)
    return loaded if options.gold is None else loaded.with_gold(options.gold)
