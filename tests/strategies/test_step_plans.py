"""Each strategy's step plan against figures worked out by hand from its parameters."""

from __future__ import annotations

import pytest

from promptopt.strategies import APE, APO, OPRO, HillClimbing, RLPrompt, get_strategy, list_strategies
from promptopt.strategies._base import Spend, StepPlan, Strategy

N_DEV, N_TRAIN = 30, 1000


def test_apo_round_with_a_full_beam() -> None:
    plan = APO().step_plan(N_DEV, N_TRAIN)
    # per parent: 4 critiques, 4 edit requests (one per reason), 2 paraphrases of each of 4 edits and the parent
    # successors: min(8, 4 edits + 10 paraphrases) = 8 per parent, 32 new; UCB pulls 8 x 8 arms on all 30 dev
    # examples (32 >= 30), so each new one costs 30 once: 32 x 30 = 960, plus 4 parents x 64 minibatch examples
    assert plan == StepPlan("round", Spend(example_evals=4 * 64 + 32 * 30, optimizer_calls=4 * 18, new_full=32),
                            paper_steps=6)


def test_apo_selection_on_samples_smaller_than_dev() -> None:
    small = APO(beam_size=2, minibatch_size=10, n_gradients=1, mc_samples_per_step=0, max_expansion_factor=3,
                selector="bf", eval_rounds=2, eval_prompts_per_round=2, samples_per_eval=10)
    # per parent: 1 critique + 1 edit, 1 successor; brute force on 2 x 2 x 10 = 40 evaluations < 4 arms x 30
    assert small.step_plan(N_DEV, N_TRAIN).per_step == Spend(example_evals=2 * 10 + 40, optimizer_calls=4)
    ucb = APO(samples_per_eval=8).step_plan(N_DEV, N_TRAIN).per_step
    # 64 pulls of 8 examples: 512 evaluations, fewer than 32 x 30; no pull covers all of dev
    assert (ucb.example_evals, ucb.new_full) == (4 * 64 + 512, 0)


def test_opro_step_on_dev_and_on_train() -> None:
    assert OPRO().step_plan(N_DEV, N_TRAIN) == StepPlan(
        "step", Spend(example_evals=8 * 30, optimizer_calls=8, new_full=8), paper_steps=200)
    on_train = OPRO(score_examples=50, n_finalists=2, instructions_per_step=4).step_plan(N_DEV, N_TRAIN)
    assert on_train == StepPlan("step", Spend(example_evals=4 * 50, optimizer_calls=4), paper_steps=200,
                                setup=Spend(example_evals=50), finish=Spend(example_evals=2 * 30, new_full=2))
    # fewer training examples than asked: the scoring set is all of them
    assert OPRO(score_examples=50).step_plan(N_DEV, 20).per_step.example_evals == 8 * 20


def test_ape_first_round_filters_the_whole_pool() -> None:
    # 50 proposals on 10 dev examples, 25 on the next 10, 13 on the last 10: all 13 end scored on all of dev
    assert APE().step_plan(N_DEV, N_TRAIN) == StepPlan(
        "round", Spend(example_evals=50 * 10 + 25 * 10 + 13 * 10, optimizer_calls=50, new_full=13), paper_steps=1)
    # on 40 training examples: 50, 25, 13, then 7 (above keep = 5) on the last 10; the 5 elites scored on dev
    on_train = APE(score_examples=40, resample_rounds=3).step_plan(N_DEV, N_TRAIN)
    assert on_train == StepPlan("round", Spend(example_evals=500 + 250 + 130 + 70, optimizer_calls=50),
                                paper_steps=4, finish=Spend(example_evals=5 * 30, new_full=5))


def test_hill_climb_iteration() -> None:
    # 10 neighbours on 100 training examples, a quarter of them paraphrases; a new best on dev
    assert HillClimbing().step_plan(N_DEV, N_TRAIN) == StepPlan(
        "iteration", Spend(example_evals=10 * 100 + 30, optimizer_calls=2.5, new_full=1), paper_steps=50,
        setup=Spend(example_evals=100))
    plain = HillClimbing(n_score=20, operators="delete,paraphrase", score_incumbents=False, max_iterations=9)
    assert plain.step_plan(N_DEV, 15) == StepPlan(  # only 15 training examples to score on
        "iteration", Spend(example_evals=10 * 15, optimizer_calls=5.0), paper_steps=9,
        setup=Spend(example_evals=15), finish=Spend(example_evals=30, new_full=1))


def test_rlprompt_step() -> None:
    # 8 prompts on 16 reward examples; the greedy prompt on dev every 10 steps; greedy and best at the end
    assert RLPrompt().step_plan(N_DEV, N_TRAIN) == StepPlan(
        "step", Spend(example_evals=8 * 16 + 30 / 10, new_full=0.1), paper_steps=200,
        finish=Spend(example_evals=2 * 30, new_full=2))
    by_loss = RLPrompt(reward="loss", eval_every=0, n_prompts=4, n_examples=10).step_plan(N_DEV, 6)
    assert by_loss.per_step == Spend(loss_calls=4 * 6)


@pytest.mark.parametrize("name", [info.name for info in list_strategies()])
def test_every_registered_strategy_has_a_plan_that_costs_something(name: str) -> None:
    plan = get_strategy(name).step_plan(N_DEV, N_TRAIN)
    assert plan is not None and plan.unit
    step = plan.per_step
    assert step.example_evals + step.loss_calls > 0 and min(step.example_evals, step.loss_calls,
                                                            step.optimizer_calls, step.new_full) >= 0


def test_a_strategy_that_does_not_say_has_no_plan() -> None:
    class Quiet(Strategy):
        name = "quiet"

        def optimize(self, ctx):  # type: ignore[no-untyped-def]
            return [ctx.seed_prompt]

    assert Quiet().step_plan(N_DEV, N_TRAIN) is None
