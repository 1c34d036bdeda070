"""What a run does differently on a set of tasks: its seed system prompt, its configuration, how the
winner is compared with the seed, and the per-task scores ``Result.per_task`` and ``Result.unseen`` hold.

Everything here leaves a run on one task as it was.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from promptopt.backends._base import Backend
from promptopt.default_system import default_system_prompt
from promptopt.evaluator import EvalResult
from promptopt.history import Candidate, History
from promptopt.prompt import Prompt
from promptopt.stats import Score, summarize
from promptopt.tasks._base import Task
from promptopt.tasks._set import TaskSet, combine_scores

__all__ = ["TaskScores", "dev_scores_to_compare", "per_task_fields", "per_task_tests", "replacement_weights",
           "set_config", "set_results", "test_score", "with_seed_system"]


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


def with_seed_system(task: Task, system: str | None, target: Backend) -> Task:
    """A set of tasks with its seed system prompt: ``system`` if given, else the task-set file's,
    else the target model's default made explicit (one task is returned unchanged)."""
    if not isinstance(task, TaskSet):
        return task
    if system is not None:
        return task.with_system(system)
    return task if task.system is not None else task.with_system(default_system_prompt(target))


def set_config(task: Task, modes: Mapping[str, str], system: str | None) -> dict[str, Any]:
    """What a set of tasks (or a seed system prompt) adds to a run's configuration; nothing for one task."""
    if not isinstance(task, TaskSet):
        return {} if system is None else {"system": system}
    kinds = {modes[name] for name in task.member_names}  # unseen tasks' modes do not shape the search
    return {"task_set": task.to_config(), "answer_modes": dict(modes),
            "answer_mode": kinds.pop() if len(kinds) == 1 else "mixed"}


def dev_scores_to_compare(history: History, seed: Candidate,
                           best: Candidate) -> tuple[Mapping[str, float], Mapping[str, float]]:
    """The seed's and the winner's dev scores for the replacement rule; on a set of tasks
    weighted so that the rule's mean difference is that of the per-task means."""
    if history.task_of is None:
        return seed.dev_scores, best.dev_scores
    return replacement_weights(seed.dev_scores, history.task_of), replacement_weights(best.dev_scores, history.task_of)


def set_results(task: Task, modes: Mapping[str, str], tested: Mapping[str, EvalResult],
                seeds: tuple[Candidate | None, Candidate | None], prompts: tuple[Prompt, Prompt],
                unseen: Mapping[str, list[Score]]) -> dict[str, Any]:
    """``Result.per_task`` and ``Result.unseen`` on a set of tasks (nothing on one task), from the
    seed's and the best candidate's dev scores (``seeds``), and the test evaluations of ``prompts``
    (the seed and the best prompt, by id in ``tested``)."""
    if not isinstance(task, TaskSet):
        return {}
    seed_cand, best_cand = seeds
    seed_dev = seed_cand.dev_task_means() if seed_cand else {}
    best_dev = best_cand.dev_task_means() if best_cand else seed_dev
    seed_test, best_test = (per_task_tests(tested[p.id]) for p in prompts)
    per_task = {name: TaskScores(modes[name], seed_test[name], best_test[name], seed_dev.get(name),
                                 best_dev.get(name)) for name in task.member_names}
    return {"per_task": per_task,
            "unseen": {name: TaskScores(modes[name], scores[0], scores[-1]) for name, scores in unseen.items()}}
