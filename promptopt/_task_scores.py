"""Per-task scores of a run on a set of tasks: what ``Result.per_task`` and ``Result.unseen`` hold."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from promptopt.evaluator import EvalResult
from promptopt.stats import Score, summarize
from promptopt.tasks._set import combine_scores

__all__ = ["TaskScores", "per_task_fields", "per_task_tests", "replacement_weights", "test_score"]


@dataclass(frozen=True)
class TaskScores:
    """One task's scores in a run on a set of tasks.

    Attributes:
        answer_mode: how the task's answers were read.
        seed_test / best_test: the seed's and the best prompt's test scores (95% intervals).
        seed_dev / best_dev: their dev means (None for an unseen task, which has no dev scores).
    """

    answer_mode: str
    seed_test: Score
    best_test: Score
    seed_dev: float | None = None
    best_dev: float | None = None


def per_task_tests(result: EvalResult) -> dict[str, Score]:
    """Each task's test score from one evaluation on a set's test split."""
    by_task: dict[str, list[float]] = {}
    for task, example in zip(result.tasks, result.examples, strict=True):
        by_task.setdefault(task, []).append(example.score)
    return {task: summarize(scores) for task, scores in by_task.items()}


def test_score(result: EvalResult) -> Score:
    """The test score of one evaluation: over its examples on one task; on a set, the mean of the
    per-task scores (:func:`~promptopt.tasks._set.combine_scores`)."""
    if not result.tasks:
        return summarize([e.score for e in result.examples])
    return combine_scores(list(per_task_tests(result).values()))


def per_task_fields(result: EvalResult) -> dict[str, Any]:
    """An event's ``per_task`` field on a set (each task's n and mean); nothing on one task."""
    if not result.tasks:
        return {}
    return {"per_task": {task: {"n": result.tasks.count(task), "mean": mean}
                         for task, mean in result.per_task.items()}}


def replacement_weights(scores: Mapping[str, float], task_of: Mapping[str, str]) -> dict[str, float]:
    """Dev scores scaled so that their plain mean is the mean of per-task means.

    The replacement rule compares the mean of per-example differences and counts wins and
    losses; scaling each example by ``N / (tasks × its task's size)`` (a positive factor)
    makes that mean the per-task-mean difference without changing any win or loss.
    """
    sizes: dict[str, int] = {}
    for ex_id in scores:
        sizes[task_of[ex_id]] = sizes.get(task_of[ex_id], 0) + 1
    return {ex_id: score * len(scores) / (len(sizes) * sizes[task_of[ex_id]]) for ex_id, score in scores.items()}
