from __future__ import annotations

import random
from collections.abc import Sequence

import pytest

from promptopt.prompt import Prompt
from promptopt.strategies._bandits import SELECTORS
from promptopt.types import Example

DATA = tuple(Example(f"dev-{i}", str(i), "x") for i in range(64))
TRUE_MEANS = [0.2, 0.5, 0.9, 0.4, 0.6, 0.3]
PROMPTS = [Prompt(instruction=f"prompt {i}") for i in range(len(TRUE_MEANS))]


def noisy_evaluate(prompts: Sequence[Prompt], examples: Sequence[Example]) -> list[float]:
    """Each example is 'solved' iff its hash-derived number falls under the prompt's true mean."""
    out = []
    for p in prompts:
        mean = TRUE_MEANS[PROMPTS.index(p)]
        hits = [random.Random(f"{p.id}{ex.id}").random() < mean for ex in examples]
        out.append(sum(hits) / len(hits))
    return out


@pytest.mark.parametrize("name", sorted(SELECTORS))
def test_every_selector_ranks_the_best_arm_first(name: str) -> None:
    scores = SELECTORS[name](PROMPTS, DATA, noisy_evaluate, random.Random(0), budget=600, keep=2,
                             rounds=8, prompts_per_round=4, samples_per_eval=16, c=1.0, variant=name)
    assert max(range(len(PROMPTS)), key=lambda i: scores[i]) == 2


def test_ucb_spends_pulls_on_promising_arms() -> None:
    pulls: dict[str, int] = {}

    def counting(prompts: Sequence[Prompt], examples: Sequence[Example]) -> list[float]:
        for p in prompts:
            pulls[p.id] = pulls.get(p.id, 0) + 1
        return noisy_evaluate(prompts, examples)

    SELECTORS["ucb"](PROMPTS, DATA, counting, random.Random(1), rounds=12, prompts_per_round=2,
                     samples_per_eval=16, c=0.5, keep=2)
    assert pulls[PROMPTS[2].id] == max(pulls.values())
    assert pulls.get(PROMPTS[0].id, 0) < pulls[PROMPTS[2].id]


def test_successive_rejects_keeps_the_survivors_above_the_rejected() -> None:
    scores = SELECTORS["sr"](PROMPTS, DATA, noisy_evaluate, random.Random(0), budget=400, keep=2)
    top_two = sorted(range(len(PROMPTS)), key=lambda i: -scores[i])[:2]
    assert set(top_two) == {2, 4}
    assert all(scores[i] < 0 for i in range(len(PROMPTS)) if i not in top_two)
