"""What a run has seen: every candidate, its lineage, and its dev scores.

On a set of tasks a candidate's dev mean is the mean of its per-task means.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from promptopt.prompt import Prompt
from promptopt.tasks._set import mean_of_task_means, task_means

__all__ = ["Candidate", "History"]


@dataclass
class Candidate:
    """One distinct prompt the search produced, with where it came from."""

    prompt: Prompt
    parents: tuple[str, ...] = ()
    operator: str = "seed"
    order: int = 0
    dev_scores: dict[str, float] = field(default_factory=dict)
    #: on a set of tasks, each dev example's task (by example id); None on one task
    task_of: Mapping[str, str] | None = field(default=None, repr=False, compare=False)

    @property
    def id(self) -> str:
        return self.prompt.id

    def dev_mean(self) -> float:
        """Mean dev score (on a set of tasks: the mean of the per-task means of the examples scored)."""
        if self.task_of is not None:
            return mean_of_task_means(self.dev_scores, self.task_of)
        return sum(self.dev_scores.values()) / len(self.dev_scores) if self.dev_scores else 0.0

    def dev_task_means(self) -> dict[str, float]:
        """Each task's dev mean on a set of tasks (empty on one task)."""
        return task_means(self.dev_scores, self.task_of) if self.task_of is not None else {}


class History:
    """Candidates by id, in the order they first appeared."""

    def __init__(self, dev_ids: tuple[str, ...], task_of: Mapping[str, str] | None = None) -> None:
        self.dev_ids = frozenset(dev_ids)
        self.task_of = task_of
        self.candidates: dict[str, Candidate] = {}

    def add(self, prompt: Prompt, parents: tuple[str, ...] = (), operator: str = "") -> tuple[Candidate, bool]:
        """Register a prompt; returns the candidate and whether it is new."""
        known = self.candidates.get(prompt.id)
        if known is not None:
            return known, False
        cand = Candidate(prompt, parents, operator, order=len(self.candidates), task_of=self.task_of)
        self.candidates[prompt.id] = cand
        return cand, True

    def add_dev_scores(self, prompt: Prompt, scores: dict[str, float]) -> None:
        cand, _ = self.add(prompt, operator="unrecorded")
        cand.dev_scores.update({k: v for k, v in scores.items() if k in self.dev_ids})

    def fully_scored(self) -> list[Candidate]:
        """Candidates scored on every dev example."""
        return [c for c in self.candidates.values() if len(c.dev_scores) == len(self.dev_ids)]

    def is_fully_scored(self, prompt_id: str) -> bool:
        """Whether the candidate ``prompt_id`` is known and scored on every dev example."""
        cand = self.candidates.get(prompt_id)
        return cand is not None and len(cand.dev_scores) == len(self.dev_ids)

    def partly_scored(self) -> list[Candidate]:
        """Candidates scored on some dev examples but not all, best partial mean first."""
        part = [c for c in self.candidates.values() if 0 < len(c.dev_scores) < len(self.dev_ids)]
        return sorted(part, key=lambda c: (-c.dev_mean(), c.order))

    def best(self) -> Candidate | None:
        """Highest full-dev mean; ties go to the earlier candidate (the seed first)."""
        full = self.fully_scored()
        return max(full, key=lambda c: (c.dev_mean(), -c.order)) if full else None

    def best_partial(self) -> float:
        """Best dev mean so far among fully scored candidates (for progress display)."""
        best = self.best()
        return best.dev_mean() if best else 0.0
