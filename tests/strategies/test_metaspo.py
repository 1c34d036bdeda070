"""MetaSPO: the inner loop tunes only the task whose errors it saw, the outer loop keeps the system prompt
with the best mean of per-task means, what the Run scores, one task refused, with scripted fake models."""

from __future__ import annotations

import itertools
import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

import promptopt
from promptopt.cli import app
from promptopt.strategies import MetaSPO, get_strategy
from promptopt.strategies._base import Spend, StepPlan
from promptopt.strategies.metaspo import meta_score
from promptopt.tasks import ClassificationTask, Splits, Task, TaskSet
from promptopt.testing import FakeBackend
from promptopt.types import Example, Message, Request, ScoreRequest

GOLD = re.compile(r"\[(\w+)\]")
ITEM = re.compile(r"(\w+) item (\d+)")
QUIET = {"iterations": 1, "n_system_candidates": 0, "n_user_candidates": 0, "examples_per_task": 8}


def labelled(name: str, n_train: int = 8, n_dev: int = 4, n_test: int = 4) -> Task:
    def examples(kind: str, n: int) -> tuple[Example, ...]:
        return tuple(Example(f"{kind}-{i}", f"{name} item {i} ({kind}) [{'yes' if i % 2 else 'no'}]",
                             "yes" if i % 2 else "no") for i in range(n))

    return ClassificationTask(name, ("yes", "no"), Splits(examples("train", n_train), examples("dev", n_dev),
                                                          examples("test", n_test)),
                              instruction=f"Answer about {name}.")


def _system(messages: tuple[Message, ...]) -> str:
    return messages[0].content if messages[0].role == "system" else ""


Right = Callable[[str, str, str, int], bool]  # system, user message, task, item number


def fake(right: Right, optimizer: Callable[[str], str]) -> FakeBackend:
    """Choice mode: the gold label is likeliest exactly when ``right(system, user, task, item)``."""
    def score(req: ScoreRequest) -> float:
        user = req.messages[-1].content
        task, item = ITEM.findall(user)[-1]
        if req.continuation != GOLD.findall(user)[-1]:
            return -1.0
        return -0.1 if right(_system(req.messages), user, task, int(item)) else -3.0

    def reply(req: Request) -> str:
        return optimizer(req.messages[-1].content) if req.role == "optimizer" else "?"

    return FakeBackend("metaspo", score=score, reply=reply)


def run(tasks: Any, model: FakeBackend, tmp_path: Path, **params: Any) -> promptopt.Result:
    return promptopt.optimize(tasks, MetaSPO(**{**QUIET, **params}), model, runs_dir=tmp_path / "runs",
                              cache=False, budget=promptopt.Budget(target_calls=4000), scale_to_budget=False)


def events(result: promptopt.Result, kind: str | None = None) -> list[dict[str, Any]]:
    lines = Path(result.run_dir, "events.jsonl").read_text().splitlines()
    return [e for e in map(json.loads, lines) if kind is None or e["type"] == kind]


# --- the inner loop -----------------------------------------------------------------------------

