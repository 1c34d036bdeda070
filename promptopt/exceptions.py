"""Errors raised by promptopt.

Every error derives from :class:`PromptoptError`, so one ``except`` catches them all::

    PromptoptError
    ├── ConfigError            bad user input: names, flags, budgets, files (CLI exit code 2)
    │   ├── UnknownNameError   a strategy, task or backend name that is not registered
    │   └── DataError          a dataset that is missing, malformed or empty
    ├── BackendError           an LLM call failed; ``retryable`` says if trying again may help
    │   └── CapabilityError    the backend cannot do what was asked (e.g. score log-probs)
    └── BudgetExhausted        a budget cap was reached; control flow, caught by the Run

Messages are written for the person at the terminal: what happened, the value
received, and what to do next.
"""

from __future__ import annotations

__all__ = [
    "BackendError",
    "BudgetExhausted",
    "CapabilityError",
    "ConfigError",
    "DataError",
    "PromptoptError",
    "UnknownNameError",
]


class PromptoptError(Exception):
    """Root of every promptopt error."""


class ConfigError(PromptoptError, ValueError):
    """User input that cannot be used as given (a value, a flag, a file)."""


class UnknownNameError(ConfigError):
    """A registered name (strategy, task, backend) that does not exist."""


class DataError(ConfigError):
    """A dataset that is missing, cannot be parsed, or leaves a split empty."""


class BackendError(PromptoptError):
    """An LLM call failed.

    Args:
        message: what happened, for a person.
        retryable: True for transient failures (rate limits, 5xx, timeouts,
            dropped connections); only those are retried.
    """

    def __init__(self, message: str, *, retryable: bool = False) -> None:
        super().__init__(message)
        self.retryable = retryable


class CapabilityError(BackendError, ConfigError):
    """The backend lacks a capability the run needs (for example ``score``)."""


class BudgetExhausted(PromptoptError):
    """A budget cap would be exceeded by the next call; the Run stops the search.

    ``cap`` names the cap: ``target_calls``, ``optimizer_calls``, ``tokens``,
    ``usd`` or ``seconds``.
    """

    def __init__(self, message: str, *, cap: str = "") -> None:
        super().__init__(message)
        self.cap = cap
