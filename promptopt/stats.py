"""Confidence intervals for mean scores."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["Score", "summarize"]

Z95 = 1.959963984540054


@dataclass(frozen=True)
class Score:
    """A mean score over ``n`` examples with a 95% confidence interval [low, high]."""

    mean: float
    low: float
    high: float
    n: int

    def __str__(self) -> str:
        return f"{self.mean:.3f} [{self.low:.3f}, {self.high:.3f}] (n={self.n})"


def summarize(scores: Sequence[float]) -> Score:
    """Mean with a Wilson interval for 0/1 scores, a normal interval otherwise (clipped to [0, 1])."""
    n = len(scores)
    if n == 0:
        return Score(0.0, 0.0, 0.0, 0)
    mean = sum(scores) / n
    if all(s in (0.0, 1.0) for s in scores):
        denom = 1 + Z95**2 / n
        centre = (mean + Z95**2 / (2 * n)) / denom
        half = Z95 * math.sqrt(mean * (1 - mean) / n + Z95**2 / (4 * n * n)) / denom
    else:
        var = sum((s - mean) ** 2 for s in scores) / max(1, n - 1)
        centre, half = mean, Z95 * math.sqrt(var / n)
    return Score(mean, max(0.0, centre - half), min(1.0, centre + half), n)
