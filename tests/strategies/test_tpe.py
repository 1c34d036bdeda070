from __future__ import annotations

import random

import pytest

from promptopt.strategies._tpe import CategoricalTPE


def _objective(choice: tuple[int, ...], noise: random.Random) -> float:
    """Dimension 0 matters (choice 3 of 5 is best), dimension 1 is irrelevant noise."""
    return (0.8 if choice[0] == 3 else 0.2) + noise.uniform(-0.1, 0.1)


def _run(seed: int, n_trials: int = 60) -> list[tuple[int, ...]]:
    tpe = CategoricalTPE([5, 4], random.Random(seed), n_startup_trials=10)
    noise = random.Random(seed + 1000)
    chosen = []
    for _ in range(n_trials):
        choice = tpe.suggest()
        tpe.tell(choice, _objective(choice, noise))
        chosen.append(choice)
    return chosen


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_tpe_concentrates_on_the_better_choice(seed: int) -> None:
    chosen = _run(seed)
    late = [c[0] for c in chosen[30:]]
    # uniform sampling would pick choice 3 a fifth of the time
    assert late.count(3) / len(late) > 0.6


def test_startup_trials_are_uniform_random() -> None:
    tpe = CategoricalTPE([5], random.Random(0), n_startup_trials=200)
    counts = [0] * 5
    for _ in range(200):
        choice = tpe.suggest()
        tpe.tell(choice, 1.0 if choice[0] == 0 else 0.0)  # feedback must not matter yet
        counts[choice[0]] += 1
    assert all(20 <= c <= 60 for c in counts)


def test_tpe_is_deterministic_under_a_seed() -> None:
    assert _run(7) == _run(7)
    assert _run(7) != _run(8)


def test_split_and_densities_follow_the_definition() -> None:
    tpe = CategoricalTPE([3], random.Random(0), gamma=0.25, prior_weight=1.0)
    for choice, value in [((0,), 0.1), ((2,), 0.9), ((1,), 0.5), ((2,), 0.9)]:
        tpe.tell(choice, value)
    good, bad = tpe.split()
    assert good == [(2,)] and bad == [(2,), (1,), (0,)]  # ties: the earlier trial ranks first
    assert tpe.density(good, 0) == pytest.approx([1 / 6, 1 / 6, 4 / 6])
    assert tpe.density(bad, 0) == pytest.approx([(1 / 3 + 1) / 4, (1 / 3 + 1) / 4, (1 / 3 + 1) / 4])


def test_bad_input_is_refused() -> None:
    with pytest.raises(ValueError, match="at least one choice"):
        CategoricalTPE([3, 0], random.Random(0))
    tpe = CategoricalTPE([2], random.Random(0))
    with pytest.raises(ValueError, match="outside the search space"):
        tpe.tell((2,), 1.0)
