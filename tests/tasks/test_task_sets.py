"""Task sets without a model: specs checked by name, groups, task-set files, namespaced ids, routing, means."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from promptopt.default_system import default_system_text
from promptopt.exceptions import ConfigError, UnknownNameError
from promptopt.history import History
from promptopt.prompt import Prompt
from promptopt.stats import Score, summarize
from promptopt.task_options import TaskOptions, load_task_set
from promptopt.tasks import ClassificationTask, Splits, TaskSet
from promptopt.tasks._bbh import BBH_SUBTASKS
from promptopt.tasks._classification import CLASSIFICATION_SETS
from promptopt.tasks._set import combine_scores, mean_of_task_means
from promptopt.tasks._spec import expand_members, parse_set_spec, read_task_set
from promptopt.types import Example, Message


def _task(name: str, n_dev: int = 3, n_test: int = 2, instruction: str = "") -> ClassificationTask:
    """A two-label task whose ids are those of every other task made here (dev-0, dev-1, ...)."""
    def split(kind: str, n: int) -> tuple[Example, ...]:
        return tuple(Example(f"{kind}-{i}", f"{name} {kind} {i}", "yes" if i % 2 else "no") for i in range(n))

    splits = Splits(split("train", 4), split("dev", n_dev), split("test", n_test))
    return ClassificationTask(name, ("yes", "no"), splits, instruction=instruction or f"Answer about {name}.")


# --- ids and routing ------------------------------------------------------------------------------

def test_ids_are_namespaced_by_task_and_never_collide() -> None:
    a, b = _task("a"), _task("b", n_dev=2)
    assert a.splits.dev[0].id == b.splits.dev[0].id == "dev-0"  # the tasks' own ids collide
    both = TaskSet([a, b], unseen=[_task("u")])
    ids = [ex.id for ex in both.splits.dev]
    assert ids == ["a/dev-0", "a/dev-1", "a/dev-2", "b/dev-0", "b/dev-1"]
    every = [ex.id for split in (both.splits.train, both.splits.dev, both.splits.test) for ex in split]
    every += [ex.id for ex in both.unseen_tests["u"]]
    assert len(every) == len(set(every)) == (4 + 4) + (3 + 2) + (2 + 2) + 2
    assert both.member_of(both.splits.dev[3]).name == "b"
    assert both.task_of == {ex.id: ex.id.split("/")[0] for ex in (*both.splits.train, *both.splits.dev,
                                                                  *both.splits.test)}


def test_a_set_of_one_keeps_its_tasks_ids_but_unseen_tasks_are_namespaced() -> None:
    a = _task("a")
    one = TaskSet([a], unseen=[_task("u")])
    assert one.splits == a.splits  # same ids, so the same cache keys and memo entries
    assert [ex.id for ex in one.unseen_tests["u"]] == ["u/test-0", "u/test-1"]


def test_an_example_is_asked_with_its_tasks_seed_prompt_under_the_candidates_system_text() -> None:
    a, b = _task("a", instruction="Instruction A."), _task("b", instruction="Instruction B.")
    both = TaskSet([a, b])
    candidate = Prompt(system="Shared text.")
    ex_b = both.splits.dev[4]
    assert both.render(candidate, ex_b) == b.render(dataclasses.replace(b.seed_prompt, system="Shared text."), ex_b)
    assert both.render(candidate, ex_b)[0] == Message("system", "Shared text.")
    assert "Instruction B." in both.render(candidate, ex_b)[1].content
    assert both.metric("yes", ex_b) == b.metric("yes", ex_b) and both.choices(ex_b) == ("yes", "no")
    with pytest.raises(TypeError, match="member_of"):
        both.parse("yes")


def test_two_tasks_with_one_name_are_refused() -> None:
    with pytest.raises(ConfigError, match="two tasks of the set are named 'a'"):
        TaskSet([_task("a"), _task("a")])


# --- the score of a set ---------------------------------------------------------------------------

def test_a_sets_score_is_the_mean_of_per_task_means_whatever_their_sizes() -> None:
    both = TaskSet([_task("big", n_dev=6), _task("small", n_dev=2)])
    scores = {ex.id: (1.0 if ex.id.startswith("big/") else 0.0) for ex in both.splits.dev}
    assert mean_of_task_means(scores, both.task_of) == 0.5  # pooled, it would be 6/8
    history = History(tuple(scores), both.task_of)
    history.add_dev_scores(both.seed_prompt, scores)
    (cand,) = history.fully_scored()
    assert cand.dev_mean() == 0.5 and cand.dev_task_means() == {"big": 1.0, "small": 0.0}


def test_combined_test_score_is_the_mean_of_task_scores_with_an_interval_from_both() -> None:
    big, small = summarize([1.0] * 30 + [0.0] * 10), summarize([0.0, 1.0])
    both = combine_scores([big, small])
    assert both.mean == pytest.approx((big.mean + small.mean) / 2) and both.n == 42
    assert both.low < both.mean < both.high
    assert both.high - both.low > big.high - big.low  # the small task's uncertainty carries over
    assert combine_scores([Score(0.5, 0.4, 0.6, 10)]) == Score(0.5, 0.4, 0.6, 10)


# --- specs, checked by name before any data -------------------------------------------------------

def test_comma_lists_and_python_lists_make_sets_and_one_name_stays_a_plain_task() -> None:
    assert parse_set_spec("sst2", None, None).is_set is False
    assert parse_set_spec("sst2,", None, None).members[0].task == "sst2"
    spec = parse_set_spec(" sst2, mr ,bbh:navigate", None, None)
    assert spec.is_set and [m.name for m in spec.members] == ["sst2", "mr", "bbh:navigate"]
    assert parse_set_spec(["sst2", "mr"], "subj", None).unseen[0].name == "subj"
    assert parse_set_spec("sst2", "subj", None).is_set  # unseen tasks make it a set
    assert parse_set_spec("cls:all", None, None).is_set


@pytest.mark.parametrize(("task", "unseen", "kind", "fragments"), [
    ("sst2,sst3", None, UnknownNameError, ["'sst3'", "known tasks", "cls:all", "bbh:all", "gsm8k"]),
    ("sst2,bbh:nope", None, UnknownNameError, ["'nope'", "navigate"]),
    (",", None, ConfigError, ["--task", "names no task", "','"]),
    ("sst2,mr", "mr", ConfigError, ["'mr'", "both", "--unseen"]),
    ("sst2,file:data.jsonl", None, ConfigError, ["file:data.jsonl", "cannot hold a file: task", "--task-set"]),
    ("sst2,mr", "subj,nope", UnknownNameError, ["--unseen", "'nope'"]),
    ("sst2,mr", " , ", ConfigError, ["--unseen", "names no task"]),
], ids=["unknown", "unknown-bbh", "empty", "both", "file-in-list", "unknown-unseen", "empty-unseen"])
def test_bad_specs_are_refused_by_name(task: str, unseen: str | None, kind: type[Exception],
                                       fragments: list[str]) -> None:
    with pytest.raises(kind) as caught:
        parse_set_spec(task, unseen, None)
    assert all(f in str(caught.value) for f in fragments), str(caught.value)


def test_bbh_all_is_every_subtask_in_the_data_folder(data_dir: Path, tmp_path: Path) -> None:
    present = sorted(p.stem for p in (data_dir / "bbh").glob("*.json") if p.stem in BBH_SUBTASKS)
    assert len(present) > 2
    loaded = load_task_set(parse_set_spec("bbh:all", "bbh:navigate", None), TaskOptions(n_dev=2, n_test=2,
                                                                                         data_dir=data_dir))
    assert sorted(m.name for m in loaded.members) == sorted(f"bbh:{s}" for s in present if s != "navigate")
    assert [m.name for m in loaded.unseen] == ["bbh:navigate"]  # the group leaves the unseen task out
    (tmp_path / "bbh").mkdir()
    for name in present[:2]:
        (tmp_path / "bbh" / f"{name}.json").write_bytes((data_dir / "bbh" / f"{name}.json").read_bytes())
    assert [m.name for m in expand_members(parse_set_spec("bbh:all", None, None).members, tmp_path)] == \
        [f"bbh:{s}" for s in present[:2]]
    with pytest.raises(ConfigError, match="bbh:all .* has none"):
        expand_members(parse_set_spec("bbh:all", None, None).members, tmp_path / "empty")


def test_cls_all_is_every_registered_classification_set(data_dir: Path) -> None:
    loaded = load_task_set(parse_set_spec("cls:all,sst2", None, None), TaskOptions(n_dev=2, n_test=2,
                                                                                    data_dir=data_dir))
    assert [m.name for m in loaded.members] == list(CLASSIFICATION_SETS)  # sst2 once


# --- task-set files -------------------------------------------------------------------------------

def test_a_task_set_file_gives_each_task_its_own_options(tmp_path: Path, data_dir: Path) -> None:
    rows = [{"q": f"question {i}", "a": "yes" if i % 2 else "no"} for i in range(12)]
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "qa.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    suite = tmp_path / "suite.toml"
    suite.write_text('system = "Be careful."\n'
                     '[[tasks]]\nname = "sst2"\n'
                     '[[tasks]]\nname = "mr"\nn_dev = 3\nanswer_mode = "generate"\n'
                     '[[tasks]]\nname = "file:data/qa.jsonl"\ninput_field = "q"\ntarget_field = "a"\n'
                     'labels = ["yes", "no"]\n'
                     '[[unseen]]\nname = "subj"\nn_test = 4\n')
    spec = parse_set_spec("gsm8k", None, suite)
    assert spec.system == "Be careful." and spec.name == "suite"
    loaded = load_task_set(spec, TaskOptions(n_dev=5, n_test=2, data_dir=data_dir))
    sizes = {m.name: (len(m.task.splits.dev), len(m.task.splits.test), m.answer_mode) for m in loaded.members}
    assert sizes["sst2"] == (5, 2, None) and sizes["mr"] == (3, 2, "generate")
    assert [len(t) for t in loaded.unseen_tests.values()] == [4]
    file_member = loaded.members[2]
    assert file_member.task.labels == ("yes", "no")  # the path is relative to the file's folder
    assert loaded.to_config()["members"][1] == {"name": "mr", "answer_mode": "generate", "n_dev": 3}


@pytest.mark.parametrize(("text", "fragments"), [
    ('tasks = ["sst2"]\nbogus = 1\n', ["line 2", "unknown key 'bogus'"]),
    ('tasks = [{name = "sst2", n_dev = 0}]\n', ["line 1", "n_dev", ">= 1"]),
    ('tasks = [{name = "sst2", colour = "red"}]\n', ["unknown key 'colour'"]),
    ('system = "x"\n', ["tasks = [...]"]),
    ('tasks = []\n', ["no task"]),
    ('tasks = ["sst2", "nope"]\n', ["line 1", "'nope'", "known tasks"]),
    ('tasks = [{name = "sst2", answer_mode = "vote"}]\n', ["answer_mode", "auto, generate or choice"]),
], ids=["unknown-key", "bad-size", "unknown-task-key", "no-tasks", "empty", "unknown-task", "bad-mode"])
def test_task_set_file_errors_name_the_file_and_line(tmp_path: Path, text: str, fragments: list[str]) -> None:
    path = tmp_path / "suite.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as caught:
        read_task_set(path)
    assert str(path) in str(caught.value) and all(f in str(caught.value) for f in fragments), str(caught.value)


def test_a_task_set_file_replaces_the_task_setting(tmp_path: Path) -> None:
    path = tmp_path / "suite.toml"
    path.write_text('tasks = ["sst2"]\n')
    with pytest.raises(ConfigError, match="replaces --task"):
        parse_set_spec("mr", None, path)


# --- the seed system prompt -----------------------------------------------------------------------

def test_the_default_system_text_is_read_from_the_chat_template() -> None:
    def with_default(messages: list[Message]) -> str:
        head = "" if messages[0].role == "system" else "<s>system\nYou are a helpful bot.</s>"
        return head + "".join(f"<s>{m.role}\n{m.content}</s>" for m in messages) + "<s>assistant\n"

    def without_default(messages: list[Message]) -> str:
        return "".join(f"<s>{m.role}\n{m.content}</s>" for m in messages) + "<s>assistant\n"

    assert default_system_text(with_default) == "You are a helpful bot."
    assert default_system_text(without_default) == ""
