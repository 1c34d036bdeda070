"""SPRIG: the component edits, the UCB over components, the beam, minibatches across tasks, one task,
the budget, and the step plan, with scripted fake models on synthetic tasks."""

from __future__ import annotations

import json
import random
import re
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

import promptopt
from promptopt.cli import app
from promptopt.strategies import SPRIG, get_strategy
from promptopt.strategies import sprig as sprig_module
from promptopt.strategies._base import Spend, StepPlan
from promptopt.strategies._edits import split
from promptopt.strategies._sprig_components import CATEGORIES, COMPONENTS, components_of
from promptopt.strategies._ucb_arms import UCBArms
from promptopt.strategies.sprig import component_edits
from promptopt.tasks import ClassificationTask, Splits, Task
from promptopt.testing import FakeBackend
from promptopt.types import Example, Message, Request, ScoreRequest

STEP = "Think step by step."
GOLD = re.compile(r"\[(\w+)\]")
# no paraphrases unless a test wants them: the optimizer stays out of the way
EDITS_ONLY = {"operators": "add,delete,swap", "examples_per_task": 4}


def labelled(name: str, n_train: int = 8, n_dev: int = 4, n_test: int = 4) -> Task:
    def examples(kind: str, n: int) -> tuple[Example, ...]:
        return tuple(Example(f"{kind}-{i}", f"{name} item {i} [{'yes' if i % 2 else 'no'}]",
                             "yes" if i % 2 else "no") for i in range(n))

    return ClassificationTask(name, ("yes", "no"), Splits(examples("train", n_train), examples("dev", n_dev),
                                                          examples("test", n_test)),
                              instruction=f"Answer about {name}.")


def _prompt_text(messages: tuple[Message, ...]) -> str:
    """The system message, or (one task, no system message) the user message's instruction line."""
    if messages[0].role == "system":
        return messages[0].content
    return messages[-1].content.split("\n\n")[0]


def fake(right: Callable[[str], bool], optimizer: Callable[[Request], str] = lambda r: "ok") -> FakeBackend:
    """Choice mode: the gold label gets the highest log-probability exactly when ``right(text)``,
    where text is the system prompt (or, on one task, the instruction)."""
    def score(req: ScoreRequest) -> float:
        gold = GOLD.findall(req.messages[-1].content)[-1]
        if req.continuation != gold:
            return -1.0
        return -0.1 if right(_prompt_text(req.messages)) else -3.0

    return FakeBackend("sprig", score=score, reply=lambda r: optimizer(r) if r.role == "optimizer" else "?")


def run(task: Any, model: FakeBackend, tmp_path: Path, *, calls: int = 4000, **params: Any) -> promptopt.Result:
    return promptopt.optimize(task, SPRIG(**{**EDITS_ONLY, **params}), model, runs_dir=tmp_path / "runs",
                              cache=False, budget=promptopt.Budget(target_calls=calls), scale_to_budget=False)


def events(result: promptopt.Result, kind: str | None = None) -> list[dict[str, Any]]:
    lines = Path(result.run_dir, "events.jsonl").read_text().splitlines()
    return [e for e in map(json.loads, lines) if kind is None or e["type"] == kind]


# --- the operators on the component pool -----------------------------------------------------------

