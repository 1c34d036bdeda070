from __future__ import annotations

import json
import random
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from parity_fixtures import MAGIC, parity_target

import promptopt
from promptopt.evaluator import EvalResult, ExampleResult
from promptopt.exceptions import ConfigError
from promptopt.prompt import Prompt
from promptopt.strategies.promptwizard import PromptWizard, Scored
from promptopt.tasks import Task
from promptopt.testing import FakeBackend
from promptopt.types import Example, Request

PERSONA = "You are a careful mathematician who knows everything about parity."
SMALL = dict(mutate_refine_iterations=1, mutation_rounds=1, style_variation=3, seen_set_size=20,
             few_shot_count=4, refine_task_eg_iterations=0)


def _events(run_dir: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in Path(run_dir, "events.jsonl").read_text().splitlines()]


def _number(text: str) -> int:
    return int(re.findall(r"number (\d+)", text)[-1])


def wizard_optimizer(req: Request) -> str:
    """Mutations that find the magic word, critiques, refinements, reasoning chains and a persona.

    Reasoning chains for odd numbers end with the wrong answer, so they must be dropped.
    """
    text = req.messages[-1].content
    if "variations of the current instruction" in text:
        return ("<START>Think step by step, then say even or odd.<END>"
                f"<START>Use {MAGIC}: say whether the number is even or odd.<END>")
    if "Give the reasons" in text or "suggest how the instruction" in text:
        return "<START>It does not say how to decide.<END>"
    if "write one improved instruction" in text:
        return f"<START>Use {MAGIC}: look at the last digit and say even or odd.<END>"
    if "how to get from the input to the correct answer" in text:
        n = _number(text.split("Input:")[1])
        return f"The last digit of {n} is {n % 10}.\nAnswer: even"  # right for even n only
    if "describe the expert" in text:
        return PERSONA
    return "ok"


def _needs_the_word(req: Request) -> str:
    return parity_target(req) if MAGIC in req.messages[-1].content else "no idea"


def _run(task: Task, strategy: PromptWizard, reply: Any, tmp_path: Path) -> promptopt.Result:
    return promptopt.optimize(task, strategy, FakeBackend(reply=reply), answer_mode="generate",
                              budget=promptopt.Budget(target_calls=3000), runs_dir=tmp_path, cache=False)


def test_promptwizard_mutates_refines_and_builds_the_combined_prompt(parity_task: Task, tmp_path: Path) -> None:
    result = _run(parity_task, PromptWizard(**SMALL),
                  lambda r: wizard_optimizer(r) if r.role == "optimizer" else _needs_the_word(r), tmp_path)
    assert MAGIC in result.best_prompt.instruction and result.best_dev == 1.0 and result.seed_dev == 0.0
    events = _events(result.run_dir)
    operators = [e["operator"] for e in events if e["type"] == "candidate"]
    assert operators.count("mutate") == 2 and "refine" in operators and operators[-1] == "combine"
    combined = Prompt.from_dict(next(e["prompt"] for e in events if e.get("operator") == "combine"))
    assert combined.system == PERSONA and MAGIC in combined.instruction
    assert len(combined.demos) == 4 and {_number(d.input) % 2 for d in combined.demos} == {0, 1}
    for demo in combined.demos:
        if _number(demo.input) % 2 == 0:
            assert demo.output.startswith("The last digit") and demo.output.endswith("Answer: even")
        else:  # the chain ended with the wrong answer: dropped, the plain gold answer kept
            assert demo.output == "odd"
    dropped = [e for e in events if e["type"] == "skip" and e["operator"] == "reasoning"]
    assert dropped and all(e["reason"] == "final answer does not match the gold" for e in dropped)
    assert len(dropped) == sum(_number(d.input) % 2 for d in combined.demos)
    # the combined prompt and the instruction-only prompt were both scored on all of dev
    full = {e["prompt_id"] for e in events if e["type"] == "evaluation" and e["dev"] and e["n"] == 12}
    assert combined.id in full and result.best_prompt.id in full


