from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from parity_fixtures import MAGIC, parity_target

import promptopt
from promptopt.exceptions import ConfigError
from promptopt.prompt import Prompt
from promptopt.strategies.opro import OPRO, Scored, build_meta_prompt
from promptopt.tasks import Task
from promptopt.testing import FakeBackend
from promptopt.types import Example, Request

SMALL = dict(n_steps=3, instructions_per_step=2)


def opro_optimizer(req: Request) -> str:
    """Ordinary instructions until three are on the trajectory, then the magic one (once), then repeats."""
    text = req.messages[-1].content
    shown = text.count("Instruction: <INS>")
    if shown == 3 and req.sample_index == 0:
        return f"<INS>Use {MAGIC}: say whether the number is even or odd.</INS>"
    return f"Sure! <INS>Say if the number is even or odd, version {min(shown, 3)}.{req.sample_index}.</INS>"


def _backend(optimizer=opro_optimizer) -> FakeBackend:  # type: ignore[no-untyped-def]
    return FakeBackend("opro-script", reply=lambda r: optimizer(r) if r.role == "optimizer" else parity_target(r))


def _events(run_dir: str) -> list[dict[str, object]]:
    return [json.loads(line) for line in Path(run_dir, "events.jsonl").read_text().splitlines()]


def _meta_prompts(backend: FakeBackend) -> list[str]:
    """One meta-prompt per step (every sample of a step shares it)."""
    return list(dict.fromkeys(r.messages[-1].content for r in backend.generate_requests if r.role == "optimizer"))


def _optimize(task: Task, strategy: OPRO, backend: FakeBackend, tmp_path: Path,
              budget: promptopt.Budget | None = None) -> promptopt.Result:
    return promptopt.optimize(task, strategy, backend, answer_mode="generate", cache=False, runs_dir=tmp_path,
                              budget=budget or promptopt.Budget(target_calls=2000))


def test_opro_climbs_the_score_sorted_trajectory(parity_task: Task, tmp_path: Path) -> None:
    backend = _backend()
    result = _optimize(parity_task, OPRO(**SMALL), backend, tmp_path)
    assert MAGIC in result.best_prompt.instruction
    assert result.best_dev == 1.0 and result.seed_dev < 1.0
    optimizer_requests = [r for r in backend.generate_requests if r.role == "optimizer"]
    assert len(optimizer_requests) == 3 * 2 and {r.temperature for r in optimizer_requests} == {1.0}
    metas = _meta_prompts(backend)
    assert len(metas) == 3
    # step 1 shows the seed alone; each later step shows everything scored so far, lowest score first
    assert metas[0].count("<INS>") == 2 and parity_task.seed_prompt.instruction in metas[0]
    for meta in metas:
        scores = [int(s) for s in re.findall(r"Score: (\d+)", meta)]
        assert scores == sorted(scores)
    assert re.findall(r"<INS>(.*?)</INS>\nScore: (\d+)\n\nHere are", metas[2]) == [(result.best_prompt.instruction,
                                                                                      "100")]
    events = _events(result.run_dir)
    made = [e for e in events if e["type"] == "candidate" and e["operator"] == "opro"]
    assert len(made) == 5  # 2 + 2 + 2 proposals, one of them a repeat
    assert any(e["type"] == "skip" and "repeats" in str(e["reason"]) for e in events)
    # the magic instruction was written from a meta-prompt that showed the seed and the first two
    magic = next(e for e in made if MAGIC in str(e["prompt"]))
    assert result.seed_prompt.id in magic["parents"] and len(magic["parents"]) == 3  # type: ignore[arg-type]


def test_exemplars_come_from_train_and_change_every_step(parity_task: Task, tmp_path: Path) -> None:
    backend = _backend()
    _optimize(parity_task, OPRO(**SMALL, n_exemplars=3), backend, tmp_path)
    train = {ex.input for ex in parity_task.splits.train}
    shown = [re.findall(r"Input: (number \d+)", meta) for meta in _meta_prompts(backend)]
    assert all(len(inputs) == 3 and set(inputs) <= train for inputs in shown)
    assert len({tuple(inputs) for inputs in shown}) > 1


def test_meta_prompt_orders_by_score_and_shows_percentages() -> None:
    examples = [Example("e1", "number 4", "even")]
    text = build_meta_prompt([("Second best.", 0.5), ("Worst.", 0.125), ("Best of all.", 0.9)], examples)
    assert text.index("Worst.") < text.index("Second best.") < text.index("Best of all.")
    assert "Score: 12\n" in text and "Score: 90" in text
    assert text.index("Best of all.") < text.index("Input: number 4\nOutput: even")
    assert "(none yet)" in build_meta_prompt([], [])
    assert "Here are examples" not in build_meta_prompt([("Worst.", 0.1)], [])


