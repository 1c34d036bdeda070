"""promptopt: find better discrete prompts for LLMs you can only call.

Example:
    >>> import promptopt
    >>> budget = promptopt.Budget(target_calls=400)
    >>> result = promptopt.optimize(task="sst2", strategy="apo", budget=budget)  # doctest: +SKIP
    >>> result.best_prompt, result.test_score  # doctest: +SKIP

The same run from a configuration file (``promptopt optimize --config run.toml``):

    >>> result = promptopt.optimize(config=promptopt.RunConfig.from_toml("run.toml"))  # doctest: +SKIP
"""

from __future__ import annotations

from promptopt.backends import RetryPolicy
from promptopt.budget import Budget
from promptopt.config import RunConfig
from promptopt.estimate import Estimate, estimate
from promptopt.evaluate import evaluate
from promptopt.exceptions import (
    BackendError,
    BudgetExhausted,
    CapabilityError,
    ConfigError,
    DataError,
    PromptoptError,
    UnknownNameError,
)
from promptopt.prompt import Demo, Prompt
from promptopt.run import Result, optimize
from promptopt.selector import PromptSelector, load_selector
from promptopt.stats import Score
from promptopt.types import Example

__all__ = [
    "BackendError",
    "Budget",
    "BudgetExhausted",
    "CapabilityError",
    "ConfigError",
    "DataError",
    "Demo",
    "Estimate",
    "Example",
    "Prompt",
    "PromptSelector",
    "PromptoptError",
    "Result",
    "RetryPolicy",
    "RunConfig",
    "Score",
    "UnknownNameError",
    "estimate",
    "evaluate",
    "load_selector",
    "optimize",
]

__version__ = "0.1.0"