def test_an_optimizer_cap_in_the_last_stage_still_combines_and_scores(parity_task: Task, tmp_path: Path) -> None:
    def reply(r: Request) -> str:
        return wizard_optimizer(r) if r.role == "optimizer" else _needs_the_word(r)

    final_stage = ("how to get from the input to the correct answer", "describe the expert")
    uncapped = FakeBackend(reply=reply)
    promptopt.optimize(parity_task, PromptWizard(**SMALL), uncapped, answer_mode="generate", cache=False,
                       budget=promptopt.Budget(target_calls=3000), runs_dir=tmp_path / "uncapped")
    before_final = sum(r.role == "optimizer" and not any(k in r.messages[-1].content for k in final_stage)
                       for r in uncapped.generate_requests)
    result = promptopt.optimize(parity_task, PromptWizard(**SMALL), FakeBackend(reply=reply), answer_mode="generate",
                                cache=False, runs_dir=tmp_path / "capped",
                                budget=promptopt.Budget(target_calls=3000, optimizer_calls=before_final))
    assert result.stopped_by is not None and result.stopped_by.startswith(f"optimizer call cap {before_final}")
    events = _events(result.run_dir)
    combined = Prompt.from_dict(next(e["prompt"] for e in events if e.get("operator") == "combine"))
    # no chain and no persona could be asked for: gold answers as demos, the prompt's own system text
    assert combined.system == parity_task.seed_prompt.system and MAGIC in combined.instruction
    assert combined.demos and all(d.output in ("even", "odd") for d in combined.demos)
    full = {e["prompt_id"] for e in events if e["type"] == "evaluation" and e["dev"] and e["n"] == 12}
    assert combined.id in full and result.best_dev == 1.0


def test_mutation_shows_thinking_styles(parity_task: Task, tmp_path: Path) -> None:
    seen: list[str] = []

    def reply(r: Request) -> str:
        if r.role == "optimizer":
            seen.append(r.messages[-1].content)
            return wizard_optimizer(r)
        return parity_target(r)

    _run(parity_task, PromptWizard(**{**SMALL, "mutation_rounds": 2, "style_variation": 4}), reply, tmp_path)
    mutations = [m for m in seen if "variations of the current instruction" in m]
    assert len(mutations) == 2
    assert all(m.count("\n- ") == 4 and "Write 4 variations" in m for m in mutations)


def _errs_on_multiples_of_three(req: Request) -> str:
    right = parity_target(req) if MAGIC in req.messages[-1].content else ("even", "odd")[_number(
        req.messages[-1].content) % 2]
    return ("odd" if right == "even" else "even") if _number(req.messages[-1].content) % 3 == 0 else right


def test_examples_are_the_ones_it_got_wrong_and_of_different_labels(parity_task: Task, tmp_path: Path) -> None:
    result = _run(parity_task, PromptWizard(**{**SMALL, "mutate_refine_iterations": 0, "seen_set_size": 36}),
                  lambda r: "" if r.role == "optimizer" else _errs_on_multiples_of_three(r), tmp_path)
    events = _events(result.run_dir)
    note = next(e for e in events if e["type"] == "examples")
    assert len(note["ids"]) == 4 and note["wrong"] == note["ids"]  # enough errors of each label in train
    combined = Prompt.from_dict(next(e["prompt"] for e in events if e.get("operator") == "combine"))
    numbers = [_number(d.input) for d in combined.demos]
    assert all(n % 3 == 0 for n in numbers)
    assert {n % 2 for n in numbers} == {0, 1}  # both labels


def test_promptwizard_with_a_useless_optimizer_returns_the_seed(parity_task: Task, tmp_path: Path) -> None:
    garbage = iter(["", "!!!", "<START><END>", "12345", "ok"] * 1000)
    result = _run(parity_task, PromptWizard(**{**SMALL, "refine_task_eg_iterations": 2}),
                  lambda r: next(garbage) if r.role == "optimizer" else parity_target(r), tmp_path)
    assert result.best_prompt == result.seed_prompt
    skipped = {e["operator"] for e in _events(result.run_dir) if e["type"] == "skip"}
    assert {"mutate", "reasoning", "persona"} <= skipped


