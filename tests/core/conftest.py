"""Fixtures for core tests: a small parity task and a scripted fake model."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from parity_fixtures import parity_target, scripted_optimizer

from promptopt.tasks import Task, load_task
from promptopt.testing import FakeBackend


@pytest.fixture
def parity_task(tmp_path: Path) -> Task:
    """Numbers labelled even/odd; a model only gets them right when told the magic word."""
    rows = [{"input": f"number {i}", "target": "even" if i % 2 == 0 else "odd"} for i in range(60)]
    path = tmp_path / "parity.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return load_task(f"file:{path}", data_dir=tmp_path, labels=["even", "odd"],
                     instruction="Say whether the number is even or odd.")


@pytest.fixture
def scripted_backend() -> FakeBackend:
    return FakeBackend("scripted", reply=lambda r: scripted_optimizer(r) if r.role == "optimizer"
                       else parity_target(r))
