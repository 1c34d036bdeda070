"""prompt-selection (APS): clusters, prompts per cluster, a fitted evaluator that picks a prompt per input.

The scripted world: inputs of two kinds ("marker signal ..." and "quiet calm ..."); a prompt whose
instruction says ALPHA is answered correctly on marker inputs only, one that says BETA on the others
only, any other prompt never. The scripted optimizer writes an ALPHA instruction for a cluster of
mostly marker inputs and a BETA one otherwise, so both appear only if the clusters follow the kinds.
"""

from __future__ import annotations

import json
import os
import random
import re
import sys
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console
from typer.testing import CliRunner

import promptopt
from promptopt import cli
from promptopt.cli import app
from promptopt.exceptions import ConfigError
from promptopt.prompt import Prompt
from promptopt.selector import SELECTOR_FILE, PromptSelector, fit_selector, load_selector
from promptopt.tasks import CustomTask, Splits, Task
from promptopt.testing import FakeBackend
from promptopt.types import Example, Request

DATA_DIR = Path(os.environ.get("PROMPTOPT_DATA_DIR") or Path(__file__).parents[2].parent / "shared" / "data")
WORDS = ("apple", "river", "stone", "cloud", "maple", "tiger", "lemon", "piano", "rocket", "garden", "violet",
         "candle", "forest", "copper", "ocean")
ALPHA, BETA = Prompt(instruction="ALPHA: give the number."), Prompt(instruction="BETA: give the number.")


def _input(marked: bool, i: int, rng: random.Random) -> str:
    return f"{'marker signal' if marked else 'quiet calm'} {rng.choice(WORDS)} {i}"


def _right(instruction: str, text: str) -> bool:
    """The scripted target: ALPHA is right on marker inputs, BETA on the others, nothing else ever."""
    return ("ALPHA" in instruction and "marker" in text) or ("BETA" in instruction and "marker" not in text)


def _reply(req: Request) -> str:
    text = req.messages[-1].content
    if req.role == "optimizer":
        shown = [line for line in text.splitlines() if line.startswith("Input:")]
        marked = sum("marker" in line for line in shown)
        written = ALPHA if 2 * marked > len(shown) else BETA
        return f"<START>{written.instruction}<END>"
    instruction, _, rest = text.partition("\n\nInput: ")
    given = rest.split("\n")[0]
    return given.split()[-1] if _right(instruction, given) else "none"


@pytest.fixture
def kinds_task() -> Task:
    rng = random.Random(0)
    examples = [Example(f"ex{i}", _input(i % 2 == 0, i, rng), str(i)) for i in range(1, 141)]
    rng.shuffle(examples)
    return CustomTask("kinds", Splits(tuple(examples[:80]), tuple(examples[80:90]), tuple(examples[90:])),
                      instruction="Give the number.")


def _run(task: Task, tmp_path: Path, strategy: str = "prompt-selection", **params: Any) -> promptopt.Result:
    return promptopt.optimize(task, strategy, FakeBackend("kinds", reply=_reply), answer_mode="generate",
                              strategy_params={"n_clusters": 2, **params}, cache=False, runs_dir=tmp_path / "runs",
                              budget=promptopt.Budget(target_calls=1000))


def test_a_fitted_selector_picks_each_prompt_for_its_kind_and_beats_both(tmp_path: Path) -> None:
    rng = random.Random(1)
    train = [_input(i % 2 == 0, i, rng) for i in range(40)]
    scores = [[float(_right(p.instruction, x)) for x in train] for p in (ALPHA, BETA)]
    selector = fit_selector([ALPHA, BETA], train, scores)
    held_out = [_input(i % 3 == 0, 1000 + i, rng) for i in range(60)]  # new numbers, a third marked
    picks = selector.pick_many(held_out)
    assert [p.id for p in picks] == [(ALPHA if "marker" in x else BETA).id for x in held_out]
    accuracy = {name: sum(_right(p.instruction, x) for p, x in zip(chosen, held_out, strict=True)) / 60
                for name, chosen in (("selector", picks), ("alpha", [ALPHA] * 60), ("beta", [BETA] * 60))}
    assert accuracy["selector"] > max(accuracy["alpha"], accuracy["beta"])