def test_each_operator_changes_the_components_as_it_says() -> None:
    parent = split("You are a patient tutor. Be direct. Think step by step.", "sentence")
    ranked = ["Keep your reply short.", "Be direct.", "Stay calm and confident."]
    edits = component_edits(parent, ["add", "delete", "swap", "substitute", "paraphrase"], ranked=ranked,
                            paraphrases={"Be direct.": ["Say it plainly."]})
    by_kind: dict[str, list[Any]] = {}
    for e in edits:
        by_kind.setdefault(e.edit.operator, []).append(e)
    assert Counter({k: len(v) for k, v in by_kind.items()}) == Counter(
        {"delete": 3, "swap": 3, "substitute": 3 * 2, "paraphrase": 1, "add": 4 * 2})
    for e in by_kind["add"]:  # a new component is in the prompt, everything else kept in order
        (new,) = e.edit.after
        assert new in e.units.pieces and new in e.units.join() and new != "Be direct."  # present ones not re-added
        assert [p for p in e.units.pieces if p != new] == list(parent.pieces) and e.credit == ((new, 1),)
    for e in by_kind["delete"]:
        (gone,) = e.edit.before
        assert gone not in e.units.pieces and len(e.units) == 2 and e.credit == ((gone, -1),)
    for e in by_kind["swap"]:  # the same components, in another order
        assert Counter(e.units.pieces) == Counter(parent.pieces) and e.units.pieces != parent.pieces
        assert e.credit == ()
    for e in by_kind["substitute"]:
        (old,), (new,) = e.edit.before, e.edit.after
        assert new in e.units.pieces and old not in e.units.pieces and e.credit == ((new, 1), (old, -1))
    (para,) = by_kind["paraphrase"]
    assert para.units.join() == "You are a patient tutor. Say it plainly. Think step by step."


def test_an_empty_prompt_can_only_grow() -> None:
    empty = split("", "sentence")
    edits = component_edits(empty, ["add", "delete", "swap", "paraphrase"], ranked=[STEP, "Be direct."])
    assert [(e.edit.operator, e.units.join()) for e in edits] == [("add", STEP), ("add", "Be direct.")]


def test_the_pool_has_every_category_of_the_paper_and_no_repeats() -> None:
    assert set(CATEGORIES) == {"good_property", "role", "style", "emotion", "scenario", "jailbreak", "safety",
                               "behavioral", "chain_of_thought"}
    pool = components_of(CATEGORIES)
    assert len(pool) == sum(len(v) for v in COMPONENTS.values()) >= 36
    assert all(len(split(c, "sentence")) == 1 for c in pool)  # each is one sentence: edits never split it
    assert components_of(["safety"]) == COMPONENTS["safety"]


# --- UCB over components ----------------------------------------------------------------------------

def test_ucb_settles_on_the_arm_with_the_higher_mean_reward() -> None:
    rng = random.Random(0)
    means = {"useless": 0.0, "harmful": -0.2, "helpful": 0.25}
    bandit = UCBArms(means)
    pulled = []
    for _ in range(300):
        arm = bandit.ranked()[0]
        pulled.append(arm)
        bandit.update(arm, means[arm] + rng.gauss(0, 0.3))
    assert sorted(pulled[:3]) == sorted(means)  # every arm is tried once before any twice
    assert bandit.ranked()[0] == "helpful"
    assert Counter(pulled).most_common(1)[0][0] == "helpful"
    assert bandit.pulls("harmful") < bandit.pulls("useless") < bandit.pulls("helpful")


def test_ucb_bound_is_the_mean_plus_the_references_bonus() -> None:
    bandit = UCBArms(["a", "b"], c=1.0)
    for reward in (0.5, 0.1):
        bandit.update("a", reward)
    bandit.update("b", -0.4)
    assert bandit.bound("a") == pytest.approx(0.3 + (2 * 1.0986122886681098 / 2) ** 0.5)
    assert bandit.bound("b") == pytest.approx(-0.4 + (2 * 1.0986122886681098) ** 0.5)


def test_components_are_credited_with_the_score_change_they_brought(tmp_path: Path) -> None:
    # right exactly when the system prompt holds STEP: adding it brings +1, nothing else brings anything
    result = run([labelled("alpha"), labelled("beta")], fake(lambda s: STEP in s), tmp_path,
                 beam_size=2, max_iterations=2)
    first_beam = events(result, "sprig_beam")[0]
    assert first_beam["arms"][STEP] == {"pulls": 1, "mean": 1.0}
    assert all(v["mean"] == 0.0 for arm, v in first_beam["arms"].items() if arm != STEP)
    # the next iteration ranks it first (same bonus for all, tried once each), though it is already in the best
    second = events(result, "sprig_iteration")[1]
    assert second["ucb_order"][0] == STEP
    assert STEP in result.best_prompt.system and result.best_dev == 1.0



