"""Selection schemes for population-based search: roulette, tournament, top-k, NSGA-II.

Every function works on scores by position (higher is better) and returns
positions, so a strategy keeps its population in whatever form suits it.
Random schemes take the run's seeded ``random.Random`` (``ctx.rng``); ties go
to the earlier position wherever an order is needed, so results repeat.

Multi-objective selection follows NSGA-II (Deb et al., 2002): fast
non-dominated sorting into fronts, crowding distance within a front, and
survival by front, then by crowding distance. Every objective is maximised;
negate one to minimise it (prompt length, say).
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence

__all__ = ["crowded_tournament", "crowding_distance", "dominates", "nsga2_survivors", "non_dominated_sort",
           "roulette", "top_k", "tournament"]


def roulette(scores: Sequence[float], rng: random.Random, k: int = 1) -> list[int]:
    """``k`` positions drawn with replacement, each with probability proportional to its score.

    Scores must be >= 0; when all are 0 every position is equally likely.

    Example:
        >>> roulette([0.0, 1.0, 0.0], random.Random(0), k=3)
        [1, 1, 1]
    """
    if not scores:
        raise ValueError("roulette selection needs at least one score")
    if any(s < 0 for s in scores):
        raise ValueError(f"roulette selection needs scores >= 0; got {min(scores)}")
    weights = list(scores) if sum(scores) > 0 else None
    return rng.choices(range(len(scores)), weights=weights, k=k)


def tournament(scores: Sequence[float], rng: random.Random, size: int) -> int:
    """The best of ``size`` positions drawn uniformly with replacement (as Plum's GA does);
    of equal scores, the one drawn first.

    Example:
        >>> tournament([0.2, 0.9, 0.5], random.Random(0), size=3)
        1
    """
    if not scores:
        raise ValueError("tournament selection needs at least one score")
    drawn = [rng.randrange(len(scores)) for _ in range(size)]
    return max(drawn, key=lambda i: scores[i])  # max keeps the first of equal keys


def top_k(scores: Sequence[float], k: int) -> list[int]:
    """The ``k`` best positions, best first; ties go to the earlier position.

    Example:
        >>> top_k([0.5, 0.9, 0.5, 0.1], 3)
        [1, 0, 2]
    """
    return sorted(range(len(scores)), key=lambda i: (-scores[i], i))[:k]


# -- NSGA-II --------------------------------------------------------------------------------------
def dominates(a: Sequence[float], b: Sequence[float]) -> bool:
    """Whether ``a`` is at least as good as ``b`` on every objective and better on one."""
    return all(x >= y for x, y in zip(a, b, strict=True)) and any(x > y for x, y in zip(a, b, strict=True))


def non_dominated_sort(objectives: Sequence[Sequence[float]]) -> list[list[int]]:
    """Positions grouped into Pareto fronts: front 0 is dominated by nobody, front 1 only by
    front 0, and so on (Deb et al.'s fast non-dominated sort). Each front is in position order.

    Example:
        >>> non_dominated_sort([(1, 0), (0, 1), (0, 0), (1, 1)])
        [[3], [0, 1], [2]]
    """
    n = len(objectives)
    beats: list[list[int]] = [[] for _ in range(n)]
    beaten_by = [0] * n
    for i in range(n):
        for j in range(i + 1, n):
            if dominates(objectives[i], objectives[j]):
                beats[i].append(j)
                beaten_by[j] += 1
            elif dominates(objectives[j], objectives[i]):
                beats[j].append(i)
                beaten_by[i] += 1
    fronts: list[list[int]] = []
    current = [i for i in range(n) if beaten_by[i] == 0]
    while current:
        fronts.append(current)
        following: list[int] = []
        for i in current:
            for j in beats[i]:
                beaten_by[j] -= 1
                if beaten_by[j] == 0:
                    following.append(j)
        current = sorted(following)
    return fronts


def crowding_distance(objectives: Sequence[Sequence[float]], front: Sequence[int]) -> dict[int, float]:
    """Each front member's crowding distance: per objective, the members at either extreme get
    infinity and the others the gap between their two neighbours, divided by the objective's
    range on the front; summed over objectives.

    Example:
        >>> crowding_distance([(0, 5), (1, 3), (3, 2), (5, 0)], [0, 1, 2, 3])
        {0: inf, 1: 1.2, 2: 1.4, 3: inf}
    """
    distance = dict.fromkeys(front, 0.0)
    if len(front) <= 2:
        return dict.fromkeys(front, math.inf)
    for m in range(len(objectives[front[0]])):
        ordered = sorted(front, key=lambda i: (objectives[i][m], i))
        low, high = objectives[ordered[0]][m], objectives[ordered[-1]][m]
        distance[ordered[0]] = distance[ordered[-1]] = math.inf
        if high == low:
            continue
        for k in range(1, len(ordered) - 1):
            gap = objectives[ordered[k + 1]][m] - objectives[ordered[k - 1]][m]
            distance[ordered[k]] += gap / (high - low)
    return distance


def nsga2_survivors(objectives: Sequence[Sequence[float]], k: int) -> list[int]:
    """The ``k`` positions NSGA-II keeps: whole fronts in order, then the last front's members
    with the largest crowding distance (ties to the earlier position).

    Example:
        >>> nsga2_survivors([(0, 5), (1, 3), (3, 2), (5, 0), (0, 0)], 3)
        [0, 3, 2]
    """
    kept: list[int] = []
    for front in non_dominated_sort(objectives):
        if len(kept) + len(front) <= k:
            kept += front
            continue
        distance = crowding_distance(objectives, front)
        kept += sorted(front, key=lambda i: (-distance[i], i))[: k - len(kept)]
        break
    return kept


def crowded_tournament(objectives: Sequence[Sequence[float]], rng: random.Random, size: int = 2) -> int:
    """NSGA-II's crowded-comparison tournament: of ``size`` positions drawn uniformly with
    replacement, the one on the best front, and of those the one with the largest crowding
    distance; of equals, the one drawn first.

    Example:
        >>> crowded_tournament([(0, 0), (1, 1), (0, 0)], random.Random(0), size=3)
        1
    """
    if not objectives:
        raise ValueError("tournament selection needs at least one candidate")
    rank: dict[int, int] = {}
    crowding: dict[int, float] = {}
    for r, front in enumerate(non_dominated_sort(objectives)):
        rank.update(dict.fromkeys(front, r))
        crowding.update(crowding_distance(objectives, front))
    drawn = [rng.randrange(len(objectives)) for _ in range(size)]
    return min(drawn, key=lambda i: (rank[i], -crowding[i]))  # min keeps the first of equal keys
