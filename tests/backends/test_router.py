"""Router files, and LiteLLMBackend spreading calls over fault servers with litellm's Router."""

from __future__ import annotations

import asyncio
import importlib.util
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest
from backend_calls import generate

from promptopt.backends import RetryPolicy
from promptopt.backends._router_config import (
    load_router_config,
    router_arguments,
    router_key_envs,
    validate_router_config,
)
from promptopt.backends.litellm import LiteLLMBackend, RateLimitedError
from promptopt.budget import Budget
from promptopt.exceptions import BackendError, ConfigError
from promptopt.session import Session, backend_options_from_env
from promptopt.testing.fault_server import FaultPlan, FaultServer, run_fault_server
from promptopt.types import Completion, Message, Request

SECRET = "sk-test-ROUTER789"
needs_litellm = pytest.mark.skipif(importlib.util.find_spec("litellm") is None,
                                   reason="needs `pip install 'litellm>=1.60,<2,!=1.82.7,!=1.82.8'`")

GOOD_TOML = """\
routing_strategy = "least-busy"

[[deployments]]
name = "a"
model_name = "smollm2"
model = "openai/smollm2"
api_base = "http://127.0.0.1:8001/v1"
rpm = 60

[[deployments]]
model_name = "backup"
model = "openai/gpt-4o-mini"
api_key_env = "OPENAI_API_KEY"

[fallbacks]
smollm2 = ["backup"]
"""


