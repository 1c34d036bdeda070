"""The HTML report of a real (fake-backend) run: sections, embedded PNGs, no external assets, escaped prompts.

Needs matplotlib (the ``plot`` extra); without it these tests skip, except the
one checking the message that names the extra. How to look at a report in a
real browser is in ``tests/report/README.md`` (not part of the suite).
"""

from __future__ import annotations

import importlib.util
import json
import re
import shutil
import sys
from pathlib import Path

import pytest
from parity_fixtures import MAGIC, parity_target

import promptopt
from promptopt.exceptions import ConfigError
from promptopt.report import list_runs, write_report
from promptopt.tasks import Task
from promptopt.testing import FakeBackend
from promptopt.types import Request

needs_matplotlib = pytest.mark.skipif(importlib.util.find_spec("matplotlib") is None,
                                      reason="the report's plots need matplotlib: pip install 'promptopt[plot]'")
SECTIONS = ("summary", "progress", "candidates", "lineage", "diff", "test", "spend", "skips")
HOSTILE = "<script>alert(1)</script>"


def hostile_optimizer(req: Request) -> str:
    """APO-format replies whose edit smuggles a script tag; paraphrases are unusable chatter (skipped)."""
    text = req.messages[-1].content
    if "reasons why" in text:
        return "<START>The prompt never mentions the magic word.<END>"
    if "improved versions" in text:
        return f"<START>Use {MAGIC} {HOSTILE}: say whether the number is even or odd.<END>"
    return "ok"


@pytest.fixture
def run_dir(parity_task: Task, tmp_path: Path) -> Path:
    backend = FakeBackend("hostile", reply=lambda r: hostile_optimizer(r) if r.role == "optimizer"
                          else parity_target(r))
    result = promptopt.optimize(parity_task, "apo", backend, answer_mode="generate", cache=False,
                                budget=promptopt.Budget(target_calls=600), runs_dir=tmp_path / "runs",
                                strategy_params={"rounds": 2, "beam_size": 2, "minibatch_size": 8,
                                                 "n_gradients": 1, "mc_samples_per_step": 1})
    assert HOSTILE in result.best_prompt.instruction  # the test below is only meaningful if so
    return Path(result.run_dir)


def _assert_self_contained(page: str) -> None:
    assert "http://" not in page and "https://" not in page
    assert not re.search(r"""(src|href)\s*=\s*(?!["']?data:)""", page, re.IGNORECASE)
    assert "<script" not in page.lower() and "<link" not in page.lower()


@needs_matplotlib
def test_report_of_a_finished_run(run_dir: Path) -> None:
    path = write_report(run_dir)
    assert path == run_dir / "report.html"
    page = path.read_text(encoding="utf-8")
    for section in SECTIONS:
        assert f'<section id="{section}">' in page
    assert page.count('src="data:image/png;base64,') == 2
    _assert_self_contained(page)
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "Incomplete run" not in page and "<del>" in page and "<ins>" in page
    assert "best wins" in page and "Skipped proposals" in page
    assert re.search(r'<span class="op"[^>]*>paraphrase</span></td><td>\d+', page)  # "ok" replies were skipped


@needs_matplotlib
def test_report_of_an_interrupted_run(run_dir: Path, tmp_path: Path) -> None:
    broken = tmp_path / "broken"
    shutil.copytree(run_dir, broken)
    (broken / "result.json").unlink()
    lines = (broken / "events.jsonl").read_text(encoding="utf-8").splitlines(keepends=True)
    cut = next(i for i, line in enumerate(lines) if json.loads(line)["type"] == "test")
    (broken / "events.jsonl").write_text("".join(lines[:cut]) + lines[cut][:40], encoding="utf-8")  # torn
    page = write_report(broken).read_text(encoding="utf-8")
    assert "Incomplete run" in page and "incomplete" in page
    assert "the final test evaluation has not run" in page and "So far (from the last logged event)" in page
    assert page.count('src="data:image/png;base64,') == 2
    _assert_self_contained(page)
    assert [r.status for r in list_runs(tmp_path) if r.run_id == "broken"] == ["incomplete"]


@needs_matplotlib
def test_report_of_a_run_that_logged_nothing_yet(tmp_path: Path) -> None:
    run = tmp_path / "fresh"
    run.mkdir()
    (run / "config.json").write_text(json.dumps({"task": "t", "strategy": "apo"}), encoding="utf-8")
    page = write_report(run).read_text(encoding="utf-8")
    assert "Incomplete run" in page and "data:image/png" not in page and "Nothing logged yet" in page


def test_missing_matplotlib_names_the_extra(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    run = tmp_path / "r"
    run.mkdir()
    event = {"type": "evaluation", "prompt_id": "p", "n": 3, "mean": 0.5, "dev": True, "best_dev": 0.5,
             "target_calls": 3, "tokens": 30}
    (run / "events.jsonl").write_text(json.dumps(event) + "\n", encoding="utf-8")
    monkeypatch.setitem(sys.modules, "matplotlib.backends.backend_agg", None)  # makes the import fail
    with pytest.raises(ConfigError, match=re.escape("pip install 'promptopt[plot]'")):
        write_report(run)
