"""Whole runs on the real embedded model and on a real llama.cpp server, with tiny budgets."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from embedded_runs import DATA_DIR

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
    _, result = first_run
    assert result.answer_mode == "choice"
    search = result.usage["search"]
    assert 0 < search["target"]["calls"] <= 120 and search["optimizer"]["paid_calls"] > 0
    assert result.best_dev >= result.seed_dev
    assert result.seed_test.n == result.best_test.n == 20
    events = [json.loads(x) for x in Path(result.run_dir, "events.jsonl").read_text().splitlines()]
    assert sum(e["type"] == "candidate" for e in events) == result.n_candidates
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
    """APO's bandit pulls see 6 of 10 dev examples; a cap of 60 stops it mid-selection."""
    kept = _optimize(tmp_path, budget=promptopt.Budget(target_calls=60), model_options={"n_threads": 1})
    spent = _optimize(tmp_path, budget=promptopt.Budget(target_calls=60), model_options={"n_threads": 1},
                      finalist_reserve=0)
    assert kept.usage["search"]["target"]["calls"] <= 60 and spent.usage["search"]["target"]["calls"] <= 60
    assert kept.stopped_by is not None and "8 kept back" in (kept.stopped_by or "")  # 4 examples x 2 labels
    candidates = {}
    for result in (kept, spent):
        events = [json.loads(x) for x in Path(result.run_dir, "events.jsonl").read_text().splitlines()]
        dev = [e for e in events if e["type"] == "evaluation" and e["dev"]]
        partial = {e["prompt_id"] for e in dev if e["n"] < 10} - {dev[0]["prompt_id"]}
        full = {e["prompt_id"] for e in dev if e["n"] == 10} - {dev[0]["prompt_id"]}
        candidates[result is kept] = (partial, full)
    assert candidates[False][0] and not candidates[False][1]  # without: new candidates only partly scored
    assert candidates[True][1]  # with: one of them finished on all of dev, and it won
    assert kept.best_prompt.id in candidates[True][1] and kept.best_dev > kept.seed_dev
