"""Fixtures shared by all tests: one real llama.cpp server (started on first use) for the session."""

from __future__ import annotations

import importlib.util
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from parity_fixtures import parity_target, scripted_optimizer

from promptopt.exceptions import ConfigError
from promptopt.tasks import Task, load_task
from promptopt.testing import FakeBackend
from promptopt.testing.llama_server import run_llama_server, smollm2_path


@pytest.fixture(scope="session")
def llama_server_url() -> Iterator[str]:
    """Base URL (``.../v1``) of a llama.cpp server serving the embedded SmolLM2."""
    if importlib.util.find_spec("llama_cpp") is None:
        pytest.skip("needs `pip install 'llama-cpp-python[server]'`")
    try:
        model_path = smollm2_path()
    except ConfigError as exc:
        pytest.skip(str(exc))
    with run_llama_server(model_path, model_alias="smollm2", n_ctx=1024) as base_url:
        yield base_url


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