def test_only_the_best_instructions_above_the_threshold_are_shown() -> None:
    scores = [0.9, 0.1, 0.5, 0.7, 0.2]
    trajectory = [Scored(Prompt(instruction=f"instruction {i}"), s, i) for i, s in enumerate(scores)]
    shown = OPRO(max_shown=3, min_score_shown=0.15).shown(trajectory)
    assert [s.score for s in shown] == [0.5, 0.7, 0.9]
    assert [s.score for s in OPRO(max_shown=10, min_score_shown=0.15).shown(trajectory)] == [0.2, 0.5, 0.7, 0.9]


def test_scoring_on_dev_keeps_the_best_when_the_budget_runs_out(parity_task: Task, tmp_path: Path) -> None:
    def one_new_instruction_per_step(req: Request) -> str:
        shown = req.messages[-1].content.count("Instruction: <INS>")
        if shown == 3:
            return f"<INS>Use {MAGIC}: say whether the number is even or odd.</INS>"
        return f"<INS>Say if the number is even or odd, version {shown}.</INS>"

    # 12 dev examples: the seed, two ordinary ones, the magic one and one more fit in 60 calls
    result = _optimize(parity_task, OPRO(n_steps=10, instructions_per_step=1),
                       _backend(one_new_instruction_per_step), tmp_path, promptopt.Budget(target_calls=60))
    assert result.stopped_by is not None
    assert MAGIC in result.best_prompt.instruction and result.best_dev == 1.0
    assert result.usage["search"]["target"]["calls"] == 60


def test_train_subset_scoring_leaves_the_final_choice_to_dev(parity_task: Task, tmp_path: Path) -> None:
    result = _optimize(parity_task, OPRO(**SMALL, score_examples=10, n_finalists=3), _backend(), tmp_path)
    assert MAGIC in result.best_prompt.instruction
    evaluations = [e for e in _events(result.run_dir) if e["type"] == "evaluation"]
    on_train = {e["prompt_id"] for e in evaluations if not e["dev"]}
    on_dev = {e["prompt_id"] for e in evaluations if e["dev"]}
    assert len(on_train) == 6  # the seed and five proposals, each scored on the same 10 training examples
    assert {e["n"] for e in evaluations if not e["dev"]} == {10}
    # only the three finalists (best train scores; ties go to the earlier, here the seed) reach dev
    assert len(on_dev) == 3 and {result.seed_prompt.id, result.best_prompt.id} <= on_dev <= on_train


def test_useless_optimizer_returns_the_seed(parity_task: Task, tmp_path: Path) -> None:
    garbage = iter(["", "!!!", "<INS></INS>", "12345", "ok"] * 100)
    result = _optimize(parity_task, OPRO(**SMALL), _backend(lambda r: next(garbage)), tmp_path)
    assert result.best_prompt == result.seed_prompt and result.n_candidates == 1
    skips = [e for e in _events(result.run_dir) if e["type"] == "skip"]
    assert len(skips) == 6 and all(e["operator"] == "opro" for e in skips)


def test_parameters_round_trip_and_validate() -> None:
    opro = OPRO(n_steps=5)
    assert opro.get_params() == {"n_steps": 5, "instructions_per_step": 8, "temperature": 1.0, "max_shown": 20,
                                 "n_exemplars": 3, "min_score_shown": 0.0, "score_examples": None,
                                 "n_finalists": 3}
    assert set(vars(opro)) == set(opro.get_params())
    assert repr(opro).startswith("OPRO(n_steps=5, instructions_per_step=8")
    OPRO(score_examples=20).validate()
    with pytest.raises(ConfigError, match="'instructions_per_step' parameter of OPRO must be an int >= 1; got 0"):
        OPRO(instructions_per_step=0).validate()
    with pytest.raises(ConfigError, match="'score_examples' parameter of OPRO"):
        OPRO(score_examples=0).validate()


def test_train_scoring_stopped_by_the_budget_still_gets_its_leader_scored_on_dev(parity_task: Task,
                                                                                   tmp_path: Path) -> None:
    def one_new_instruction_per_step(req: Request) -> str:
        shown = req.messages[-1].content.count("Instruction: <INS>")
        if shown == 1:
            return f"<INS>Use {MAGIC}: say whether the number is even or odd.</INS>"
        return f"<INS>Say if the number is even or odd, version {shown}.</INS>"

    # the seed on 30 dev examples, 30 calls kept back for one leader; steps of 10 train examples until the cap
    result = _optimize(parity_task, OPRO(n_steps=50, instructions_per_step=1, score_examples=10),
                       _backend(one_new_instruction_per_step), tmp_path, promptopt.Budget(target_calls=100))
    assert result.stopped_by is not None
    offers = [e for e in _events(result.run_dir) if e["type"] == "offer"]
    assert offers and offers[-1]["prompt_ids"][0] == result.best_prompt.id
    assert MAGIC in result.best_prompt.instruction and result.best_dev == 1.0
    assert result.usage["search"]["target"]["calls"] <= 100
