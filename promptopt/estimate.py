"""What a run would spend, worked out before anything is spent (``--dry-run``)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from promptopt._held_out import plan_held_out
from promptopt.backends import Backend
from promptopt.budget import Budget
from promptopt.config import DEFAULT_MODEL, RunConfig, config_from_call
from promptopt.evaluator import resolve_answer_mode
from promptopt.session import Session
from promptopt.strategies import Strategy
from promptopt.task_options import check_run_inputs
from promptopt.tasks import Task

__all__ = ["Estimate", "estimate"]

#: backends that run on this machine and cost nothing per call
LOCAL_BACKENDS = frozenset({"llamacpp", "vllm", "fake"})
#: assumed size of one optimizer call (meta-prompt + reply); strategies cap replies at a few hundred tokens
OPTIMIZER_TOKENS_PER_CALL = 1000
_CHARS_PER_TOKEN = 4  # a rough rule for English text; the estimate needs no tokenizer


@dataclass(frozen=True)
class Estimate:
    """Upper bounds on a run's spend. ``None`` means unbounded (no cap) or unknown (no price).

    The search spends at most its caps; the final test evaluation adds at most
    ``test_target_calls`` (seed and best on every test example).
    """

    task: str
    strategy: str
    model: str
    answer_mode: str
    budget: Budget
    calls_per_example: float
    search_target_calls: int | None
    search_optimizer_calls: int | None
    test_target_calls: int
    target_tokens_per_call: int
    tokens: int | None
    usd: float | None

    @property
    def target_calls(self) -> int | None:
        return None if self.search_target_calls is None else self.search_target_calls + self.test_target_calls


def _tokens_per_call(task: Task, mode: str) -> int:
    sample = task.splits.dev[:20] or task.splits.test[:20]
    if not sample:
        return 0
    prompt_chars = sum(sum(len(m.content) for m in task.render(task.seed_prompt, ex)) for ex in sample)
    prompt = prompt_chars / len(sample) / _CHARS_PER_TOKEN
    reply = task.max_tokens if mode == "generate" else 4  # a verbalizer is a few tokens
    return int(prompt + reply)


def _calls_per_example(task: Task, mode: str) -> float:
    if mode == "generate":
        return 1.0
    examples = task.splits.test or task.splits.dev
    counts = [len(task.choices(ex) or ()) for ex in examples]
    return sum(counts) / len(counts) if counts else 1.0


def estimate(task: str | Task = "gsm8k", strategy: str | Strategy = "apo", model: str | Backend = DEFAULT_MODEL,
             *, optimizer_model: str | Backend | None = None, budget: Budget | None = None, seed: int = 0,
             answer_mode: str = "auto", strategy_params: Mapping[str, Any] | None = None,
             n_train: int | None = None, n_dev: int | None = 30, n_test: int | None = 50,
             data_dir: str | Path | None = None, offline: bool = False, input_field: str | None = None,
             target_field: str | None = None, metric: str | None = None, labels: Sequence[str] | None = None,
             gold: str | None = None, model_options: Mapping[str, Any] | None = None,
             optimizer_options: Mapping[str, Any] | None = None, select_on: str = "dev", select_top: int = 3,
             config: RunConfig | None = None) -> Estimate:
    """Check a run's configuration and bound what it would spend, without calling any model.

    Takes the arguments of :func:`promptopt.optimize` that change the spend, or a
    whole :class:`RunConfig` as ``config``. Nothing is written (the cache is not opened).
    Costs are known for local backends (0); for others ``usd`` is None.
    """
    arguments = {k: v for k, v in locals().items() if k != "config"}  # RunConfig's fields
    cfg = config_from_call(config, arguments, "estimate")
    strat, task_obj = check_run_inputs(cfg)
    with Session(cfg.model, cfg.optimizer_model, budget=Budget(), cache_path=None, model_options=cfg.model_options,
                 optimizer_options=cfg.optimizer_options) as session:
        mode = resolve_answer_mode(task_obj, session.target, cfg.answer_mode)
        strat.check_backend(session.target, mode)  # a missing capability is found by a dry run too
        if cfg.select_on == "held-out":  # a cap too small for the selection on dev, too
            plan_held_out(task_obj, session.target, mode, seed=cfg.seed, select_top=cfg.select_top,
                          budget=cfg.budget_for(mode))
        names = {session.target.name, session.optimizer.name}
        model_string = session.target.model_string
    budget = cfg.budget_for(mode)
    per_example = _calls_per_example(task_obj, mode)
    test_calls = int(2 * len(task_obj.splits.test) * per_example)
    per_call = _tokens_per_call(task_obj, mode)
    search_target, search_optimizer = budget.target_calls, budget.optimizer_calls
    tokens = None
    if search_target is not None and search_optimizer is not None:
        tokens = (search_target + test_calls) * per_call + search_optimizer * OPTIMIZER_TOKENS_PER_CALL
    if budget.tokens is not None:
        tokens = budget.tokens if tokens is None else min(tokens, budget.tokens)
    usd = 0.0 if names <= LOCAL_BACKENDS else None
    return Estimate(task=task_obj.name, strategy=strat.name, model=model_string, answer_mode=mode, budget=budget,
                    calls_per_example=per_example, search_target_calls=search_target,
                    search_optimizer_calls=search_optimizer, test_target_calls=test_calls,
                    target_tokens_per_call=per_call, tokens=tokens, usd=usd)
