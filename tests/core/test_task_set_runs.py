"""Runs on a set of tasks with a fake model: routing, per-task modes and means, unseen tasks, the seed,
and single-task runs that stay exactly as they were."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import promptopt
from promptopt.strategies import APO, Strategy
from promptopt.tasks import ClassificationTask, CustomTask, Splits, Task
from promptopt.testing import FakeBackend
from promptopt.types import Example, Message, Request, ScoreRequest

MAGIC = "CAREFUL"
GOLD = re.compile(r"\[(\w+)\]")
TINY = {"rounds": 1, "beam_size": 2, "minibatch_size": 6, "n_gradients": 1, "mc_samples_per_step": 0,
        "eval_rounds": 2, "eval_prompts_per_round": 3, "samples_per_eval": 4}


def _examples(name: str, kind: str, n: int) -> tuple[Example, ...]:
    # the gold answer is in the input, so the fake model can be right when it "wants" to
    return tuple(Example(f"{kind}-{i}", f"{name} item {i} [{'yes' if i % 2 else 'no'}]", "yes" if i % 2 else "no")
                 for i in range(n))


def _splits(name: str, n_dev: int, n_test: int, n_train: int = 8) -> Splits:
    return Splits(_examples(name, "train", n_train), _examples(name, "dev", n_dev), _examples(name, "test", n_test))


def labelled(name: str, n_dev: int = 4, n_test: int = 4, n_train: int = 8) -> Task:
    return ClassificationTask(name, ("yes", "no"), _splits(name, n_dev, n_test, n_train),
                              instruction=f"Answer about {name}.")


def free_text(name: str, n_dev: int = 4, n_test: int = 4) -> Task:
    return CustomTask(name, _splits(name, n_dev, n_test), instruction=f"Answer about {name}.")


def _system(messages: tuple[Message, ...]) -> str:
    return messages[0].content if messages[0].role == "system" else ""


def _optimizer(req: Request) -> str:
    text = req.messages[-1].content
    if "reasons why" in text:
        return "<START>It never asks for care.<END>"
    if "improved versions" in text:
        return f"<START>Be {MAGIC} with every answer.<END>"
    return "ok"


def backend(right: Callable[[tuple[Message, ...]], bool] = lambda m: MAGIC in _system(m)) -> FakeBackend:
    """Right exactly when ``right(messages)``: replies the gold word, or gives it the highest log-probability."""
    def gold(messages: tuple[Message, ...]) -> str:
        found = GOLD.findall(messages[-1].content)
        return found[-1] if found else "?"  # a task of another kind (the synthetic ones) is always missed

    def reply(req: Request) -> str:
        if req.role == "optimizer":
            return _optimizer(req)
        return gold(req.messages) if right(req.messages) else "maybe"

    def score(req: ScoreRequest) -> float:
        if req.continuation != gold(req.messages):
            return -1.0
        return -0.1 if right(req.messages) else -3.0

    return FakeBackend("sets", reply=reply, score=score)


def _run(task: Any, tmp_path: Path, model: FakeBackend, **kw: Any) -> promptopt.Result:
    kw.setdefault("budget", promptopt.Budget(target_calls=600))
    return promptopt.optimize(task, APO(**TINY), model, runs_dir=tmp_path / "runs", cache=False, **kw)


def _events(result: promptopt.Result) -> list[dict[str, Any]]:
    return [json.loads(line) for line in Path(result.run_dir, "events.jsonl").read_text().splitlines()]


def _user(req: Request | ScoreRequest) -> str:
    return req.messages[-1].content


# --- routing --------------------------------------------------------------------------------------

def test_each_task_answers_in_its_own_mode_with_its_own_prompt(tmp_path: Path) -> None:
    fake = backend()
    result = _run([labelled("alpha"), free_text("omega")], tmp_path, fake)
    config = json.loads(Path(result.run_dir, "config.json").read_text())
    assert config["answer_modes"] == {"alpha": "choice", "omega": "generate"}
    assert result.answer_mode == config["answer_mode"] == "mixed"
    assert {name: s.answer_mode for name, s in result.per_task.items()} == {"alpha": "choice", "omega": "generate"}
    generated = [r for r in fake.generate_requests if r.role == "target"]
    assert generated and all(_user(r).startswith("Answer about omega.") for r in generated)
    assert fake.score_requests and all(_user(r).startswith("Answer about alpha.") for r in fake.score_requests)
    assert all(r.continuation in ("yes", "no") for r in fake.score_requests)


def test_apo_rewrites_the_shared_system_prompt_and_each_task_keeps_its_instruction(tmp_path: Path) -> None:
    fake = backend()
    tasks = [labelled("alpha", n_train=12), labelled("beta", n_train=2), labelled("gamma", n_train=2)]
    apo = APO(**{**TINY, "minibatch_size": 8, "errors_per_gradient": 3})
    result = promptopt.optimize(tasks, apo, fake, runs_dir=tmp_path / "runs", cache=False, system="Be quick.",
                                budget=promptopt.Budget(target_calls=600))
    assert result.seed_prompt == promptopt.Prompt(system="Be quick.")
    assert MAGIC in result.best_prompt.system and result.best_prompt.instruction == ""
    assert result.seed_dev == 0.0 and result.best_dev == 1.0
    assert {name: s.best_test.mean for name, s in result.per_task.items()} == {"alpha": 1.0, "beta": 1.0,
                                                                              "gamma": 1.0}
    for req in fake.score_requests:  # the candidate's system text, the task's own instruction
        task = _user(req).split()[2].rstrip(".")
        assert _user(req).startswith(f"Answer about {task}.\n\nText: {task} item")
        assert _system(req.messages) in ("Be quick.", result.best_prompt.system)
    critiques = [_user(r) for r in fake.generate_requests if r.role == "optimizer" and "reasons why" in _user(r)]
    assert critiques and '"Be quick."' in critiques[0]
    # the minibatch and the errors shown are spread over the tasks (a task short of examples gives what it has),
    # and each error names its task
    minibatch = next(e for e in _events(result) if e["type"] == "evaluation" and not e["dev"])
    assert {name: v["n"] for name, v in minibatch["per_task"].items()} == {"alpha": 4, "beta": 2, "gamma": 2}
    assert sorted(re.findall(r"\(task (\w+)\)", critiques[0])) == ["alpha", "beta", "gamma"]


# --- scores ---------------------------------------------------------------------------------------

def test_a_sets_score_is_the_mean_of_its_per_task_means(tmp_path: Path) -> None:
    right_on_big = backend(right=lambda m: "big item" in m[-1].content)
    result = _run([labelled("big", n_dev=6, n_test=9), labelled("small", n_dev=2, n_test=3)], tmp_path,
                  right_on_big, budget=promptopt.Budget(target_calls=16))  # the seed on dev, nothing more
    assert result.seed_dev == 0.5  # pooled over examples it would be 6/8
    assert result.seed_test.mean == 0.5 and result.seed_test.n == 12
    assert (result.per_task["big"].seed_dev, result.per_task["small"].seed_dev) == (1.0, 0.0)
    assert (result.per_task["big"].seed_test.n, result.per_task["small"].seed_test.n) == (9, 3)
    seed_eval = next(e for e in _events(result) if e["type"] == "evaluation")
    assert seed_eval["mean"] == 0.5 and seed_eval["n"] == 8
    assert seed_eval["per_task"] == {"big": {"n": 6, "mean": 1.0}, "small": {"n": 2, "mean": 0.0}}


def test_unseen_tasks_are_scored_only_after_the_search(tmp_path: Path) -> None:
    fake = backend()
    result = _run([labelled("alpha"), labelled("beta")], tmp_path, fake, unseen=[labelled("omega", n_test=5)])
    events = _events(result)
    first_test = next(i for i, e in enumerate(events) if e["type"] == "test")
    for event in events[:first_test]:
        assert "omega" not in json.dumps(event), event  # never evaluated, never mentioned, during the search
    assert all(e["type"] != "evaluation" for e in events[first_test:])
    unseen = [e for e in events if e["type"] == "unseen_test"]
    assert {e["prompt_id"] for e in unseen} == {result.seed_prompt.id, result.best_prompt.id}
    assert all(e["task"] == "omega" and e["n"] == 5 for e in unseen)
    assert result.unseen["omega"].seed_test.mean == 0.0 and result.unseen["omega"].best_test.mean == 1.0
    asked = [r for r in fake.score_requests if "omega item" in _user(r)]
    assert len(asked) == 2 * 5 * 2  # seed and best, five test examples, two labels each
    assert "omega" in json.loads(Path(result.run_dir, "result.json").read_text())["unseen"]


# --- the seed and the configuration -----------------------------------------------------------------

def test_the_seed_system_prompt_is_given_by_the_file_else_the_setting_else_the_models_default(
        tmp_path: Path) -> None:
    budget = promptopt.Budget(target_calls=16)
    fake = backend()
    plain = _run([labelled("alpha"), labelled("beta")], tmp_path / "a", fake, budget=budget)
    assert plain.seed_prompt.system == ""  # a fake model has no chat template, so no default to show
    assert all(m.role == "user" for r in fake.score_requests for m in r.messages)
    given = _run([labelled("alpha"), labelled("beta")], tmp_path / "b", backend(), budget=budget, system="Be brief.")
    assert given.seed_prompt.system == "Be brief." and given.run_id != plain.run_id
    suite = tmp_path / "suite.toml"
    suite.write_text('system = "From the file."\ntasks = ["synthetic:sentiment", "synthetic:arithmetic"]\n')
    from_file = promptopt.optimize(task_set=suite, strategy=APO(**TINY), model=backend(), budget=budget,
                                   runs_dir=tmp_path / "c", cache=False, n_dev=4, n_test=4)
    assert from_file.seed_prompt.system == "From the file." and from_file.task == "suite"
    flag_wins = promptopt.optimize(task_set=suite, strategy=APO(**TINY), model=backend(), budget=budget,
                                   runs_dir=tmp_path / "c", cache=False, n_dev=4, n_test=4, system="Flag.")
    assert flag_wins.seed_prompt.system == "Flag."


# Computed on main before task sets existed (commit e5e3c37), with this very configuration:
# run ids and results of single-task runs must not move.
ON_MAIN = {"generate": ("synthetic-sentiment-apo-e51c1255", 0.4, 1.0),
           "choice": ("synthetic-sentiment-apo-c159f638", 0.4, 1.0)}
SENTIMENT_WORDS = ("wonderful", "excellent", "great", "delightful", "fantastic", "superb", "lovely", "brilliant",
                   "enjoyable", "amazing")


def _sentiment(messages: tuple[Message, ...]) -> str:
    user = messages[-1].content
    sentence = user.rsplit("\n", 2)[-2]
    wanted = "positive" if any(w in sentence for w in SENTIMENT_WORDS) else "negative"
    return wanted if "SENTIMENT" in user else "positive"


@pytest.mark.parametrize("mode", ["generate", "choice"])
def test_a_single_task_run_keeps_its_run_id_and_result(tmp_path: Path, mode: str) -> None:
    def optimizer(text: str) -> str:
        if "reasons why" in text:
            return "<START>The prompt never says the magic word.<END>"
        if "improved versions" in text:
            return "<START>SENTIMENT: say whether the sentence is positive or negative.<END>"
        return "ok"

    fake = FakeBackend("fixed", score=lambda r: -0.5 if r.continuation == _sentiment(r.messages) else -2.0,
                       reply=lambda r: optimizer(_user(r)) if r.role == "optimizer" else _sentiment(r.messages))
    params = {"rounds": 2, "beam_size": 2, "minibatch_size": 8, "n_gradients": 1, "mc_samples_per_step": 1,
              "eval_rounds": 2, "eval_prompts_per_round": 3, "samples_per_eval": 5}
    result = promptopt.optimize("synthetic:sentiment", "apo", fake, answer_mode=mode, strategy_params=params,
                                n_train=40, n_dev=10, n_test=10, budget=promptopt.Budget(target_calls=400),
                                seed=5, runs_dir=tmp_path, cache=False)
    assert (result.run_id, result.seed_dev, result.best_dev) == ON_MAIN[mode]
    assert (result.seed_test.mean, result.best_test.mean) == (0.4, 1.0)
    saved = json.loads(Path(result.run_dir, "result.json").read_text())
    assert "per_task" not in saved and "unseen" not in saved
    assert "task_set" not in json.loads(Path(result.run_dir, "config.json").read_text())


# --- bad specs through the Python API: refused before any call -------------------------------------

@pytest.mark.parametrize(("kwargs", "fragment"), [
    ({"task": "synthetic:sentiment,nope"}, "'nope'"),
    ({"task": ","}, "names no task"),
    ({"task": "synthetic:sentiment,synthetic:arithmetic", "unseen": "synthetic:arithmetic"}, "both"),
    ({"task": "synthetic:sentiment,file:x.jsonl"}, "cannot hold a file: task in a list"),
    ({"task": "synthetic:sentiment,synthetic:arithmetic", "strategy": "fewshot"}, "strategies that can: ape, apo,"),
    ({"task": "synthetic:sentiment", "unseen": "synthetic:arithmetic", "strategy": "tapruning"}, "apo"),
], ids=["unknown", "empty", "both", "file-in-list", "strategy", "strategy-with-unseen"])
def test_bad_specs_are_refused_before_any_call(tmp_path: Path, kwargs: dict[str, Any], fragment: str) -> None:
    fake = backend()
    kwargs.setdefault("strategy", "apo")
    with pytest.raises(promptopt.ConfigError, match=re.escape(fragment)):
        promptopt.optimize(model=fake, runs_dir=tmp_path / "runs", cache=False, **kwargs)
    assert fake.n_calls == 0 and not (tmp_path / "runs").exists()


class _DrawsOne(Strategy):
    """Draws one training example across the set's tasks, 40 times, and notes each draw's task."""

    name = "draws-one"
    supports_task_sets = True

    def optimize(self, ctx: Any) -> list[promptopt.Prompt]:
        for _ in range(40):
            (example,) = ctx.sample_across_tasks(ctx.train, 1, lambda ex: ex.id)
            ctx.note("drawn", task=ctx.task_of(example.id))
        return []


def test_draws_smaller_than_the_set_do_not_favour_its_first_tasks(tmp_path: Path) -> None:
    names = ("alpha", "beta", "gamma", "delta")
    result = promptopt.optimize([labelled(n) for n in names], _DrawsOne(), backend(), runs_dir=tmp_path / "runs",
                                cache=False, budget=promptopt.Budget(target_calls=600))
    drawn = [e["task"] for e in _events(result) if e["type"] == "drawn"]
    counts = {name: drawn.count(name) for name in names}
    assert len(drawn) == 40 and all(n >= 4 for n in counts.values()), counts  # 10 expected each


def test_a_sets_tokens_per_call_count_its_system_prompt_and_each_tasks_calls_in_its_own_mode() -> None:
    # alpha scores two labels (two calls of a short reply), omega generates up to max_tokens (one call)
    fake = backend()
    alone = [promptopt.estimate(task, APO(**TINY), fake, answer_mode=mode).target_tokens_per_call
             for task, mode in ((labelled("alpha"), "choice"), (free_text("omega"), "generate"))]
    assert alone[1] - alone[0] > 40  # a reply of max_tokens (64) against a label of a few

    def on_set(**settings: Any) -> promptopt.Estimate:
        config = promptopt.RunConfig(task=[labelled("alpha"), free_text("omega")], strategy=APO(**TINY),
                                     model=fake, **settings)
        return promptopt.estimate(config=config)

    mixed = on_set()
    assert mixed.answer_mode == "mixed" and mixed.target_tokens_per_call == (2 * alone[0] + alone[1]) // 3
    # a shared system prompt of 4,000 characters (about 1,000 tokens) is in every call
    assert on_set(system="word " * 800).target_tokens_per_call - mixed.target_tokens_per_call >= 990
    # plans are priced with the same figure: a token cap fits the steps its calls would (no calls are
    # kept back for finalists, which the Run does only under a call cap)
    calls = on_set(budget=promptopt.Budget(target_calls=300), finalist_reserve=0)
    tokens = on_set(budget=promptopt.Budget(target_tokens=300 * mixed.target_tokens_per_call), finalist_reserve=0)
    assert calls.steps is not None and tokens.steps == pytest.approx(calls.steps)
