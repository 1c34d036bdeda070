"""RunConfig: one configuration for optimize, estimate and evaluate, from keywords, a TOML file or both."""

from __future__ import annotations

import dataclasses
import inspect
from pathlib import Path
from typing import Any

import pytest

import promptopt
from promptopt._fields import field_docs
from promptopt.config import RunConfig
from promptopt.exceptions import ConfigError, UnknownNameError

SECRET = "sk-config-SECRET-9f2e"


def _fields() -> dict[str, Any]:
    return {f.name: f.default for f in dataclasses.fields(RunConfig)}


def _keyword_params(func: Any, skip: set[str]) -> dict[str, Any]:
    return {name: p.default for name, p in inspect.signature(func).parameters.items() if name not in skip}


def test_optimize_takes_exactly_the_fields_with_the_same_defaults() -> None:
    assert _keyword_params(promptopt.optimize, {"on_event", "config"}) == _fields()


@pytest.mark.parametrize(("func", "skip"), [(promptopt.estimate, {"config"}),
                                            (promptopt.evaluate, {"config", "prompt", "split"})],
                         ids=["estimate", "evaluate"])
def test_estimate_and_evaluate_take_fields_with_their_defaults(func: Any, skip: set[str]) -> None:
    params, fields = _keyword_params(func, skip), _fields()
    assert set(params) <= set(fields)
    assert {name: fields[name] for name in params} == params


def test_every_field_is_documented() -> None:
    """The CLI's help for each flag is the field's line in the docstring."""
    docs = field_docs(RunConfig)
    assert list(docs) == [f.name for f in dataclasses.fields(RunConfig)]
    assert all(len(text) > 10 for text in docs.values())


def test_values_are_normalised_and_frozen() -> None:
    params = {"rounds": 1}
    cfg = RunConfig(labels=["a", "b"], runs_dir="out", cache="c.sqlite", strategy_params=params)
    params["rounds"] = 9  # the caller's dict is copied
    assert cfg.labels == ("a", "b") and cfg.runs_dir == Path("out") and cfg.cache == Path("c.sqlite")
    assert cfg.strategy_params == {"rounds": 1}
    with pytest.raises(TypeError):
        cfg.strategy_params["rounds"] = 2  # type: ignore[index]
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.n_dev = 3  # type: ignore[misc]
    assert cfg == RunConfig(labels=("a", "b"), runs_dir=Path("out"), cache=Path("c.sqlite"),
                            strategy_params={"rounds": 1})


@pytest.mark.parametrize(("kwargs", "fragments"), [
    ({"seed": "1"}, ["seed", "whole number", "'1'"]),
    ({"seed": True}, ["seed", "whole number", "True"]),
    ({"n_dev": 0}, ["n_dev", "got 0", "--n-dev 50"]),
    ({"offline": "yes"}, ["offline", "true or false", "'yes'"]),
    ({"labels": "ab"}, ["labels", "list of strings", "'ab'"]),
    ({"budget": {"target_calls": 3}}, ["budget", "Budget"]),
    ({"answer_mode": "bogus"}, ["'bogus'", "generate", "choice"]),
    ({"model": "nope:x"}, ["unknown backend 'nope'", "llamacpp"]),
    ({"optimizer_model": "smollm2"}, ["'smollm2'", "backend:model"]),
    ({"strategy": "nope"}, ["unknown strategy 'nope'", "apo"]),
    ({"strategy_params": {"beam_sise": 2}}, ["'beam_sise'", "beam_size"]),
    ({"strategy_params": {"beam_size": 0}}, ["'beam_size'", ">= 1", "got 0"]),
    ({"run_id": "../elsewhere"}, ["run_id", "directory name"]),
    ({"finalist_reserve": -1}, ["finalist_reserve", "-1"]),
    ({"mlflow": ""}, ["mlflow must be True, False or an experiment name"]),
], ids=lambda v: str(v) if isinstance(v, dict) else "")
def test_bad_values_are_config_errors_naming_the_field(kwargs: dict[str, Any], fragments: list[str]) -> None:
    with pytest.raises(ConfigError) as info:
        RunConfig(**kwargs)
    for fragment in fragments:
        assert fragment in str(info.value), str(info.value)


def test_an_unknown_strategy_is_an_unknown_name() -> None:
    with pytest.raises(UnknownNameError):
        RunConfig(strategy="nope")


def test_secrets_never_show_in_repr_or_errors() -> None:
    cfg = RunConfig(task="sst2", model_options={"api_key": SECRET, "base_url": "http://x/v1"})
    assert SECRET not in repr(cfg) and "'base_url': 'http://x/v1'" in repr(cfg)
    assert repr(cfg).startswith("RunConfig(task='sst2', ")  # only what differs from the defaults
    for bad in ({"model_options": SECRET}, {"optimizer_options": [SECRET]},
                {"model_options": {"api_key": SECRET}, "n_dev": -1}):
        with pytest.raises(ConfigError) as info:
            RunConfig(**bad)
        assert SECRET not in str(info.value), str(info.value)