def write(tmp_path: Path, text: str, name: str = "router.toml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def deployment(name: str, url: str, model_name: str = "m", **extra: Any) -> dict[str, Any]:
    return {"name": name, "model_name": model_name, "model": "openai/fault", "api_base": url, **extra}


# --- router files ------------------------------------------------------------------------------


def test_reads_a_toml_router_file_and_fills_defaults(tmp_path: Path) -> None:
    config = load_router_config(write(tmp_path, GOOD_TOML))
    assert config["routing_strategy"] == "least-busy"
    assert config["fallbacks"] == {"smollm2": ["backup"]}
    a, backup = config["deployments"]
    assert a == {"name": "a", "model_name": "smollm2", "model": "openai/smollm2",
                 "api_base": "http://127.0.0.1:8001/v1", "api_key_env": None, "rpm": 60, "tpm": None}
    assert backup["name"] == "backup-2" and backup["api_key_env"] == "OPENAI_API_KEY"
    assert router_key_envs(config) == ["OPENAI_API_KEY"]
    assert validate_router_config(config) == config  # a checked config checks again unchanged


def test_reads_the_same_config_from_yaml(tmp_path: Path) -> None:
    pytest.importorskip("yaml")
    path = write(tmp_path, """\
        routing_strategy: least-busy
        deployments:
          - name: a
            model_name: smollm2
            model: openai/smollm2
            api_base: http://127.0.0.1:8001/v1
            rpm: 60
          - model_name: backup
            model: openai/gpt-4o-mini
            api_key_env: OPENAI_API_KEY
        fallbacks:
          smollm2: [backup]
        """, "router.yaml")
    assert load_router_config(path) == load_router_config(write(tmp_path, GOOD_TOML))


@pytest.mark.parametrize(("text", "expected"), [
    # a TOML syntax error: the line of the unterminated string
    ('[[deployments]]\nname = "a"\nmodel = "openai/x\n', r"router\.toml line 3: not valid TOML"),
    # a missing field: the line of the deployment's header
    ('[[deployments]]\nname = "a"\nmodel_name = "m"\nmodel = "openai/x"\napi_base = "http://h/v1"\n\n'
     '[[deployments]]\nname = "b"\nmodel_name = "m"\nmodel = "openai/x"\n',
     r"router\.toml line 7: deployment 'b' has no api_base"),
    ('[[deployments]]\nname = "a"\nmodel = "openai/x"\napi_base = "http://h/v1"\n',
     r"router\.toml line 1: deployment 'a' has no model_name"),
    # a wrong type: the line of the field
    ('[[deployments]]\nname = "a"\nmodel_name = "m"\nmodel = "openai/x"\napi_base = "http://h/v1"\nrpm = "fast"\n',
     r"router\.toml line 6: deployment 'a': `rpm` must be a whole number >= 1; got 'fast'"),
    ('[[deployments]]\nname = "a"\nmodel_name = "m"\nmodel = 7\napi_base = "http://h/v1"\n',
     r"router\.toml line 4: deployment 'a': `model` must be a non-empty string; got 7"),
    ('[[deployments]]\nname = "a"\nmodel_name = "m"\nmodel = "openai/x"\napi_bse = "http://h/v1"\n',
     r"router\.toml line 5: deployment 'a' has an unknown field 'api_bse'"),
    ('routing_strategy = "fastest"\n[[deployments]]\nmodel_name = "m"\nmodel = "openai/x"\napi_base = "http://h/v1"\n',
     r"router\.toml line 1: `routing_strategy` must be one of simple-shuffle"),
    ('[[deployments]]\nmodel_name = "m"\nmodel = "openai/x"\napi_base = "http://h/v1"\n\n[fallbacks]\nm = ["nope"]\n',
     r"router\.toml line 7: fallbacks.m names 'nope', which is no deployment"),
    ('[[deployments]]\nname = "a"\nmodel_name = "m"\nmodel = "openai/x"\napi_base = "http://h/v1"\n'
     '[[deployments]]\nname = "a"\nmodel_name = "m"\nmodel = "openai/x"\napi_base = "http://h/v2"\n',
     r"router\.toml line 7: two deployments are named 'a'"),
    ('deployments = [\n  { name = "a", model_name = "m", model = "openai/x", api_base = "http://h/v1" },\n'
     '  { name = "b", model_name = "m", model = "openai/x", api_base = "ftp://h" },\n]\n',
     r"router\.toml line 3: deployment 'b': `api_base` must be an http:// or https:// URL"),
    ('deployments = []\n', r"router\.toml line 1: `deployments` must be a non-empty list"),
])
def test_invalid_toml_files_name_the_line_and_field(tmp_path: Path, text: str, expected: str) -> None:
    with pytest.raises(ConfigError, match=expected):
        load_router_config(write(tmp_path, text))


def test_invalid_yaml_files_name_the_line_and_field(tmp_path: Path) -> None:
    pytest.importorskip("yaml")
    bad_type = ("deployments:\n  - name: a\n    model_name: m\n    model: openai/x\n"
                "    api_base: http://h/v1\n    tpm: [1]\n")
    with pytest.raises(ConfigError, match=r"router\.yaml line 6: deployment 'a': `tpm` must be a whole number"):
        load_router_config(write(tmp_path, bad_type, "router.yaml"))
    with pytest.raises(ConfigError, match=r"router\.yaml line 3: not valid YAML"):
        load_router_config(write(tmp_path, "deployments:\n  - name: a\n  model: [x\n", "router.yaml"))


@pytest.mark.parametrize("field", ['api_key = "{secret}"', 'api_key_env = "{secret}"'])
def test_a_key_in_the_file_is_refused_without_being_shown(tmp_path: Path, field: str) -> None:
    text = ('[[deployments]]\nname = "a"\nmodel_name = "m"\nmodel = "openai/gpt-4o-mini"\n'
            + field.format(secret=SECRET) + "\n")
    with pytest.raises(ConfigError, match=r"router\.toml line 5: deployment 'a'") as info:
        load_router_config(write(tmp_path, text))
    assert SECRET not in str(info.value) and "api_key_env" in str(info.value)


def test_missing_file_and_wrong_suffix(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_router_config(tmp_path / "nope.toml")
    with pytest.raises(ConfigError, match=r"\.toml, \.yaml or \.yml"):
        load_router_config(write(tmp_path, "{}", "router.json"))


def test_a_dict_config_is_checked_too() -> None:
    with pytest.raises(ConfigError, match=r"`router` parameter of LiteLLMBackend: deployment 'a' has no model"):
        LiteLLMBackend("m", router={"deployments": [{"name": "a", "model_name": "m", "api_base": "http://h/v1"}]})


def test_router_arguments_hold_keys_by_variable_and_a_placeholder_for_local_servers(tmp_path: Path) -> None:
    config = load_router_config(write(tmp_path, GOOD_TOML))
    args = router_arguments(config, {"OPENAI_API_KEY": SECRET})
    local, hosted = (d["litellm_params"] for d in args["model_list"])
    assert local == {"model": "openai/smollm2", "api_base": "http://127.0.0.1:8001/v1", "api_key": "no-key", "rpm": 60}
    assert hosted == {"model": "openai/gpt-4o-mini", "api_key": SECRET}
    assert [d["model_info"]["id"] for d in args["model_list"]] == ["a", "backup-2"]
    assert args["fallbacks"] == [{"smollm2": ["backup"]}] and args["num_retries"] == 0
    assert args["optional_pre_call_checks"] == ["enforce_model_rate_limits"]
    with pytest.raises(ConfigError, match="OPENAI_API_KEY, which is not set"):
        router_arguments(config, {})


def test_session_reads_router_keys_from_the_environment_at_the_edge(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD_TOML)
    opts = backend_options_from_env("litellm:smollm2", {"router": path},
                                    env={"OPENAI_API_KEY": SECRET, "OTHER": "x"})
    assert opts["api_keys"] == {"OPENAI_API_KEY": SECRET}
    assert opts["router"] == load_router_config(path)
    assert SECRET not in repr(opts["router"])


# --- the Router over fault servers --------------------------------------------------------------


def ask(text: str) -> Request:
    return Request(messages=(Message("user", text),), max_tokens=4)




def router_over(*servers: FaultServer, **extra: Any) -> dict[str, Any]:
    return {"deployments": [deployment(f"d{i}", s.base_url, **extra) for i, s in enumerate(servers)]}


@needs_litellm
def test_spreads_calls_over_two_servers() -> None:
    with run_fault_server() as a, run_fault_server() as b:
        backend = LiteLLMBackend("m", router=router_over(a, b), max_concurrency=4)
        [completions] = generate(backend, [ask(f"q{i}") for i in range(20)])
        assert len(completions) == 20 and all(c.text for c in completions)
        assert a.stats.completions > 0 and b.stats.completions > 0
        assert a.stats.completions + b.stats.completions == 20


@needs_litellm
def test_keeps_going_when_a_server_dies_mid_run() -> None:
    # Through the real stack: the retry wrapper retries the calls that hit the dead
    # server, and the Router cools that deployment down and sends them to the other.
    with run_fault_server() as a, run_fault_server() as b:
        backend = LiteLLMBackend("m", router=router_over(a, b), max_concurrency=4)
        with Session(backend, None, budget=Budget(), cache_path=None,
                     retry=RetryPolicy(max_attempts=6, initial_wait=0.01, max_wait=0.05)) as session:
            first = session.loop.run(session.target.agenerate([ask(f"q{i}") for i in range(8)]))
            b.close()
            served_by_b = b.stats.completions
            rest = session.loop.run(session.target.agenerate([ask(f"r{i}") for i in range(12)]))
        assert len(first) == 8 and len(rest) == 12
        assert b.stats.completions == served_by_b
        assert a.stats.completions == 20 - served_by_b


@needs_litellm
def test_falls_back_to_another_model_name() -> None:
    with run_fault_server() as a, run_fault_server() as b:
        config = {"deployments": [deployment("main", b.base_url, "primary"), deployment("spare", a.base_url, "backup")],
                  "fallbacks": {"primary": ["backup"]}}
        backend = LiteLLMBackend("primary", router=config)
        assert backend.identity()["deployments"] == [
            f"backup=openai/fault@{a.base_url}", f"primary=openai/fault@{b.base_url}"]

        async def main() -> tuple[list[Completion], list[Completion]]:
            try:
                before = await backend.agenerate([ask("x")])
                b.close()
                return before, await backend.agenerate([ask(f"y{i}") for i in range(3)])
            finally:
                await backend.aclose()

        before, after = asyncio.run(main())
        assert len(after) == 3
        assert b.stats.completions == 1 and a.stats.completions == 3


@needs_litellm
def test_rpm_limit_is_respected_per_deployment() -> None:
    # litellm counts requests per deployment in wall-clock minute buckets: a run that crosses a
    # minute boundary starts the count again, so such a run is repeated (it takes well under a second)
    for _ in range(3):
        minute = int(time.time() // 60)
        received, completions, served, limited = _six_requests_at_rpm_2()
        if int(time.time() // 60) == minute:
            break
    assert received[0] <= 2 and received[1] <= 2
    assert served == completions
    assert len(limited) >= 2
    assert all(e.retryable and e.retry_after and e.retry_after > 0 for e in limited)


def _six_requests_at_rpm_2() -> tuple[tuple[int, int], int, int, list[RateLimitedError]]:
    """Six requests in turn through a router of two deployments limited to 2 requests a minute each:
    what each deployment received, their completions, the requests served and the rate-limit errors."""
    with run_fault_server() as a, run_fault_server() as b:
        backend = LiteLLMBackend("m", router=router_over(a, b, rpm=2), max_concurrency=1)
        served, limited = 0, []

        async def main() -> None:
            nonlocal served
            try:
                for i in range(6):
                    try:
                        await backend.agenerate([ask(f"q{i}")])
                        served += 1
                    except RateLimitedError as exc:
                        limited.append(exc)
            finally:
                await backend.aclose()

        asyncio.run(main())
        return (a.stats.received, b.stats.received), a.stats.completions + b.stats.completions, served, limited


@needs_litellm
def test_keys_come_from_api_keys_by_variable_name_and_are_never_shown() -> None:
    with run_fault_server() as good, run_fault_server(FaultPlan(fatal_status=401, echo_key=True)) as bad:
        key = {"api_key_env": "PROMPTOPT_TEST_KEY"}
        ok = LiteLLMBackend("m", router=router_over(good, **key), api_keys={"PROMPTOPT_TEST_KEY": SECRET})
        generate(ok, [ask("x")])
        assert good.stats.api_keys == {SECRET}
        assert SECRET not in repr(ok) and SECRET not in str(ok.identity())

        rejected = LiteLLMBackend("m", router=router_over(bad, **key), api_keys={"PROMPTOPT_TEST_KEY": SECRET})
        with pytest.raises(BackendError) as info:
            generate(rejected, [ask("x")])
        assert not info.value.retryable
        assert "PROMPTOPT_TEST_KEY" in str(info.value) and SECRET not in str(info.value)

        unset = LiteLLMBackend("m", router=router_over(good, **key))
        with pytest.raises(ConfigError, match="PROMPTOPT_TEST_KEY, which is not set"):
            generate(unset, [ask("x")])
        assert good.stats.received == 1


@needs_litellm
def test_router_model_and_settings_are_checked(tmp_path: Path) -> None:
    config = {"deployments": [deployment("a", "http://127.0.0.1:9/v1")]}
    with pytest.raises(ConfigError, match="use litellm:<model_name> with one of: m"):
        LiteLLMBackend("other", router=config)
    with pytest.raises(ConfigError, match="not both"):
        LiteLLMBackend("m", router=config, api_base="http://127.0.0.1:9/v1")
    bad = {"deployments": [{**deployment("a", "http://127.0.0.1:9/v1"), "model": "nosuchprovider/x"}]}
    with pytest.raises(ConfigError, match=r"router deployment 'a': .*litellm:<provider>/<model>"):
        LiteLLMBackend("m", router=bad)
    from_file = LiteLLMBackend("smollm2", router=write(tmp_path, GOOD_TOML))
    assert from_file.identity()["deployments"] == [
        "backup=openai/gpt-4o-mini@hosted", "smollm2=openai/smollm2@http://127.0.0.1:8001/v1"]