@pytest.mark.parametrize("seed_text", ["Be brief.", "Be brief. Be calm."], ids=["one-sentence", "two-sentences"])
def test_each_parent_gets_n_add_components_it_does_not_hold(tmp_path: Path, seed_text: str) -> None:
    # the seed's own sentences are arms too; they must not take the places of components to add
    added: list[frozenset[str]] = []
    for seed in (0, 1, 2, 3):
        result = promptopt.optimize([labelled("alpha"), labelled("beta")],
                                    SPRIG(operators="add", n_add=2, beam_size=1, examples_per_task=2,
                                          max_iterations=1), fake(lambda s: False), system=seed_text, seed=seed,
                                    runs_dir=tmp_path / f"runs-{seed}", cache=False,
                                    budget=promptopt.Budget(target_calls=4000), scale_to_budget=False)
        pieces = len(split(seed_text, "sentence"))
        first = events(result, "sprig_iteration")[0]
        assert first["candidates"] == 2 * (pieces + 1)  # 2 components at every place
        assert first["ucb_order"][-pieces:] == list(split(seed_text, "sentence").pieces)  # after the pool: untried too
        new = {c for e in events(result, "edit") for edit in e["edits"] for c in edit["after"]}
        assert len(new) == 2 and new <= set(components_of(CATEGORIES))
        added.append(frozenset(new))
    assert len(set(added)) > 1  # untried components tie: the run's seed orders them, not the pool


# --- the beam ------------------------------------------------------------------------------------

def test_the_beam_never_loses_its_best(tmp_path: Path) -> None:
    # right only with STEP alone: every child of the best prompt is worse than it
    result = run([labelled("alpha"), labelled("beta")], fake(lambda s: s == STEP), tmp_path, beam_size=1,
                 max_iterations=3)
    beams = events(result, "sprig_beam")
    assert len(beams) == 3
    best_scores = [b["beam"][0]["score"] for b in beams]
    assert best_scores == [1.0, 1.0, 1.0]
    step = promptopt.Prompt(system=STEP)
    assert all(b["beam"][0]["prompt_id"] == step.id for b in beams)
    assert result.best_prompt == step


def test_minibatches_are_drawn_across_tasks_and_parents_compete_on_them(tmp_path: Path) -> None:
    tasks = [labelled("alpha", n_train=12), labelled("beta", n_train=3), labelled("gamma", n_train=12)]
    result = run(tasks, fake(lambda s: False), tmp_path, beam_size=2, max_iterations=1)
    assert events(result, "sprig_iteration")[0]["examples"] == 12  # 4 each asked, beta gives its 3 (+1 elsewhere)
    searched = [e for e in events(result, "evaluation") if not e["dev"]]
    assert searched and all(e["n"] == 12 and set(e["per_task"]) == {"alpha", "beta", "gamma"} for e in searched)
    assert all(e["per_task"]["beta"]["n"] == 3 for e in searched)
    edits = [edit for e in events(result, "edit") for edit in e["edits"]]
    assert edits and {edit["field"] for edit in edits} == {"system"}  # the edits name the shared system prompt


def test_unseen_tasks_are_never_evaluated_during_the_search(tmp_path: Path) -> None:
    result = promptopt.optimize([labelled("alpha"), labelled("beta")], SPRIG(**EDITS_ONLY, max_iterations=1),
                                fake(lambda s: STEP in s), unseen=[labelled("omega")], runs_dir=tmp_path / "runs",
                                cache=False, budget=promptopt.Budget(target_calls=4000), scale_to_budget=False)
    log = events(result)
    first_test = next(i for i, e in enumerate(log) if e["type"] == "test")
    assert not any("omega" in json.dumps(e) for e in log[:first_test])
    assert {e["task"] for e in log if e["type"] == "unseen_test"} == {"omega"}


# --- paraphrases by the optimizer -------------------------------------------------------------------

