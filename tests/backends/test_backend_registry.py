"""Backends register by prefix: built-ins imported at first use, plugins through entry points,
each backend reading its own environment; the Session's meter gets its budget once."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
import textwrap
from collections.abc import Sequence
from importlib.metadata import EntryPoint
from pathlib import Path
from typing import Any

import pytest

import promptopt
import promptopt.backends
from promptopt.backends import BACKENDS, Backend, backend_class, list_backends, make_backend, parse_model_string
from promptopt.budget import Budget
from promptopt.exceptions import ConfigError, UnknownNameError
from promptopt.session import Session, backend_options_from_env
from promptopt.testing import FakeBackend

PACKAGE = Path(promptopt.__file__).parent

PLUGIN = '''
from promptopt.backends import Backend, Capabilities
from promptopt.types import Completion


class EchoBackend(Backend):
    name = "echo"

    def __init__(self, model, *, shout=False):
        self.model, self.shout = model, shout
        self.capabilities = Capabilities(score=False)

    @classmethod
    def resolve_options(cls, options, env):
        opts = dict(options)
        if "shout" not in opts and env.get("ECHO_SHOUT"):
            opts["shout"] = True
        return opts

    async def agenerate(self, requests):
        text = [r.messages[-1].content for r in requests]
        return [Completion(t.upper() if self.shout else t) for t in text]


class NotABackend:
    pass
'''


@pytest.fixture
def plugins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Three entry points in ``promptopt.backends``: a good one, a wrong object and a missing module."""
    (tmp_path / "echo_backend_plugin.py").write_text(PLUGIN, "utf-8")
    monkeypatch.syspath_prepend(str(tmp_path))
    group = "promptopt.backends"
    found = [EntryPoint("echo", "echo_backend_plugin:EchoBackend", group),
             EntryPoint("echo-wrong", "echo_backend_plugin:NotABackend", group),
             EntryPoint("echo-missing", "echo_backend_absent:EchoBackend", group),
             EntryPoint("openai", "echo_backend_plugin:EchoBackend", group)]  # a built-in name: ignored

    def entry_points(*, group: str) -> list[EntryPoint]:
        return [ep for ep in found if ep.group == group]

    monkeypatch.setattr(promptopt.backends, "entry_points", entry_points)


def test_an_unknown_prefix_lists_the_known_ones(plugins: None) -> None:
    with pytest.raises(UnknownNameError) as info:
        parse_model_string("nope:x")
    message = str(info.value)
    assert "unknown backend 'nope'" in message
    for prefix in (*BACKENDS, "echo"):
        assert prefix in message
    with pytest.raises(UnknownNameError, match="known backends: llamacpp, openai"):
        backend_class("nope")


def test_a_plugin_backend_is_found_and_reads_its_environment(plugins: None) -> None:
    assert list_backends() == [*BACKENDS, "echo", "echo-missing", "echo-wrong"]
    backend = make_backend("echo:hello", **backend_options_from_env("echo:hello", {}, env={"ECHO_SHOUT": "1"}))
    assert type(backend).__name__ == "EchoBackend" and backend.model == "hello"
    assert backend.shout is True  # type: ignore[attr-defined]
    assert backend_options_from_env("echo:x", {"shout": False}, env={"ECHO_SHOUT": "1"}) == {"shout": False}
    assert backend_class("openai").__module__ == "promptopt.backends.openai"  # built-ins win


def test_a_plugin_backend_runs_a_whole_optimization(plugins: None, tmp_path: Path) -> None:
    result = promptopt.optimize("synthetic:sentiment", "apo", "echo:m", answer_mode="generate", n_dev=6, n_test=6,
                                budget=Budget(target_calls=30), strategy_params={"rounds": 1, "minibatch_size": 4},
                                runs_dir=tmp_path / "runs", cache=False)
    assert result.model == "echo:m"
    assert json.loads((Path(result.run_dir) / "config.json").read_text())["model"] == "echo:m"


@pytest.mark.parametrize(("prefix", "fragments"), [
    ("echo-wrong", ["backend plugin 'echo-wrong'", "not a promptopt Backend subclass", "reinstall or uninstall"]),
    ("echo-missing", ["backend plugin 'echo-missing'", "failed to import", "echo_backend_absent"]),
])
def test_a_broken_plugin_is_a_clear_config_error(plugins: None, prefix: str, fragments: list[str]) -> None:
    with pytest.raises(ConfigError) as info:
        make_backend(f"{prefix}:x")
    assert not isinstance(info.value, UnknownNameError)
    for fragment in fragments:
        assert fragment in str(info.value)