def test_config_and_keywords_are_one_or_the_other(tmp_path: Path) -> None:
    cfg = RunConfig(task="synthetic:sentiment", model="fake:x")
    with pytest.raises(ConfigError, match=r"optimize\(\) got both config= and n_dev="):
        promptopt.optimize(config=cfg, n_dev=5, runs_dir=tmp_path / "runs")
    with pytest.raises(ConfigError, match="must be a promptopt.RunConfig"):
        promptopt.estimate(config={"task": "sst2"})  # type: ignore[arg-type]
    assert not (tmp_path / "runs").exists()


# --- TOML files ---------------------------------------------------------------------------------

def _toml(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "run.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_file_values_beat_defaults_and_overrides_beat_the_file_key_by_key(tmp_path: Path) -> None:
    path = _toml(tmp_path, 'task = "sst2"\nn_dev = 10\nlabels = ["a", "b"]\n\n[budget]\ntokens = 900\n'
                           'target_calls = 50\n\n[strategy_params]\nrounds = 2\n')
    cfg = RunConfig.from_toml(path, {"n_dev": 12, "budget": {"target_calls": 70},
                                     "strategy_params": {"beam_size": 3}})
    assert (cfg.task, cfg.n_dev, cfg.n_test, cfg.labels) == ("sst2", 12, 50, ("a", "b"))
    assert cfg.budget == promptopt.Budget(target_calls=70, tokens=900)
    assert cfg.strategy_params == {"rounds": 2, "beam_size": 3}
    assert RunConfig.from_toml(path).n_dev == 10


def test_a_file_and_keywords_make_equal_configurations(tmp_path: Path) -> None:
    path = _toml(tmp_path, 'task = "sst2"\nseed = 3\ncache = false\n[retry]\nmax_attempts = 2\n'
                           '[model_options]\nn_threads = 1\n')
    assert RunConfig.from_toml(path) == RunConfig(task="sst2", seed=3, cache=False, model_options={"n_threads": 1},
                                                  retry=promptopt.RetryPolicy(max_attempts=2))


@pytest.mark.parametrize(("text", "fragments"), [
    ('task = "sst2"\nn_deve = 10\n', ["run.toml line 2", "unknown key 'n_deve'", "did you mean 'n_dev'"]),
    ('task = "sst2"\n\n[budget]\ntarget_calls = 5\ntokenz = 9\n',
     ["run.toml line 5", "'budget.tokenz'", "did you mean 'tokens'"]),
    ('task = "sst2"\nn_dev = "ten"\n', ["run.toml line 2", "key 'n_dev'", "'ten'"]),
    ('seed = 1\n[budget]\nusd = -1\n', ["run.toml line 3", "key 'budget.usd'", "-1"]),
    ('task = "sst2"\nn_dev = = 3\n', ["run.toml line 2", "not valid TOML", "key 'n_dev'"]),
    ('[strategy_params]\nbeam_size = 0\n', ["run.toml line 2", "'beam_size'", "got 0"]),
    ('budget = 7\n', ["run.toml line 1", "key 'budget'", "Budget"]),
], ids=["unknown-key", "unknown-budget-key", "wrong-type", "bad-cap", "bad-toml-line", "bad-param", "not-a-table"])
def test_file_errors_name_the_line_and_the_key(tmp_path: Path, text: str, fragments: list[str]) -> None:
    with pytest.raises(ConfigError) as info:
        RunConfig.from_toml(_toml(tmp_path, text))
    message = str(info.value)
    assert "\n" not in message
    for fragment in fragments:
        assert fragment in message, message


def test_an_error_from_an_override_names_no_file_line(tmp_path: Path) -> None:
    path = _toml(tmp_path, 'task = "sst2"\nn_dev = 10\n')
    with pytest.raises(ConfigError) as info:
        RunConfig.from_toml(path, {"n_dev": 0})
    assert "run.toml" not in str(info.value) and "n_dev" in str(info.value)


def test_a_secret_on_a_bad_line_is_not_echoed(tmp_path: Path) -> None:
    path = _toml(tmp_path, f'[model_options]\napi_key = "{SECRET}\n')
    with pytest.raises(ConfigError) as info:
        RunConfig.from_toml(path)
    assert "line 2" in str(info.value) and "api_key" in str(info.value) and SECRET not in str(info.value)


def test_a_missing_file_says_so(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist.*--config"):
        RunConfig.from_toml(tmp_path / "none.toml")