def test_a_component_is_paraphrased_once_per_run_and_its_paraphrase_credits_it(tmp_path: Path) -> None:
    def optimizer(req: Request) -> str:
        return "Reason one step at a time" if STEP in req.messages[-1].content else "ok"

    model = fake(lambda s: "step" in s.lower(), optimizer)
    result = run([labelled("alpha"), labelled("beta")], model, tmp_path, beam_size=2, max_iterations=3,
                 operators="add,delete,paraphrase", n_paraphrases=2, categories="chain_of_thought")
    assert len(events(result, "sprig_beam")) == 3
    asked = [r.messages[-1].content for r in model.generate_requests if r.role == "optimizer"]
    assert sum(STEP in text for text in asked) == 2  # one request of two samples, however many parents held it
    made = [e for e in events(result, "candidate") if e["operator"] == "paraphrase"]
    assert any(e["prompt"]["system"] == "Reason one step at a time." for e in made)
    # deleting the paraphrase (right -> wrong) is credited to the component it rewrote
    arms = events(result, "sprig_beam")[-1]["arms"]
    assert "Reason one step at a time." not in arms and arms[STEP]["pulls"] >= 2


def test_every_paraphrase_reply_is_a_rewrite_or_a_logged_skip(tmp_path: Path) -> None:
    # a rewrite, the component unchanged, no letters, the same rewrite again
    replies = ["Reason one step at a time", "Think step by step.", "42", "Reason one step at a time"]

    def optimizer(req: Request) -> str:
        return replies[req.sample_index] if STEP in req.messages[-1].content else "ok"

    result = promptopt.optimize([labelled("alpha"), labelled("beta")],
                                SPRIG(**{**EDITS_ONLY, "operators": "paraphrase"}, n_paraphrases=4, beam_size=1,
                                      max_iterations=2),
                                fake(lambda s: False, optimizer), system=STEP, runs_dir=tmp_path / "runs",
                                cache=False, budget=promptopt.Budget(target_calls=4000), scale_to_budget=False)
    (made,) = events(result, "sprig_paraphrases")  # asked once, though the beam kept STEP both iterations
    assert made == {**made, "component": STEP, "rewrites": ["Reason one step at a time."] * 2}
    skips = [(e["operator"], e["reason"]) for e in events(result, "skip")]
    assert sorted(skips) == [("paraphrase", "no usable paraphrase"), ("paraphrase", "the component unchanged")]
    assert result.usage["search"]["optimizer"]["calls"] == len(made["rewrites"]) + len(skips) == 4
    children = [e for e in events(result, "candidate") if e["operator"] == "paraphrase"]
    assert [e["prompt"]["system"] for e in children] == ["Reason one step at a time."]  # the same rewrite once


# --- one task, bad input, the budget -------------------------------------------------------------------

def test_on_one_task_it_edits_the_instruction(tmp_path: Path) -> None:
    result = run(labelled("alpha"), fake(lambda text: STEP in text), tmp_path, beam_size=2, max_iterations=2)
    assert result.best_dev == 1.0 and result.best_prompt.system == ""
    assert STEP in result.best_prompt.instruction and "Answer about alpha." in result.best_prompt.instruction
    assert all(e["prompt"]["system"] == "" for e in events(result, "candidate"))
    assert {edit["field"] for e in events(result, "edit") for edit in e["edits"]} == {"instruction"}


@pytest.mark.parametrize(("params", "fragment"), [
    ({"operators": "add,jump"}, "'operators' parameter of SPRIG"),
    ({"categories": ["role", "poetry"]}, "'categories' parameter of SPRIG"),
    ({"beam_size": 0}, "'beam_size' parameter of SPRIG"),
    ({"max_iterations": -1}, "'max_iterations' parameter of SPRIG"),
])
def test_bad_parameters_are_refused_before_any_call(tmp_path: Path, params: dict[str, Any], fragment: str) -> None:
    model = fake(lambda s: True)
    with pytest.raises(promptopt.ConfigError, match=re.escape(fragment)):
        promptopt.optimize([labelled("alpha"), labelled("beta")], "sprig", model, strategy_params=params,
                           runs_dir=tmp_path / "runs", cache=False)
    assert model.n_calls == 0


