"""The report's pure data functions, on hand-made event lists (no matplotlib needed)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from promptopt.exceptions import ConfigError
from promptopt.report import _data, format_runs, list_runs
from promptopt.report._runs import load_run, summarize_run

S, A, B, C = "seed0000", "aaaa0000", "bbbb0000", "cccc0000"


def ev(type_: str, calls: int, best: float, **kw: Any) -> dict[str, Any]:
    """An event with the spend snapshot the Run adds to every event."""
    return {"type": type_, "target_calls": calls, "optimizer_calls": calls // 10, "tokens": calls * 10,
            "elapsed": calls / 100, "n_candidates": 0, "best_dev": best, **kw}


def cand(pid: str, calls: int, best: float, parents: list[str], operator: str, instruction: str) -> dict[str, Any]:
    prompt = {"system": "", "instruction": instruction, "demos": [], "template": "Q: {input}\nA:"}
    return ev("candidate", calls, best, prompt_id=pid, parents=parents, operator=operator, prompt=prompt)


def evaluation(pid: str, calls: int, best: float, n: int, mean: float, dev: bool = True) -> dict[str, Any]:
    return ev("evaluation", calls, best, prompt_id=pid, n=n, mean=mean, dev=dev)


def search() -> list[dict[str, Any]]:
    return [
        cand(S, 0, 0.0, [], "seed", "Answer the question."),
        evaluation(S, 10, 0.3, 10, 0.3),
        evaluation(S, 14, 0.3, 4, 0.25, dev=False),  # a training minibatch
        cand(A, 14, 0.3, [S], "edit", "Answer the question <b>carefully</b>."),
        cand(B, 14, 0.3, [S], "paraphrase", "Reply to the question."),
        ev("skip", 14, 0.3, operator="edit", reason="empty", raw=""),
        ev("skip", 14, 0.3, operator="paraphrase", reason="empty", raw=""),
        ev("skip", 14, 0.3, operator="edit", reason="empty", raw=""),
        evaluation(A, 19, 0.3, 5, 0.8),  # half of dev: not a full-dev score
        evaluation(A, 29, 0.6, 10, 0.6),
        evaluation(B, 39, 0.6, 10, 0.4),
        cand(C, 39, 0.6, [A, B], "merge", "Answer the question carefully, step by step."),
        evaluation(C, 49, 0.7, 10, 0.7),
        evaluation(S, 49, 0.7, 10, 0.3),  # a finalist re-scored: replayed, same point
        {**ev("budget_exhausted", 49, 0.7, reason="target call cap 50"), "elapsed": 0.6},
    ]


def finished() -> list[dict[str, Any]]:
    return search() + [
        ev("test", 69, 0.7, prompt_id=S, n=4, mean=0.625, scores={"t-1": 1.0, "t-2": 0.0, "t-10": 1.0, "t-3": 0.5}),
        ev("test", 89, 0.7, prompt_id=C, n=4, mean=0.625, scores={"t-1": 1.0, "t-2": 1.0, "t-10": 0.0, "t-3": 0.5}),
        ev("result", 89, 0.7, best_prompt_id=C, best_test=0.625),
    ]


def test_best_so_far_is_a_step_line_over_the_search_only() -> None:
    series = _data.best_so_far_series(finished())
    assert [(p.target_calls, p.best_dev) for p in series] == [(10, 0.3), (29, 0.6), (49, 0.7), (49, 0.7)]
    assert series[1].tokens == 290 and series[-1].elapsed == 0.6
    assert _data.best_so_far_series(search()) == series


def test_no_series_before_the_first_full_dev_score() -> None:
    assert _data.best_so_far_series(search()[:1]) == []
    assert _data.best_so_far_series([]) == []


def test_candidate_points_are_first_full_dev_scores_with_operators() -> None:
    points = _data.candidate_points(finished())
    assert [(p.prompt_id, p.operator, p.target_calls, p.mean) for p in points] == [
        (S, "seed", 10, 0.3), (A, "edit", 29, 0.6), (B, "paraphrase", 39, 0.4), (C, "merge", 49, 0.7)]


def test_an_unrecorded_prompt_is_still_a_point() -> None:
    events = search()[:2] + [evaluation("zzz", 20, 0.3, 10, 0.1)]
    assert _data.candidate_points(events)[-1].operator == "unrecorded"


def test_seed_and_best_ids() -> None:
    assert _data.seed_id(finished()) == S
    assert _data.best_id(finished()) == C
    # Without a result event: the highest full-dev mean (A's partial 0.8 does not count).
    assert _data.best_id(search()[:11]) == A
    tie = search()[:2] + [cand(A, 10, 0.3, [S], "edit", "x"), evaluation(A, 20, 0.3, 10, 0.3)]
    assert _data.best_id(tie) == S  # ties go to the earlier candidate, as in the Run
    assert _data.best_id(search()[:1]) is None


def test_lineage_follows_every_parent_oldest_first() -> None:
    nodes = _data.lineage(finished(), C)
    assert [n.prompt_id for n in nodes] == [S, A, B, C]
    assert nodes[-1].parents == (A, B) and nodes[-1].operator == "merge" and nodes[-1].dev == 0.7
    assert nodes[0].operator == "seed" and nodes[0].parents == ()
    assert [n.prompt_id for n in _data.lineage(finished(), S)] == [S]


def test_lineage_survives_missing_parents_and_cycles() -> None:
    events = [cand("x", 0, 0, ["gone"], "edit", "x"), cand("p", 0, 0, ["q"], "edit", "p"),
              cand("q", 0, 0, ["p"], "edit", "q")]
    nodes = _data.lineage(events, "x")
    assert [(n.prompt_id, n.prompt is None) for n in nodes] == [("gone", True), ("x", False)]
    assert {n.prompt_id for n in _data.lineage(events, "p")} == {"p", "q"}


def test_word_diff_marks_changes_and_escapes_everything() -> None:
    html = _data.word_diff("Answer the <b>question</b>.\nNow.", "Answer the <script>x</script> question.\nNow.")
    assert html.startswith("Answer the ")
    assert "<del>&lt;b&gt;question&lt;/b&gt;.</del>" in html
    assert "<ins>&lt;script&gt;x&lt;/script&gt; question.</ins>" in html
    assert "<script>" not in html and "<b>" not in html
    assert html.endswith("\nNow.")
    assert _data.word_diff("same & text", "same & text") == "same &amp; text"
    assert _data.word_diff("", "new") == "<ins>new</ins>"


def test_prompt_text_has_every_part() -> None:
    text = _data.prompt_text({"system": "Be brief.", "instruction": "Add.", "template": "{input}",
                              "demos": [{"input": "1+1", "output": "2"}]})
    assert text == ("# system\nBe brief.\n\n# instruction\nAdd.\n\n# demo 1\ninput: 1+1\noutput: 2\n\n"
                    "# template\n{input}")


def test_test_wins_compares_per_example_scores() -> None:
    wins = _data.test_wins(finished(), S, C)
    assert wins is not None
    assert (wins.wins, wins.losses, wins.ties, wins.n) == (1, 1, 2, 4)
    assert wins.differing == (("t-2", 0.0, 1.0), ("t-10", 1.0, 0.0))  # natural order: t-2 before t-10


def test_test_wins_when_the_seed_is_best_or_untested() -> None:
    only_seed = search() + [ev("test", 60, 0.3, prompt_id=S, n=2, mean=0.5, scores={"a": 1.0, "b": 0.0})]
    same = _data.test_wins(only_seed, S, S)
    assert same is not None and (same.wins, same.losses, same.ties, same.differing) == (0, 0, 2, ())
    assert _data.test_wins(search(), S, C) is None


def test_spend_per_role_search_and_total() -> None:
    usage = {"search": {"target": {"calls": 50, "paid_calls": 40, "tokens": 500},
                        "optimizer": {"calls": 5, "paid_calls": 5, "tokens": 90}},
             "total": {"target": {"calls": 90, "paid_calls": 80, "tokens": 900, "usd": 0.01},
                       "optimizer": {"calls": 5, "paid_calls": 5, "tokens": 90}}}
    rows = _data.spend({"usage": usage})
    assert [(r.role, r.search_calls, r.search_paid_calls, r.total_calls, r.total_tokens, r.usd) for r in rows] == [
        ("target", 50, 40, 90, 900, 0.01), ("optimizer", 5, 5, 5, 90, 0.0)]
    assert [r.total_calls for r in _data.spend({})] == [0, 0]


def test_skips_by_operator_most_first() -> None:
    assert _data.skips_by_operator(finished()) == {"edit": 2, "paraphrase": 1}
    assert _data.skips_by_operator([]) == {}


def test_stop_reason_and_header_for_finished_and_incomplete_runs() -> None:
    config = {"task": "t", "strategy": "apo", "model": "fake:fake", "optimizer_model": "fake:fake",
              "answer_mode": "generate", "seed": 3, "budget": {"target_calls": 50, "tokens": None}}
    result = {"stopped_by": None, "seed_dev": 0.3, "best_dev": 0.7, "n_candidates": 4,
              "seed_test": {"mean": 0.5, "low": 0.1, "high": 0.9, "n": 4},
              "best_test": {"mean": 0.75, "low": 0.3, "high": 0.95, "n": 4}}
    rows = dict(_data.header(config, result, finished()))
    assert rows["status"] == "finished" and rows["seed"] == "3" and rows["budget"] == "target calls ≤ 50"
    assert rows["stopped by"].startswith("finished") and rows["dev (seed → best)"] == "0.300 → 0.700"
    assert "0.750 [0.300, 0.950] (n=4)" in rows["test (seed → best, 95% CI)"]
    rows = dict(_data.header(config, None, search()))
    assert rows["status"].startswith("incomplete") and "target call cap 50" in rows["stopped by"]
    assert rows["dev (seed → best)"] == "0.300 → 0.700" and "test (seed → best, 95% CI)" not in rows
    assert _data.stop_reason([], None) == "incomplete (crashed or still running)"


def _write_run(path: Path, events: list[dict[str, Any]], *, result: dict[str, Any] | None = None,
               torn: str = "") -> Path:
    path.mkdir(parents=True)
    (path / "config.json").write_text(json.dumps({"task": "t", "strategy": "apo"}), encoding="utf-8")
    lines = "".join(json.dumps(e) + "\n" for e in events)
    (path / "events.jsonl").write_text(lines + torn, encoding="utf-8")
    if result is not None:
        (path / "result.json").write_text(json.dumps(result), encoding="utf-8")
    return path


def test_load_run_skips_a_torn_last_line_and_allows_no_result(tmp_path: Path) -> None:
    run = _write_run(tmp_path / "r1", search()[:11], torn='{"type": "evaluation", "prompt_')
    files = load_run(run)
    assert len(files.events) == 11 and files.result is None and files.config["task"] == "t"
    data = _data.build_report(run.name, files.config, files.events, files.result)
    assert not data.complete and data.best_id == A and data.wins is None and data.spend == []
    assert data.snapshot is not None and data.snapshot.target_calls == 39
    assert data.seed_text is not None and data.best_text is not None and "<b>carefully</b>" in data.best_text
    summary = summarize_run(files)
    assert (summary.status, summary.seed_dev, summary.best_dev, summary.best_test) == ("incomplete", 0.3, 0.6, None)
    assert (summary.target_calls, summary.optimizer_calls) == (39, 3)


def test_load_run_rejects_what_is_not_a_run(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not a run directory"):
        load_run(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match="not a run directory"):
        load_run(tmp_path / "empty")
    run = _write_run(tmp_path / "bad", search()[:2])
    (run / "events.jsonl").write_text("not json\n" + json.dumps(search()[0]) + "\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="malformed line"):
        load_run(run)


def test_list_runs_sorted_by_modification_time(tmp_path: Path) -> None:
    result = {"seed_dev": 0.3, "best_dev": 0.7, "best_test": {"mean": 0.625},
              "usage": {"total": {"target": {"calls": 89}, "optimizer": {"calls": 8}}}}
    new = _write_run(tmp_path / "b-new", finished(), result=result)
    old = _write_run(tmp_path / "a-old", search()[:5])
    for path, when in ((old, 1_000_000), (new, 2_000_000)):
        for f in path.iterdir():
            os.utime(f, (when, when))
    (tmp_path / "cache.sqlite").write_text("")
    (tmp_path / "not-a-run").mkdir()
    runs = list_runs(tmp_path)
    assert [(r.run_id, r.status) for r in runs] == [("a-old", "incomplete"), ("b-new", "finished")]
    assert (runs[1].best_test, runs[1].target_calls, runs[1].optimizer_calls) == (0.625, 89, 8)
    lines = format_runs(runs)
    assert lines[0].split()[:4] == ["run", "task", "strategy", "status"]
    assert lines[1].split() == ["a-old", "t", "apo", "incomplete", "0.300→0.300", "–", "14+1"]
    assert lines[2].split() == ["b-new", "t", "apo", "finished", "0.300→0.700", "0.625", "89+8"]
    assert len({line.index("status") if i == 0 else line.index("incomplete" if i == 1 else "finished")
                for i, line in enumerate(lines)}) == 1  # the status column is aligned


def test_list_runs_of_a_missing_directory_says_what_to_pass(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="--runs-dir"):
        list_runs(tmp_path / "nope")


def test_the_header_says_what_was_kept_back_for_the_finalists() -> None:
    events = [{"type": "finalist_reserve", "candidates": 1, "calls": 8}]
    assert dict(_data.header({"finalist_reserve": 1}, None, events))["finalist reserve"] == (
        "1 candidate(s): 8 target calls kept back")
    events = [{"type": "finalist_reserve", "candidates": 1, "calls": 0}]
    assert "nothing kept back" in dict(_data.header({"finalist_reserve": 1}, None, events))["finalist reserve"]
    assert dict(_data.header({"finalist_reserve": 0}, None, []))["finalist reserve"] == "none"
