"""Score one prompt on a task split, without searching."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from promptopt.backends import Backend
from promptopt.budget import Budget
from promptopt.evaluator import Evaluator, ExampleResult, check_answer_mode, resolve_answer_mode
from promptopt.exceptions import ConfigError
from promptopt.prompt import Prompt
from promptopt.session import Session
from promptopt.stats import Score, summarize
from promptopt.task_options import TaskOptions, load_task_from_options
from promptopt.tasks import Task

__all__ = ["Evaluation", "evaluate"]


@dataclass(frozen=True)
class Evaluation:
    """A prompt's score on one split, with per-example detail and what it cost."""

    prompt: Prompt
    task: str
    split: str
    answer_mode: str
    score: Score
    examples: tuple[ExampleResult, ...]
    usage: dict[str, Any]


def evaluate(prompt: str | Prompt | None = None, task: str | Task = "gsm8k", model: str | Backend = "llamacpp:smollm2",
             *, split: Literal["train", "dev", "test"] = "test", answer_mode: str = "auto", seed: int = 0,
             n_train: int | None = None, n_dev: int | None = 30, n_test: int | None = 50,
             data_dir: str | Path | None = None, offline: bool = False, input_field: str | None = None,
             target_field: str | None = None, metric: str | None = None, labels: Sequence[str] | None = None,
             cache: bool | str | Path = True, runs_dir: str | Path = "runs",
             model_options: Mapping[str, Any] | None = None) -> Evaluation:
    """Score ``prompt`` on a split of ``task``.

    Args:
        prompt: a Prompt, an instruction string (placed in the task's seed
            prompt, keeping its template), or None for the task's seed prompt.
        task, model, answer_mode, seed, n_*, data_dir, offline, input_field,
            target_field, metric, labels, model_options: as in :func:`promptopt.optimize`.
        split: which split to score.
        cache: True for ``<runs_dir>/cache.sqlite``, a path, or False.

    Returns:
        An :class:`Evaluation` with the mean score and its 95% interval.
    """
    if split not in ("train", "dev", "test"):
        raise ConfigError(f"--split (split=) must be train, dev or test; got {split!r}")
    options = TaskOptions(n_train=n_train, n_dev=n_dev, n_test=n_test, seed=seed, data_dir=data_dir,
                          offline=offline, input_field=input_field, target_field=target_field,
                          metric=metric, labels=tuple(labels) if labels else None)
    task_obj = load_task_from_options(task, options)
    check_answer_mode(task_obj, answer_mode)
    if prompt is None:
        prompt = task_obj.seed_prompt
    elif isinstance(prompt, str):
        prompt = task_obj.seed_prompt.with_instruction(prompt)
    examples = getattr(task_obj.splits, split)
    cache_path = None if cache is False else (Path(runs_dir) / "cache.sqlite" if cache is True else Path(cache))
    with Session(model, None, budget=Budget(), cache_path=cache_path, model_options=model_options) as session:
        mode = resolve_answer_mode(task_obj, session.target, answer_mode)
        evaluator = Evaluator(task_obj, session.target, mode)
        result = session.loop.run(evaluator.aevaluate([prompt], examples))[0]
        usage = session.meter.usage.to_dict()
    return Evaluation(prompt, task_obj.name, split, mode, summarize([e.score for e in result.examples]),
                      result.examples, usage)