def test_a_budget_stop_keeps_the_leaders_it_offered(tmp_path: Path) -> None:
    # any component helps (the seed has none: its examples have no system message and read the
    # task's instruction); the cap ends the first iteration after a couple of chunks of candidates
    any_component = fake(lambda text: not text.startswith("Answer about"))
    result = run([labelled("alpha"), labelled("beta")], any_component, tmp_path, beam_size=2, calls=400)
    assert result.stopped_by and "target call cap" in result.stopped_by
    assert not events(result, "sprig_beam")  # no iteration finished
    offered = events(result, "offer")[-1]["prompt_ids"]
    assert result.best_prompt.id == offered[0] and result.best_dev == 1.0 and result.seed_dev == 0.0


def test_a_stop_completes_a_new_leader_when_the_seed_leads_a_one_prompt_beam(tmp_path: Path) -> None:
    # nothing helps, so the seed leads every minibatch; the leaders offered still name new prompts,
    # and the calls kept back finish the best of them on dev instead of going unused
    nothing_helps = fake(lambda text: False)
    result = run([labelled("alpha"), labelled("beta")], nothing_helps, tmp_path, beam_size=1, calls=400)
    assert result.stopped_by and "kept back" in result.stopped_by
    offered = events(result, "offer")[-1]["prompt_ids"]
    assert offered[0] == result.seed_prompt.id and len(offered) == 3
    assert result.n_fully_scored == 2  # the seed and the first new leader


def test_without_max_iterations_it_stops_after_the_references_iterations(tmp_path: Path,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    # a budget whose target cap is never reached: the loop ends on its own (the count made small here)
    monkeypatch.setattr(sprig_module, "REFERENCE_ITERATIONS", 2)
    result = run([labelled("alpha"), labelled("beta")], fake(lambda s: False), tmp_path, beam_size=1, n_add=1,
                 calls=10**6, max_iterations=None)
    assert result.stopped_by is None and [e["index"] for e in events(result, "sprig_iteration")] == [0, 1]
    assert SPRIG().max_iterations is None and SPRIG().step_plan(30, 100).paper_steps is None


def test_parameters_round_trip_and_the_registry_knows_it() -> None:
    sprig = get_strategy("sprig", {"beam_size": 3, "operators": "add,delete"})
    assert isinstance(sprig, SPRIG) and SPRIG(**sprig.get_params()).get_params() == sprig.get_params()
    assert SPRIG().supports_task_sets and SPRIG().finalist_gap(30) == 30


def test_step_plan_counts_one_iteration_with_a_full_beam() -> None:
    # 10 parents of 3 components: 4 x 40 adds (the whole pool), 3 deletes, 3 swaps, 30 paraphrases each;
    # parents and children on 10 examples each
    pool = len(components_of(CATEGORIES))
    children = 10 * (4 * pool + 3 + 3 + 30)
    assert SPRIG().step_plan(30, 1000) == StepPlan(
        "iteration", Spend(example_evals=(10 + children) * 10, optimizer_calls=10 * 3 * 10), paper_steps=None,
        finish=Spend(example_evals=10 * 30, new_full=10))
    small = SPRIG(beam_size=2, n_add=5, operators="add,swap", max_iterations=4).step_plan(30, 6)
    assert small == StepPlan("iteration", Spend(example_evals=(2 + 2 * (4 * 5 + 3)) * 6), paper_steps=4,
                             finish=Spend(example_evals=2 * 30, new_full=2))


def test_dry_run_on_a_set_shows_the_plan(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["optimize", "--strategy", "sprig", "--task",
                                      "synthetic:sentiment,synthetic:arithmetic", "--model", "fake:x", "--param",
                                      "max_iterations=4", "--param", "beam_size=2", "--dry-run", "--runs-dir",
                                      str(tmp_path / "runs"), "--no-scale-to-budget"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    # two tasks of 30 dev examples (the default) and 100 training ones (the synthetic tasks' own)
    plan = SPRIG(beam_size=2, max_iterations=4).step_plan(2 * 30, 2 * 100, n_tasks=2).per_step
    assert f"plan: one iteration ≈ {plan.example_evals:,.0f} example evaluations (" in result.stdout, result.stdout
    assert f" target calls), {plan.optimizer_calls:,.0f} optimizer calls" in result.stdout
    assert "the paper's loop runs 4" in result.stdout and not (tmp_path / "runs").exists()
