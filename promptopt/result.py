"""What a run found: the :class:`Result` that ``optimize`` returns and ``result.json`` holds."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from promptopt._set_run import TaskScores
from promptopt.context import FrontEntry
from promptopt.prompt import Prompt
from promptopt.replacement import Replacement
from promptopt.selector import SELECTOR_FILE, PromptSelector
from promptopt.stats import Score

__all__ = ["Result"]


@dataclass(frozen=True)
class Result:
    """What a run found.

    Attributes:
        best_prompt: the candidate with the highest dev score if it passed the ``replace_if``
            rule against the seed (see ``replacement``), else the seed.
        best_dev / seed_dev: mean dev scores (with ``select_on="held-out"``, on the dev split the
            search never saw, where the final prompt was picked).
        best_test / seed_test: test scores with 95% confidence intervals, each measured once.
        usage: calls and tokens per role, for the search and for the final test evaluation.
        stopped_by: the budget cap that ended the search, or None if it finished.
        n_candidates: prompts the search made, the seed included.
        n_fully_scored: the candidates scored on all of dev (the seed included): those the
            final choice was made among (with ``select_on="held-out"``, on the held-out dev).
        selection: the rule that picked ``best_prompt`` among candidates scored on all of
            dev (``best-dev-mean`` unless the strategy declared its own).
        replacement: how the ``replace_if`` rule judged the search's winner against the seed
            (None when the winner was the seed, or a strategy's own selection rule picked it).
        front: the strategy's Pareto front, each candidate with its objective values (if it gave one).
        select_on: the split the final prompt was picked on: ``dev`` (the one the strategy searched
            on) or ``held-out`` (dev, kept from a search on examples drawn from train).
        search_dev: with ``held-out``, the best prompt's mean on the split the strategy searched
            on (None with ``dev``, where that is ``best_dev``).
        strategy_seconds: the search's own compute (policy updates, parsing, sorting): its wall
            time minus the time spent waiting for model calls. Like ``usage``, a measurement that
            a rerun of the same configuration does not repeat exactly.
        selector: the per-input prompt selector the strategy fitted (``prompt-selection``), else None;
            saved as ``selector.json`` in the run directory (:func:`promptopt.load_selector`).
        selector_dev / selector_test: its dev mean and test score, each example scored with the
            prompt it picks for it (None without a selector).
        per_task: on a set of tasks, each task's seed and best scores on dev and test (the set's
            dev and test scores are the means of these per-task means); empty on one task.
        unseen: each unseen task's seed and best scores on its test split (scored after the search).
        scaled_to_budget: the strategy parameters shrunk to fit the budget, name -> [before, after]
            (``RunConfig.scale_to_budget``; empty when none was).
        scaling_short: True when parameters were scaled and even every one at its smallest left
            less than one full step and three new fully scored candidates in the budget
            (``promptopt.estimate`` and ``--dry-run`` say what would fit).
    """

    run_id: str
    run_dir: str
    task: str
    strategy: str
    model: str
    optimizer_model: str
    answer_mode: str
    seed: int
    seed_prompt: Prompt
    best_prompt: Prompt
    seed_dev: float
    best_dev: float
    seed_test: Score
    best_test: Score
    usage: dict[str, Any]
    stopped_by: str | None
    n_candidates: int
    selection: str = "best-dev-mean"
    n_fully_scored: int = 0
    replacement: Replacement | None = None
    front: tuple[FrontEntry, ...] = ()
    strategy_seconds: float = field(default=0.0, compare=False)
    selector: PromptSelector | None = None
    selector_dev: float | None = None
    selector_test: Score | None = None
    select_on: str = "dev"
    search_dev: float | None = None
    per_task: dict[str, TaskScores] = field(default_factory=dict)
    unseen: dict[str, TaskScores] = field(default_factory=dict)
    scaled_to_budget: Mapping[str, list[int]] = field(default_factory=dict)
    scaling_short: bool = False

    @property
    def test_score(self) -> float:
        """Mean test score of the best prompt."""
        return self.best_test.mean

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["seed_prompt"], d["best_prompt"] = self.seed_prompt.to_dict(), self.best_prompt.to_dict()
        d["front"] = [entry.to_dict() for entry in self.front]
        if self.selector is not None:  # the numbers are in selector.json
            d["selector"] = {"file": SELECTOR_FILE, "prompt_ids": [p.id for p in self.selector.prompts]}
        for key in ("per_task", "unseen"):  # one task's result.json stays as it was
            if not d[key]:
                del d[key]
        return d
