"""What a run is asked to search: one task, or a set of tasks, checked by name before any data is read.

A set is written as

* a comma list, ``sst2,mr,bbh:navigate`` (in Python also a list of names or Tasks);
* a group name inside it: ``bbh:all`` (every BBH subtask whose file is in the
  data folder) or ``cls:all`` (every registered classification set);
* a task-set file (``--task-set suite.toml``), whose entries carry their own
  split sizes, answer mode and ``file:`` fields (see :func:`read_task_set`).

Unseen tasks (``--unseen``) take the same grammar and are scored only at the end.
A group leaves out the tasks named explicitly on the other side, so
``--task bbh:all --unseen bbh:navigate`` trains on the other subtasks.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

from promptopt._toml import KeyPath, Where, read_toml_file
from promptopt.exceptions import ConfigError, UnknownNameError
from promptopt.tasks._base import Task
from promptopt.tasks._bbh import BBH_SUBTASKS, check_subtask
from promptopt.tasks._classification import CLASSIFICATION_SETS
from promptopt.tasks._synthetic import SYNTHETIC_TASKS

__all__ = ["GROUPS", "MEMBER_KEYS", "MemberSpec", "SetSpec", "SpecError", "expand_members", "parse_set_spec",
           "read_task_set"]

#: group names a set may hold, expanded when the data folder is known
GROUPS = ("bbh:all", "cls:all")
#: what a task-set file may give each of its tasks (the run's value applies where it gives none)
MEMBER_KEYS = ("n_train", "n_dev", "n_test", "answer_mode", "input_field", "target_field", "metric", "labels",
               "instruction", "gold")
_SIZES = ("n_train", "n_dev", "n_test")
_ANSWER_MODES = ("auto", "generate", "choice")
_FILE_KEYS = ("name", "system", "tasks", "unseen")
_TASK_FLAG = "--task (task=)"
_UNSEEN_FLAG = "--unseen (unseen=)"


class SpecError(ConfigError):
    """A bad task spec; ``param`` names the setting it came from (``task``, ``unseen``)."""

    def __init__(self, param: str, message: str) -> None:
        super().__init__(message)
        self.param = param


class UnknownSpecName(SpecError, UnknownNameError):
    """A task spec naming a task that is not registered."""


@dataclass(frozen=True)
class MemberSpec:
    """One entry of a set: a task name, a group name or a Task, and the options it sets itself."""

    task: str | Task
    options: Mapping[str, Any] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.task if isinstance(self.task, str) else self.task.name


@dataclass(frozen=True)
class SetSpec:
    """What a run searches, as asked for: members, unseen tasks, the seed system prompt a file gives,
    a name, and whether it is a set (False: one plain task, ``members[0]``, searched as today)."""

    members: tuple[MemberSpec, ...]
    unseen: tuple[MemberSpec, ...] = ()
    system: str | None = None
    name: str = ""
    is_set: bool = True


def _param(flag: str) -> str:
    return "unseen" if flag == _UNSEEN_FLAG else "task"


def _entries(value: str | Task | Sequence[str | Task], flag: str) -> list[str | Task]:
    """The entries of a comma list (or a Python list); an empty one is an error."""
    if isinstance(value, Task):
        return [value]
    raw: list[str | Task] = list(value.split(",")) if isinstance(value, str) else list(value)
    entries = [e.strip() if isinstance(e, str) else e for e in raw]
    entries = [e for e in entries if not isinstance(e, str) or e]
    if not entries:
        raise SpecError(_param(flag), f"{flag} names no task; got {value!r}; give one or more names separated "
                                      "by commas, e.g. sst2,mr")
    return list({(e if isinstance(e, str) else id(e)): e for e in entries}.values())  # repeats once


def _known_names() -> str:
    plugins = sorted({ep.name for ep in entry_points(group="promptopt.tasks")})
    return ", ".join(["gsm8k", "bbh:<subtask>", "bbh:all", *CLASSIFICATION_SETS, "cls:all", *SYNTHETIC_TASKS,
                      "file:<path> (alone, or in a --task-set file)", *plugins])


def check_member_name(name: str, flag: str, value: object) -> None:
    """Raise, naming the member and the known names, unless ``name`` can be a member of a comma list."""
    if name in GROUPS or name == "gsm8k" or name in CLASSIFICATION_SETS or name in SYNTHETIC_TASKS:
        return
    if name.startswith("file:"):
        raise SpecError(_param(flag), f"{flag} cannot hold a file: task in a list ({name!r} in {value!r}); list "
                                      "file tasks in a task-set file with their fields (--task-set suite.toml)")
    if name.startswith("bbh:"):
        try:
            check_subtask(name.removeprefix("bbh:"))
        except UnknownNameError as exc:
            raise UnknownSpecName(_param(flag), f"{flag}: {exc}, or bbh:all") from None
        return
    if list(entry_points(group="promptopt.tasks", name=name)):
        return
    raise UnknownSpecName(_param(flag), f"{flag} names an unknown task {name!r} (in {value!r}); known tasks: "
                                        f"{_known_names()}")


def _is_set(members: Sequence[MemberSpec], unseen: Sequence[MemberSpec]) -> bool:
    return len(members) > 1 or bool(unseen) or any(m.task in GROUPS for m in members)


def parse_set_spec(task: str | Task | Sequence[str | Task], unseen: str | Sequence[str | Task] | None,
                   task_set: str | Path | None) -> SetSpec:
    """What a run's ``task``, ``unseen`` and ``task_set`` ask for: a set, or one plain task
    (one name or Task, nothing unseen, no file: ``is_set`` False).

    Only names are checked (and the task-set file read); no data is touched.

    Raises:
        UnknownNameError: an unknown task name (the message lists the known ones).
        ConfigError: an empty list, a task both searched and unseen, a ``file:`` task inside a list.
    """
    spec = read_task_set(task_set) if task_set is not None else None
    if spec is None:
        entries = _entries(task, _TASK_FLAG)
        members = tuple(MemberSpec(e) for e in entries)
        if len(entries) > 1 or any(isinstance(e, str) and e in GROUPS for e in entries):
            for e in entries:
                if isinstance(e, str):
                    check_member_name(e, _TASK_FLAG, task)
        spec = SetSpec(members, name=",".join(m.name for m in members))
    elif task != "gsm8k":  # the default task is what a task-set file replaces
        raise SpecError("task", f"--task-set (task_set=) replaces --task; got both (task={task!r}); give one "
                                "of them")
    extra = _unseen_members(unseen)
    is_set = task_set is not None or _is_set(spec.members, spec.unseen + extra)
    spec = SetSpec(spec.members, spec.unseen + extra, spec.system, spec.name, is_set)
    _check_disjoint(spec)
    return spec


def _unseen_members(unseen: str | Sequence[str | Task] | None) -> tuple[MemberSpec, ...]:
    if unseen is None:
        return ()
    entries = _entries(unseen, _UNSEEN_FLAG)
    for e in entries:
        if isinstance(e, str):
            check_member_name(e, _UNSEEN_FLAG, unseen)
    return tuple(MemberSpec(e) for e in entries)


def _check_disjoint(spec: SetSpec) -> None:
    searched = {m.name for m in spec.members}
    both = [m.name for m in spec.unseen if m.name in searched]
    if both:
        raise SpecError("unseen", f"task {both[0]!r} is both searched (--task) and unseen (--unseen); a task "
                                  "the search sees cannot measure transfer: remove it from one of them")
    names = [m.name for m in spec.unseen]
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise SpecError("unseen", f"--unseen (unseen=) names {repeated[0]!r} twice; name each unseen task once")


# --- task-set files ------------------------------------------------------------------------------


def read_task_set(path: str | Path) -> SetSpec:
    """Read a task-set file (TOML). Every error names the file, the line and the key.

    The file holds ``tasks``, a list whose entries are names or tables (``name`` plus any of
    :data:`MEMBER_KEYS`), the same for ``unseen``, and optionally ``system`` (the seed system
    prompt) and ``name`` (the set's name; default: the file's stem). ``file:`` paths are relative
    to the file's folder. A group (``bbh:all``) in a table gives each of its tasks those options.

    Example:
        >>> import pathlib, tempfile
        >>> path = pathlib.Path(tempfile.mkdtemp()) / "suite.toml"
        >>> _ = path.write_text('tasks = ["sst2", {name = "mr", n_dev = 5}]\\nunseen = ["subj"]\\n')
        >>> spec = read_task_set(path)
        >>> [m.name for m in spec.members], dict(spec.members[1].options), spec.name
        (['sst2', 'mr'], {'n_dev': 5}, 'suite')
    """
    source = str(path)
    data, lines = read_toml_file(path, "task-set file", "--task-set")
    where = Where(source, lines)
    for key in data:
        if key not in _FILE_KEYS:
            raise where.fail((key,), f"unknown key {key!r}; a task-set file has {', '.join(_FILE_KEYS)}")
    for key in ("name", "system"):
        if key in data and not isinstance(data[key], str):
            raise where.fail((key,), f"{key} must be a string; got {data[key]!r}")
    if "tasks" not in data:
        raise where.fail((), 'a task-set file needs tasks = [...] (e.g. tasks = ["sst2", "mr"])')
    folder = Path(path).parent
    members = _file_members(data["tasks"], ("tasks",), where, folder)
    if not members:
        raise where.fail(("tasks",), "tasks lists no task; give one or more")
    unseen = _file_members(data.get("unseen", []), ("unseen",), where, folder)
    return SetSpec(members, unseen, data.get("system"), data.get("name") or Path(path).stem)


def _file_members(value: object, path: KeyPath, where: Where, folder: Path) -> tuple[MemberSpec, ...]:
    if not isinstance(value, list):
        raise where.fail(path, f"{path[0]} must be a list of task names or tables; got {value!r}")
    return tuple(_file_member(item, (*path, i), where, folder) for i, item in enumerate(value))


def _file_member(item: object, path: KeyPath, where: Where, folder: Path) -> MemberSpec:
    if isinstance(item, str):
        item = {"name": item}
    if not isinstance(item, dict) or not isinstance(item.get("name"), str) or not item["name"].strip():
        raise where.fail(path, f"each entry of {path[0]} is a task name or a table with a name; got {item!r}")
    name = item["name"].strip()
    for key, value in item.items():
        if key != "name":
            _check_option(key, value, (*path, key), where)
    if name.startswith("file:"):
        file = Path(name.removeprefix("file:")).expanduser()
        name = f"file:{file if file.is_absolute() else folder / file}"
    else:
        try:
            check_member_name(name, f"{path[0]} entry", name)
        except ConfigError as exc:
            raise where.fail((*path, "name"), str(exc)) from None
    return MemberSpec(name, {k: v for k, v in item.items() if k != "name"})


def _check_option(key: str, value: object, path: KeyPath, where: Where) -> None:
    if key not in MEMBER_KEYS:
        raise where.fail(path, f"unknown key {key!r} for a task; a task may set {', '.join(MEMBER_KEYS)}")
    if key in _SIZES:
        ok = isinstance(value, int) and not isinstance(value, bool) and value >= 1
        wanted = "a whole number >= 1"
    elif key == "answer_mode":
        ok, wanted = value in _ANSWER_MODES, "auto, generate or choice"
    elif key == "labels":
        ok = isinstance(value, list) and all(isinstance(v, str) for v in value) and bool(value)
        wanted = "a list of strings"
    else:
        ok, wanted = isinstance(value, str), "a string"
    if not ok:
        raise where.fail(path, f"{key} must be {wanted}; got {value!r}")


# --- groups ---------------------------------------------------------------------------------------


def expand_members(members: Sequence[MemberSpec], data_dir: Path, *, leave_out: Sequence[str] = ()
                   ) -> tuple[MemberSpec, ...]:
    """Members with each group replaced by its tasks (minus ``leave_out``), repeats dropped.

    Raises:
        ConfigError: ``bbh:all`` and no BBH subtask in the data folder.
    """
    out: dict[str, MemberSpec] = {}
    for member in members:
        if member.task not in GROUPS:
            out.setdefault(member.name, member)
            continue
        for name in _group(str(member.task), data_dir):
            if name not in leave_out:
                out.setdefault(name, MemberSpec(name, member.options))
    return tuple(out.values())


def _group(name: str, data_dir: Path) -> list[str]:
    if name == "cls:all":
        return list(CLASSIFICATION_SETS)
    present = [f"bbh:{sub}" for sub in BBH_SUBTASKS if (data_dir / "bbh" / f"{sub}.json").is_file()]
    if not present:
        raise ConfigError(f"bbh:all means every BBH subtask in the data folder, and {data_dir / 'bbh'} has none; "
                          "name subtasks instead (e.g. bbh:navigate, downloaded on first use) or point "
                          "--data-dir (PROMPTOPT_DATA_DIR) at a folder that has them")
    return present
