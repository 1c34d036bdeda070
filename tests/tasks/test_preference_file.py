"""file:<path> tasks with chosen/rejected fields: preference pairs, and their bad-input errors."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from promptopt.evaluator import resolve_answer_mode
from promptopt.exceptions import ConfigError, DataError
from promptopt.tasks import CustomTask, load_task
from promptopt.tasks._preference import PreferenceTask, is_preference, rejected_text
from promptopt.testing import FakeBackend


def _jsonl(path: Path, rows: list[dict[str, Any]]) -> str:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), "utf-8")
    return f"file:{path}"


def _pairs(n: int, chosen: str = "chosen") -> list[dict[str, Any]]:
    return [{"input": f"Ask {i}", chosen: f"Helpful answer {i}.", "rejected": f"Rude answer {i}."} for i in range(n)]


def test_rows_with_rejected_make_preference_pairs(tmp_path: Path) -> None:
    task = load_task(_jsonl(tmp_path / "pairs.jsonl", _pairs(10)), data_dir=tmp_path)
    assert isinstance(task, PreferenceTask) and is_preference(task.splits.train)
    example = task.splits.train[0]
    i = example.input.split()[1]
    assert example.target == f"Helpful answer {i}." and rejected_text(example) == f"Rude answer {i}."
    assert task.gold_text(example) == example.target
    assert task.choices(example) == (example.target, f"Rude answer {i}.")
    assert task.metric(example.target, example) == 1.0 and task.metric(f"Rude answer {i}.", example) == 0.0
    assert resolve_answer_mode(task, FakeBackend(), "auto") == "choice"  # which of the two is likelier
    assert resolve_answer_mode(task, FakeBackend(can_score=False), "auto") == "generate"


def test_target_field_names_the_chosen_field(tmp_path: Path) -> None:
    task = load_task(_jsonl(tmp_path / "pairs.jsonl", _pairs(5, chosen="preferred")), data_dir=tmp_path,
                     target_field="preferred", instruction="Answer kindly.")
    assert isinstance(task, PreferenceTask) and task.seed_prompt.instruction == "Answer kindly."
    assert task.splits.test[0].target.startswith("Helpful answer")


def test_files_without_rejected_are_unchanged(tmp_path: Path) -> None:
    rows = [{"input": f"q{i}", "target": f"a{i}", "chosen": "unused"} for i in range(5)]
    task = load_task(_jsonl(tmp_path / "plain.jsonl", rows), data_dir=tmp_path)
    assert type(task) is CustomTask and not is_preference(task.splits.train)
    assert task.splits.train[0].target.startswith("a") and task.choices(task.splits.train[0]) is None


def test_labels_do_not_apply_to_pairs(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="labels do not apply .* 'rejected' field"):
        load_task(_jsonl(tmp_path / "pairs.jsonl", _pairs(5)), data_dir=tmp_path, labels=["a", "b"])


def test_a_row_without_its_rejected_reply_is_named(tmp_path: Path) -> None:
    rows = _pairs(5)
    del rows[3]["rejected"]
    with pytest.raises(DataError, match="line 4 of .* no 'rejected' field; .* needs 'chosen' and 'rejected'"):
        load_task(_jsonl(tmp_path / "pairs.jsonl", rows), data_dir=tmp_path)
    rows = _pairs(5)
    del rows[1]["chosen"]
    with pytest.raises(DataError, match="line 2 of .* no field 'chosen'"):
        load_task(_jsonl(tmp_path / "pairs2.jsonl", rows), data_dir=tmp_path)
