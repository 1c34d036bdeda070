"""Objectives by name: values against hand-computed ones on FakeBackend, directions, parsing, the length fallback."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

import promptopt
from promptopt.context import Context
from promptopt.prompt import Prompt
from promptopt.strategies import Strategy
from promptopt.strategies._objectives import (
    OBJECTIVES,
    TOKENS_PER_WORD,
    PromptLength,
    measure,
    non_dominated,
    parse_objectives,
    prompt_text,
)
from promptopt.tasks import Task, load_task
from promptopt.testing import FakeBackend
from promptopt.types import ScoreRequest

SHORT = Prompt(instruction="Say yes.", template="Q: {input}")
FLIPPED = Prompt(instruction="Say yes. FLIP", template="Q: {input}", system="Be brief.")


class Probe(Strategy):
    """Measures the given prompts on the first training examples and keeps what it saw (test only)."""

    name = "probe"

    def __init__(self, *, objectives: str = "accuracy", n: int = 6) -> None:
        self.objectives = objectives
        self.n = n

    def optimize(self, ctx: Context) -> Sequence[Prompt]:
        length = PromptLength(ctx)
        self.seen = (measure(ctx, [SHORT, FLIPPED], ctx.train[: self.n], parse_objectives(self.objectives), length),
                     length.method, ctx.train[: self.n])
        return []


@pytest.fixture
def task(tmp_path: Path) -> Task:
    return load_task("synthetic:sentiment", data_dir=tmp_path, n_train=6, n_dev=2, n_test=2)


def _score(req: ScoreRequest) -> float:
    """-1 for the label 'positive' and -3 for 'negative'; swapped when the instruction has FLIP."""
    flipped = "FLIP" in req.messages[-1].content
    return -1.0 if ("positive" in req.continuation) != flipped else -3.0


def _probe(task: Task, tmp_path: Path, backend: FakeBackend, objectives: str,
           mode: str = "choice") -> tuple[list[dict[str, float]], str, Any]:
    probe = Probe(objectives=objectives)
    promptopt.optimize(task, probe, backend, answer_mode=mode, runs_dir=tmp_path / "runs", cache=False)
    return probe.seen


def test_accuracy_margin_loss_match_hand_computed_values(task: Task, tmp_path: Path) -> None:
    values, _, examples = _probe(task, tmp_path, FakeBackend(score=_score), "accuracy,margin,loss")
    n_pos = sum(ex.target == "positive" for ex in examples)
    n = len(examples)
    assert 0 < n_pos < n  # both labels present, so the numbers below can tell the prompts apart
    # SHORT: 'positive' is always chosen; margin +2 on positive examples, -2 on negative ones;
    # the gold label's loss is 1 nat (positive, one token) or 3 nats (negative)
    assert values[0] == pytest.approx({"accuracy": n_pos / n, "margin": (2 * n_pos - 2 * (n - n_pos)) / n,
                                       "loss": (1 * n_pos + 3 * (n - n_pos)) / n})
    assert values[1] == pytest.approx({"accuracy": (n - n_pos) / n, "margin": (2 * (n - n_pos) - 2 * n_pos) / n,
                                       "loss": (3 * n_pos + 1 * (n - n_pos)) / n})


def test_length_counts_target_tokens_of_everything_but_the_example(task: Task, tmp_path: Path) -> None:
    values, method, _ = _probe(task, tmp_path, FakeBackend(score=_score), "length")
    assert prompt_text(SHORT) == "Say yes.\n\nQ: " and prompt_text(FLIPPED) == "Be brief.\nSay yes. FLIP\n\nQ: "
    # the fake tokenizer is byte-level: one token per byte
    assert [v["length"] for v in values] == [13.0, 28.0] and method == "tokenizer"


def test_length_falls_back_to_words_times_a_factor_and_says_so(task: Task, tmp_path: Path) -> None:
    values, method, _ = _probe(task, tmp_path, FakeBackend(score=_score, can_tokenize=False), "length")
    assert TOKENS_PER_WORD == 1.4
    assert [v["length"] for v in values] == [round(3 * 1.4), round(6 * 1.4)]  # "Say yes. Q:", "Be brief. ..."
    assert "estimate" in method and "no tokenizer" in method


def test_output_length_is_mean_completion_tokens(task: Task, tmp_path: Path) -> None:
    def reply(req: Any) -> str:
        return "positive indeed, I think" if "FLIP" in req.messages[-1].content else "positive"

    values, _, _ = _probe(task, tmp_path, FakeBackend(reply=reply), "output-length,accuracy", mode="generate")
    assert [v["output-length"] for v in values] == [1.0, 4.0]  # the fake counts whitespace words


def test_an_unused_objective_costs_no_call(task: Task, tmp_path: Path) -> None:
    backend = FakeBackend(score=_score)
    _probe(task, tmp_path, backend, "length")
    before = backend.n_calls
    backend2 = FakeBackend(score=_score)
    _probe(task, tmp_path / "b", backend2, "length,loss")
    assert backend2.n_calls == before + 2 * 6  # loss: one scored continuation per prompt and example


def test_directions_and_parsing() -> None:
    assert {n: o.direction for n, o in OBJECTIVES.items()} == {
        "accuracy": "maximize", "margin": "maximize", "length": "minimize", "output-length": "minimize",
        "loss": "minimize"}
    assert [o.name for o in parse_objectives(["length", "accuracy", "length"])] == ["length", "accuracy"]
    for bad in ("accuracy,speed", "", [], 3, ["accuracy", 1]):
        with pytest.raises(ValueError):
            parse_objectives(bad)


@pytest.mark.parametrize(("rows", "objectives", "front"), [
    ([{"accuracy": 0.8, "length": 20}, {"accuracy": 0.8, "length": 30}, {"accuracy": 0.9, "length": 40}],
     "accuracy,length", [0, 2]),
    ([{"accuracy": 0.8, "loss": 1.0}, {"accuracy": 0.7, "loss": 0.5}, {"accuracy": 0.7, "loss": 1.5}],
     "accuracy,loss", [0, 1]),
    ([{"margin": 1.0, "length": 5}, {"margin": 1.0, "length": 5}], "margin,length", [0, 1]),
])
def test_non_dominated_respects_each_direction(rows: list[dict[str, float]], objectives: str,
                                               front: list[int]) -> None:
    assert non_dominated(rows, parse_objectives(objectives)) == front


