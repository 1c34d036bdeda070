"""Tasks from your own JSONL or CSV file (``file:<path>``).

Each row gives an input and a target (fields ``input`` and ``target`` unless
named otherwise). Splits:

- if the rows have a ``split`` field, its value (``train``, ``dev`` or
  ``test``) places each row, and every split needs at least one row;
- otherwise the rows are shuffled with ``random.Random(0)`` (independent of the
  run seed, so the test rows never move) and dealt out 20 % test, 20 % dev
  (each rounded, at least one row) and the rest train; so at least 3 rows.

The ``seed`` argument only chooses the subsets asked for with ``n_train`` /
``n_dev`` / ``n_test`` (stratified by label when ``labels`` are declared).
Ids are ``"<split>-<row index in the file>"``. Declaring ``labels`` makes a
classification task (closed label set, choice mode possible, exact match).

Rows with a ``rejected`` field make a preference task
(:class:`~promptopt.tasks._preference.PreferenceTask`): each row pairs an input
with a preferred reply (field ``chosen``, or the one ``target_field`` names)
and a dispreferred one (``rejected``), as loss-based strategies' preference
mode reads them; choice mode then asks which of the two the model prefers.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from promptopt.exceptions import ConfigError, DataError
from promptopt.tasks._base import Splits, Task
from promptopt.tasks._classification import ClassificationTask, label_instruction
from promptopt.tasks._custom import CustomTask, check_metric
from promptopt.tasks._preference import REJECTED, PreferenceTask
from promptopt.tasks._records import Record, read_records
from promptopt.tasks._sampling import seeded_order, subset_splits
from promptopt.types import Example

__all__ = ["load_file_task"]

SPLIT_FIELD = "split"
CHOSEN_FIELD = "chosen"
DEV_FRACTION = 0.2
TEST_FRACTION = 0.2
_SPLITS = ("train", "dev", "test")
_SPLIT_SEED = 0
_INSTRUCTIONS = {
    "exact": "Reply with the answer only.",
    "contains": "Reply with the answer.",
    "numeric": 'Solve the problem. End your reply with "The answer is <number>."',
}
_PREFERENCE_INSTRUCTION = "Write a helpful reply."


def load_file_task(
    path: Path, *, input_field: str | None = None, target_field: str | None = None,
    metric: str | None = None, labels: Sequence[str] | None = None, instruction: str | None = None,
    n_train: int | None = None, n_dev: int | None = None, n_test: int | None = None, seed: int = 0,
) -> Task:
    """Build a task from a ``.jsonl`` or ``.csv`` file.

    Args:
        path: the file.
        input_field: the field holding the input (default ``input``).
        target_field: the field holding the gold answer (default ``target``).
        metric: ``exact`` (default), ``contains`` or ``numeric``.
        labels: the closed label set; every target must be one of them.
        instruction: the seed prompt's instruction.
        n_train: train size (None: all); likewise ``n_dev``, ``n_test``.
        n_dev: dev size.
        n_test: test size.
        seed: chooses the subsets.

    Returns:
        A :class:`ClassificationTask` when ``labels`` are given, a :class:`PreferenceTask`
        when the rows have a ``rejected`` field, else a :class:`CustomTask`.

    Raises:
        ConfigError: an unknown metric, labels with a metric other than ``exact``, or
            labels for a preference file.
        DataError: an unreadable or malformed file, a missing field, a target
            outside ``labels``, or an empty split (each naming the line and the fix).
    """
    metric_name = check_metric(metric or "exact")
    label_set = _check_labels(labels, metric_name)
    records = read_records(path)
    preference = any(REJECTED in r.fields for r in records)
    if preference and label_set is not None:
        raise ConfigError(f"labels do not apply to task file {path}: its rows have a {REJECTED!r} field, "
                          "which makes (chosen, rejected) preference pairs; drop the labels")
    fields = (input_field or "input", target_field or (CHOSEN_FIELD if preference else "target"))
    if not records:
        raise DataError(f"task file {path} has no rows; add rows with the fields {fields[0]!r} "
                        f"and {fields[1]!r}")
    splits = _split(path, records, fields, label_set, preference)
    splits = subset_splits(splits, n_train=n_train, n_dev=n_dev, n_test=n_test, seed=seed,
                           stratify=label_set is not None)
    name = f"file:{path}"
    if preference:
        return PreferenceTask(name, splits, metric=metric_name, instruction=instruction or _PREFERENCE_INSTRUCTION,
                              description=f"Preference pairs from {path} ({fields[1]!r} over {REJECTED!r}).")
    if label_set is not None:
        text = instruction or label_instruction("Classify the text as", label_set)
        return ClassificationTask(name, label_set, splits, instruction=text,
                                  description=f"Classification task from {path}.")
    return CustomTask(name, splits, metric=metric_name,
                      instruction=instruction or _INSTRUCTIONS[metric_name],
                      description=f"Task from {path} ({metric_name} match).")


def _check_labels(labels: Sequence[str] | None, metric: str) -> tuple[str, ...] | None:
    if labels is None:
        return None
    if isinstance(labels, str) or not labels:
        raise ConfigError(f"labels must be a non-empty list of label strings; got {labels!r}")
    if metric != "exact":
        raise ConfigError(f"labels make a classification task scored by exact label match; "
                          f"got metric {metric!r}: drop the metric or the labels")
    return tuple(str(label) for label in labels)


def _field(path: Path, record: Record, name: str) -> str:
    value = record.fields.get(name)
    if value is None:
        present = ", ".join(repr(k) for k in record.fields) or "none"
        raise DataError(f"line {record.line} of {path} has no field {name!r} (fields: {present}); "
                        "name the right one with --input-field / --target-field "
                        "(input_field= / target_field= in Python)")
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


def _example(path: Path, record: Record, index: int, split: str, fields: tuple[str, str],
             labels: tuple[str, ...] | None, preference: bool = False) -> Example:
    text = _field(path, record, fields[0])
    target = _field(path, record, fields[1])
    if labels is not None and target not in labels:
        raise DataError(f"line {record.line} of {path} has target {target!r}, not one of the "
                        f"declared labels ({', '.join(labels)}); fix the row or the labels")
    meta: dict[str, Any] = {"line": record.line}
    if preference:
        if record.fields.get(REJECTED) is None:
            raise DataError(f"line {record.line} of {path} has no {REJECTED!r} field; in a preference file "
                            f"(rows with {REJECTED!r}) every row needs {fields[1]!r} and {REJECTED!r}")
        meta[REJECTED] = _field(path, record, REJECTED)
    return Example(f"{split}-{index}", text, target, meta)


def _split(path: Path, records: list[Record], fields: tuple[str, str],
           labels: tuple[str, ...] | None, preference: bool = False) -> Splits:
    if any(SPLIT_FIELD in r.fields for r in records):
        names = [_split_value(path, r) for r in records]
        how = (f'add rows with "{SPLIT_FIELD}": "{{split}}", or drop the {SPLIT_FIELD!r} field '
               "to let promptopt split the rows")
    else:
        names = _seeded_split_names(len(records))
        how = "add rows: a file without a 'split' field needs at least 3"
    parts: dict[str, list[Example]] = {s: [] for s in _SPLITS}
    for index, (record, split) in enumerate(zip(records, names, strict=True)):
        parts[split].append(_example(path, record, index, split, fields, labels, preference))
    for split in _SPLITS:
        if not parts[split]:
            raise DataError(f"the {split} split of task file {path} is empty ({len(records)} rows); "
                            + how.format(split=split))
    return Splits(tuple(parts["train"]), tuple(parts["dev"]), tuple(parts["test"]))


def _split_value(path: Path, record: Record) -> str:
    value = str(record.fields.get(SPLIT_FIELD) or "").strip().lower()
    if value not in _SPLITS:
        raise DataError(f"line {record.line} of {path} has {SPLIT_FIELD} "
                        f"{record.fields.get(SPLIT_FIELD)!r}; use one of {', '.join(_SPLITS)} "
                        "in every row, or no split field at all")
    return value


def _seeded_split_names(n: int) -> list[str]:
    n_test = max(1, round(TEST_FRACTION * n)) if n else 0
    n_dev = max(1, round(DEV_FRACTION * n)) if n > 1 else 0
    names = [""] * n
    for rank, index in enumerate(seeded_order(n, _SPLIT_SEED)):
        names[index] = "test" if rank < n_test else "dev" if rank < n_test + n_dev else "train"
    return names
