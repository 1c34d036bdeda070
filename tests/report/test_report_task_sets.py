"""The report and the runs listing on a run over a set of tasks, from a hand-made result (no plotting)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from promptopt.report import _data, format_runs
from promptopt.report._runs import RunFiles, summarize_run


def _score(mean: float, n: int = 4) -> dict[str, Any]:
    return {"mean": mean, "low": max(0.0, mean - 0.2), "high": min(1.0, mean + 0.2), "n": n}


def _result(per_task: bool) -> dict[str, Any]:
    result: dict[str, Any] = {"seed_dev": 0.5, "best_dev": 0.75, "seed_test": _score(0.5, 8),
                              "best_test": _score(0.625, 8), "usage": {}}
    if per_task:
        result["per_task"] = {
            "sst2": {"answer_mode": "choice", "seed_dev": 0.5, "best_dev": 1.0, "seed_test": _score(0.5),
                     "best_test": _score(0.75)},
            "bbh:word_sorting": {"answer_mode": "generate", "seed_dev": 0.5, "best_dev": 0.5,
                                 "seed_test": _score(0.5), "best_test": _score(0.5)}}
        result["unseen"] = {"subj": {"answer_mode": "choice", "seed_dev": None, "best_dev": None,
                                     "seed_test": _score(0.25), "best_test": _score(0.5)}}
    return result


def test_the_header_shows_each_task_then_each_unseen_task() -> None:
    rows = dict(_data.header({"task": "sst2,bbh:word_sorting"}, _result(per_task=True), []))
    assert rows["task sst2 (choice)"].startswith("dev 0.500 → 1.000; test 0.500 [")
    assert "→ 0.750 [" in rows["task sst2 (choice)"]
    assert "task bbh:word_sorting (generate)" in rows
    assert rows["unseen task subj (choice)"].startswith("test 0.250 [")
    plain = dict(_data.header({"task": "sst2"}, _result(per_task=False), []))
    assert not [label for label in plain if label.startswith(("task ", "unseen task "))]


def test_the_listing_adds_a_per_task_column_only_when_a_run_has_tasks() -> None:
    def summary(per_task: bool) -> Any:
        return summarize_run(RunFiles(Path("runs/x"), {"task": "t", "strategy": "apo"}, (), _result(per_task)))

    one = format_runs([summary(per_task=False)])
    assert "per task" not in one[0]
    both = format_runs([summary(per_task=False), summary(per_task=True)])
    assert "best test per task" in both[0]
    assert both[2].endswith("sst2 0.750, bbh:word_sorting 0.500; unseen subj 0.500")
