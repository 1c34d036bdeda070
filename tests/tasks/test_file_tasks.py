"""file:<path> tasks: JSONL and CSV, split fields, metrics, labels, and every bad-input error."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from promptopt.exceptions import ConfigError, DataError
from promptopt.tasks import ClassificationTask, CustomTask, load_file_task, load_task


def _jsonl(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), "utf-8")
    return path


def _qa_rows(n: int) -> list[dict[str, Any]]:
    return [{"question": f"What is {i} + 1?", "answer": i + 1} for i in range(n)]


def test_jsonl_seeded_split(tmp_path: Path) -> None:
    path = _jsonl(tmp_path / "qa.jsonl", _qa_rows(10))
    task = load_task(f"file:{path}", data_dir=tmp_path, input_field="question", target_field="answer",
                     metric="numeric", instruction="Add one.")
    assert isinstance(task, CustomTask) and task.name == f"file:{path}"
    s = task.splits
    assert (len(s.train), len(s.dev), len(s.test)) == (6, 2, 2)
    assert sorted(int(e.id.split("-")[1]) for e in s.train + s.dev + s.test) == list(range(10))
    assert s.test == load_file_task(path, input_field="question", target_field="answer", seed=9).splits.test
    example = s.test[0]
    assert example.target == str(int(example.input.split()[2]) + 1)  # JSON numbers become text
    assert task.metric(task.parse(f"So the answer is {example.target}.0"), example) == 1.0
    assert task.seed_prompt.instruction == "Add one."


def test_csv_with_split_column_and_labels(tmp_path: Path) -> None:
    path = tmp_path / "reviews.csv"
    path.write_text(
        'text,label,split\n'
        '"Great, really great",pos,train\n'
        'awful,neg,train\n'
        'fine film,pos,dev\n'
        'dull,neg,dev\n'
        'loved it,pos,test\n'
        '"bad, bad",neg,TEST\n', "utf-8")
    task = load_file_task(path, input_field="text", target_field="label", labels=["neg", "pos"])
    assert isinstance(task, ClassificationTask) and task.labels == ("neg", "pos")
    s = task.splits
    assert [e.input for e in s.train] == ["Great, really great", "awful"]
    assert [e.id for e in s.test] == ["test-4", "test-5"] and s.test[1].meta["line"] == 7
    assert task.choices(s.dev[0]) == ("neg", "pos") and "neg or pos" in task.seed_prompt.instruction
    assert task.metric(task.parse("POS"), s.test[0]) == 1.0


def test_sizes_are_stratified_with_labels(tmp_path: Path) -> None:
    rows = [{"input": f"t{i}", "target": "a" if i < 80 else "b", "split": "train"} for i in range(100)]
    rows += [{"input": "d", "target": "a", "split": "dev"}, {"input": "e", "target": "b", "split": "test"}]
    path = _jsonl(tmp_path / "grouped.jsonl", rows)
    for seed in range(5):
        task = load_file_task(path, labels=["a", "b"], n_train=10, seed=seed)
        assert [e.target for e in task.splits.train].count("b") == 2


@pytest.mark.parametrize(("metric", "reply", "target", "score"), [
    ("exact", "Paris", "paris", 1.0),
    ("exact", "So the answer is Paris.", "Paris", 1.0),
    ("exact", "Paris, France", "Paris", 0.0),
    ("contains", "It is Paris, France", "paris", 1.0),
    ("contains", "It is Lyon", "Paris", 0.0),
    ("numeric", "about 1,000", "1000", 1.0),
    ("numeric", "12", "13", 0.0),
])
def test_metrics(tmp_path: Path, metric: str, reply: str, target: str, score: float) -> None:
    path = _jsonl(tmp_path / "t.jsonl", [{"input": "q", "target": target}] * 3)
    task = load_file_task(path, metric=metric)
    example = task.splits.test[0]
    assert task.metric(task.parse(reply), example) == score


def _error(path: Path, **options: Any) -> str:
    with pytest.raises(DataError) as info:
        load_file_task(path, **options)
    message = str(info.value)
    assert "\n" not in message
    return message


def test_unreadable_and_wrong_extension(tmp_path: Path) -> None:
    message = _error(tmp_path / "missing.jsonl")
    assert "cannot read task file" in message and "missing.jsonl" in message
    (tmp_path / "data.txt").write_text("x", "utf-8")
    with pytest.raises(ConfigError, match=r"must end in \.jsonl or \.csv; got '\.txt'"):
        load_file_task(tmp_path / "data.txt")


def test_bad_json_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text('{"input": "a", "target": "b"}\n\n{"input": "a", "target": \n', "utf-8")
    assert "line 3 of" in _error(path) and "not valid JSON" in _error(path)
    path.write_text('{"input": "a", "target": "b"}\n["a", "b"]\n', "utf-8")
    assert "line 2 of" in _error(path) and "not an object" in _error(path)


@pytest.mark.parametrize("suffix", [".jsonl", ".csv"])
def test_non_utf8_line(tmp_path: Path, suffix: str) -> None:
    path = tmp_path / f"latin1{suffix}"
    if suffix == ".jsonl":
        path.write_bytes(b'{"input": "ok", "target": "x"}\n{"input": "caf\xe9", "target": "x"}\n')
        expected = "line 2 of"
    else:
        path.write_bytes(b"input,target\nok,x\nmore,y\ncaf\xe9,x\n")
        expected = "line 4 of"
    message = _error(path)
    assert expected in message and "not valid UTF-8" in message and "0xe9" in message


def test_missing_field_names_field_line_and_existing_fields(tmp_path: Path) -> None:
    path = _jsonl(tmp_path / "f.jsonl", [{"input": "a", "target": "b"}, {"input": "a", "gold": "b"}])
    message = _error(path)
    assert "line 2 of" in message and "no field 'target'" in message and "'input', 'gold'" in message
    csv_path = tmp_path / "f.csv"
    csv_path.write_text("question,answer\nq,a\n", "utf-8")
    message = _error(csv_path, input_field="question")
    assert "line 2 of" in message and "no field 'target'" in message and "'question', 'answer'" in message


def test_unknown_metric_and_labels_with_other_metric(tmp_path: Path) -> None:
    path = _jsonl(tmp_path / "f.jsonl", _qa_rows(5))
    with pytest.raises(ConfigError, match="unknown metric 'fuzzy'.*exact, contains, numeric"):
        load_file_task(path, metric="fuzzy")
    with pytest.raises(ConfigError, match="labels make a classification task"):
        load_file_task(path, metric="numeric", labels=["1", "2"])


def test_empty_splits(tmp_path: Path) -> None:
    few = _jsonl(tmp_path / "two.jsonl", [{"input": "a", "target": "b"}] * 2)
    message = _error(few)
    assert "the train split" in message and "2 rows" in message and "add rows" in message
    no_dev = _jsonl(tmp_path / "nodev.jsonl", [{"input": "a", "target": "b", "split": s} for s in ("train", "test")])
    message = _error(no_dev)
    assert "the dev split" in message and '"split": "dev"' in message
    empty = _jsonl(tmp_path / "empty.jsonl", [])
    assert "has no rows" in _error(empty)


def test_bad_split_value_and_label_outside_declared(tmp_path: Path) -> None:
    rows = [{"input": "a", "target": "x", "split": s} for s in ("train", "dev", "valid")]
    message = _error(_jsonl(tmp_path / "s.jsonl", rows))
    assert "line 3 of" in message and "'valid'" in message and "train, dev, test" in message
    rows = [{"input": "a", "target": t} for t in ("yes", "no", "maybe", "yes")]
    message = _error(_jsonl(tmp_path / "l.jsonl", rows), labels=["yes", "no"])
    assert "line 3 of" in message and "'maybe'" in message and "yes, no" in message


def test_csv_row_with_extra_cells(tmp_path: Path) -> None:
    path = tmp_path / "x.csv"
    path.write_text("input,target\na,b\nc,d,e\n", "utf-8")
    message = _error(path)
    assert "line 3 of" in message and "more cells than the header" in message
