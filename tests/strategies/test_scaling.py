"""Scaling a strategy's step to a budget: the declarations, the shrinking order, explicit parameters kept."""

from __future__ import annotations

import pytest

from promptopt.strategies import APO, BUILTIN, GeneticCrossover, HillClimbing, Strategy
from promptopt.strategies._scaling import explicit_params, scale_to_fit


@pytest.mark.parametrize("name", sorted(n for n, cls in BUILTIN.items() if cls.scalable))
def test_each_declared_parameter_is_a_whole_number_above_its_valid_minimum(name: str) -> None:
    cls = BUILTIN[name]
    defaults = cls().get_params()
    for scalable in cls.scalable:
        assert scalable.name in defaults, f"{name} has no parameter {scalable.name!r}"
        default = defaults[scalable.name]
        assert isinstance(default, int) and not isinstance(default, bool) and default > scalable.minimum
    cls(**{s.name: s.minimum for s in cls.scalable}).validate()  # every minimum is a value the strategy takes


def _cost(strategy: Strategy) -> int:
    hill = strategy
    assert isinstance(hill, HillClimbing)
    return hill.n_score * (1 + hill.n_candidates)  # the seed, then one neighbourhood, on the score set


def test_the_first_stage_shrinks_to_its_minimum_before_the_next_starts() -> None:
    # hill climbing: n_score (min 10) first, then n_candidates (min 2); paper values 100 and 10
    scaled = scale_to_fit(HillClimbing(), lambda s: _cost(s) <= 10 * (1 + 5))
    assert scaled.fits and dict(scaled.changes) == {"n_score": (100, 10), "n_candidates": (10, 5)}
    only_first = scale_to_fit(HillClimbing(), lambda s: _cost(s) <= 40 * 11)
    assert only_first.fits and dict(only_first.changes) == {"n_score": (100, 40)}  # the largest value that fits
    assert only_first.describe() == "n_score 100→40"


def test_parameters_of_one_stage_shrink_in_proportion() -> None:
    def cost(s: Strategy) -> int:
        assert isinstance(s, GeneticCrossover)
        return s.population_size + s.n_offspring + s.n_candidates

    # the first stage (n_score) goes to its minimum without fitting; then (10, 5, 10) shrinks together
    scaled = scale_to_fit(GeneticCrossover(), lambda s: cost(s) <= 13)
    assert dict(scaled.changes) == {"n_score": (100, 10), "population_size": (10, 5), "n_offspring": (5, 2),
                                    "n_candidates": (10, 5)}


def test_what_fits_already_or_can_never_fit() -> None:
    apo = APO()
    unchanged = scale_to_fit(apo, lambda s: True)
    assert unchanged.strategy is apo and unchanged.fits and not unchanged.changes and unchanged.to_config() == {}
    never = scale_to_fit(apo, lambda s: False)
    assert not never.fits
    assert dict(never.changes) == {"minibatch_size": (64, 16), "beam_size": (4, 1), "max_expansion_factor": (8, 3)}
    assert never.to_config() == {"scaled_to_budget": {"minibatch_size": [64, 16], "beam_size": [4, 1],
                                                      "max_expansion_factor": [8, 3]}}
    assert apo.get_params() == APO().get_params()  # the strategy given is not changed


def test_an_explicit_parameter_is_never_changed() -> None:
    never = scale_to_fit(HillClimbing(), lambda s: False, explicit={"n_score"})
    assert dict(never.changes) == {"n_candidates": (10, 2)} and never.kept == ("n_score",)
    assert never.strategy.get_params()["n_score"] == 100


def test_explicit_means_given_by_name_or_different_from_the_default_on_an_instance() -> None:
    assert explicit_params("hill-climb", {"n_score": 100}) == {"n_score"}  # the default value, but given
    assert explicit_params("hill-climb", None) == frozenset()
    assert explicit_params(HillClimbing(n_score=100, n_candidates=4), None) == {"n_candidates"}
