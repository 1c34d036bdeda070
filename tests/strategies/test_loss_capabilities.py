"""Loss-based strategies refuse, before any call, a backend that cannot score or tokenize: from the
Python API and from the CLI's ``--dry-run`` (one ``error:`` line, exit code 2)."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

import promptopt
from promptopt.cli import app
from promptopt.exceptions import CapabilityError
from promptopt.testing import FakeBackend, FaultPlan, run_fault_server

LOSS_STRATEGIES = ["pmpo", "tapruning", "promptquine"]
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


@pytest.mark.parametrize("name", LOSS_STRATEGIES)
def test_optimize_refuses_a_backend_without_log_probabilities(name: str, tmp_path: Path) -> None:
    fake = FakeBackend(can_score=False)
    with pytest.raises(CapabilityError, match=rf"strategy '{name}' needs log-probabilities \(score\)"):
        promptopt.optimize("synthetic:sentiment", name, fake, runs_dir=tmp_path / "runs", cache=False)
    assert fake.n_calls == 0 and not (tmp_path / "runs").exists()


@pytest.mark.parametrize(("name", "refused"), [("tapruning", True), ("promptquine", True), ("pmpo", False)])
def test_pruning_refuses_a_backend_without_a_tokenizer(name: str, refused: bool, tmp_path: Path) -> None:
    fake = FakeBackend(can_tokenize=False)
    run = lambda: promptopt.optimize("synthetic:sentiment", name, fake, runs_dir=tmp_path / "runs",  # noqa: E731
                                     cache=False, n_dev=4, budget=promptopt.Budget(target_calls=60))
    if not refused:  # PMPO reads no tokens: it searches past the seed's dev evaluation (8 calls)
        assert run().usage["search"]["target"]["calls"] > 8
        return
    with pytest.raises(CapabilityError, match=rf"strategy '{name}' needs its tokenizer \(tokenize\)"):
        run()
    assert fake.n_calls == 0


@pytest.mark.parametrize("name", LOSS_STRATEGIES)
def test_dry_run_names_the_missing_capabilities_in_one_line(name: str, tmp_path: Path) -> None:
    # an OpenAI-compatible endpoint that is not vLLM: it can neither score nor tokenize
    data_dir = os.environ.get("PROMPTOPT_DATA_DIR") or str(Path(__file__).parents[2].parent / "shared" / "data")
    with run_fault_server(FaultPlan()) as server:
        result = CliRunner(env={"COLUMNS": "200", "PROMPTOPT_DATA_DIR": data_dir}).invoke(app, [
            "optimize", "--task", "synthetic:sentiment", "--strategy", name, "--model", "openai:fault",
            "--base-url", server.base_url, "--dry-run", "--no-progress", "--runs-dir", str(tmp_path / "runs")])
        posted = list(server.stats.bodies)
    output = ANSI.sub("", result.output)
    assert result.exit_code == 2, output
    lines = output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), output
    assert f"strategy '{name}' needs log-probabilities" in lines[0] and "openai:fault" in lines[0]
    assert ("its tokenizer" in lines[0]) == (name != "pmpo")
    assert posted == [] and not (tmp_path / "runs").exists()  # no model call, nothing written
