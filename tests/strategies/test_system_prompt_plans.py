"""SPRIG's and MetaSPO's step plans on sets of tasks (each counts the set's tasks, as its loop does, and a fake
run spends exactly its plan), and both scaled to the default budget (a first step completed within it, an
explicit parameter kept, a step that cannot fit said so), with scripted fake models on small labelled tasks."""

from __future__ import annotations

import itertools
import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import promptopt
from promptopt.config import default_budget
from promptopt.strategies import SPRIG, MetaSPO, PromptWizard
from promptopt.strategies._base import Spend, StepPlan
from promptopt.strategies._sprig_components import components_of
from promptopt.tasks import ClassificationTask, Splits, Task
from promptopt.testing import FakeBackend
from promptopt.types import Example, Request, ScoreRequest

GOLD = re.compile(r"\[(\w+)\]")
VARIANT = re.compile(r"variant (\d+)")
NAMES = ("alpha", "beta", "gamma", "delta")


def labelled(name: str, n_train: int = 8, n_dev: int = 4) -> Task:
    def examples(kind: str, n: int) -> tuple[Example, ...]:
        return tuple(Example(f"{kind}-{i}", f"{name} item {i} [{'yes' if i % 2 else 'no'}]",
                             "yes" if i % 2 else "no") for i in range(n))

    return ClassificationTask(name, ("yes", "no"), Splits(examples("train", n_train), examples("dev", n_dev),
                                                          examples("test", 4)),
                              instruction=f"Answer about {name}.")


def tasks(k: int, **sizes: int) -> list[Task]:
    return [labelled(name, **sizes) for name in NAMES[:k]]


def fake(optimizer: Callable[[Request], str]) -> FakeBackend:
    """Choice mode: every prompt gets the odd items right and the even ones wrong, so prompts tie (the seed
    keeps its place) and every prompt has errors to show the optimizer."""
    def score(req: ScoreRequest) -> float:
        user = req.messages[-1].content
        item = int(re.findall(r"item (\d+)", user)[-1])
        gold = GOLD.findall(user)[-1]
        return -0.1 if (req.continuation == gold) == bool(item % 2) else -2.0

    return FakeBackend("plans", score=score, reply=lambda r: optimizer(r) if r.role == "optimizer" else "?")


def fresh_replies() -> Callable[[Request], str]:
    """A new text for every optimizer reply: a critique, a rewrite (in APO's tags) or a paraphrase."""
    counter = itertools.count()

    def reply(req: Request) -> str:
        n = next(counter)
        if "reasons why" in req.messages[-1].content:
            return f"<START>Reason number {n} is vagueness.<END>"
        return f"<START>Answer with care, variant {n}.<END>" if "<START>" in req.messages[-1].content \
            else f"Be careful, variant {n}."

    return reply


def params(result: promptopt.Result) -> dict[str, Any]:
    """The strategy parameters the run used (scaled or not), from its configuration."""
    config: dict[str, Any] = json.loads(Path(result.run_dir, "config.json").read_text())
    return dict(config["strategy_params"])


def events(result: promptopt.Result, kind: str) -> list[dict[str, Any]]:
    lines = Path(result.run_dir, "events.jsonl").read_text().splitlines()
    return [e for e in map(json.loads, lines) if e["type"] == kind]


# --- the plans count the set's tasks ---------------------------------------------------------------------

def test_sprigs_minibatch_holds_examples_of_every_task() -> None:
    # the loop draws examples_per_task (10) of each task a minibatch; a full beam of 10 parents of 3 components
    # makes 10 x (4 x 40 adds + 3 deletes + 3 swaps + 30 paraphrases) children, parents rescored beside them
    pool = len(components_of(SPRIG().categories))
    prompts = 10 + 10 * (4 * pool + 3 + 3 + 30)
    two, four = (SPRIG().step_plan(60, 1000, n_tasks=k) for k in (2, 4))
    assert (two.per_step.example_evals, four.per_step.example_evals) == (prompts * 20, prompts * 40)
    assert two.per_step.optimizer_calls == four.per_step.optimizer_calls == 10 * 3 * 10  # asked per component
    # fewer training examples than a minibatch asks: all of them
    assert SPRIG().step_plan(60, 30, n_tasks=4).per_step.example_evals == prompts * 30


