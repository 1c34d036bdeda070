"""The event schema: what a run writes matches it, and old and newer logs are read as they should be."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from parity_fixtures import parity_target, scripted_optimizer

import promptopt
from promptopt import events
from promptopt.report import load_run
from promptopt.tasks import Task
from promptopt.testing import FakeBackend


def _run(task: Task, tmp_path: Path, mode: str) -> Path:
    fake = FakeBackend(reply=lambda r: scripted_optimizer(r) if r.role == "optimizer" else parity_target(r))
    result = promptopt.optimize(task, "apo", fake, answer_mode=mode, cache=False, runs_dir=tmp_path / mode,
                                budget=promptopt.Budget(target_calls=300),
                                strategy_params={"rounds": 1, "beam_size": 2, "minibatch_size": 8})
    return Path(result.run_dir)


@pytest.mark.parametrize("mode", ["generate", "choice"])
def test_every_logged_event_matches_the_schema(parity_task: Task, tmp_path: Path, mode: str) -> None:
    logged = [json.loads(line) for line in (_run(parity_task, tmp_path, mode) / "events.jsonl").read_text()
              .splitlines()]
    assert logged[0] == {**logged[0], "type": "run_started", "schema_version": events.SCHEMA_VERSION}
    kinds = {e["type"] for e in logged}
    assert {"candidate", "evaluation", "test", "result"} <= kinds
    for event in logged:
        assert events.check(event) == [], event
        assert set(events.SNAPSHOT) <= set(event), event["type"]
    margins = [e for e in logged if e["type"] == "evaluation" and "margin" in e]
    assert bool(margins) == (mode == "choice")


def test_a_core_kind_with_a_wrong_field_is_refused() -> None:
    with pytest.raises(ValueError, match="evaluation event without 'dev'"):
        events.make("evaluation", prompt_id="a", n=1, mean=0.5)
    with pytest.raises(ValueError, match="'n' is bool"):
        events.make("loss", prompt_id="a", n=True, mean=0.5, gold_tokens=3)
    assert events.make("round", anything=1) == {"type": "round", "anything": 1}  # a strategy's note


def test_a_log_from_before_versions_still_opens_and_a_newer_one_is_refused(parity_task: Task,
                                                                           tmp_path: Path) -> None:
    run_dir = _run(parity_task, tmp_path, "generate")
    path = run_dir / "events.jsonl"
    lines = path.read_text().splitlines()
    path.write_text("\n".join(lines[1:]) + "\n")  # as the previous version wrote it: no run_started line
    assert load_run(run_dir).events[0]["type"] != "run_started"
    path.write_text(json.dumps({"type": "run_started", "schema_version": events.SCHEMA_VERSION + 1}) + "\n"
                    + "\n".join(lines[1:]) + "\n")
    with pytest.raises(promptopt.ConfigError, match="newer than this promptopt"):
        load_run(run_dir)