def test_the_inner_loop_tunes_only_the_task_whose_errors_it_saw(tmp_path: Path) -> None:
    def optimizer(text: str) -> str:
        # the rewrite names the task whose errors it was shown
        seen = sorted(set(re.findall(r"\(task (\w+)\)", text)))
        if "reasons why" in text:
            return "<START>It is too vague.<END>"
        return f"<START>Look closely at each {'+'.join(seen)} item.<END>"

    # alpha's seed prompt is wrong on every example, beta's right on every one (beta has no error to show)
    model = fake(lambda system, user, task, item: task == "beta" or "Look closely" in user, optimizer)
    result = run([labelled("alpha"), labelled("beta")], model, tmp_path, n_user_candidates=2)
    inner = {e["task"]: [p["instruction"] for p in e["user_prompts"]] for e in events(result, "metaspo_inner")}
    assert inner == {"alpha": ["Look closely at each alpha item.", "Answer about alpha."],
                     "beta": ["Answer about beta."]}
    rewrite = promptopt.Prompt(system="", instruction="Look closely at each alpha item.")
    scored = [e for e in events(result, "evaluation") if e["prompt_id"] == rewrite.id]
    assert len(scored) == 1 and set(scored[0]["per_task"]) == {"alpha"} and scored[0]["mean"] == 1.0
    asked = [r.messages[-1].content for r in model.score_requests]
    assert any(u.startswith("Look closely at each alpha item.\n\nText: alpha item") for u in asked)
    assert all(u.startswith("Answer about beta.") for u in asked if "beta item" in u)  # beta's never changed
    # what the Run scores on dev and test is the system prompt with each task's own seed instruction
    assert all(u.startswith("Answer about ") for u in asked if "(dev)" in u or "(test)" in u)
    final = events(result, "metaspo_user_prompts")[0]["tasks"]
    assert final["alpha"]["user_prompts"][0] == {"instruction": "Look closely at each alpha item.", "score": 1.0}
    assert final["alpha"]["seed_score"] == 0.0 and final["beta"]["seed_score"] == 1.0


# --- the outer loop ------------------------------------------------------------------------------

def test_the_outer_loop_keeps_the_system_prompt_with_the_best_mean_of_per_task_means(tmp_path: Path) -> None:
    proposals = itertools.cycle(["Mind alpha.", "Mind both.", "Mind alpha again."])

    def optimizer(text: str) -> str:
        return "<START>It ignores the tasks.<END>" if "reasons why" in text else f"<START>{next(proposals)}<END>"

    def right(system: str, user: str, task: str, item: int) -> bool:
        if system.startswith("Mind alpha"):  # every alpha example, no beta one: per task (1, 0), pooled 0.8
            return task == "alpha"
        if system == "Mind both.":  # half of alpha, all of beta: per task (0.5, 1), pooled 0.6
            return task == "beta" or item % 4 < 2
        return False

    tasks = [labelled("alpha", n_train=8), labelled("beta", n_train=2)]
    result = run(tasks, fake(right, optimizer), tmp_path, n_system_candidates=3)
    (outer,) = events(result, "metaspo_outer")
    ids = {promptopt.Prompt(system=s).id: s for s in ("Mind alpha.", "Mind both.", "Mind alpha again.")}
    assert [(ids[c["prompt_id"]], c["meta_score"]) for c in outer["candidates"]] == [
        ("Mind alpha.", 0.5), ("Mind both.", 0.75), ("Mind alpha again.", 0.5)]
    assert ids[outer["system_id"]] == "Mind both." and outer["meta_score"] == 0.75 and outer["changed"]
    assert result.best_prompt == promptopt.Prompt(system="Mind both.")


def test_meta_score_is_the_mean_of_per_task_means_over_user_prompts() -> None:
    assert meta_score({"a": [1.0, 0.5, 0.0], "b": [0.0]}) == pytest.approx(0.25)
    assert meta_score({}) == 0.0


def test_the_system_writer_sees_errors_of_several_tasks_and_their_instructions(tmp_path: Path) -> None:
    asked: list[str] = []

    def optimizer(text: str) -> str:
        asked.append(text)
        return "<START>Too vague.<END>" if "reasons why" in text else "<START>Read the task carefully.<END>"

    tasks = [labelled("alpha"), labelled("beta"), labelled("gamma")]
    run(tasks, fake(lambda *_: False, optimizer), tmp_path, n_system_candidates=1, errors_per_task=2)
    (critique,) = [t for t in asked if "reasons why" in t]
    shown = re.findall(r"\(task (\w+)\)", critique)
    assert sorted(shown) == ["alpha", "alpha", "beta", "beta", "gamma", "gamma"]
    assert 'alpha: "Answer about alpha."' in critique and "system prompt shared by 3 tasks" in critique


