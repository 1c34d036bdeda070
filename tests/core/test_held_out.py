"""Picking the final prompt on a dev split the search never saw (``select_on="held-out"``).

Every run here is a synthetic task on a scripted FakeBackend in generate mode
(one target call per example), so call counts and scores are exact.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console
from typer.testing import CliRunner

import promptopt
from promptopt import cli
from promptopt.cli import app
from promptopt.report import format_runs, list_runs
from promptopt.strategies import Strategy
from promptopt.tasks import Task, load_task
from promptopt.testing import FakeBackend
from promptopt.types import Request

SIZES = {"n_train": 40, "n_dev": 10, "n_test": 10}
N_DEV = SIZES["n_dev"]
TASK = "synthetic:sentiment"

#: how a prompt answers: (instruction, sentence, gold label, whether the sentence is a dev example) -> reply
Rule = Callable[[str, str, str, bool], str]


@pytest.fixture
def task(tmp_path: Path) -> Task:
    """The task every run here loads by name, with the same sizes and seed (for gold labels and dev ids)."""
    return load_task(TASK, data_dir=tmp_path, seed=0, **SIZES)


def _sentence(request: Request) -> str:
    return request.messages[-1].content.split("Text: ", 1)[1].split("\nAnswer:", 1)[0]


def _backend(task: Task, rule: Rule) -> FakeBackend:
    gold = {ex.input: ex.target for split in (task.splits.train, task.splits.dev, task.splits.test) for ex in split}
    dev = {ex.input for ex in task.splits.dev}

    def reply(request: Request) -> str:
        sentence = _sentence(request)
        return rule(request.messages[-1].content, sentence, gold[sentence], sentence in dev)

    return FakeBackend(reply=reply)


def _wrong(label: str) -> str:
    return "negative" if label == "positive" else "positive"


def _run(task: Task, strategy: Strategy, rule: Rule, tmp_path: Path, **kw: Any) -> tuple[promptopt.Result, FakeBackend]:
    fake = _backend(task, rule)
    kw.setdefault("replace_if", "better")
    result = promptopt.optimize(TASK, strategy, fake, answer_mode="generate", cache=False,
                                runs_dir=tmp_path / "runs", **SIZES, **kw)
    return result, fake


def _events(result: promptopt.Result) -> list[dict[str, Any]]:
    return [json.loads(line) for line in Path(result.run_dir, "events.jsonl").read_text().splitlines()]


def _selection_evaluations(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [e for e in events if e["type"] == "evaluation" and e.get("selection")]


def _search_means(events: list[dict[str, Any]]) -> dict[str, float]:
    """Each prompt's mean on the whole search split, from the strategy's own evaluations."""
    return {e["prompt_id"]: e["mean"] for e in events
            if e["type"] == "evaluation" and e["dev"] and e["n"] == N_DEV and not e.get("selection")}


def _edit(ctx: Any, word: str) -> promptopt.Prompt:
    prompt = ctx.seed_prompt.with_instruction(f"{ctx.seed_prompt.instruction} {word}")
    ctx.record(prompt, [ctx.seed_prompt], "edit")
    return prompt


class _TwoEdits(Strategy):
    """Scores two edits of the seed (alpha, beta) on its dev split and returns both."""

    name = "two-edits"

    def optimize(self, ctx: Any) -> list[promptopt.Prompt]:
        edits = [_edit(ctx, "alpha"), _edit(ctx, "beta")]
        for prompt in edits:
            ctx.evaluate([prompt])
        return edits


class _Probe(_TwoEdits):
    """Notes the example ids it is given, scores the seed on a training minibatch, then does as _TwoEdits."""

    name = "probe"

    def optimize(self, ctx: Any) -> list[promptopt.Prompt]:
        ctx.note("splits_seen", dev=[ex.id for ex in ctx.dev], train=[ex.id for ex in ctx.train])
        ctx.evaluate([ctx.seed_prompt], ctx.train[:5])
        return super().optimize(ctx)


def _alpha_right_beta_half(instruction: str, sentence: str, gold: str, on_dev: bool) -> str:
    if "alpha" in instruction or ("beta" in instruction and len(sentence) % 2):
        return gold
    return "negative"


def test_the_strategy_never_sees_a_dev_example(task: Task, tmp_path: Path) -> None:
    result, fake = _run(task, _Probe(), _alpha_right_beta_half, tmp_path, select_on="held-out")
    events = _events(result)
    (seen,) = [e for e in events if e["type"] == "splits_seen"]
    dev_ids = {ex.id for ex in task.splits.dev}
    train_ids = {ex.id for ex in task.splits.train}
    assert len(seen["dev"]) == N_DEV and not set(seen["dev"]) & dev_ids
    assert set(seen["dev"]) | set(seen["train"]) == train_ids and not set(seen["dev"]) & set(seen["train"])
    # every request on a dev example is one of the Run's selection evaluations (one call per example here)
    dev_inputs = {ex.input for ex in task.splits.dev}
    asked_on_dev = sum(1 for r in fake.generate_requests if r.role == "target" and _sentence(r) in dev_inputs)
    selections = _selection_evaluations(events)
    assert asked_on_dev == sum(e["n"] for e in selections) == N_DEV * len(selections)
    assert {e["prompt_id"] for e in selections} == {result.seed_prompt.id, *(c.id for c in _edits(result))}
    assert all(not e["dev"] for e in selections)  # kept apart from the search split's scores
    saved = json.loads(Path(result.run_dir, "result.json").read_text())
    assert saved["select_on"] == "held-out" and saved["search_dev"] == result.search_dev
    assert json.loads(Path(result.run_dir, "config.json").read_text())["select_on"] == "held-out"


def _edits(result: promptopt.Result) -> list[promptopt.Prompt]:
    seed = result.seed_prompt
    return [seed.with_instruction(f"{seed.instruction} {word}") for word in ("alpha", "beta")]


@pytest.mark.parametrize("beta_on_dev", ["right", "as-the-seed"])
def test_the_best_on_the_search_split_loses_to_a_better_one_on_dev(task: Task, tmp_path: Path, beta_on_dev: str,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    def rule(instruction: str, sentence: str, gold: str, on_dev: bool) -> str:
        if "alpha" in instruction:  # right on every training example, wrong on every dev example
            return _wrong(gold) if on_dev else gold
        if "beta" in instruction and ((on_dev and beta_on_dev == "right") or (not on_dev and len(sentence) % 2)):
            return gold
        return "negative"  # the seed, and beta where it is no better than the seed

    result, _ = _run(task, _TwoEdits(), rule, tmp_path, select_on="held-out")
    alpha, beta = _edits(result)
    events = _events(result)
    search, on_dev = _search_means(events), {e["prompt_id"]: e["mean"] for e in _selection_evaluations(events)}
    assert search[alpha.id] == 1.0 > search[beta.id]  # alpha leads the search...
    assert on_dev[alpha.id] == 0.0  # ...and is scored on dev, where it falls
    expected = beta if beta_on_dev == "right" else result.seed_prompt  # a tie on dev goes to the seed
    assert result.best_prompt == expected
    assert (result.best_dev, result.seed_dev) == (on_dev[expected.id], on_dev[result.seed_prompt.id])
    assert result.search_dev == search[expected.id]
    monkeypatch.setattr(cli, "out", Console(width=200))  # no wrapping
    with cli.out.capture() as summary:  # the CLI's summary says where the pick was made, and the search's mean
        cli._print_result(result)
    assert f"examples the search used: {result.search_dev:.3f}" in summary.get()
    if beta_on_dev == "as-the-seed":  # the pick is the seed itself: there is no winner to judge
        assert result.replacement is None
    else:
        assert result.replacement is not None and result.replacement.replaced
        assert result.replacement.margin == on_dev[beta.id] - on_dev[result.seed_prompt.id]
        (line,) = [x for x in format_runs(list_runs(tmp_path / "runs"))[1:] if result.run_id in x]
        assert f"{result.seed_dev:.3f}→{result.best_dev:.3f} (held-out)" in line


class _Endless(Strategy):
    """Scores one edit after another on its dev split until the budget stops it."""

    name = "endless"

    def optimize(self, ctx: Any) -> list[promptopt.Prompt]:
        for i in range(1000):
            ctx.evaluate([_edit(ctx, f"skill{i % 7}-v{i}")])
        return []


def _skilled(instruction: str, sentence: str, gold: str, on_dev: bool) -> str:
    """Edit ``skill<k>`` is right on a share of about k/7 of the sentences; the seed on none."""
    if "skill" not in instruction:
        return _wrong(gold)
    skill = int(instruction.split("skill", 1)[1][0])
    share = int(hashlib.sha256(sentence.encode()).hexdigest()[:8], 16) / 16**8
    return gold if share < skill / 7 else _wrong(gold)


def test_seed_and_finalists_are_scored_on_dev_when_the_target_cap_stops_the_strategy(task: Task,
                                                                                      tmp_path: Path) -> None:
    # the seed on dev (10) and on the search split (10), two finalists kept back (20), 45 for the search
    cap = 10 + 10 + 2 * N_DEV + 45
    result, fake = _run(task, _Endless(), _skilled, tmp_path, select_on="held-out", select_top=2,
                        budget=promptopt.Budget(target_calls=cap))
    assert result.stopped_by is not None and "target call cap" in result.stopped_by
    assert result.usage["search"]["target"]["calls"] <= cap
    events = _events(result)
    search = _search_means(events)
    order = [e["prompt_id"] for e in events if e["type"] == "candidate"]
    assert len(search) == 1 + 4  # the seed and the four edits 45 calls paid for
    top = sorted((p for p in search if p != result.seed_prompt.id), key=lambda p: (-search[p], order.index(p)))[:2]
    selections = _selection_evaluations(events)
    assert [e["prompt_id"] for e in selections] == [result.seed_prompt.id, *top]
    assert all(e["n"] == N_DEV for e in selections)
    assert not [e for e in events if e["type"] == "finalist_unscored"]
    assert result.n_fully_scored == 3  # on dev, where the choice was made: the seed and the top two of five


class _PartlyScored(Strategy):
    """Scores each edit on 3 examples of its dev split and offers the latest; finishes none itself."""

    name = "partly-scored"

    def finalist_gap(self, n_dev: int) -> int:
        return n_dev - 3

    def optimize(self, ctx: Any) -> list[promptopt.Prompt]:
        for i in range(1000):
            prompt = _edit(ctx, f"skill6-v{i}")
            ctx.evaluate([prompt], ctx.dev[:3])
            ctx.offer([prompt])
        return []


@pytest.mark.parametrize(("cap", "kept_for_the_gap"), [(40, 0), (50, N_DEV - 3)])
def test_the_finalist_reserve_leaves_the_calls_kept_for_dev_alone(task: Task, tmp_path: Path, cap: int,
                                                                  kept_for_the_gap: int) -> None:
    # after the seed on both splits (20 calls) and the 10 kept for one finalist on dev, the 7 calls
    # that finish a partly scored leader are kept only when at most half of what is left (10 or 20)
    result, _ = _run(task, _PartlyScored(), _skilled, tmp_path, select_on="held-out", select_top=1,
                     budget=promptopt.Budget(target_calls=cap))
    events = _events(result)
    (reserve,) = [e for e in events if e["type"] == "finalist_reserve"]
    assert reserve["calls"] == kept_for_the_gap
    finished = set(_search_means(events)) - {result.seed_prompt.id}
    on_dev = {e["prompt_id"] for e in _selection_evaluations(events)}
    assert len(finished) == (1 if kept_for_the_gap else 0)  # the offered leader, finished on the search split
    assert finished | {result.seed_prompt.id} == on_dev  # and nothing finished there lacks its dev score
    assert result.usage["search"]["target"]["calls"] <= cap


def test_dev_selection_keeps_the_run_id_and_the_result(task: Task, tmp_path: Path) -> None:
    # Pinned from a run of this configuration before select_on existed: the id and the outcome.
    result, _ = _run(task, _Probe(), _alpha_right_beta_half, tmp_path / "a")
    assert result.run_id == "synthetic-sentiment-probe-ce44106f"
    assert (result.seed_dev, result.best_dev, result.seed_test.mean, result.best_test.mean) == (0.5, 1.0, 0.8, 1.0)
    assert result.replacement is not None and result.replacement.replaced
    assert (result.select_on, result.search_dev) == ("dev", None)
    config = json.loads(Path(result.run_dir, "config.json").read_text())
    assert "select_on" not in config and "select_top" not in config
    events = _events(result)
    (seen,) = [e for e in events if e["type"] == "splits_seen"]
    assert seen["dev"] == [ex.id for ex in task.splits.dev] and seen["train"] == [ex.id for ex in task.splits.train]
    assert not _selection_evaluations(events)
    again, _ = _run(task, _Probe(), _alpha_right_beta_half, tmp_path / "b", select_on="dev", select_top=5)
    assert again.run_id == result.run_id  # select_top matters only when held out
    measured = ("usage", "strategy_seconds", "run_dir")
    assert {k: v for k, v in again.to_dict().items() if k not in measured} == {
        k: v for k, v in result.to_dict().items() if k not in measured}


def _invoke(tmp_path: Path, *args: str) -> Any:
    argv = ["optimize", "--model", "fake:x", "--task", TASK, "--no-progress", *args,
            "--runs-dir", str(tmp_path / "runs")]
    return CliRunner(env={"COLUMNS": "200"}).invoke(app, argv)


@pytest.mark.parametrize(("args", "fragments"), [
    (["--select-on", "sideways"], ["select_on must be 'dev' or 'held-out'", "'sideways'", "--select-on held-out"]),
    (["--select-on", "held-out", "--select-top", "0"], ["select_top", "got 0"]),
    (["--select-on", "held-out", "--n-train", "20", "--n-dev", "30"],
     ["n_train=20", "n_dev=30", "more than 30 training examples", "--n-train", "--select-on dev"]),
    (["--select-on", "held-out", "--n-dev", "10", "--budget-target-calls", "49", "--answer-mode", "generate"],
     ["budget.target_calls is 49", "--budget-target-calls", "select_top=3"]),
    (["--select-on", "held-out", "--n-dev", "10", "--budget-target-calls", "49", "--answer-mode", "generate",
      "--dry-run"], ["budget.target_calls is 49"]),
])
def test_bad_held_out_input_is_one_line_exit_2_before_any_call(tmp_path: Path, args: list[str],
                                                               fragments: list[str]) -> None:
    out = _invoke(tmp_path, *args)
    lines = [line for line in out.output.splitlines() if line.strip()]
    assert out.exit_code == 2 and len(lines) == 1 and lines[0].startswith("error:"), out.output
    text = " ".join(lines[0].split())  # the console may wrap
    for fragment in fragments:
        assert fragment in text, text
    runs = tmp_path / "runs"
    assert not runs.exists() or not [p for p in runs.iterdir() if p.is_dir()]


def test_a_cap_too_small_for_the_selection_is_refused_before_any_call(task: Task, tmp_path: Path) -> None:
    fake = _backend(task, _alpha_right_beta_half)
    with pytest.raises(promptopt.ConfigError, match="needs more than 50 target calls"):
        promptopt.optimize(TASK, _TwoEdits(), fake, answer_mode="generate", cache=False, runs_dir=tmp_path,
                           select_on="held-out", select_top=3, budget=promptopt.Budget(target_calls=50), **SIZES)
    assert fake.n_calls == 0


def test_finalists_are_the_best_on_the_search_split_then_those_the_strategy_named() -> None:
    from promptopt._held_out import pick_finalists
    from promptopt.history import History

    search = History(("x1", "x2"))
    prompts = {name: promptopt.Prompt(instruction=name) for name in ("seed", "a", "b", "c", "d", "partial")}
    means = {"seed": 1.0, "a": 0.5, "b": 1.0, "c": 0.5, "d": 0.0}
    for name, prompt in prompts.items():
        search.add(prompt)
        full = {"x1": means.get(name, 1.0), "x2": means.get(name, 1.0)}
        search.add_dev_scores(prompt, full if name != "partial" else {"x1": 1.0})
    chosen = pick_finalists(search, returned=[prompts["partial"], prompts["d"]], offered=[prompts["c"], prompts["b"]],
                            top=2, seed_id=prompts["seed"].id)
    # b (1.0), then a (0.5, before c): the top two; then d and c, named by the strategy; never the seed
    # nor a candidate the search split did not fully score
    assert [c.prompt.instruction for c in chosen] == ["b", "a", "d", "c"]


class _LongestRule(_TwoEdits):
    """Declares its own final pick: the longest instruction among the fully scored edits (alpha)."""

    name = "longest-rule"

    def optimize(self, ctx: Any) -> list[promptopt.Prompt]:
        def longest(full: Any) -> Any:
            edits = [c for c in full if c.operator == "edit"]
            return max(edits, key=lambda c: len(c.prompt.instruction)) if edits else full[0]

        ctx.select_final_by("longest", longest)
        return super().optimize(ctx)


def test_a_strategys_own_rule_still_picks_and_dev_measures_its_pick(task: Task, tmp_path: Path) -> None:
    def rule(instruction: str, sentence: str, gold: str, on_dev: bool) -> str:
        return gold if "beta" in instruction else "negative"  # beta is the better prompt everywhere

    result, _ = _run(task, _LongestRule(), rule, tmp_path, select_on="held-out")
    alpha, beta = _edits(result)
    events = _events(result)
    on_dev = {e["prompt_id"]: e["mean"] for e in _selection_evaluations(events)}
    assert result.selection == "longest" and result.best_prompt == alpha and result.replacement is None
    assert set(on_dev) == {result.seed_prompt.id, alpha.id}  # only the rule's pick goes on to dev
    assert (result.best_dev, result.seed_dev) == (on_dev[alpha.id], on_dev[result.seed_prompt.id])
    assert result.search_dev == _search_means(events)[alpha.id] < _search_means(events)[beta.id]
