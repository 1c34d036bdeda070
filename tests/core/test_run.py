from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from parity_fixtures import parity_target, scripted_optimizer

import promptopt
from promptopt.store import RunStore
from promptopt.strategies import Strategy
from promptopt.tasks import Task
from promptopt.testing import FakeBackend

SMALL = {"rounds": 2, "beam_size": 2, "minibatch_size": 12, "n_gradients": 2, "mc_samples_per_step": 1,
         "eval_rounds": 3, "eval_prompts_per_round": 4, "samples_per_eval": 8}


def _backend() -> FakeBackend:
    return FakeBackend("scripted", reply=lambda r: scripted_optimizer(r) if r.role == "optimizer"
                       else parity_target(r))


def _run(task: Task, tmp_path: Path, **kw: Any) -> promptopt.Result:
    kw.setdefault("budget", promptopt.Budget(target_calls=2000))
    kw.setdefault("cache", tmp_path / "cache.sqlite")
    return promptopt.optimize(task, "apo", kw.pop("model", None) or _backend(), answer_mode="generate",
                              strategy_params=SMALL, runs_dir=tmp_path / "runs", **kw)


def test_run_writes_its_files(parity_task: Task, tmp_path: Path) -> None:
    result = _run(parity_task, tmp_path)
    run_dir = Path(result.run_dir)
    assert {p.name for p in run_dir.iterdir()} >= {"config.json", "events.jsonl", "result.json", "best_prompt.txt"}
    config = json.loads((run_dir / "config.json").read_text())
    assert config["strategy"] == "apo" and config["strategy_params"]["beam_size"] == 2
    assert config["answer_mode"] == "generate"
    saved = json.loads((run_dir / "result.json").read_text())
    assert saved["best_prompt"]["instruction"] == result.best_prompt.instruction
    assert result.best_prompt.instruction in (run_dir / "best_prompt.txt").read_text()
    assert saved["answer_mode"] == "generate"


def test_same_seed_same_result_and_rerun_replays_from_cache(parity_task: Task, tmp_path: Path) -> None:
    first = _run(parity_task, tmp_path)
    fake = _backend()
    second = _run(parity_task, tmp_path, model=fake)
    measured = ("usage", "strategy_seconds")  # what a replay does not repeat: paid calls, compute time
    without_usage = {k: v for k, v in first.to_dict().items() if k not in measured}
    assert {k: v for k, v in second.to_dict().items() if k not in measured} == without_usage
    assert fake.n_calls == 0
    assert second.usage["total"]["target"]["paid_calls"] == 0
    assert second.usage["total"]["target"]["calls"] == first.usage["total"]["target"]["calls"]


def test_another_seed_may_search_differently_but_is_reproducible(parity_task: Task, tmp_path: Path) -> None:
    a = _run(parity_task, tmp_path / "a", cache=False, seed=1)
    b = _run(parity_task, tmp_path / "b", cache=False, seed=1)
    assert a.to_dict() | {"run_dir": "", "strategy_seconds": 0} == b.to_dict() | {"run_dir": "", "strategy_seconds": 0}


@pytest.mark.parametrize("cap", [0, 7, 20, 40])
def test_target_cap_is_never_exceeded(parity_task: Task, tmp_path: Path, cap: int) -> None:
    uncapped = _run(parity_task, tmp_path / "free", cache=False).usage["search"]["target"]["calls"]
    assert uncapped > 40
    fake = _backend()
    result = _run(parity_task, tmp_path, model=fake, cache=False, budget=promptopt.Budget(target_calls=cap))
    search = result.usage["search"]["target"]
    assert search["calls"] <= cap and search["paid_calls"] <= cap
    n_test = len(parity_task.splits.test)
    sent = sum(1 for r in fake.generate_requests if r.role == "target")
    assert sent == result.usage["total"]["target"]["paid_calls"]
    assert sent - search["paid_calls"] <= 2 * n_test  # the rest is the final test evaluation
    assert result.stopped_by is not None and "target call cap" in result.stopped_by
    assert result.best_test.n == n_test  # the best so far is still scored on test


