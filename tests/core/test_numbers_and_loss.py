"""The numbers evaluations keep: label log-probs, margins, reply lengths, gold losses."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

import promptopt
from promptopt.budget import Budget, Meter, MeteredBackend
from promptopt.context import FrontEntry
from promptopt.evaluator import Evaluator
from promptopt.strategies import Strategy
from promptopt.tasks import Task, load_task
from promptopt.testing import FakeBackend
from promptopt.types import ScoreRequest

# log-probs by label; "odd" has two tokens in the fake (one per word)
SCORES = {"even": -1.5, "odd": -0.25}


def _score(req: ScoreRequest) -> float:
    return SCORES.get(req.continuation, -9.0)


def test_choice_mode_keeps_each_labels_logprob_tokens_and_the_margin(parity_task: Task) -> None:
    ev = Evaluator(parity_task, FakeBackend(score=_score), "choice")
    dev = parity_task.splits.dev
    res = asyncio.run(ev.aevaluate([parity_task.seed_prompt], dev))[0]
    by_id = {ex.id: ex for ex in dev}
    for e in res.examples:
        assert e.logprobs == (-1.5, -0.25)  # the task's label order: even, odd
        assert e.label_tokens == (1, 1)
        gold = by_id[e.example_id].target
        assert e.margin == pytest.approx(1.25 if gold == "odd" else -1.25)
    n_odd = sum(ex.target == "odd" for ex in dev)
    assert res.mean_margin == pytest.approx((1.25 * n_odd - 1.25 * (len(dev) - n_odd)) / len(dev))


def test_generate_mode_keeps_the_replys_length(parity_task: Task) -> None:
    ev = Evaluator(parity_task, FakeBackend(reply=lambda r: "it is even"), "generate")
    res = asyncio.run(ev.aevaluate([parity_task.seed_prompt], parity_task.splits.dev[:3]))[0]
    assert [e.completion_tokens for e in res.examples] == [3, 3, 3]
    assert res.mean_margin is None


def test_loss_is_the_mean_per_token_cross_entropy_and_is_memoized(parity_task: Task) -> None:
    fake = FakeBackend(score=lambda r: -3.0 if r.continuation == "odd" else -1.0)
    ev = Evaluator(parity_task.with_gold("answer"), fake, "choice")
    dev = parity_task.splits.dev[:6]
    (res,) = asyncio.run(ev.aloss([parity_task.seed_prompt], dev))
    assert [e.loss for e in res.examples] == [3.0 if ex.target == "odd" else 1.0 for ex in dev]
    assert all(e.n_tokens == 1 for e in res.examples)
    asyncio.run(ev.aloss([parity_task.seed_prompt, parity_task.seed_prompt], dev[:3]))
    assert fake.n_calls == len(dev)  # nothing asked twice


def test_a_multi_token_gold_is_averaged_over_its_tokens(tmp_path: Path) -> None:
    task = load_task("synthetic:arithmetic", data_dir=tmp_path, n_dev=4)
    fake = FakeBackend(score=lambda r: -6.0)
    ev = Evaluator(task, fake, "generate")
    (res,) = asyncio.run(ev.aloss([task.seed_prompt], task.splits.dev))
    for e, ex in zip(res.examples, task.splits.dev, strict=True):
        n = len(task.gold_text(ex).split())  # the fake counts a token per word
        assert (e.n_tokens, e.loss) == (n, pytest.approx(6.0 / n))


def test_loss_is_metered_and_refused_before_sending_past_the_cap(parity_task: Task) -> None:
    fake = FakeBackend(score=_score)
    meter = Meter(Budget(target_calls=5))
    ev = Evaluator(parity_task, MeteredBackend(fake, meter), "choice")
    asyncio.run(ev.aloss([parity_task.seed_prompt], parity_task.splits.dev[:4]))
    assert meter.usage.target.calls == 4
    with pytest.raises(promptopt.BudgetExhausted):
        asyncio.run(ev.aloss([parity_task.seed_prompt.with_instruction("other")], parity_task.splits.dev[:4]))
    assert fake.n_calls == 4


def test_gold_forms_of_reasoning_tasks(tmp_path: Path) -> None:
    data = Path(__file__).resolve().parents[2].parent / "shared" / "data"
    gsm8k = load_task("gsm8k", data_dir=data, n_dev=2, n_train=2, n_test=2)
    ex = gsm8k.splits.dev[0]
    assert gsm8k.gold_text(ex).endswith(f"The answer is {ex.target}.") and "\n" in gsm8k.gold_text(ex)
    assert gsm8k.with_gold("answer").gold_text(ex) == f"The answer is {ex.target}."
    assert gsm8k.gold == "solution"  # the copy leaves the original alone
    bbh = load_task("bbh:navigate", data_dir=data, n_dev=2, n_train=2, n_test=2)
    ex = bbh.splits.dev[0]
    assert bbh.gold_text(ex) == ex.target
    assert bbh.with_gold("sentence").gold_text(ex) == f"So the answer is {ex.target}."
    with pytest.raises(promptopt.ConfigError, match="'steps'.*answer, sentence"):
        bbh.with_gold("steps")


class _LossAndFront(Strategy):
    """Ranks two prompts by gold loss, hands over a front, and picks the shortest fully scored prompt."""

    name = "loss-and-front"

    def optimize(self, ctx: Any) -> list[promptopt.Prompt]:
        long = ctx.seed_prompt.with_instruction(ctx.seed_prompt.instruction + " Answer with one word, even or odd.")
        ctx.record(long, [ctx.seed_prompt], "extend")
        ranked = ctx.loss([ctx.seed_prompt, long], ctx.train[:5])
        ctx.set_front([FrontEntry(r.prompt, {"loss": r.mean, "tokens": ctx.tokenizer.count(
            r.prompt.instruction)}) for r in ranked])
        ctx.select_final_by("shortest", lambda cands: min(cands, key=lambda c: len(c.prompt.instruction)))
        return [long]


def test_a_strategy_hands_over_a_front_and_its_own_selection_rule(parity_task: Task, tmp_path: Path) -> None:
    fake = FakeBackend(score=lambda r: -0.5 if "one word" in r.messages[-1].content else -2.0)
    result = promptopt.optimize(parity_task, _LossAndFront(), fake, answer_mode="choice", cache=False,
                                runs_dir=tmp_path / "runs", budget=Budget(target_calls=500))
    assert result.selection == "shortest" and result.best_prompt == parity_task.seed_prompt
    stored = json.loads(Path(result.run_dir, "result.json").read_text())
    assert [e["objectives"]["loss"] for e in stored["front"]] == [2.0, 0.5]
    assert stored["front"][0]["objectives"]["tokens"] == len(parity_task.seed_prompt.instruction.encode())
    events = [json.loads(x) for x in Path(result.run_dir, "events.jsonl").read_text().splitlines()]
    assert [e["mean"] for e in events if e["type"] == "loss"] == [2.0, 0.5]
    assert [(e["n"], e["gold_tokens"]) for e in events if e["type"] == "loss"] == [(5, 5), (5, 5)]


class _NeedsTokenizer(Strategy):
    name = "needs-tokenizer"
    needs_tokenizer = True

    def optimize(self, ctx: Any) -> list[promptopt.Prompt]:
        return []


def test_a_missing_tokenizer_is_refused_before_any_call(parity_task: Task, tmp_path: Path) -> None:
    fake = FakeBackend(can_tokenize=False)
    with pytest.raises(promptopt.CapabilityError, match="tokenize.*llamacpp"):
        promptopt.optimize(parity_task, _NeedsTokenizer(), fake, cache=False, runs_dir=tmp_path / "runs")
    assert fake.n_calls == 0 and not (tmp_path / "runs").exists()


class _Busy(Strategy):
    """Works 0.3 s on its own between two model calls the backend makes slow."""

    name = "busy"

    def optimize(self, ctx: Any) -> list[promptopt.Prompt]:
        import time

        ctx.evaluate([ctx.seed_prompt.with_instruction("a")], ctx.train[:1])
        end = time.perf_counter() + 0.3
        while time.perf_counter() < end:
            pass
        ctx.evaluate([ctx.seed_prompt.with_instruction("b")], ctx.train[:1])
        return []


def test_strategy_seconds_leave_out_waiting_for_the_model(parity_task: Task, tmp_path: Path) -> None:
    fake = FakeBackend(reply=lambda r: "even", latency=0.5)
    result = promptopt.optimize(parity_task, _Busy(), fake, answer_mode="generate", cache=False,
                                runs_dir=tmp_path / "runs", n_dev=2, n_test=2)
    assert 0.3 <= result.strategy_seconds < 0.8  # the two 0.5 s calls are not in it


class _Endless(Strategy):
    """Scores a new prompt on 5 train examples until the budget stops it."""

    name = "endless"

    def optimize(self, ctx: Any) -> list[promptopt.Prompt]:
        for i in range(10_000):
            ctx.evaluate([ctx.seed_prompt.with_instruction(f"Variant {i}.")], ctx.train[:5])
        return []


def test_the_target_token_cap_stops_the_search(parity_task: Task, tmp_path: Path) -> None:
    fake = FakeBackend(reply=lambda r: "even")
    result = promptopt.optimize(parity_task, _Endless(), fake, answer_mode="generate", cache=False, n_dev=5,
                                runs_dir=tmp_path / "runs", budget=Budget(target_tokens=3000))
    assert result.stopped_by is not None and "target token cap 3000" in result.stopped_by
    used = result.usage["search"]["target"]["tokens"]
    assert 3000 <= used < 3000 + 5 * 20  # stopped by the first batch past the cap (< 20 tokens a call here)


def test_the_target_token_cap_counts_the_target_alone() -> None:
    meter = Meter(Budget(target_tokens=100))
    meter.add("optimizer", cached=False, prompt_tokens=500, completion_tokens=0)
    meter.check("target", 1)  # the optimizer's 500 tokens are not the target's
    meter.add("target", cached=True, prompt_tokens=90, completion_tokens=10)
    with pytest.raises(promptopt.BudgetExhausted, match="target token cap 100"):
        meter.check("target", 1)
    meter.check("optimizer", 1)


def test_runs_and_the_report_show_what_a_strategy_added(parity_task: Task, tmp_path: Path) -> None:
    from promptopt.report import list_runs
    from promptopt.report._data import header
    from promptopt.report._runs import format_runs, load_run

    fake = FakeBackend(score=lambda r: -1.0)
    result = promptopt.optimize(parity_task, _LossAndFront(), fake, answer_mode="choice", cache=False,
                                runs_dir=tmp_path / "runs", budget=Budget(target_calls=500))
    [line] = format_runs(list_runs(tmp_path / "runs"))[1:]
    assert line.endswith("picked by shortest; front of 2")
    files = load_run(result.run_dir)
    rows = dict(header(files.config, files.result, files.events))
    assert rows["final prompt picked by"] == "shortest" and rows["Pareto front"].startswith("2 candidate(s)")


def test_a_loss_choice_mode_already_measured_costs_no_call(parity_task: Task) -> None:
    fake = FakeBackend(score=_score)
    meter = Meter(Budget())
    ev = Evaluator(parity_task, MeteredBackend(fake, meter), "choice")
    dev = parity_task.splits.dev[:5]
    asyncio.run(ev.aevaluate([parity_task.seed_prompt], dev))
    calls = fake.n_calls
    (res,) = asyncio.run(ev.aloss([parity_task.seed_prompt], dev))
    assert fake.n_calls == calls and meter.usage.target.calls == calls  # neither sent nor counted again
    assert [e.loss for e in res.examples] == [-SCORES[ex.target] for ex in dev]


def test_the_gold_option_reaches_the_task_and_a_bad_one_is_refused_before_any_call(tmp_path: Path) -> None:
    from promptopt.config import RunConfig
    from promptopt.task_options import check_run_inputs

    data = Path(__file__).resolve().parents[2].parent / "shared" / "data"
    cfg = RunConfig(task="gsm8k", gold="answer", data_dir=data, n_dev=2, n_test=2, n_train=2, offline=True)
    _, task = check_run_inputs(cfg)
    ex = task.splits.dev[0]
    assert task.gold_text(ex) == f"The answer is {ex.target}."
    fake = FakeBackend()
    with pytest.raises(promptopt.ConfigError, match="no gold continuation 'steps'.*solution, answer"):
        promptopt.optimize("gsm8k", "apo", fake, gold="steps", data_dir=data, offline=True,
                           runs_dir=tmp_path / "runs")
    assert fake.n_calls == 0 and not (tmp_path / "runs").exists()


class _EightAtOnce(Strategy):
    """Scores eight new prompts per call on 5 train examples until the budget stops it."""

    name = "eight-at-once"

    def optimize(self, ctx: Any) -> list[promptopt.Prompt]:
        for step in range(1000):
            ctx.evaluate([ctx.seed_prompt.with_instruction(f"Variant {step}.{i}") for i in range(8)], ctx.train[:5])
        return []


def test_a_token_cap_on_a_concurrent_backend_replays_exactly(parity_task: Task, tmp_path: Path) -> None:
    def run() -> promptopt.Result:
        fake = FakeBackend(reply=lambda r: "even", latency=0.01, max_concurrency=8)
        return promptopt.optimize(parity_task, _EightAtOnce(), fake, answer_mode="generate", n_dev=5,
                                  cache=tmp_path / "cache.sqlite", runs_dir=tmp_path / "runs",
                                  budget=Budget(target_tokens=1000))
    first, again = run(), run()
    assert first.stopped_by is not None and "target token cap 1000" in first.stopped_by
    for key in ("calls", "tokens"):
        assert again.usage["search"]["target"][key] == first.usage["search"]["target"][key]
    assert again.n_candidates == first.n_candidates and again.usage["search"]["target"]["paid_calls"] == 0
    # checked when each ctx.evaluate starts: the last call admitted began under the cap (40 calls of < 20 tokens)
    assert first.usage["search"]["target"]["tokens"] < 1000 + 40 * 20