def test_each_backend_reads_its_own_environment() -> None:
    env = {"PROMPTOPT_LLAMACPP_THREADS": "3", "OPENAI_BASE_URL": "http://e/v1", "OPENAI_API_KEY": "sk-env"}
    assert backend_options_from_env("llamacpp:smollm2", None, env) == {"n_threads": 3}
    assert backend_options_from_env("llamacpp:smollm2", {"n_threads": 1}, env) == {"n_threads": 1}
    assert backend_options_from_env("openai:m", {"base_url": "http://given/v1"}, env) == {
        "base_url": "http://given/v1", "api_key": "sk-env"}
    assert backend_options_from_env("fake:x", None, env) == {}  # variables of other backends stay out
    assert backend_options_from_env("litellm:openai/m", {"base_url": "http://l/v1"}, env) == {
        "api_base": "http://l/v1"}
    assert backend_options_from_env(FakeBackend(), {"a": 1}, env) == {"a": 1}
    with pytest.raises(ConfigError, match="PROMPTOPT_LLAMACPP_THREADS must be a whole number >= 1; got 'two'"):
        backend_options_from_env("llamacpp:smollm2", None, {"PROMPTOPT_LLAMACPP_THREADS": "two"})


def test_built_in_backends_are_imported_at_first_use() -> None:
    code = textwrap.dedent("""
        import sys
        import promptopt, promptopt.backends, promptopt.session, promptopt.cli
        before = sorted(m for m in ("promptopt.backends.vllm", "promptopt.backends.litellm", "vllm", "litellm")
                        if m in sys.modules)
        promptopt.backends.backend_class("litellm")
        print(before, "promptopt.backends.litellm" in sys.modules, "litellm" in sys.modules)
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120)
    assert out.stdout.split() == ["[]", "True", "False"], out.stdout  # litellm itself waits for the first call


def _imports(path: Path) -> list[tuple[str, str]]:
    tree = ast.parse(path.read_text("utf-8"))
    return [(node.module, alias.name) for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module
            for alias in node.names]


def test_no_backend_imports_another_backends_private_names() -> None:
    modules = {p.stem for p in (PACKAGE / "backends").glob("*.py") if not p.stem.startswith("_")}
    assert modules >= {"llamacpp", "openai", "litellm", "vllm"}
    for path in (PACKAGE / "backends").glob("*.py"):
        for module, name in _imports(path):
            other = module.removeprefix("promptopt.backends.")
            assert not (other in modules and other != path.stem and name.startswith("_")), (path.name, module, name)


def test_the_session_names_no_backend() -> None:
    tree = ast.parse((PACKAGE / "session.py").read_text("utf-8"))
    strings = {node.value for node in ast.walk(tree) if isinstance(node, ast.Constant) and isinstance(node.value, str)}
    assert not [s for s in strings for prefix in BACKENDS if s == prefix or s.startswith(f"{prefix}:")]
    assert not [m for m, _ in _imports(PACKAGE / "session.py")
                if m.removeprefix("promptopt.backends.") in ("llamacpp", "openai", "litellm", "vllm")]


# --- the meter's budget is set once, from the backend the Session opens --------------------------

class _Closing(FakeBackend):
    closed = False

    async def aclose(self) -> None:
        self.closed = True


def test_a_budget_rule_sees_the_unwrapped_target_and_the_meter_keeps_its_answer() -> None:
    seen: list[Backend] = []

    def rule(target: Backend) -> Budget:
        seen.append(target)
        return Budget(target_calls=1500 if target.capabilities.score else 200)

    for can_score, calls in ((True, 1500), (False, 200)):
        backend = FakeBackend(can_score=can_score)
        with Session(backend, None, budget=rule, cache_path=None) as session:
            assert session.meter.budget == Budget(target_calls=calls)
        assert seen[-1] is backend


def test_a_failing_budget_rule_closes_what_was_opened() -> None:
    backend = _Closing()

    def rule(target: Backend) -> Budget:
        raise ConfigError("no budget for you")

    with pytest.raises(ConfigError, match="no budget for you"):
        Session(backend, None, budget=rule, cache_path=None)
    assert backend.closed


@pytest.mark.parametrize(("can_score", "mode", "calls"), [(True, "choice", 1500), (False, "generate", 200)])
def test_the_default_budget_follows_what_the_target_can_do(tmp_path: Path, can_score: bool, mode: str,
                                                           calls: int) -> None:
    events: list[dict[str, Any]] = []
    result = promptopt.optimize("synthetic:sentiment", "apo", FakeBackend(can_score=can_score), n_dev=6, n_test=6,
                                strategy_params={"rounds": 1, "minibatch_size": 4}, runs_dir=tmp_path / "runs",
                                cache=False, on_event=events.append)
    config = json.loads((Path(result.run_dir) / "config.json").read_text())
    assert (result.answer_mode, config["budget"]["target_calls"]) == (mode, calls)
    caps: Sequence[int] = {e["target_cap"] for e in events}  # type: ignore[assignment]
    assert caps == {calls}  # the cap the run enforced from its first event on
