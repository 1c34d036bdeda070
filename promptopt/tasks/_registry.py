"""Task names → tasks: built-ins, ``file:<path>``, and plugins.

Third-party packages add tasks through the ``promptopt.tasks`` entry-point
group. The entry point's name is the task name; its object is a callable
(often a :class:`Task` subclass) that returns a :class:`Task` instance or a
``Task`` subclass (which is then instantiated with no arguments). It is called
with those of ``data_dir``, ``base_url``, ``offline``, ``n_train``, ``n_dev``,
``n_test`` and ``seed`` that its signature names. Built-in names win over
plugins of the same name.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from importlib.metadata import EntryPoint, entry_points
from pathlib import Path
from typing import Any, Literal

from promptopt.exceptions import ConfigError, UnknownNameError
from promptopt.tasks._base import Task
from promptopt.tasks._bbh import BBH_SUBTASKS, BBHTask, check_subtask
from promptopt.tasks._classification import CLASSIFICATION_SETS, ClassificationTask
from promptopt.tasks._download import DataStore
from promptopt.tasks._file import load_file_task
from promptopt.tasks._gsm8k import GSM8KTask
from promptopt.tasks._synthetic import SYNTHETIC_TASKS

__all__ = ["ENTRY_POINT_GROUP", "AnswerKind", "TaskInfo", "list_tasks", "load_task"]

ENTRY_POINT_GROUP = "promptopt.tasks"
AnswerKind = Literal["number", "label", "choice", "text"]
_BBH_KINDS: dict[str, AnswerKind] = {"choice": "choice", "binary": "label", "number": "number",
                                     "text": "text"}
#: the label sets in each classification set's labels.json, for listings without data
_CLS_LABELS: dict[str, tuple[str, ...]] = {
    "sst2": ("negative", "positive"), "subj": ("subjective", "objective"),
    "agnews": ("World", "Sports", "Business", "Tech"),
    "trec": ("Description", "Entity", "Expression", "Human", "Location", "Number"),
    "sst-5": ("terrible", "bad", "okay", "good", "great"), "mr": ("negative", "positive"),
}


@dataclass(frozen=True)
class TaskInfo:
    """One entry of :func:`list_tasks`.

    Attributes:
        name: what to pass to :func:`load_task`.
        description: one line for people.
        answer: ``number``, ``label`` (closed label set), ``choice`` (option
            letters per example), ``text``, or None for plugins (unknown until loaded).
        labels: the closed label set, when the task has one.
    """

    name: str
    description: str
    answer: AnswerKind | None
    labels: tuple[str, ...] | None = None


def _builtin_infos() -> list[TaskInfo]:
    infos = [TaskInfo("gsm8k", GSM8KTask.description, "number")]
    for sub, (kind, words) in BBH_SUBTASKS.items():
        infos.append(TaskInfo(f"bbh:{sub}", f"BIG-Bench Hard subtask {sub} ({kind} answers).",
                              _BBH_KINDS[kind], words))
    for name, (_, description) in CLASSIFICATION_SETS.items():
        infos.append(TaskInfo(name, description, "label", _CLS_LABELS[name]))
    infos.append(TaskInfo("synthetic:sentiment", "Synthetic sentence sentiment (2 classes); "
                          "no download.", "label", ("negative", "positive")))
    infos.append(TaskInfo("synthetic:arithmetic", "Synthetic two-number addition; no download.",
                          "number"))
    infos.append(TaskInfo("file:<path>", "Your JSONL or CSV file (fields input/target; metric "
                          "exact, contains or numeric; optional labels; or input/chosen/rejected "
                          "preference pairs).", "text"))
    return infos


def list_tasks() -> list[TaskInfo]:
    """Every task name :func:`load_task` accepts: built-ins, then installed plugins.

    Example:
        >>> [t.name for t in list_tasks()][:2]
        ['gsm8k', 'bbh:boolean_expressions']
    """
    infos = _builtin_infos()
    known = {info.name for info in infos}
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        if ep.name not in known:
            known.add(ep.name)
            infos.append(TaskInfo(ep.name, f"Plugin task from {ep.value}.", None))
    return infos


def load_task(
    name_or_task: str | Task, *, data_dir: Path, base_url: str | None = None,
    offline: bool = False, n_train: int | None = None, n_dev: int | None = None,
    n_test: int | None = None, seed: int = 0, input_field: str | None = None,
    target_field: str | None = None, metric: str | None = None,
    labels: Sequence[str] | None = None, instruction: str | None = None,
) -> Task:
    """A task by name (see :func:`list_tasks`); a :class:`Task` instance passes through unchanged.

    Args:
        name_or_task: e.g. ``"gsm8k"``, ``"bbh:navigate"``, ``"sst2"``,
            ``"synthetic:sentiment"``, ``"file:data/qa.jsonl"``, a plugin name, or a Task.
        data_dir: where dataset files are (or are downloaded to).
        base_url: a mirror root with the data folder's layout; replaces every source.
        offline: never download; a missing file is an error.
        n_train: train size (None: all; synthetic tasks have defaults). Likewise n_dev, n_test.
        n_dev: dev size.
        n_test: test size.
        seed: chooses the subsets (and generates synthetic tasks).
        input_field: ``file:`` tasks only; also target_field, metric, labels, instruction.
        target_field: see :func:`~promptopt.tasks._file.load_file_task`.
        metric: ``exact``, ``contains`` or ``numeric``.
        labels: the closed label set of a file task.
        instruction: the seed prompt's instruction for a file task.

    Raises:
        UnknownNameError: an unknown name (the message lists the known ones).
        ConfigError: options that do not apply, bad sizes.
        DataError: data files missing, corrupt or malformed.

    Example:
        >>> task = load_task("synthetic:arithmetic", data_dir=Path("."), n_dev=5)
        >>> task.name, len(task.splits.dev)
        ('synthetic:arithmetic', 5)
    """
    if isinstance(name_or_task, Task):
        return name_or_task
    if not isinstance(name_or_task, str):
        raise ConfigError(f"a task must be a name or a Task instance; got {type(name_or_task).__name__}")
    name = name_or_task.strip()
    sizes: dict[str, Any] = {"n_train": n_train, "n_dev": n_dev, "n_test": n_test, "seed": seed}
    if name.startswith("file:"):
        return load_file_task(Path(name.removeprefix("file:")).expanduser(),
                              input_field=input_field, target_field=target_field, metric=metric,
                              labels=labels, instruction=instruction, **sizes)
    file_options = {"input_field": input_field, "target_field": target_field, "metric": metric,
                    "labels": labels, "instruction": instruction}
    given = [k for k, v in file_options.items() if v is not None]
    if given:
        raise ConfigError(f"the option(s) {', '.join(given)} apply only to file:<path> tasks; "
                          f"got task {name!r}")
    store_args = {"data_dir": data_dir, "base_url": base_url, "offline": offline}
    return _load_named(name, store_args, sizes)


def _load_named(name: str, store_args: dict[str, Any], sizes: dict[str, Any]) -> Task:
    def store() -> DataStore:
        return DataStore(Path(store_args["data_dir"]), base_url=store_args["base_url"],
                         offline=store_args["offline"])

    if name == "gsm8k":
        return GSM8KTask.load(store(), **sizes)
    if name.startswith("bbh:") or name == "bbh":
        subtask = name.removeprefix("bbh").removeprefix(":")
        check_subtask(subtask)
        return BBHTask.load(store(), subtask, **sizes)
    if name in CLASSIFICATION_SETS:
        return ClassificationTask.load(store(), name, **sizes)
    if name in SYNTHETIC_TASKS:
        return SYNTHETIC_TASKS[name](**sizes)
    plugin = _entry_point(name)
    if plugin is None:
        known = ", ".join(["gsm8k", "bbh:<subtask>", *CLASSIFICATION_SETS, *SYNTHETIC_TASKS,
                           "file:<path>", *_plugin_names()])
        raise UnknownNameError(f"unknown task {name!r}; known tasks: {known} "
                               "(list_tasks() or `promptopt tasks` shows them all)")
    return _load_plugin(plugin, {**store_args, **sizes})


def _plugin_names() -> list[str]:
    return sorted({ep.name for ep in entry_points(group=ENTRY_POINT_GROUP)})


def _entry_point(name: str) -> EntryPoint | None:
    matches = list(entry_points(group=ENTRY_POINT_GROUP, name=name))
    return matches[0] if matches else None


def _load_plugin(ep: EntryPoint, options: dict[str, Any]) -> Task:
    try:
        factory = ep.load()
    except Exception as exc:  # a broken plugin must not look like a promptopt bug
        raise ConfigError(f"task plugin {ep.name!r} ({ep.value}) failed to import ({exc!r}); "
                          "reinstall or remove the package that provides it") from exc
    if not callable(factory):
        raise ConfigError(f"task plugin {ep.name!r} ({ep.value}) is not callable; it must be a "
                          "Task subclass or a function returning a Task")
    result = factory(**_accepted(factory, options))
    if isinstance(result, type) and issubclass(result, Task):
        result = result()
    if not isinstance(result, Task):
        raise ConfigError(f"task plugin {ep.name!r} ({ep.value}) returned "
                          f"{type(result).__name__}, not a Task")
    return result


def _accepted(factory: Callable[..., Any], options: dict[str, Any]) -> dict[str, Any]:
    """The options ``factory``'s signature names (all of them if it takes ``**kwargs``)."""
    try:
        params = inspect.signature(factory).parameters
    except (TypeError, ValueError):
        return {}
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return options
    return {k: v for k, v in options.items() if k in params}
