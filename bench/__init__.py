"""Benchmarks for promptopt: not tests; they print and write results under bench/results/."""

from __future__ import annotations

import statistics
from collections.abc import Sequence


def mean_sd(values: Sequence[float]) -> str:
    """``mean ± sample sd`` to 3 places (sd 0 for one value), or ``–`` for none: a table cell."""
    if not values:
        return "–"
    spread = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.3f} ± {spread:.3f}"