def test_every_optimizer_reply_is_a_critique_a_listed_rewrite_or_a_logged_skip(tmp_path: Path) -> None:
    system_critiques = itertools.count()

    def optimizer(text: str) -> str:
        if "reasons why" in text:  # the second critique of a system prompt is empty
            empty = "user prompt" not in text and next(system_critiques) == 1
            return "" if empty else "<START>Too vague.<END>"
        return "<START>Look closely.<END>" if "user prompt" in text else "<START>Be careful.<END>"

    model = fake(lambda *_: False, optimizer)
    result = run([labelled("alpha"), labelled("beta")], model, tmp_path, n_user_candidates=3, n_system_candidates=3)
    inner = {e["task"]: e["proposed"] for e in events(result, "metaspo_inner")}
    assert inner == {"alpha": ["Look closely."], "beta": ["Look closely."]}  # the same rewrite again is skipped
    (outer,) = events(result, "metaspo_outer")
    skips = [(e["operator"], e["reason"]) for e in events(result, "skip")]
    assert sorted(skips) == [("gradient", "empty reply"),
                             ("system-rewrite", "the current system prompt or one proposed already")] + [
                             ("user-rewrite", "a user prompt the task already holds")] * 4
    # each rewrite follows a critique with reasons: 6 + 3 critiques, 6 + 2 rewrites
    rewrites = sum(map(len, inner.values())) + len(outer["candidates"]) + sum(s[0] != "gradient" for s in skips)
    assert result.usage["search"]["optimizer"]["calls"] == 2 * rewrites + 1 == 17


# --- the set, the Run, one task --------------------------------------------------------------------

def test_unseen_tasks_are_never_evaluated_during_the_search(tmp_path: Path) -> None:
    def optimizer(text: str) -> str:
        return "<START>Too vague.<END>" if "reasons why" in text else "<START>Be careful.<END>"

    model = fake(lambda *_: False, optimizer)
    result = promptopt.optimize([labelled("alpha"), labelled("beta")], MetaSPO(**{**QUIET, "n_user_candidates": 1,
                                                                                   "n_system_candidates": 1}),
                                model, unseen=[labelled("omega")], runs_dir=tmp_path / "runs", cache=False,
                                scale_to_budget=False)
    log = events(result)
    first_test = next(i for i, e in enumerate(log) if e["type"] == "test")
    assert any(e["type"] == "metaspo_outer" for e in log[:first_test])
    assert not any("omega" in json.dumps(e) for e in log[:first_test])
    assert {e["task"] for e in log if e["type"] == "unseen_test"} == {"omega"}


@pytest.mark.parametrize("tasks", [lambda: labelled("alpha"), lambda: TaskSet([labelled("alpha")]),
                                   lambda: TaskSet([labelled("alpha")], unseen=[labelled("omega")])],
                         ids=["one-task", "set-of-one", "one-with-unseen"])
def test_one_task_is_refused_before_any_call(tmp_path: Path, tasks: Callable[[], Task]) -> None:
    model = fake(lambda *_: True, lambda text: "ok")
    with pytest.raises(promptopt.ConfigError, match=r"'metaspo' needs a set of at least 2 tasks.*got 1 task"):
        promptopt.optimize(tasks(), "metaspo", model, runs_dir=tmp_path / "runs", cache=False)
    assert model.n_calls == 0 and not (tmp_path / "runs").exists()


def test_one_task_on_the_command_line_is_one_error_line_exit_2(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["optimize", "--strategy", "metaspo", "--task", "synthetic:sentiment",
                                      "--model", "fake:x", "--no-progress", "--runs-dir", str(tmp_path / "runs")])
    lines = result.output.strip().splitlines()
    assert result.exit_code == 2 and len(lines) == 1, result.output
    assert lines[0].startswith("error: strategy 'metaspo' needs a set of at least 2 tasks")
    assert "--task sst2,mr,subj" in lines[0] and not (tmp_path / "runs").exists()


