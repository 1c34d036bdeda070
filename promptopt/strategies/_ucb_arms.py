"""UCB1 over named arms whose rewards are score changes.

SPRIG (Zhang et al., 2024) keeps, for every prompt component, the score changes it
brought (adding it: child minus parent; deleting it: parent minus child) and tries the
components with the highest upper confidence bound first. Unlike the best-arm
identification of ``_bandits.py`` (which scores prompts on samples), the arms here are
pulled by the search itself and only their rewards are reported back.

The bound is the reference code's (github.com/orange0629/prompting, ``scripts/sprig.py``):
mean reward + c · sqrt(2 ln N / n), with N the pulls of all arms and n this arm's; an
arm never pulled ranks above every pulled one. Ties keep the order the arms were added in.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

__all__ = ["UCBArms"]


class UCBArms:
    """Reward statistics per arm and their UCB1 ranking.

    Args:
        arms: the arms, in the order that breaks ties.
        c: the exploration weight (1: the reference code's bound).

    Example:
        >>> bandit = UCBArms(["a", "b", "c"])
        >>> bandit.update("a", 0.5); bandit.update("b", -0.2)
        >>> bandit.ranked()  # "c" was never pulled
        ['c', 'a', 'b']
    """

    def __init__(self, arms: Iterable[str] = (), *, c: float = 1.0) -> None:
        self.c = c
        self._sums: dict[str, float] = {}
        self._counts: dict[str, int] = {}
        for arm in arms:
            self.add(arm)

    def __contains__(self, arm: object) -> bool:
        return arm in self._counts

    def __len__(self) -> int:
        return len(self._counts)

    def add(self, arm: str) -> None:
        """Add an arm (kept where it is if known)."""
        self._sums.setdefault(arm, 0.0)
        self._counts.setdefault(arm, 0)

    def update(self, arm: str, reward: float) -> None:
        """Record one pull of ``arm`` (added if new) and its reward."""
        self.add(arm)
        self._sums[arm] += reward
        self._counts[arm] += 1

    def pulls(self, arm: str) -> int:
        return self._counts.get(arm, 0)

    def mean(self, arm: str) -> float:
        """The arm's mean reward (0 before its first pull)."""
        n = self._counts.get(arm, 0)
        return self._sums[arm] / n if n else 0.0

    def bound(self, arm: str) -> float:
        """Mean reward plus the exploration bonus; infinite for an arm never pulled."""
        n = self._counts.get(arm, 0)
        if n == 0:
            return math.inf
        total = sum(self._counts.values())
        return self.mean(arm) + self.c * math.sqrt(2 * math.log(total) / n)

    def ranked(self, arms: Iterable[str] | None = None) -> list[str]:
        """``arms`` (default: all) by descending bound, ties in the order the arms were added."""
        order = {arm: i for i, arm in enumerate(self._counts)}
        chosen = list(self._counts) if arms is None else [a for a in dict.fromkeys(arms) if a in order]
        return sorted(chosen, key=lambda a: (-self.bound(a), order[a]))

    def table(self) -> dict[str, dict[str, float]]:
        """Pulls and mean reward of every pulled arm, for an event."""
        return {arm: {"pulls": n, "mean": round(self.mean(arm), 6)} for arm, n in self._counts.items() if n}
