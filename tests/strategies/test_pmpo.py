"""PMPO on scripted scorers: the mask analysis, the rewrite request, selection by loss, preference mode."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest

import promptopt
from promptopt.prompt import Prompt
from promptopt.strategies._loss_signals import preference_loss, rejected_twin
from promptopt.strategies.pmpo import harmful, mask_segments
from promptopt.tasks import Task, load_file_task
from promptopt.testing import FakeBackend
from promptopt.types import Example, Request, ScoreRequest

HELPFUL, HARMFUL, NEUTRAL = "Read the text.", "Ignore the text and guess.", "Answer with the label only."
SEED = f"{HELPFUL} {HARMFUL} {NEUTRAL}"
BETTER = f"{HELPFUL} Reply with the label only."


def _rows(n: int) -> list[dict[str, Any]]:
    # inputs of growing length: the scorer below makes longer inputs harder
    return [{"input": "good " * (i + 1) + "film", "target": "positive" if i % 2 else "negative",
             "split": "train" if i < 8 else "dev" if i < 11 else "test"} for i in range(14)]


@pytest.fixture
def task(tmp_path: Path) -> Task:
    path = tmp_path / "reviews.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in _rows(14)), "utf-8")
    return load_file_task(path, labels=["negative", "positive"], instruction=SEED)


def _score(req: ScoreRequest) -> float:
    """Log-probability -2, +1 with the helpful sentence, -1.5 with the harmful one, minus 0.1 per input word."""
    instruction, _, query = req.messages[-1].content.partition("\n\nText: ")
    logprob = -2.0 + (1.0 if HELPFUL in instruction else 0.0) - (1.5 if HARMFUL in instruction else 0.0)
    return logprob - 0.1 * len(query.split())


def _reply(req: Request) -> str:
    """Optimizer samples: the first drops the harmful sentence, the second drops the helpful one."""
    return f"<START>{BETTER}<END>" if req.sample_index == 0 else f"<START>{HARMFUL} Reply with the label.<END>"


def _run(task: Task, tmp_path: Path, *, seed: int = 0, reply: Any = _reply, **params: Any,
         ) -> tuple[promptopt.Result, list[dict[str, Any]], FakeBackend]:
    fake = FakeBackend(score=_score, reply=reply)
    params = {"n_score": 100, "max_iterations": 1, "n_hard": 1, "n_variants": 2, **params}
    result = promptopt.optimize(task, "pmpo", fake, strategy_params=params, budget=promptopt.Budget(target_calls=2000),
                                runs_dir=tmp_path / f"runs{seed}", cache=False, seed=seed)
    events = [json.loads(x) for x in Path(result.run_dir, "events.jsonl").read_text().splitlines()]
    return result, events, fake


def test_masking_finds_the_planted_harmful_segment(task: Task, tmp_path: Path) -> None:
    _, events, fake = _run(task, tmp_path)
    [mask] = [e for e in events if e["type"] == "mask"]
    assert [s["text"] for s in mask["segments"]] == [HELPFUL, HARMFUL, NEUTRAL]
    # the loss is -log p per token (one-token labels): removing a sentence moves it by minus its effect
    assert [s["delta"] for s in mask["segments"]] == pytest.approx([1.0, -1.5, 0.0])
    assert mask["harmful"] == [1]
    # the rewrite request shows the verdicts and is built around the hardest (longest) training example
    [request] = {r.messages[-1].content for r in fake.generate_requests if r.role == "optimizer"}  # 2 samples
    assert f'"{HARMFUL}" (harmful' in request and f'"{HELPFUL}" (helps' in request
    hardest = max((ex for ex in task.splits.train), key=lambda ex: len(ex.input))
    assert f"Input: {hardest.input}" in request


def test_the_lowest_loss_rewrite_becomes_the_incumbent_and_is_scored_on_dev(task: Task, tmp_path: Path) -> None:
    _, events, _ = _run(task, tmp_path)
    candidates = {e["prompt_id"]: e for e in events if e["type"] == "candidate"}
    rewrites = [pid for pid, c in candidates.items() if c["operator"] == "rewrite"]
    assert len(rewrites) == 2
    signals = {e["prompt_id"]: e for e in events if e["type"] == "signals"}
    [incumbent] = [e for e in events if e["type"] == "incumbent"]
    assert candidates[incumbent["prompt_id"]]["prompt"]["instruction"] == BETTER
    assert incumbent["loss"] == min(signals[pid]["loss"] for pid in [*rewrites, incumbent["prompt_id"]])
    dev = [k for k, e in enumerate(events)
           if e["type"] == "evaluation" and e["dev"] and e["prompt_id"] == incumbent["prompt_id"]]
    [step] = [k for k, e in enumerate(events) if e["type"] == "step"]
    assert len(dev) == 1 and events[dev[0]]["n"] == len(task.splits.dev)
    assert dev[0] < step  # scored on dev as found, not only by the Run after the search
    # every candidate has its loss and its accuracy on the same score set (record_both)
    for pid in candidates:
        if pid in signals:
            assert signals[pid]["n"] == 8 and signals[pid]["loss"] is not None and signals[pid]["accuracy"] is not None


def test_no_better_rewrite_keeps_the_incumbent(task: Task, tmp_path: Path) -> None:
    _, events, _ = _run(task, tmp_path, reply=lambda r: f"<START>{HARMFUL} {HARMFUL}<END>")
    [step] = [e for e in events if e["type"] == "step"]
    seed_id = next(e["prompt_id"] for e in events if e["type"] == "candidate")
    assert step["current"] == seed_id and not [e for e in events if e["type"] == "incumbent"]


def test_same_seed_same_search(task: Task, tmp_path: Path) -> None:
    def reply(req: Request) -> str:  # rewrites depend on the sampling seed the run's rng draws
        return f"<START>{HELPFUL} Variant {req.seed % 5}.<END>"

    def order(events: list[dict[str, Any]]) -> list[str]:
        return [e["prompt_id"] for e in events if e["type"] == "candidate"]

    first, events, _ = _run(task, tmp_path, reply=reply, max_iterations=2)
    again, events_again, _ = _run(task, tmp_path / "again", reply=reply, max_iterations=2)
    _, other, _ = _run(task, tmp_path, seed=1, reply=reply, max_iterations=2)
    assert order(events) == order(events_again) and first.best_prompt == again.best_prompt
    assert order(other) != order(events)


def test_mask_segments_partition_the_units() -> None:
    prompt = Prompt("One. Two. Three. Four. Five. Six. Seven.")
    segments = mask_segments(prompt, "instruction", "sentence", 3)
    assert [s.text for s in segments] == ["One. Two. Three.", "Four. Five.", "Six. Seven."]
    assert segments[1].masked.instruction == "One. Two. Three. Six. Seven."
    phrases = mask_segments(Prompt("Classify the review, briefly."), "instruction", "phrase", 5)
    assert [s.text for s in phrases] == ["Classify the review,", "briefly."]
    assert harmful([0.2, -0.1, -0.5, 0.0]) == [2, 1]


# -- preference mode -----------------------------------------------------------------------------
def _pairs(path: Path) -> Task:
    rows = [{"input": f"question {i}", "chosen": "Sure, here it is.", "rejected": "No.",
             "split": "train" if i < 4 else "dev" if i < 6 else "test"} for i in range(8)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), "utf-8")
    return load_file_task(path)


def test_preference_mode_compares_chosen_and_rejected(tmp_path: Path) -> None:
    task = _pairs(tmp_path / "pairs.jsonl")

    def score(req: ScoreRequest) -> float:  # summed log-probabilities: chosen -1, rejected -2.5
        return -1.0 if req.continuation.startswith("Sure") else -2.5

    fake = FakeBackend(score=score, reply=lambda r: "<START>Reply helpfully and in full.<END>")
    result = promptopt.optimize(task, "pmpo", fake, budget=promptopt.Budget(target_calls=500), cache=False,
                                runs_dir=tmp_path / "runs", strategy_params={
                                    "n_score": 4, "max_iterations": 1, "n_hard": 1, "n_variants": 1, "beta": 2.0})
    events = [json.loads(x) for x in Path(result.run_dir, "events.jsonl").read_text().splitlines()]
    seed_id = result.seed_prompt.id
    [signals] = [e for e in events if e["type"] == "signals" and e["prompt_id"] == seed_id]
    assert signals["preference"] is True
    assert signals["loss"] == pytest.approx(math.log1p(math.exp(-2.0 * 1.5)))  # -log σ(β (-1 - -2.5))
    assert signals["accuracy"] == 1.0  # choice mode: the chosen reply is the likelier of the two
    losses = [e for e in events if e["type"] == "loss" and e["prompt_id"] == seed_id]
    assert [e["mean"] for e in losses] == pytest.approx([1.0 / 4, 2.5 / 1])  # chosen (4 words), then rejected
    continuations = {r.continuation for r in fake.score_requests}
    assert continuations == {"Sure, here it is.", "No."}
    [request] = [r.messages[-1].content for r in fake.generate_requests if r.role == "optimizer"]
    assert "Preferred answer: Sure, here it is." in request and "Rejected answer: No." in request


def test_preference_loss_and_twins() -> None:
    assert preference_loss(-1.0, -3.0, beta=1.0) == pytest.approx(math.log1p(math.exp(-2.0)))
    assert preference_loss(-3.0, -1.0, beta=0.5) == pytest.approx(math.log1p(math.exp(1.0)))
    assert preference_loss(0.0, -5000.0, beta=1.0) == 0.0 and preference_loss(-5000.0, 0.0, beta=1.0) == 5000.0
    pair = Example("train-3", "q", "yes", {"rejected": "no"})
    assert rejected_twin(pair) == Example("train-3/rejected", "q", "no")
    with pytest.raises(ValueError, match="not a preference pair"):
        rejected_twin(Example("train-4", "q", "yes"))