def test_optimizer_cap_is_never_exceeded(parity_task: Task, tmp_path: Path) -> None:
    result = _run(parity_task, tmp_path, cache=False, budget=promptopt.Budget(optimizer_calls=3))
    assert result.usage["total"]["optimizer"]["calls"] <= 3
    assert "optimizer" in (result.stopped_by or "")


def test_events_reader_tolerates_a_torn_last_line(tmp_path: Path) -> None:
    store = RunStore(tmp_path)
    store.append({"type": "a"})
    store.append({"type": "b"})
    store.close()
    with open(store.events_path, "a", encoding="utf-8") as fh:
        fh.write('{"type": "c", "half')
    assert [e["type"] for e in store.events()] == ["a", "b"]


def test_progress_reaches_the_callback_but_not_the_log(parity_task: Task, tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    import promptopt.run as run_module

    clock = iter(range(0, 10_000_000))
    monkeypatch.setattr(run_module.time, "monotonic", lambda: float(next(clock)))  # every call is 1 s later
    seen: list[dict[str, Any]] = []
    result = _run(parity_task, tmp_path, cache=False, on_event=seen.append)
    kinds = {e["type"] for e in seen}
    assert {"progress", "candidate", "evaluation"} <= kinds
    calls = [e["target_calls"] for e in seen if e["type"] == "progress"]
    assert calls == sorted(calls) and calls[-1] >= result.usage["search"]["target"]["calls"]
    logged = [json.loads(x)["type"] for x in Path(result.run_dir, "events.jsonl").read_text().splitlines()]
    assert "progress" not in logged and "candidate" in logged


class _SmallerAsk(Strategy):
    """Asks for 8 proposals; refused by the cap, asks for 2 instead, and finishes."""

    name = "smaller-ask"

    def optimize(self, ctx: Any) -> list[promptopt.Prompt]:
        try:
            ctx.propose("Write an instruction.", n=8)
        except promptopt.BudgetExhausted:
            ctx.propose("Write an instruction.", n=2)
        return [ctx.seed_prompt]


def test_a_cap_the_strategy_worked_around_is_not_reported_as_the_stop(parity_task: Task, tmp_path: Path) -> None:
    result = promptopt.optimize(parity_task, _SmallerAsk(), _backend(), answer_mode="generate", cache=False,
                                runs_dir=tmp_path / "runs", budget=promptopt.Budget(optimizer_calls=3))
    assert result.usage["search"]["optimizer"]["calls"] == 2 and result.stopped_by is None


class _SpendsItAll(Strategy):
    """Finds the magic-word prompt, scores it on half of dev, then spends the rest on dead ends."""

    name = "spends-it-all"

    def optimize(self, ctx: Any) -> list[promptopt.Prompt]:
        found = ctx.seed_prompt.with_instruction("Use PARITY: say whether the number is even or odd.")
        ctx.record(found, [ctx.seed_prompt], "edit")
        ctx.evaluate([found], ctx.dev[: len(ctx.dev) // 2])
        for i in range(1000):  # until the cap refuses
            dead_end = ctx.seed_prompt.with_instruction(f"Say whether the number is even or odd ({i}).")
            ctx.record(dead_end, [ctx.seed_prompt], "edit")
            ctx.evaluate([dead_end], ctx.dev[:4])
        return [found]


@pytest.mark.parametrize("reserve", [0, 1])
def test_calls_kept_back_score_a_partly_scored_candidate_when_the_strategy_runs_out(
        parity_task: Task, tmp_path: Path, reserve: int) -> None:
    n_dev = len(parity_task.splits.dev)
    result = promptopt.optimize(parity_task, _SpendsItAll(), _backend(), answer_mode="generate", cache=False,
                                runs_dir=tmp_path / "runs", budget=promptopt.Budget(target_calls=6 * n_dev),
                                finalist_reserve=reserve)
    assert result.usage["search"]["target"]["calls"] <= 6 * n_dev
    assert result.stopped_by is not None and "target call cap" in result.stopped_by
    assert ("kept back" in result.stopped_by) == bool(reserve)
    assert result.n_candidates > 2  # the seed, the found prompt and the dead ends
    if reserve:  # the found prompt was completed on dev with the calls kept back, and won
        assert "PARITY" in result.best_prompt.instruction and result.best_dev == 1.0
        assert result.n_fully_scored == 2  # the seed and the found prompt; no dead end reached all of dev
    else:  # the strategy spent everything; half a dev score cannot be compared, so the seed stays
        assert result.best_prompt == parity_task.seed_prompt
        assert result.n_fully_scored == 1
    config = json.loads(Path(result.run_dir, "config.json").read_text())
    assert config["finalist_reserve"] == reserve


class _OffersTheSeedFirst(_SpendsItAll):
    """Offers the seed (which led its training sample) before the found prompt, then runs out."""

    name = "offers-the-seed-first"

    def optimize(self, ctx: Any) -> list[promptopt.Prompt]:
        found = ctx.seed_prompt.with_instruction("Use PARITY: say whether the number is even or odd.")
        ctx.record(found, [ctx.seed_prompt], "edit")
        ctx.evaluate([found], ctx.train[:4])
        ctx.offer([ctx.seed_prompt, found])
        for i in range(1000):  # until the cap refuses
            dead_end = ctx.seed_prompt.with_instruction(f"Say whether the number is even or odd ({i}).")
            ctx.record(dead_end, [ctx.seed_prompt], "edit")
            ctx.evaluate([dead_end], ctx.dev[:4])
        return []


def test_calls_kept_back_go_to_the_first_offered_leader_not_yet_scored_on_dev(
        parity_task: Task, tmp_path: Path) -> None:
    n_dev = len(parity_task.splits.dev)
    result = promptopt.optimize(parity_task, _OffersTheSeedFirst(), _backend(), answer_mode="generate",
                                cache=False, runs_dir=tmp_path / "runs", finalist_reserve=1,
                                budget=promptopt.Budget(target_calls=6 * n_dev))
    assert result.stopped_by is not None and "kept back" in result.stopped_by
    assert result.n_fully_scored == 2  # the seed (scored first) and the found prompt, completed from the reserve
    assert "PARITY" in result.best_prompt.instruction


def test_no_calls_are_kept_back_when_they_would_take_more_than_half_the_budget(
        parity_task: Task, tmp_path: Path) -> None:
    n_dev = len(parity_task.splits.dev)
    # seed n_dev, then 2 n_dev - 1 left: keeping n_dev back would leave the strategy less than it keeps
    result = promptopt.optimize(parity_task, _SpendsItAll(), _backend(), answer_mode="generate", cache=False,
                                runs_dir=tmp_path / "runs", budget=promptopt.Budget(target_calls=3 * n_dev - 1),
                                finalist_reserve=1)
    events = [json.loads(x) for x in Path(result.run_dir, "events.jsonl").read_text().splitlines()]
    reasons = [e["reason"] for e in events if e["type"] == "budget_exhausted"]
    assert reasons and "kept back" not in reasons[0]
    assert result.usage["search"]["target"]["calls"] > 3 * n_dev - 1 - 4  # the strategy used (nearly) all


@pytest.mark.parametrize("bad", [-1, 1.5, True, "1"])
def test_a_bad_finalist_reserve_is_refused_before_anything_is_spent(
        parity_task: Task, tmp_path: Path, bad: Any) -> None:
    fake = _backend()
    with pytest.raises(promptopt.ConfigError, match="finalist_reserve"):
        promptopt.optimize(parity_task, "apo", fake, runs_dir=tmp_path / "runs", finalist_reserve=bad)
    assert fake.n_calls == 0


def test_the_reserve_defaults_to_the_strategys_own(parity_task: Task, tmp_path: Path) -> None:
    budget = promptopt.Budget(target_calls=40)
    assert len(parity_task.splits.dev) == 12 and SMALL["samples_per_eval"] < 12
    apo = _run(parity_task, tmp_path / "apo", cache=False, budget=budget)  # bandit pulls see 8 of 12
    whole = promptopt.optimize(parity_task, "apo", _backend(), answer_mode="generate", cache=False,
                               runs_dir=tmp_path / "whole", budget=budget,
                               strategy_params={**SMALL, "samples_per_eval": 12})  # pulls see all of dev
    opro = promptopt.optimize(parity_task, "opro", _backend(), answer_mode="generate", cache=False,
                              runs_dir=tmp_path / "opro", budget=budget)
    runs = (apo, whole, opro)
    assert [json.loads(Path(r.run_dir, "config.json").read_text())["finalist_reserve"] for r in runs] == [1, 0, 0]
    assert apo.stopped_by is not None and "4 kept back" in apo.stopped_by  # the 4 dev examples a pull leaves
    assert whole.stopped_by is not None and "kept back" not in whole.stopped_by
    asked = promptopt.optimize(parity_task, "apo", _backend(), answer_mode="generate", cache=False,
                               runs_dir=tmp_path / "asked", budget=budget, finalist_reserve=1,
                               strategy_params={**SMALL, "samples_per_eval": 12})
    assert asked.stopped_by is not None and "kept back" not in asked.stopped_by  # nothing can be partly scored


def _events(result: promptopt.Result) -> list[dict[str, Any]]:
    return [json.loads(x) for x in Path(result.run_dir, "events.jsonl").read_text().splitlines()]


class _PeeksThenReturnsTheSeed(Strategy):
    """Scores the magic-word prompt on a few dev examples, then returns only the seed."""

    name = "peeks"

    def finalist_gap(self, n_dev: int) -> int:
        return n_dev - 4

    def optimize(self, ctx: Any) -> list[promptopt.Prompt]:
        found = ctx.seed_prompt.with_instruction("Use PARITY: say whether the number is even or odd.")
        ctx.record(found, [ctx.seed_prompt], "edit")
        ctx.evaluate([found], ctx.dev[:4])
        return [ctx.seed_prompt]


def test_a_strategy_that_returns_on_its_own_keeps_its_choice_and_is_not_reported_stopped(
        parity_task: Task, tmp_path: Path) -> None:
    n_dev = len(parity_task.splits.dev)
    result = promptopt.optimize(parity_task, _PeeksThenReturnsTheSeed(), _backend(), answer_mode="generate",
                                cache=False, runs_dir=tmp_path / "runs",
                                budget=promptopt.Budget(target_calls=4 * n_dev))
    assert result.stopped_by is None
    assert result.best_prompt == parity_task.seed_prompt  # the peeked candidate is not scored behind its back
    assert result.usage["search"]["target"]["calls"] == n_dev + 4


class _ReturnsThreeUnscored(Strategy):
    name = "three-unscored"

    def optimize(self, ctx: Any) -> list[promptopt.Prompt]:
        return [ctx.seed_prompt.with_instruction(f"Say even or odd, take {i}.") for i in range(3)]


def test_finalists_the_budget_refuses_are_noted_and_reported_as_the_stop(parity_task: Task, tmp_path: Path) -> None:
    n_dev = len(parity_task.splits.dev)
    result = promptopt.optimize(parity_task, _ReturnsThreeUnscored(), _backend(), answer_mode="generate",
                                cache=False, runs_dir=tmp_path / "runs",
                                budget=promptopt.Budget(target_calls=2 * n_dev + 3))
    assert result.stopped_by is not None and "target call cap" in result.stopped_by
    assert result.usage["search"]["target"]["calls"] == 2 * n_dev  # the seed and the first finalist
    assert sum(e["type"] == "finalist_unscored" for e in _events(result)) == 2
