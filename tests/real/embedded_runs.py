"""Shared pieces of the real-model tests: the data folder, a tiny run of a strategy on sst2, and the
check of the Run's choice that every run must pass."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

import promptopt
from promptopt.strategies import Strategy

DATA_DIR = Path(os.environ.get("PROMPTOPT_DATA_DIR") or Path(__file__).parents[2].parent / "shared" / "data")
BUDGET = promptopt.Budget(target_calls=100, optimizer_calls=6)


def run_on_sst2(tmp_path: Path, strategy: Strategy) -> tuple[promptopt.Result, list[dict[str, Any]]]:
    """A choice-mode run on 8 dev / 10 test examples under :data:`BUDGET`, with the checks every run must pass."""
    cache = tmp_path / "cache.sqlite"
    result = promptopt.optimize("sst2", strategy, "llamacpp:smollm2", budget=BUDGET, n_dev=8, n_test=10, seed=0,
                                data_dir=DATA_DIR, offline=True, runs_dir=tmp_path / "runs", cache=cache)
    events = read_events(result)
    assert result.answer_mode == "choice"
    search = result.usage["search"]
    assert 0 < search["target"]["calls"] <= 100 and 0 < search["optimizer"]["calls"] <= 6
    assert result.best_test.n == 10
    assert sum(e["type"] == "candidate" for e in events) == result.n_candidates
    check_selection(result, events, cache, n_dev=8, n_test=10)
    return result, events


def tiny_choice_run(name: str, params: dict[str, Any], budget: promptopt.Budget, runs_dir: Path,
                    cache: Path) -> tuple[promptopt.Result, list[dict[str, Any]]]:
    """A strategy by name on sst2 in choice mode, 4 dev and 4 test examples, seed 0; its result and events."""
    result = promptopt.optimize("sst2", name, "llamacpp:smollm2", strategy_params=params, budget=budget,
                                answer_mode="choice", n_dev=4, n_test=4, seed=0, data_dir=DATA_DIR, offline=True,
                                runs_dir=runs_dir, cache=cache)
    return result, read_events(result)


def read_events(result: promptopt.Result) -> list[dict[str, Any]]:
    return [json.loads(x) for x in Path(result.run_dir, "events.jsonl").read_text().splitlines()]


def check_selection(result: promptopt.Result, events: Sequence[dict[str, Any]], cache: Path, *,
                    n_dev: int, n_test: int) -> None:
    """The Run's choice of best prompt, checked against what the search measured.

    ``best_dev >= seed_dev`` checked nothing (the Run keeps the better of the two). These fail when
    selection breaks, whichever prompt the model prefers:

    * the seed and the best were scored on every dev example during the search: scoring them again
      from the run's cache sends no call and gives the dev means the result reports (a partly scored
      candidate, or a partial mean, would show);
    * no candidate the search scored on all of dev at once has a higher mean than the winner (the
      best, or the candidate the ``replace_if`` rule judged and turned down);
    * the seed is replaced only by a candidate strictly better on dev (ties go to the seed), and only
      when the rule's own verdict says so.
    """
    for prompt, reported in ((result.seed_prompt, result.seed_dev), (result.best_prompt, result.best_dev)):
        again = promptopt.evaluate(prompt, result.task, split="dev", answer_mode=result.answer_mode, seed=result.seed,
                                   n_dev=n_dev, n_test=n_test, data_dir=DATA_DIR, offline=True, cache=cache)
        assert again.usage["target"]["paid_calls"] == 0, f"{prompt.id} was not scored on all of dev"
        assert again.score.n == n_dev and again.score.mean == pytest.approx(reported)
    full_dev = [e["mean"] for e in events if e["type"] == "evaluation" and e["dev"] and e["n"] == n_dev]
    # the winner's dev mean: the best's, or, when the rule kept the seed, the seed's plus the turned-down margin
    winner_dev = result.seed_dev + result.replacement.margin if result.replacement else result.best_dev
    assert full_dev and max(full_dev) <= winner_dev + 1e-9
    replaced = result.best_prompt != result.seed_prompt
    assert replaced == (result.replacement is not None and result.replacement.replaced)
    if replaced:
        assert result.best_dev > result.seed_dev
