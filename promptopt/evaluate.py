"""Score one prompt on a task split, without searching."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from promptopt.backends import Backend
from promptopt.budget import Budget
from promptopt.config import DEFAULT_MODEL, RunConfig, config_from_call
from promptopt.evaluator import Evaluator, ExampleResult, check_answer_mode, resolve_answer_mode
from promptopt.exceptions import ConfigError
from promptopt.prompt import Prompt
from promptopt.session import Session
from promptopt.stats import Score, summarize
from promptopt.task_options import load_task_from_options
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


def evaluate(prompt: str | Prompt | None = None, task: str | Task = "gsm8k", model: str | Backend = DEFAULT_MODEL,
             *, split: Literal["train", "dev", "test"] = "test", answer_mode: str = "auto", seed: int = 0,
             n_train: int | None = None, n_dev: int | None = 30, n_test: int | None = 50,
             data_dir: str | Path | None = None, offline: bool = False, input_field: str | None = None,
             target_field: str | None = None, metric: str | None = None, labels: Sequence[str] | None = None,
             cache: bool | str | Path = True, runs_dir: str | Path = "runs",
             model_options: Mapping[str, Any] | None = None, config: RunConfig | None = None) -> Evaluation:
    """Score ``prompt`` on a split of ``task``.

    Args:
        prompt: a Prompt, an instruction string (placed in the task's seed
            prompt, keeping its template), or None for the task's seed prompt.
        task, model, answer_mode, seed, n_*, data_dir, offline, input_field,
            target_field, metric, labels, model_options: as in :func:`promptopt.optimize`.
        split: which split to score.
        cache: True for ``<runs_dir>/cache.sqlite``, a path, or False.
        config: a whole :class:`RunConfig` instead of the arguments above but
            ``prompt`` and ``split`` (the fields only a search uses are ignored).

    Returns:
        An :class:`Evaluation` with the mean score and its 95% interval.
    """
    if split not in ("train", "dev", "test"):
        raise ConfigError(f"--split (split=) must be train, dev or test; got {split!r}")
    arguments = {k: v for k, v in locals().items() if k not in ("prompt", "split", "config")}  # RunConfig's fields
    cfg = config_from_call(config, arguments, "evaluate")
    task_obj = load_task_from_options(cfg.task, cfg.task_options())
    check_answer_mode(task_obj, cfg.answer_mode)
    if prompt is None:
        prompt = task_obj.seed_prompt
    elif isinstance(prompt, str):
        prompt = task_obj.seed_prompt.with_instruction(prompt)
    examples = getattr(task_obj.splits, split)
    with Session(cfg.model, None, budget=Budget(), cache_path=cfg.cache_path(), model_options=cfg.model_options,
                 retry=cfg.retry) as session:
        mode = resolve_answer_mode(task_obj, session.target, cfg.answer_mode)
        evaluator = Evaluator(task_obj, session.target, mode)
        result = session.loop.run(evaluator.aevaluate([prompt], examples))[0]
        usage = session.meter.usage.to_dict()
    return Evaluation(prompt, task_obj.name, split, mode, summarize([e.score for e in result.examples]),
                      result.examples, usage)