def test_metaspos_loops_run_over_every_task() -> None:
    # 50 examples of each task; inner loop: 3 rewrites per task (critique + edit), each scored on its task;
    # outer loop: 9 system prompts (critique + edit) scored with each task's kept user prompts: after the
    # first inner loop a task holds its seed and 3 rewrites and keeps user_top_k (3) of them, as later
    def plan(k: int) -> StepPlan:
        return StepPlan("iteration", Spend(example_evals=k * 3 * 50 + 9 * k * 3 * 50,
                                           optimizer_calls=2 * (k * 3 + 9)),
                        paper_steps=3, setup=Spend(example_evals=k * 50),
                        finish=Spend(example_evals=3 * 60, new_full=3))

    assert MetaSPO().step_plan(60, 1000, n_tasks=2) == plan(2)
    assert MetaSPO().step_plan(60, 1000, n_tasks=4) == plan(4)
    # 4 tasks sharing 120 training examples: 30 each, fewer than examples_per_task
    assert MetaSPO().step_plan(60, 120, n_tasks=4).setup == Spend(example_evals=4 * 30)


def test_the_dry_run_passes_the_number_of_tasks() -> None:
    model = fake(fresh_replies())
    for strategy, cls in (("sprig", SPRIG), ("metaspo", MetaSPO)):
        est = promptopt.estimate(tasks(4), strategy, model, strategy_params={}, scale_to_budget=False)
        assert est.plan == cls().step_plan(16, 32, n_tasks=4) != cls().step_plan(16, 32)


def test_a_sprig_iteration_spends_its_plan_on_four_tasks(tmp_path: Path) -> None:
    # one parent of 3 components (the plan's), every edit a new prompt: the plan of a beam of one is exact
    sprig = SPRIG(beam_size=1, examples_per_task=2, n_paraphrases=2, categories="chain_of_thought",
                  max_iterations=1)
    model = fake(fresh_replies())
    result = promptopt.optimize(tasks(4), sprig, model, system="Be brief. Be calm. Be clear.",
                                runs_dir=tmp_path / "runs", cache=False, budget=promptopt.Budget(target_calls=9000))
    (iteration,) = events(result, "sprig_iteration")
    # 4 x 5 adds (the category's five components at each of 4 places), 3 deletes, 3 swaps, 3 x 2 paraphrases
    assert (iteration["examples"], iteration["candidates"]) == (2 * 4, 4 * 5 + 3 + 3 + 3 * 2)
    assert result.best_prompt.id == result.seed_prompt.id  # ties keep the seed: nothing more is scored on dev
    plan = sprig.step_plan(16, 32, n_tasks=4)
    assert plan.per_step.example_evals == (1 + iteration["candidates"]) * 8
    search = result.usage["search"]
    assert search["target"]["calls"] == 2 * (16 + plan.per_step.example_evals)  # the seed on dev, then the step
    assert search["optimizer"]["calls"] == plan.per_step.optimizer_calls == 3 * 2


def test_a_metaspo_iteration_spends_its_plan_on_four_tasks(tmp_path: Path) -> None:
    metaspo = MetaSPO(iterations=1, n_system_candidates=2, n_user_candidates=2, user_top_k=2, examples_per_task=4)
    model = fake(fresh_replies())
    result = promptopt.optimize(tasks(4), metaspo, model, runs_dir=tmp_path / "runs", cache=False,
                                budget=promptopt.Budget(target_calls=9000))
    assert [e["changed"] for e in events(result, "metaspo_outer")] == [False]  # ties: nothing more on dev
    plan = metaspo.step_plan(16, 32, n_tasks=4)
    search = result.usage["search"]
    evals = 16 + plan.setup.example_evals + plan.per_step.example_evals  # the seed on dev, the setup, the step
    assert search["target"]["calls"] == 2 * evals == 2 * (16 + 4 * 4 + 4 * 2 * 4 + 2 * 4 * 2 * 4)
    assert search["optimizer"]["calls"] == plan.per_step.optimizer_calls == 2 * (4 * 2 + 2)



def test_metaspos_plan_counts_the_user_prompts_kept_from_earlier_iterations(tmp_path: Path) -> None:
    # one rewrite per task an iteration, three kept: the user prompts a system prompt is scored with grow
    # from 2 (iteration 0: the seed and one rewrite) to 3 (iteration 1: another rewrite, the others kept)
    metaspo = MetaSPO(iterations=2, n_system_candidates=2, n_user_candidates=1, user_top_k=3, examples_per_task=4)
    result = promptopt.optimize(tasks(3), metaspo, fake(fresh_replies()), runs_dir=tmp_path / "runs", cache=False,
                                budget=promptopt.Budget(target_calls=9000))
    assert [e["changed"] for e in events(result, "metaspo_outer")] == [False, False]  # ties: nothing more on dev
    held = [len(e["user_prompts"]) for e in events(result, "metaspo_inner")]
    assert held == [2] * 3 + [3] * 3
    k, n = 3, 4
    first, largest = (k * 1 * n + 2 * k * kept * n for kept in (2, 3))  # inner rewrites + system prompts
    plan = metaspo.step_plan(12, 24, n_tasks=3)
    assert plan.per_step.example_evals == largest  # the plan takes the iteration that scores the most
    # the seed on dev, each task's seed user prompt, then the two iterations
    assert result.usage["search"]["target"]["calls"] == 2 * (12 + plan.setup.example_evals + first + largest)