@pytest.mark.parametrize(("params", "fragment"), [({"user_top_k": 0}, "'user_top_k' parameter of MetaSPO"),
                                                  ({"temperature": 3.0}, "'temperature' parameter of MetaSPO")])
def test_bad_parameters_are_refused_before_any_call(tmp_path: Path, params: dict[str, Any], fragment: str) -> None:
    model = fake(lambda *_: True, lambda text: "ok")
    with pytest.raises(promptopt.ConfigError, match=re.escape(fragment)):
        promptopt.optimize([labelled("alpha"), labelled("beta")], "metaspo", model, strategy_params=params,
                           runs_dir=tmp_path / "runs", cache=False)
    assert model.n_calls == 0


def test_parameters_round_trip_and_the_plan() -> None:
    metaspo = get_strategy("metaspo", {"iterations": 2})
    assert isinstance(metaspo, MetaSPO) and MetaSPO(**metaspo.get_params()).get_params() == metaspo.get_params()
    assert MetaSPO.supports_task_sets and MetaSPO.min_tasks == 2 and MetaSPO().finalist_gap(20) == 20
    # two tasks of 50 examples: inner 2 x 3 rewrites (2 calls, 50 evaluations each); outer 9 proposals
    # (2 calls each) scored with 3 user prompts on both tasks
    assert MetaSPO().step_plan(20, 1000) == StepPlan(
        "iteration", Spend(example_evals=6 * 50 + 9 * 2 * 3 * 50, optimizer_calls=2 * (6 + 9)), paper_steps=3,
        setup=Spend(example_evals=2 * 50), finish=Spend(example_evals=3 * 20, new_full=3))


def test_dry_run_on_a_set_of_three_shows_the_plan(tmp_path: Path) -> None:
    rows = [json.dumps({"input": f"item {i}", "target": "yes" if i % 2 else "no"}) for i in range(60)]
    (tmp_path / "yes_no.jsonl").write_text("\n".join(rows) + "\n")
    names = ["synthetic:sentiment", "synthetic:arithmetic", f"file:{tmp_path / 'yes_no.jsonl'}"]
    (tmp_path / "set.toml").write_text("".join(f'[[tasks]]\nname = "{name}"\n' for name in names))
    result = CliRunner().invoke(app, ["optimize", "--strategy", "metaspo", "--task-set", str(tmp_path / "set.toml"),
                                      "--model", "fake:x", "--param", "iterations=2", "--param",
                                      "n_system_candidates=4", "--param", "examples_per_task=15", "--n-train", "20",
                                      "--n-dev", "10", "--n-test", "10", "--dry-run", "--runs-dir",
                                      str(tmp_path / "runs"), "--no-scale-to-budget"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    # 3 x 3 user rewrites and 4 system prompts scored with 3 user prompts, on 15 examples of each task
    metaspo = MetaSPO(iterations=2, n_system_candidates=4, examples_per_task=15)
    plan = metaspo.step_plan(3 * 10, 3 * 20, n_tasks=3).per_step
    assert (plan.example_evals, plan.optimizer_calls) == (3 * 3 * 15 + 4 * 3 * 3 * 15, 2 * (3 * 3 + 4))
    assert f"plan: one iteration ≈ {plan.example_evals:,.0f} example evaluations (" in result.stdout, result.stdout
    assert f" target calls), {plan.optimizer_calls:,.0f} optimizer calls" in result.stdout
    assert "the paper's loop runs 2" in result.stdout and not (tmp_path / "runs").exists()


def test_the_refusal_on_a_set_names_both_system_prompt_strategies(tmp_path: Path) -> None:
    model = fake(lambda *_: True, lambda text: "ok")
    with pytest.raises(promptopt.ConfigError, match=r"strategies that can: .*metaspo.*sprig") as refused:
        promptopt.optimize([labelled("alpha"), labelled("beta")], "fewshot", model, runs_dir=tmp_path / "runs",
                           cache=False)
    assert model.n_calls == 0 and "'fewshot' cannot search a set" in str(refused.value)
