"""OPRO and APE on the real embedded model (SmolLM2 via llama.cpp), with tiny budgets."""

from __future__ import annotations

from pathlib import Path

from embedded_runs import run_on_sst2

from promptopt.strategies.ape import APE
from promptopt.strategies.opro import OPRO


def test_opro_on_the_embedded_model(tmp_path: Path) -> None:
    result, events = run_on_sst2(tmp_path, OPRO(n_steps=1, instructions_per_step=3))
    assert result.usage["search"]["optimizer"]["calls"] == 3
    # every reply became a candidate or a recorded skip, never a crash
    handled = [e for e in events if e["type"] in ("candidate", "skip") and e.get("operator") == "opro"]
    assert len(handled) == 3


def test_ape_on_the_embedded_model(tmp_path: Path) -> None:
    ape = APE(n_demo_sets=1, prompts_per_demo_set=2, n_demos=3, keep_fraction=0.5, resample_rounds=1,
              stage_examples=4)
    _, events = run_on_sst2(tmp_path, ape)
    proposals = [e for e in events if e["type"] in ("candidate", "skip") and e.get("operator") == "induce"]
    assert proposals and sum(e["type"] == "round" for e in events) == 2