class _StubContext:
    """Just enough of a Context to drive PromptWizard.score."""

    def __init__(self, wrong_from: dict[str, int]) -> None:
        self.wrong_from, self.calls, self.rng = wrong_from, [], random.Random(0)
        self.batch = 0

    task_names = ("parity",)

    def sample(self, items: Sequence[Any], k: int) -> list[Any]:
        return list(items)[:k]

    def sample_across_tasks(self, items: Sequence[Any], k: int, example_id: Any) -> list[Any]:
        return self.sample(items, k)

    def note(self, kind: str, **data: Any) -> None:
        pass

    def evaluate(self, prompts: Sequence[Prompt], examples: Sequence[Example]) -> list[EvalResult]:
        self.batch += 1
        self.calls.append([p.instruction for p in prompts])
        return [EvalResult(p, tuple(ExampleResult(ex.id, "", "x", float(self.batch < self.wrong_from[p.instruction]))
                                    for ex in examples)) for p in prompts]


def test_score_asks_batches_until_a_miss_or_enough_right() -> None:
    ctx = _StubContext({"always": 99, "second": 2, "never": 1})
    prompts = [Prompt("always"), Prompt("second"), Prompt("never")]
    seen = [Example(f"e{i}", f"number {i}", "even") for i in range(5)]
    scored = PromptWizard(min_correct_count=3, max_eval_batches=6).score(ctx, prompts, seen)  # type: ignore[arg-type]
    assert [s.score for s in scored] == [1.0, 0.5, 0.0]
    assert ctx.calls == [["always", "second", "never"], ["always", "second"], ["always"]]
    assert [s.failed for s in scored] == [False, True, True]
    assert len(scored[0].shown) == 3 and len(scored[1].shown) == 1  # right answers / the failing batch


def test_equal_scores_keep_the_longer_instruction_as_the_reference_does() -> None:
    scored = [Scored(Prompt(text), score, (), False) for text, score in
              [("Short.", 0.5), ("A much longer instruction.", 0.5), ("Best.", 1.0), ("Also long here.", 0.5)]]
    top = PromptWizard(top_n=3).select_top(scored)
    assert [s.prompt.instruction for s in top] == ["Best.", "A much longer instruction.", "Also long here."]


def test_promptwizard_parameters_validate_and_the_constructor_only_stores_them() -> None:
    wizard = PromptWizard()
    params = wizard.get_params()
    assert set(vars(wizard)) == set(params)
    assert (params["mutate_refine_iterations"], params["mutation_rounds"], params["style_variation"],
            params["few_shot_count"]) == (3, 3, 5, 5)
    with pytest.raises(ConfigError, match="'top_n' parameter of PromptWizard must be an int >= 1; got 0"):
        PromptWizard(top_n=0).validate()
    with pytest.raises(ConfigError, match="refine_instruction"):
        PromptWizard(refine_instruction="yes").validate()  # type: ignore[arg-type]


def test_a_target_cap_after_the_first_round_still_gets_its_leader_scored_on_dev(parity_task: Task,
                                                                               tmp_path: Path) -> None:
    def reply(r: Request) -> str:
        return wizard_optimizer(r) if r.role == "optimizer" else _needs_the_word(r)

    wizard = PromptWizard(**{**SMALL, "mutate_refine_iterations": 2})
    uncapped = _run(parity_task, wizard, reply, tmp_path / "uncapped")
    first_offer = next(e for e in _events(uncapped.run_dir) if e["type"] == "offer")
    # room for the first round (train minibatches only) beside the 12 dev calls kept back (kept back only
    # when they are at most half of what is left after the seed's 12)
    cap = max(first_offer["target_calls"] + 12 + 1, 12 + 2 * 12)
    result = promptopt.optimize(parity_task, wizard, FakeBackend(reply=reply), answer_mode="generate", cache=False,
                                budget=promptopt.Budget(target_calls=cap), runs_dir=tmp_path / "capped")
    assert result.stopped_by is not None and result.usage["search"]["target"]["calls"] <= cap
    kinds = [e["type"] for e in _events(result.run_dir)]
    second_round = [i for i, kind in enumerate(kinds) if kind == "round"][1]
    assert "budget_exhausted" in kinds[second_round:] and "offer" not in kinds[second_round:]  # stopped in round 2
    assert result.best_prompt.id == first_offer["prompt_ids"][0] and MAGIC in result.best_prompt.instruction
    assert result.best_dev == 1.0
