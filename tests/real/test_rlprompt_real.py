"""RLPrompt on the embedded model (SmolLM2 via llama.cpp): a short training run learns from the label rewards."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest
from embedded_runs import DATA_DIR

import promptopt
from promptopt.strategies.rlprompt import RLPrompt

WORDS = ("great,terrible,good,bad,movie,film,really,not,very,love,hate,boring,fun,the,story,plot,actor,awful,"
         "amazing,okay")
# 3 words of 20 as the whole instruction, 4 prompts a step on 4 training examples (2 per label, 2 labels: at most
# 32 target calls a step, fewer as the policy repeats itself). A high learning rate so that 30 steps concentrate
# the policy: measured (seed 0), the step means rose from 38.9 (steps 1-6, a uniform policy) to 60.3 (steps
# 25-30); under a uniform policy two 6-step means differ by about 4 (one standard deviation).
STEPS, WINDOW, MARGIN = 30, 6, 10.0


@pytest.mark.slow
def test_a_short_training_run_raises_the_reward_and_its_prompt_is_scored_on_test(tmp_path: Path) -> None:
    strategy = RLPrompt(words=WORDS, prompt_length=3, placement="instruction", n_prompts=4, n_examples=4,
                        max_steps=STEPS, learning_rate=0.5, eval_every=10)
    started = time.perf_counter()
    result = promptopt.optimize("sst2", strategy, "llamacpp:smollm2", answer_mode="choice", n_dev=4, n_test=4,
                                seed=0, data_dir=DATA_DIR, offline=True, runs_dir=tmp_path / "runs", cache=False,
                                budget=promptopt.Budget(target_calls=2000))
    wall = time.perf_counter() - started
    events = [json.loads(x) for x in Path(result.run_dir, "events.jsonl").read_text().splitlines()]

    rewards = [e["mean_reward"] for e in events if e["type"] == "rl_step"]
    assert len(rewards) == STEPS and result.stopped_by is None
    first, last = np.mean(rewards[:WINDOW]), np.mean(rewards[-WINDOW:])
    assert last > first + MARGIN, (first, last, rewards)

    evals = [e for e in events if e["type"] == "rl_eval"]
    assert [e["step"] for e in evals] == [10, 20, 30]
    # the final prompt is a normal candidate: picked on all of dev, scored on test like any other
    dev_scored = {e["prompt_id"] for e in events if e["type"] == "evaluation" and e["dev"] and e["n"] == 4}
    assert result.best_prompt.id in dev_scored and result.best_test.n == 4 and result.seed_test.n == 4
    operator = {e["prompt_id"]: e["operator"] for e in events if e["type"] == "candidate"}[result.best_prompt.id]
    assert operator == "seed" or set(result.best_prompt.instruction.split()) <= set(WORDS.split(","))
    assert 0 < result.strategy_seconds < 0.1 * wall  # the policy's own compute is a sliver of the run
