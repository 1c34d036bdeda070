from __future__ import annotations

import math
import random
from collections import Counter

import pytest

from promptopt.strategies._selection import (
    crowding_distance,
    dominates,
    non_dominated_sort,
    nsga2_survivors,
    roulette,
    top_k,
    tournament,
)


def test_roulette_draws_in_proportion_to_score() -> None:
    draws = Counter(roulette([1.0, 3.0, 0.0], random.Random(0), k=8000))
    assert draws[2] == 0
    assert draws[1] / 8000 == pytest.approx(0.75, abs=0.02)
    assert roulette([1.0, 3.0], random.Random(5), k=10) == roulette([1.0, 3.0], random.Random(5), k=10)


def test_roulette_with_all_zero_scores_is_uniform_and_refuses_negatives() -> None:
    draws = Counter(roulette([0.0, 0.0, 0.0, 0.0], random.Random(1), k=8000))
    assert set(draws) == {0, 1, 2, 3} and min(draws.values()) > 1800
    with pytest.raises(ValueError, match=">= 0"):
        roulette([0.5, -0.1], random.Random(0))
    with pytest.raises(ValueError, match="at least one"):
        roulette([], random.Random(0))


def test_tournament_returns_the_best_of_the_drawn() -> None:
    scores = [0.1, 0.9, 0.4, 0.6, 0.2]
    for seed in range(200):
        rng, replay = random.Random(seed), random.Random(seed)
        winner = tournament(scores, rng, size=3)
        drawn = [replay.randrange(5) for _ in range(3)]
        assert winner in drawn and scores[winner] == max(scores[i] for i in drawn)
    # bigger tournaments favour the best more; size 1 is a uniform draw
    rngs = {size: random.Random(size) for size in (1, 2, 5)}
    wins = {size: Counter(tournament(scores, rng, size) for _ in range(4000))[1] / 4000 for size, rng in rngs.items()}
    assert wins[1] == pytest.approx(0.2, abs=0.03) and wins[1] < wins[2] < wins[5]


def test_tournament_ties_go_to_the_first_drawn() -> None:
    rng, replay = random.Random(7), random.Random(7)
    winner = tournament([0.5, 0.5, 0.5], rng, size=4)
    assert winner == replay.randrange(3)


def test_top_k_is_best_first_with_ties_to_the_earlier() -> None:
    assert top_k([0.5, 0.9, 0.5, 0.1, 0.9], 3) == [1, 4, 0]
    assert top_k([0.2], 5) == [0]


# a hand-made front, objectives (accuracy, -tokens), both maximised:
#   A (0.9, -40)  B (0.8, -20)  C (0.6, -10)  D (0.7, -30)  E (0.6, -35)  F (0.9, -40)
# A and F are the same point (neither dominates the other); B dominates D; D (and B, C) dominate E.
FRONT = [(0.9, -40.0), (0.8, -20.0), (0.6, -10.0), (0.7, -30.0), (0.6, -35.0), (0.9, -40.0)]


def test_dominance_needs_one_strictly_better_objective() -> None:
    assert dominates(FRONT[1], FRONT[3]) and not dominates(FRONT[3], FRONT[1])
    assert not dominates(FRONT[0], FRONT[5]) and not dominates(FRONT[0], FRONT[1])


def test_non_dominated_sorting_on_a_hand_made_front() -> None:
    assert non_dominated_sort(FRONT) == [[0, 1, 2, 5], [3], [4]]
    assert non_dominated_sort([]) == []
    assert non_dominated_sort([(1.0,), (2.0,), (2.0,)]) == [[1, 2], [0]]


def test_crowding_distance_on_a_hand_made_front() -> None:
    distance = crowding_distance(FRONT, [0, 1, 2, 5])
    # accuracy, sorted C B A F: C and F are the ends; B gets (0.9 - 0.6) / 0.3 = 1, A (0.9 - 0.8) / 0.3
    # -tokens, sorted A F B C: A and C are the ends; F gets (-20 - -40) / 30, B (-10 - -40) / 30 = 1
    assert distance == {0: math.inf, 1: pytest.approx(2.0), 2: math.inf, 5: math.inf}
    assert crowding_distance(FRONT, [3, 4]) == {3: math.inf, 4: math.inf}


def test_nsga2_keeps_fronts_in_order_then_the_least_crowded() -> None:
    assert nsga2_survivors(FRONT, 5) == [0, 1, 2, 5, 3]
    assert nsga2_survivors(FRONT, 3) == [0, 2, 5]  # the front's ends first (infinite distance)
    points = [(0.0, 5.0), (1.0, 3.0), (3.0, 2.0), (5.0, 0.0), (2.0, 2.5)]
    # all five on one front; distances: ends inf, (1,3): 0.4 + 0.5, (3,2): 0.6 + 0.5, (2,2.5): 0.4 + 0.2
    distance = crowding_distance(points, [0, 1, 2, 3, 4])
    assert [distance[i] for i in (1, 2, 4)] == pytest.approx([0.9, 1.1, 0.6])
    assert nsga2_survivors(points, 3) == [0, 3, 2]
    assert nsga2_survivors(points, 4) == [0, 3, 2, 1]
