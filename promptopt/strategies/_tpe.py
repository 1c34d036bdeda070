"""A small Tree-structured Parzen Estimator over categorical choices.

MIPROv2 (Opsahl-Ong et al., 2024, arXiv:2406.11695) searches the cross product
of instruction candidates and demonstration-set candidates with Optuna's TPE
sampler. This module is the part of TPE that search needs, written out so the
strategy has no Optuna dependency and every draw comes from the run's seeded rng.

The algorithm (Bergstra et al., "Algorithms for Hyper-Parameter Optimization",
NeurIPS 2011), for a search space of D categorical dimensions:

1. **Start-up.** The first ``n_startup_trials`` suggestions are uniform at random.
2. **Split.** Afterwards, sort the observed trials by value (best first; ties keep
   the earlier trial first) and call the top ``n_good = min(ceil(gamma · n), max_good)``
   (at least one) *good*, the rest *bad* — Optuna's default ``gamma`` of 0.1 capped
   at 25.
3. **Densities.** For each dimension separately (univariate TPE), estimate
   ``l(c)`` from the good trials and ``g(c)`` from the bad ones as smoothed
   frequencies: ``p(c) = (prior_weight / K + count(c)) / (prior_weight + n_obs)``,
   where the uniform pseudo-count keeps every choice possible.
4. **Choose.** Draw ``n_ei_candidates`` choices from ``l`` and keep the one with
   the largest ``l(c) / g(c)``: maximising this ratio maximises expected
   improvement under the TPE model. With as many draws as choices this is close
   to the argmax of the ratio; the draws keep a little exploration.

Example:
    >>> import random
    >>> tpe = CategoricalTPE([3], random.Random(0), n_startup_trials=2)
    >>> for _ in range(20):
    ...     choice = tpe.suggest()
    ...     tpe.tell(choice, 1.0 if choice[0] == 2 else 0.0)
    >>> tpe.suggest()
    (2,)
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence

__all__ = ["CategoricalTPE"]


class CategoricalTPE:
    """Suggest one choice per categorical dimension; learn from reported values (higher is better).

    Args:
        n_choices: the number of choices of each dimension (each >= 1).
        rng: the source of every random draw (a strategy passes ``ctx.rng``).
        n_startup_trials: uniform random suggestions before the model is used.
        gamma: the fraction of observed trials called good.
        max_good: at most this many trials are called good.
        prior_weight: weight of the uniform prior in each density.
        n_ei_candidates: draws from ``l`` among which the best ``l/g`` ratio is kept.
    """

    def __init__(self, n_choices: Sequence[int], rng: random.Random, *, n_startup_trials: int = 10,
                 gamma: float = 0.1, max_good: int = 25, prior_weight: float = 1.0,
                 n_ei_candidates: int = 24) -> None:
        if not n_choices or any(k < 1 for k in n_choices):
            raise ValueError(f"every dimension needs at least one choice; got {list(n_choices)}")
        if prior_weight <= 0:
            raise ValueError(f"prior_weight must be > 0 so that no density is zero; got {prior_weight}")
        self.n_choices = tuple(n_choices)
        self.rng = rng
        self.n_startup_trials = n_startup_trials
        self.gamma = gamma
        self.max_good = max_good
        self.prior_weight = prior_weight
        self.n_ei_candidates = n_ei_candidates
        self.trials: list[tuple[tuple[int, ...], float]] = []

    def suggest(self) -> tuple[int, ...]:
        """The next point to try: random during start-up, then the best ``l/g`` ratio per dimension."""
        if len(self.trials) < self.n_startup_trials:
            return tuple(self.rng.randrange(k) for k in self.n_choices)
        good, bad = self.split()
        return tuple(self._choose(self.density(good, d), self.density(bad, d)) for d in range(len(self.n_choices)))

    def tell(self, choice: Sequence[int], value: float) -> None:
        """Report the value observed at ``choice``."""
        point = tuple(choice)
        if len(point) != len(self.n_choices) or any(not 0 <= c < k for c, k in zip(point, self.n_choices, strict=True)):
            raise ValueError(f"choice {point} is outside the search space {self.n_choices}")
        self.trials.append((point, value))

    def split(self) -> tuple[list[tuple[int, ...]], list[tuple[int, ...]]]:
        """The good and the bad observed points (step 2 above)."""
        ranked = sorted(range(len(self.trials)), key=lambda i: (-self.trials[i][1], i))
        n_good = max(1, min(math.ceil(self.gamma * len(ranked)), self.max_good))
        points = [self.trials[i][0] for i in ranked]
        return points[:n_good], points[n_good:]

    def density(self, points: Sequence[tuple[int, ...]], dim: int) -> list[float]:
        """Smoothed frequency of each choice of dimension ``dim`` among ``points`` (step 3 above)."""
        k = self.n_choices[dim]
        counts = [0] * k
        for point in points:
            counts[point[dim]] += 1
        total = self.prior_weight + len(points)
        return [(self.prior_weight / k + counts[c]) / total for c in range(k)]

    def _choose(self, l_density: list[float], g_density: list[float]) -> int:
        draws = self.rng.choices(range(len(l_density)), weights=l_density, k=self.n_ei_candidates)
        return max(draws, key=lambda c: l_density[c] / g_density[c])