def test_ties_go_to_the_prompt_best_on_average() -> None:
    never = Prompt(instruction="Never right.")
    always = Prompt(instruction="Always right.")
    selector = fit_selector([never, always, ALPHA], ["a b", "c d", "e f"], [[0, 0, 0], [1, 1, 1], [1, 1, 1]])
    assert selector.prompts == (always, ALPHA, never)  # by mean; equal means keep the given order
    assert selector.pick("anything at all") == always  # equal predictions: the first of them


def test_a_run_trains_scores_and_saves_the_selector(kinds_task: Task, tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    result = _run(kinds_task, tmp_path)
    selector = result.selector
    assert isinstance(selector, PromptSelector)
    assert {p.instruction for p in selector.prompts} == {ALPHA.instruction, BETA.instruction,
                                                         kinds_task.seed_prompt.instruction}
    test = kinds_task.splits.test
    for ex in test:
        assert ("ALPHA" in selector.pick(ex.input).instruction) == ("marker" in ex.input)
    # the Run scored each test example with the prompt picked for it: recompute that from plain evaluations
    per_prompt = {p.id: {e.example_id: e.score for e in promptopt.evaluate(
        p, kinds_task, FakeBackend("kinds", reply=_reply), split="test", cache=False).examples}
        for p in selector.prompts}
    picked = [per_prompt[selector.pick(ex.input).id][ex.id] for ex in test]
    assert result.selector_test is not None and result.selector_test.n == len(test)
    assert result.selector_test.mean == pytest.approx(sum(picked) / len(test))
    best_single = max(sum(scores.values()) / len(test) for scores in per_prompt.values())
    assert result.selector_test.mean > best_single and result.selector_test.mean > result.best_test.mean
    assert result.selector_dev is not None and result.selector_dev > result.seed_dev
    saved = json.loads(Path(result.run_dir, "result.json").read_text())
    assert saved["selector_test"]["mean"] == result.selector_test.mean
    assert saved["selector_dev"] == result.selector_dev
    assert saved["selector"]["file"] == SELECTOR_FILE
    # the best single candidate is still the finalist: the usual comparison with the seed is unchanged
    assert result.best_prompt == selector.prompts[0]
    monkeypatch.setattr(cli, "out", Console(width=200))  # no wrapping
    with cli.out.capture() as summary:  # the CLI's summary table shows the selector beside seed and best
        cli._print_result(result)
    assert re.search(rf"per-input selector[\s│]+{result.selector_dev:.3f}[\s│]+{re.escape(str(result.selector_test))}",
                     summary.get())


def test_save_and_load_give_the_same_picks_without_pickle(kinds_task: Task, tmp_path: Path) -> None:
    result = _run(kinds_task, tmp_path)
    raw = Path(result.run_dir, SELECTOR_FILE).read_bytes()
    json.loads(raw)  # plain JSON, nothing to unpickle
    assert not raw.startswith(b"\x80")
    loaded = load_selector(result.run_dir)
    assert loaded == result.selector
    rng = random.Random(7)
    vocabulary = [*WORDS, "marker", "signal", "quiet", "calm", "12"]
    inputs = [" ".join(rng.choice(vocabulary) for _ in range(rng.randint(1, 6))) for _ in range(50)]
    assert len(set(inputs)) > 40
    assert [p.id for p in loaded.pick_many(inputs)] == [p.id for p in result.selector.pick_many(inputs)]
    fitted_picks = {p.id for p in result.selector.pick_many(inputs)}
    assert len(fitted_picks) >= 2  # the inputs exercise the weights, not only the tie-break


def test_the_same_seed_fits_the_same_selector(kinds_task: Task, tmp_path: Path) -> None:
    first, second = _run(kinds_task, tmp_path / "a"), _run(kinds_task, tmp_path / "b")
    assert first.selector is not None and first.selector == second.selector
    assert Path(first.run_dir, SELECTOR_FILE).read_text() == Path(second.run_dir, SELECTOR_FILE).read_text()


def test_other_strategies_have_no_selector(kinds_task: Task, tmp_path: Path) -> None:
    result = promptopt.optimize(kinds_task, "ape", FakeBackend("kinds", reply=_reply), answer_mode="generate",
                                strategy_params={"n_demo_sets": 1, "prompts_per_demo_set": 1}, cache=False,
                                runs_dir=tmp_path / "runs")
    assert result.selector is None and result.selector_dev is None and result.selector_test is None
    saved = json.loads(Path(result.run_dir, "result.json").read_text())
    assert saved["selector"] is None and saved["selector_test"] is None
    assert not Path(result.run_dir, SELECTOR_FILE).exists()
    with pytest.raises(ConfigError, match="only a run of the 'prompt-selection' strategy saves one"):
        load_selector(result.run_dir)


def test_a_budget_stop_keeps_a_selector_of_the_candidates_scored(kinds_task: Task, tmp_path: Path) -> None:
    # the seed on dev (10) and two candidates on 40 train inputs each fit; the third does not
    # (n_score_examples given, so the step is not scaled down to fit the cap)
    result = promptopt.optimize(kinds_task, "prompt-selection", FakeBackend("kinds", reply=_reply),
                                answer_mode="generate", strategy_params={"n_clusters": 2, "n_score_examples": 40},
                                cache=False,
                                runs_dir=tmp_path / "runs", budget=promptopt.Budget(target_calls=100),
                                finalist_reserve=0)
    assert result.stopped_by is not None and "target call cap" in result.stopped_by
    assert result.selector is not None and len(result.selector.prompts) == 2
    assert result.selector_test is not None and result.selector_test.n == len(kinds_task.splits.test)


@pytest.mark.parametrize(("params", "message"), [
    ({"n_clusters": 0}, "the 'n_clusters' parameter of PromptSelection must be an int >= 1; got 0"),
    ({"n_score_examples": 1}, "the 'n_score_examples' parameter of PromptSelection must be an int >= 2; got 1"),
    ({"temperature": 3.0}, "the 'temperature' parameter of PromptSelection must be a number in [0, 2]; got 3.0"),
])
def test_bad_parameters_fail_before_any_call(kinds_task: Task, tmp_path: Path, params: dict[str, Any],
                                             message: str) -> None:
    backend = FakeBackend()
    with pytest.raises(ConfigError) as caught:
        promptopt.optimize(kinds_task, "prompt-selection", backend, strategy_params=params, cache=False,
                           runs_dir=tmp_path / "runs")
    assert str(caught.value).startswith(message) and "\n" not in str(caught.value)
    assert backend.n_calls == 0 and not (tmp_path / "runs").exists()


def test_missing_scikit_learn_names_the_extra_before_any_call(kinds_task: Task, tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "sklearn", None)  # what an environment without it looks like to imports
    backend = FakeBackend()
    with pytest.raises(ConfigError, match=r"strategy 'prompt-selection' needs scikit-learn, which is not "
                                          r"installed; install it with: pip install 'promptopt\[select\]'"):
        promptopt.optimize(kinds_task, "prompt-selection", backend, cache=False, runs_dir=tmp_path / "runs")
    assert backend.n_calls == 0 and not (tmp_path / "runs").exists()


def test_the_cli_prints_one_error_line_and_exits_2(tmp_path: Path) -> None:
    result = CliRunner(env={"COLUMNS": "200", "PROMPTOPT_DATA_DIR": str(DATA_DIR)}).invoke(app, [
        "optimize", "--model", "fake:x", "--task", "synthetic:sentiment", "--strategy", "prompt-selection",
        "--param", "n_clusters=0", "--n-dev", "4", "--no-progress", "--runs-dir", str(tmp_path / "runs")])
    assert result.exit_code == 2
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:") and "'n_clusters' parameter" in lines[0]
    assert not (tmp_path / "runs").exists()


def test_the_plan_counts_the_database_scored_on_the_training_sample_then_the_best_on_dev() -> None:
    from promptopt.strategies._base import Spend
    from promptopt.strategies.prompt_selection import PromptSelection

    plan = PromptSelection(n_clusters=3, prompts_per_cluster=2, n_score_examples=40).step_plan(n_dev=30, n_train=25)
    # seed + 6 generated prompts, each on the 25 training examples there are (fewer than 40 asked)
    assert plan.per_step == Spend(example_evals=7 * 25, optimizer_calls=6)
    assert plan.paper_steps == 1 and plan.finish == Spend(example_evals=30, new_full=1)
