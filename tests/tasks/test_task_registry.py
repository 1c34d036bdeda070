"""load_task / list_tasks: names, pass-through, errors, plugins via a real entry point."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

import promptopt.tasks
from promptopt.exceptions import ConfigError, UnknownNameError
from promptopt.tasks import BBHTask, GSM8KTask, Task, TaskInfo, list_tasks, load_task, make_sentiment_task


def test_public_names_are_pinned() -> None:
    assert sorted(promptopt.tasks.__all__) == [
        "BBHTask", "ClassificationTask", "CustomTask", "DataStore", "GSM8KTask", "SetMember", "Splits", "Task",
        "TaskInfo", "TaskSet", "default_data_dir", "list_tasks", "load_file_task", "load_task",
        "make_arithmetic_task", "make_sentiment_task", "sample_examples",
    ]


def test_list_tasks() -> None:
    infos = list_tasks()
    names = [info.name for info in infos]
    assert len(names) == len(set(names))
    assert {"gsm8k", "bbh:navigate", "bbh:word_sorting", "sst2", "sst-5", "synthetic:sentiment",
            "synthetic:arithmetic", "file:<path>"} <= set(names)
    assert sum(n.startswith("bbh:") for n in names) == 24
    by_name = {info.name: info for info in infos}
    assert by_name["gsm8k"].answer == "number" and by_name["bbh:snarks"].answer == "choice"
    assert by_name["bbh:navigate"].labels == ("Yes", "No")
    with pytest.raises(AttributeError):
        by_name["gsm8k"].name = "x"  # type: ignore[misc]
    assert isinstance(infos[0], TaskInfo)


def test_names_load_the_right_tasks(data_dir: Path) -> None:
    gsm8k = load_task("gsm8k", data_dir=data_dir, offline=True, n_train=3, n_dev=3, n_test=3)
    assert isinstance(gsm8k, GSM8KTask) and len(gsm8k.splits.train) == 3
    bbh = load_task("bbh:navigate", data_dir=data_dir, offline=True, n_test=7, seed=1)
    assert isinstance(bbh, BBHTask) and bbh.name == "bbh:navigate" and len(bbh.splits.test) == 7
    synthetic = load_task("synthetic:sentiment", data_dir=data_dir / "nowhere", n_dev=9, seed=4)
    assert synthetic.splits == make_sentiment_task(n_dev=9, seed=4).splits


def test_instance_passes_through_unchanged(tmp_path: Path) -> None:
    task = make_sentiment_task(n_test=3)
    assert load_task(task, data_dir=tmp_path, n_test=1, seed=5) is task


def test_unknown_names(tmp_path: Path) -> None:
    with pytest.raises(UnknownNameError, match=r"unknown task 'gsm9k'; known tasks: gsm8k, bbh:<subtask>, sst2"):
        load_task("gsm9k", data_dir=tmp_path)
    with pytest.raises(UnknownNameError, match="known: boolean_expressions, disambiguation_qa"):
        load_task("bbh:nope", data_dir=tmp_path)
    with pytest.raises(UnknownNameError, match="known: boolean_expressions"):
        load_task("bbh", data_dir=tmp_path)


def test_options_that_do_not_apply_and_bad_sizes(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="metric apply only to file:<path> tasks; got task 'sst2'"):
        load_task("sst2", data_dir=tmp_path, metric="exact")
    with pytest.raises(ConfigError, match="n_dev parameter .* got 0"):
        load_task("synthetic:arithmetic", data_dir=tmp_path, n_dev=0)
    with pytest.raises(ConfigError, match="a task must be a name or a Task instance"):
        load_task(42, data_dir=tmp_path)  # type: ignore[arg-type]


PLUGIN = '''
from promptopt.tasks import make_sentiment_task

def build(n_test=None, seed=0):
    task = make_sentiment_task(n_test=n_test, seed=seed)
    task.name = "toy"
    return task

def broken():
    return "not a task"
'''


@pytest.fixture
def plugin_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A module plus a dist-info declaring two ``promptopt.tasks`` entry points, on sys.path."""
    (tmp_path / "toy_task_plugin.py").write_text(PLUGIN, "utf-8")
    dist = tmp_path / "toy_task_plugin-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: toy-task-plugin\nVersion: 0.1\n", "utf-8")
    (dist / "entry_points.txt").write_text(textwrap.dedent("""\
        [promptopt.tasks]
        toy = toy_task_plugin:build
        toy-broken = toy_task_plugin:broken
        toy-missing = toy_task_plugin_absent:build
        """), "utf-8")
    monkeypatch.syspath_prepend(str(tmp_path))
    return tmp_path


def test_plugin_tasks(plugin_path: Path) -> None:
    task = load_task("toy", data_dir=plugin_path, n_test=5, seed=2)
    assert isinstance(task, Task) and task.name == "toy" and len(task.splits.test) == 5
    assert "toy" in [info.name for info in list_tasks()]
    with pytest.raises(ConfigError, match="returned str, not a Task"):
        load_task("toy-broken", data_dir=plugin_path)
    with pytest.raises(ConfigError, match="failed to import"):
        load_task("toy-missing", data_dir=plugin_path)
    with pytest.raises(UnknownNameError, match="toy, toy-broken, toy-missing"):
        load_task("toy-other", data_dir=plugin_path)
