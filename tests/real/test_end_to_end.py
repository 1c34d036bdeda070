"""Whole runs on the real embedded model and on a real llama.cpp server, with tiny budgets."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from embedded_runs import DATA_DIR, check_selection, read_events

import promptopt

# One round of APO with a handful of proposals: about a minute on two CPU cores.
TINY_APO = {"rounds": 1, "beam_size": 2, "minibatch_size": 8, "n_gradients": 1, "mc_samples_per_step": 1,
            "max_expansion_factor": 3, "eval_rounds": 2, "eval_prompts_per_round": 3, "samples_per_eval": 6}


def _optimize(tmp_path: Path, **kw: Any) -> promptopt.Result:
    args: dict[str, Any] = dict(task="sst2", strategy="apo", model="llamacpp:smollm2", strategy_params=TINY_APO,
                                budget=promptopt.Budget(target_calls=120), n_dev=10, n_test=20, seed=0,
                                data_dir=DATA_DIR, offline=True, runs_dir=tmp_path / "runs",
                                cache=tmp_path / "cache.sqlite")
    args.update(kw)
    return promptopt.optimize(**args)


@pytest.fixture(scope="module")
def first_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, promptopt.Result]:
    tmp = tmp_path_factory.mktemp("e2e")
    return tmp, _optimize(tmp)


def test_apo_runs_end_to_end_within_its_budget(first_run: tuple[Path, promptopt.Result]) -> None:
    tmp, result = first_run
    assert result.answer_mode == "choice"
    search = result.usage["search"]
    assert 0 < search["target"]["calls"] <= 120 and search["optimizer"]["paid_calls"] > 0
    assert result.seed_test.n == result.best_test.n == 20
    events = read_events(result)
    assert sum(e["type"] == "candidate" for e in events) == result.n_candidates
    check_selection(result, events, tmp / "cache.sqlite", n_dev=10, n_test=20)
    assert Path(result.run_dir, "best_prompt.txt").read_text().strip()


def test_rerun_replays_everything_from_the_cache(first_run: tuple[Path, promptopt.Result]) -> None:
    tmp, first = first_run
    again = _optimize(tmp)
    for role in ("target", "optimizer"):
        assert again.usage["total"][role]["paid_calls"] == 0
        assert again.usage["total"][role]["calls"] == first.usage["total"][role]["calls"]
    assert again.best_prompt == first.best_prompt and again.best_test == first.best_test


def test_same_seed_gives_the_same_result_without_a_cache(first_run: tuple[Path, promptopt.Result],
                                                         tmp_path: Path) -> None:
    _, first = first_run
    fresh = _optimize(tmp_path, cache=False)
    assert fresh.usage["total"]["target"]["paid_calls"] == first.usage["total"]["target"]["paid_calls"]
    keep = ("best_prompt", "seed_dev", "best_dev", "seed_test", "best_test", "n_candidates", "stopped_by")
    assert {k: getattr(fresh, k) for k in keep} == {k: getattr(first, k) for k in keep}


def test_generate_mode_and_evaluate_on_the_embedded_model(tmp_path: Path) -> None:
    ev = promptopt.evaluate("Classify the sentiment as negative or positive. Answer with one word.", "sst2",
                            split="dev", answer_mode="generate", n_dev=8, data_dir=DATA_DIR, offline=True,
                            cache=False)
    assert ev.answer_mode == "generate" and ev.score.n == 8
    assert all(e.output for e in ev.examples)


def test_apo_through_a_real_openai_compatible_server(llama_server_url: str, tmp_path: Path) -> None:
    """Generate mode end to end over HTTP (llama.cpp's server cannot score, so choice mode is unavailable)."""
    result = _optimize(tmp_path, model="openai:smollm2", model_options={"base_url": llama_server_url},
                       task="synthetic:sentiment", budget=promptopt.Budget(target_calls=60, optimizer_calls=4),
                       strategy_params={**TINY_APO, "minibatch_size": 6})
    assert result.answer_mode == "generate" and result.model == "openai:smollm2"
    assert result.usage["search"]["target"]["calls"] <= 60
    assert 0 < result.usage["search"]["optimizer"]["calls"] <= 4
    assert result.best_test.n == 20


def test_calls_kept_back_finish_scoring_the_best_partly_scored_candidate(tmp_path: Path) -> None:
    """APO's bandit pulls see 6 of 10 dev examples; a cap of 60 stops it mid-selection.

    Asserts the mechanism only, never which prompt wins: that depends on the model's replies,
    which differ from one CPU to another.
    """
    kept = _optimize(tmp_path, budget=promptopt.Budget(target_calls=60), model_options={"n_threads": 1})
    spent = _optimize(tmp_path, budget=promptopt.Budget(target_calls=60), model_options={"n_threads": 1},
                      finalist_reserve=0)
    for result in (kept, spent):  # the cap is never crossed, reserve or not
        assert result.usage["search"]["target"]["calls"] <= 60 and result.stopped_by is not None
    kept_events, spent_events = read_events(kept), read_events(spent)
    reserve = [e for e in kept_events if e["type"] == "finalist_reserve"]
    assert [e["calls"] for e in reserve] == [8] and "8 kept back" in (kept.stopped_by or "")  # 4 examples x 2 labels
    assert not any(e["type"] == "finalist_reserve" for e in spent_events)

    partial, completed = _dev_scores_around_the_stop(kept_events, kept.seed_prompt.id)
    assert partial  # the strategy stopped before finishing any new candidate on dev
    top = max(partial.values())
    if top > kept.seed_dev:  # the best of them looks better than the seed on what it saw: finished from the reserve
        assert completed, "the best partly scored candidate was not finished"
        finished, n = completed[0]
        assert partial[finished] == top and n == 10
        assert kept.best_prompt.id in (kept.seed_prompt.id, finished)
    else:  # nothing partly scored looks better than the seed: the reserve is not spent
        assert completed == [] and kept.best_prompt == kept.seed_prompt
    check_selection(kept, kept_events, tmp_path / "cache.sqlite", n_dev=10, n_test=20)

    partial, completed = _dev_scores_around_the_stop(spent_events, spent.seed_prompt.id)
    assert partial and completed == []  # without a reserve, nothing is left to finish them with


def _dev_scores_around_the_stop(events: list[dict[str, Any]],
                                seed_id: str) -> tuple[dict[str, float], list[tuple[str, int]]]:
    """Partial dev means of the new candidates when the budget stopped the strategy (one pull each at this
    budget), and the dev evaluations the Run made after the stop: (prompt id, examples)."""
    stop = next(i for i, e in enumerate(events) if e["type"] == "budget_exhausted")
    dev = [(i, e) for i, e in enumerate(events) if e["type"] == "evaluation" and e["dev"] and e["prompt_id"] != seed_id]
    before = [e for i, e in dev if i < stop]
    assert all(e["n"] < 10 for e in before) and len({e["prompt_id"] for e in before}) == len(before)
    return {e["prompt_id"]: e["mean"] for e in before}, [(e["prompt_id"], e["n"]) for i, e in dev if i > stop]