def test_promptwizards_plan_on_a_set_finishes_with_its_one_system_prompt(tmp_path: Path) -> None:
    # on a set the search rewrites the system prompt and returns its best: no examples, no persona,
    # so one new candidate reaches all of dev, not three
    wizard = PromptWizard(mutate_refine_iterations=1, mutation_rounds=1, style_variation=2)
    budget = promptopt.Budget(target_calls=9000)
    est = promptopt.estimate(tasks(2), wizard, FakeBackend(), budget=budget)
    result = promptopt.optimize(tasks(2), wizard, fake(fresh_replies()), runs_dir=tmp_path, cache=False, budget=budget)
    assert est.plan is not None and est.plan.finish.optimizer_calls == 0
    assert est.new_full == result.n_fully_scored - 1 == 1


# --- scaled to the default budget ------------------------------------------------------------------------

def _scaled_run(strategy: str, k: int, tmp_path: Path, **params: Any) -> promptopt.Result:
    return promptopt.optimize(tasks(k, n_train=40, n_dev=30), strategy, fake(fresh_replies()),
                              strategy_params=params, runs_dir=tmp_path / "runs", cache=False)


def test_a_scaled_sprig_run_completes_its_first_iteration_within_the_default_budget(tmp_path: Path) -> None:
    result = _scaled_run("sprig", 3, tmp_path)
    assert result.scaled_to_budget and not result.scaling_short
    assert result.scaled_to_budget["examples_per_task"] == [10, 5] and result.scaled_to_budget["beam_size"][1] >= 1
    assert [e["index"] for e in events(result, "sprig_beam")][:1] == [0]  # iteration 0 ended with its beam kept
    assert result.usage["search"]["target"]["calls"] <= default_budget("choice").target_calls


def improving(optimizer: Callable[[Request], str]) -> FakeBackend:
    """Choice mode: a system prompt naming "variant n" also gets the even items below n right, so each
    new system prompt (a higher n) beats the last and MetaSPO accepts one every iteration."""
    def score(req: ScoreRequest) -> float:
        system = req.messages[0].content if req.messages[0].role == "system" else ""
        level = max((int(n) for n in VARIANT.findall(system)), default=0)
        user = req.messages[-1].content
        item = int(re.findall(r"item (\d+)", user)[-1])
        right = bool(item % 2) or item < level
        return -0.1 if (req.continuation == GOLD.findall(user)[-1]) == right else -2.0

    return FakeBackend("plans", score=score, reply=lambda r: optimizer(r) if r.role == "optimizer" else "?")


def test_a_scaled_metaspo_run_completes_its_loop_within_the_default_budget(tmp_path: Path) -> None:
    # at its smallest the loop fits (3.6 iterations), but scoring its three accepted system prompts on
    # all 90 dev examples (540 calls) does not: what is left pays for two, so the run says it fell short
    est = promptopt.estimate(tasks(3, n_train=40, n_dev=30), "metaspo", FakeBackend())
    assert est.steps is not None and est.steps >= 3 and est.new_full == 2
    result = promptopt.optimize(tasks(3, n_train=40, n_dev=30), "metaspo", improving(fresh_replies()),
                                runs_dir=tmp_path / "runs", cache=False)
    assert [e["changed"] for e in events(result, "metaspo_outer")] == [True, True, True]  # three accepted
    assert result.n_fully_scored - 1 == est.new_full and result.scaling_short
    assert result.usage["search"]["target"]["calls"] <= default_budget("choice").target_calls


def test_an_explicit_parameter_is_kept_and_a_step_that_cannot_fit_says_so(tmp_path: Path) -> None:
    sprig = _scaled_run("sprig", 2, tmp_path / "sprig", beam_size=2)
    assert sprig.scaled_to_budget and "beam_size" not in sprig.scaled_to_budget
    assert params(sprig)["beam_size"] == 2 and not sprig.scaling_short
    # 50 examples of each of three tasks: even at its smallest an iteration is 750 evaluations, 1,500 calls
    metaspo = _scaled_run("metaspo", 3, tmp_path / "metaspo", examples_per_task=50)
    assert "examples_per_task" not in metaspo.scaled_to_budget and params(metaspo)["examples_per_task"] == 50
    assert metaspo.scaling_short and metaspo.scaled_to_budget == {
        "n_system_candidates": [9, 2], "n_user_candidates": [3, 1], "user_top_k": [3, 2]}
