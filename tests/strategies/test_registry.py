from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from promptopt.exceptions import ConfigError, UnknownNameError
from promptopt.strategies import APO, Strategy, get_strategy, list_strategies

PLUGIN = '''
from promptopt.strategies import Strategy


class Echo(Strategy):
    name = "echo"
    summary = "returns the seed"

    def __init__(self, *, times: int = 1) -> None:
        self.times = times

    def optimize(self, ctx):
        return [ctx.seed_prompt]


class NotAStrategy:
    pass
'''


@pytest.fixture
def plugin_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    (tmp_path / "echo_strategy_plugin.py").write_text(PLUGIN, "utf-8")
    dist = tmp_path / "echo_strategy_plugin-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: echo-strategy-plugin\nVersion: 0.1\n", "utf-8")
    (dist / "entry_points.txt").write_text(textwrap.dedent("""\
        [promptopt.strategies]
        echo = echo_strategy_plugin:Echo
        echo-wrong = echo_strategy_plugin:NotAStrategy
        echo-missing = echo_strategy_absent:Echo
        """), "utf-8")
    monkeypatch.syspath_prepend(str(tmp_path))
    return tmp_path


def test_builtin_names_and_instances() -> None:
    assert isinstance(get_strategy("apo"), APO)
    mine = APO(rounds=1)
    assert get_strategy(mine) is mine
    with pytest.raises(ConfigError, match="alongside a Strategy instance"):
        get_strategy(mine, {"rounds": 2})
    known = ("ape, apo, evoprompt-de, evoprompt-ga, fewshot, genetic, genetic-mutation, gepa, harmony, "
             "hill-climb, metaspo, multiobjective, opro, pmpo, prompt-selection, promptbreeder, promptquine, "
             "promptwizard, rlprompt, simulated-annealing, sprig, tabu, tapruning")
    with pytest.raises(UnknownNameError, match=f"unknown strategy 'apx'; known strategies: {known}"):
        get_strategy("apx")
    with pytest.raises(ConfigError, match="no parameter 'beam_sise'"):
        get_strategy("apo", {"beam_sise": 2})


def test_listing_shows_parameters() -> None:
    apo = next(i for i in list_strategies() if i.name == "apo")
    assert apo.params["beam_size"] == 4 and "gradient" in apo.summary


def test_plugins_load_by_name_and_broken_ones_fail_clearly(plugin_path: Path) -> None:
    echo = get_strategy("echo", {"times": 3})
    assert isinstance(echo, Strategy) and echo.get_params() == {"times": 3}
    with pytest.raises(ConfigError, match="not a promptopt Strategy subclass"):
        get_strategy("echo-wrong")
    with pytest.raises(ConfigError, match="failed to import"):
        get_strategy("echo-missing")
    listed = {i.name: i for i in list_strategies()}
    assert listed["echo"].summary == "returns the seed"
    assert listed["echo-missing"].summary.startswith("unavailable")
