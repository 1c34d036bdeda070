from __future__ import annotations

import json
from pathlib import Path

import pytest
from parity_fixtures import MAGIC, parity_target

import promptopt
from promptopt.exceptions import ConfigError
from promptopt.strategies import APO, get_strategy
from promptopt.tasks import Task
from promptopt.testing import FakeBackend

SMALL = dict(rounds=2, beam_size=2, minibatch_size=12, n_gradients=2, mc_samples_per_step=1,
             eval_rounds=3, eval_prompts_per_round=4, samples_per_eval=8)


def _events(run_dir: str) -> list[dict[str, object]]:
    return [json.loads(line) for line in Path(run_dir, "events.jsonl").read_text().splitlines()]


@pytest.mark.parametrize("selector", ["ucb", "sr-protegi"])
def test_apo_follows_the_gradient_to_the_better_prompt(parity_task: Task, scripted_backend: FakeBackend,
                                                      tmp_path: Path, selector: str) -> None:
    result = promptopt.optimize(parity_task, APO(**SMALL, selector=selector), scripted_backend,
                                answer_mode="generate",
                                budget=promptopt.Budget(target_calls=2000), runs_dir=tmp_path, cache=False)
    assert MAGIC in result.best_prompt.instruction
    assert result.best_dev == 1.0 and result.seed_dev < 1.0
    assert result.best_test.mean == 1.0
    events = _events(result.run_dir)
    edits = [e for e in events if e["type"] == "candidate" and e["operator"] == "edit"]
    assert edits and edits[0]["parents"] == [result.seed_prompt.id]
    # the paraphrase replies ("ok") cannot be prompts: skipped and recorded, never a crash
    assert any(e["type"] == "skip" and e["operator"] == "paraphrase" for e in events)


def test_apo_with_a_useless_optimizer_returns_the_seed(parity_task: Task, tmp_path: Path) -> None:
    garbage = iter(["", "!!!", "<START><END>", "12345", "ok"] * 1000)
    backend = FakeBackend(reply=lambda r: next(garbage) if r.role == "optimizer" else parity_target(r))
    result = promptopt.optimize(parity_task, APO(**SMALL), backend, answer_mode="generate",
                                budget=promptopt.Budget(target_calls=500), runs_dir=tmp_path, cache=False)
    assert result.best_prompt == result.seed_prompt
    assert any(e["type"] == "skip" for e in _events(result.run_dir))


def test_apo_parameters_round_trip_and_validate() -> None:
    apo = get_strategy("apo", {"beam_size": 3})
    assert apo.get_params()["beam_size"] == 3 and apo.get_params()["rounds"] == 6
    assert repr(apo).startswith("APO(beam_size=3")
    with pytest.raises(ConfigError, match="'beam_size' parameter of APO must be an int >= 1; got 0"):
        APO(beam_size=0).validate()
    with pytest.raises(ConfigError, match="selector"):
        APO(selector="greedy").validate()


def test_constructor_only_stores_parameters() -> None:
    apo = APO()
    assert set(vars(apo)) == set(apo.get_params())


def test_the_dev_examples_a_partly_scored_candidate_may_lack() -> None:
    assert APO(samples_per_eval=8).finalist_gap(20) == 12  # a UCB pull scores 8 of 20
    assert APO(samples_per_eval=32).finalist_gap(20) == 0  # every pull scores all of dev
    assert APO(selector="sr", samples_per_eval=32).finalist_gap(20) == 20  # first scores can be any size
    assert APO(selector="bf").finalist_gap(20) == 20
    assert APO(selector="sr-protegi").finalist_gap(20) == 20
