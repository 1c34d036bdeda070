"""Tasks: datasets with splits, prompt rendering, answer parsing and a metric.

Several tasks searched with one shared system prompt are a :class:`TaskSet`.
Load one by name with :func:`load_task` (``gsm8k``, ``bbh:<subtask>``,
``sst2``/``subj``/``agnews``/``trec``/``sst-5``/``mr``, ``synthetic:sentiment``,
``synthetic:arithmetic``, ``file:<path>``, or a plugin from the
``promptopt.tasks`` entry-point group); :func:`list_tasks` shows them all.
Real datasets come through a :class:`DataStore`, which downloads each file
once and checks its SHA-256.

Example:
    >>> from pathlib import Path
    >>> task = load_task("synthetic:sentiment", data_dir=Path("."), n_test=10)
    >>> task.parse("Positive!"), len(task.splits.test)
    ('positive', 10)
"""

from __future__ import annotations

from promptopt.tasks._base import Splits, Task
from promptopt.tasks._bbh import BBHTask
from promptopt.tasks._classification import ClassificationTask
from promptopt.tasks._custom import CustomTask
from promptopt.tasks._download import DataStore, default_data_dir
from promptopt.tasks._file import load_file_task
from promptopt.tasks._gsm8k import GSM8KTask
from promptopt.tasks._registry import TaskInfo, list_tasks, load_task
from promptopt.tasks._sampling import sample_examples
from promptopt.tasks._set import SetMember, TaskSet
from promptopt.tasks._synthetic import make_arithmetic_task, make_sentiment_task

__all__ = [
    "BBHTask",
    "ClassificationTask",
    "CustomTask",
    "DataStore",
    "GSM8KTask",
    "SetMember",
    "Splits",
    "Task",
    "TaskInfo",
    "TaskSet",
    "default_data_dir",
    "list_tasks",
    "load_file_task",
    "load_task",
    "make_arithmetic_task",
    "make_sentiment_task",
    "sample_examples",
]
