"""Fixtures shared by all tests: one real llama.cpp server (started on first use) for the session."""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator

import pytest

from promptopt.exceptions import ConfigError
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
