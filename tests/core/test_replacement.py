"""The rule that decides whether the search's winner replaces the seed."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

import promptopt
from promptopt.replacement import check_rule, decide, sign_test_p
from promptopt.strategies import Strategy
from promptopt.tasks import Task
from promptopt.testing import FakeBackend


def test_the_sign_test_against_hand_computed_values() -> None:
    assert sign_test_p(5, 0) == 1 / 32
    assert sign_test_p(7, 1) == 9 / 256  # (C(8,7) + C(8,8)) / 2^8
    assert sign_test_p(6, 2) == 37 / 256
    assert sign_test_p(0, 0) == 1.0


def test_decisions_under_each_rule() -> None:
    seed = {f"d{i}": 0.0 for i in range(10)}
    four_wins = seed | {"d0": 1.0, "d1": 1.0, "d2": 1.0, "d3": 1.0}
    assert decide("better", "w", seed, four_wins).replaced
    kept = decide("sign-test:0.05", "w", seed, four_wins)
    assert not kept.replaced and (kept.wins, kept.losses, kept.p_value) == (4, 0, 1 / 16)
    assert decide("sign-test:0.1", "w", seed, four_wins).replaced
    assert decide("sign-test:0.05", "w", seed, four_wins | {"d4": 1.0}).replaced


@pytest.mark.parametrize("bad", ["sometimes", "sign-test:", "sign-test:1.5", "sign-test:0", 0.05])
def test_a_bad_rule_names_the_choices(bad: object) -> None:
    with pytest.raises(promptopt.ConfigError, match="replace_if must be 'auto', 'better' or 'sign-test:ALPHA'"):
        check_rule(bad)


class _OneMoreRight(Strategy):
    """Offers a prompt that the scripted model answers right on one more dev example than the seed."""

    name = "one-more-right"

    def optimize(self, ctx: Any) -> list[promptopt.Prompt]:
        better = ctx.seed_prompt.with_instruction("Answer carefully.")
        ctx.record(better, [ctx.seed_prompt], "edit")
        return [better]


def _reply(task: Task) -> Any:
    first_odd = next(ex.input for ex in task.splits.dev if ex.target == "odd")

    def reply(req: Any) -> str:
        text = req.messages[-1].content
        return "odd" if "carefully" in text and f"{first_odd}\n" in text else "even"
    return reply


@pytest.mark.parametrize(("rule", "replaced"), [("sign-test:0.05", False), ("better", True)])
def test_a_winner_by_one_example_keeps_the_seed_unless_asked(parity_task: Task, tmp_path: Path, rule: str,
                                                             replaced: bool) -> None:
    result = promptopt.optimize(parity_task, _OneMoreRight(), FakeBackend(reply=_reply(parity_task)),
                                answer_mode="generate", cache=False, runs_dir=tmp_path, replace_if=rule)
    assert result.replacement is not None and result.replacement.replaced is replaced
    assert (result.replacement.wins, result.replacement.losses) == (1, 0)
    assert (result.best_prompt.id != result.seed_prompt.id) is replaced
    assert result.best_dev > result.seed_dev if replaced else result.best_dev == result.seed_dev
    stored = json.loads(Path(result.run_dir, "result.json").read_text())
    assert stored["replacement"]["rule"] == rule and stored["replacement"]["replaced"] is replaced
    events = [json.loads(x) for x in Path(result.run_dir, "events.jsonl").read_text().splitlines()]
    assert [e["replaced"] for e in events if e["type"] == "replacement"] == [replaced]


@pytest.mark.parametrize(("mode", "rule"), [("generate", "sign-test:0.05"), ("choice", "better")])
def test_auto_is_the_sign_test_in_generate_mode_and_better_in_choice_mode(mode: str, rule: str) -> None:
    from promptopt.replacement import resolve_rule

    assert resolve_rule("auto", mode) == rule
    assert resolve_rule("sign-test:0.2", mode) == "sign-test:0.2"


def test_the_default_rule_keeps_a_one_example_winner_in_generate_mode(parity_task: Task, tmp_path: Path) -> None:
    result = promptopt.optimize(parity_task, _OneMoreRight(), FakeBackend(reply=_reply(parity_task)),
                                answer_mode="generate", cache=False, runs_dir=tmp_path)
    assert result.replacement is not None and result.replacement.rule == "sign-test:0.05"
    assert not result.replacement.replaced and result.best_prompt == result.seed_prompt


def test_a_bad_rule_on_the_command_line_exits_2_before_anything_runs(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from promptopt.cli import app

    out = CliRunner().invoke(app, ["optimize", "--model", "fake:x", "--task", "synthetic:sentiment",
                                   "--replace-if", "sign-test:2", "--runs-dir", str(tmp_path / "runs")])
    assert out.exit_code == 2 and "replace_if must be" in out.output
    assert not (tmp_path / "runs").exists()
