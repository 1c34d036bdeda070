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


class Recorder:
    """``noisy_evaluate`` that remembers which examples each prompt was scored on."""

    def __init__(self) -> None:
        self.seen: dict[int, list[str]] = {i: [] for i in range(len(PROMPTS))}
        self.calls: list[tuple[list[int], list[str]]] = []

    def __call__(self, prompts: Sequence[Prompt], examples: Sequence[Example]) -> list[float]:
        arms = [PROMPTS.index(p) for p in prompts]
        self.calls.append((arms, [ex.id for ex in examples]))
        for i in arms:
            self.seen[i] += [ex.id for ex in examples]
        return noisy_evaluate(prompts, examples)


@pytest.mark.parametrize("name", sorted(SELECTORS))
def test_every_selector_finds_the_best_arm_without_scoring_everything(name: str) -> None:
    data = tuple(Example(f"dev-{i}", str(i), "x") for i in range(400))
    spy = Recorder()
    scores = SELECTORS[name](PROMPTS, data, spy, random.Random(0), budget=240, keep=2,
                             rounds=6, prompts_per_round=3, samples_per_eval=16, c=1.0, variant=name)
    assert max(range(len(PROMPTS)), key=lambda i: scores[i]) == 2
    pairs = {(i, ex) for i, seen in spy.seen.items() for ex in seen}
    assert len(pairs) < len(PROMPTS) * len(data) / 2  # a selector, not an exhaustive evaluation
    assert len(spy.seen[0]) <= len(spy.seen[2])  # never more on the worst arm than on the best


def test_brute_force_scores_every_prompt_on_one_shared_sample() -> None:
    spy = Recorder()
    SELECTORS["bf"](PROMPTS, DATA, spy, random.Random(0), budget=120, keep=2)
    assert len(spy.calls) == 1 and spy.calls[0][0] == list(range(len(PROMPTS)))
    assert len(set(spy.calls[0][1])) == 120 // len(PROMPTS)


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


def test_successive_rejects_gives_the_survivors_new_examples_each_phase() -> None:
    spy = Recorder()
    scores = SELECTORS["sr"](PROMPTS, DATA, spy, random.Random(0), budget=300, keep=2)
    # K = 6 arms, logbar(6) = 1.95, n_k = ceil(294 / (1.95 (7 - k))) = 26, 31, 38, 51: phases add 26, 5, 7, 13
    assert [(len(arms), len(ids)) for arms, ids in spy.calls] == [(6, 26), (5, 5), (4, 7), (3, 13)]
    assert all(len(seen) == len(set(seen)) for seen in spy.seen.values())  # no example twice for one arm
    # each phase rejects the arm with the lowest mean over everything seen so far, not over its last sample
    by_id = {ex.id: ex for ex in DATA}
    so_far: list[Example] = []
    survivors = [i for i in range(len(PROMPTS)) if scores[i] >= 0]
    for phase, (arms, ids) in enumerate(spy.calls):
        so_far += [by_id[i] for i in ids]
        running = {i: noisy_evaluate([PROMPTS[i]], so_far)[0] for i in arms}
        after = spy.calls[phase + 1][0] if phase + 1 < len(spy.calls) else survivors
        (rejected,) = set(arms) - set(after)
        assert running[rejected] == min(running.values())


def test_the_reference_variant_rejects_on_each_phase_sample_alone() -> None:
    # each phase: the surviving arms' scores on that phase's sample, arms in index order
    script = iter([[0.9, 0.8, 0.7, 0.6, 0.5, 0.1],  # arm 5 goes
                   [0.2, 0.8, 0.7, 0.6, 0.5],  # arm 0 goes: lowest here, though its running mean is not
                   [0.5, 0.5, 0.9, 0.9],  # equal lowest: the first (arm 1) goes
                   [0.6, 0.7, 0.8]])  # arm 2 goes
    calls: list[tuple[int, int]] = []

    def scripted(prompts: Sequence[Prompt], examples: Sequence[Example]) -> list[float]:
        assert len({ex.id for ex in examples}) == len(examples)
        calls.append((len(prompts), len(examples)))
        return next(script)

    scores = SELECTORS["sr-protegi"](PROMPTS, DATA, scripted, random.Random(0), budget=400, keep=2)
    # K = 6 - 2 = 4 rejections, logbar(4) = 19/12, n_k = 396 / (logbar(4) (5 - k)) = 62.5, 83.4, 125.1, 250.1;
    # a phase draws max(4, floor(n_k - n_{k-1})) examples afresh (at most all 64): 62, 20, 41, 64
    assert calls == [(6, 62), (5, 20), (4, 41), (3, 64)]
    order = sorted(range(len(PROMPTS)), key=lambda i: scores[i])
    assert order[:4] == [5, 0, 1, 2] and set(order[4:]) == {3, 4}
    assert min(scores[3], scores[4]) > 0 > max(scores[i] for i in order[:4])


def test_the_reference_variant_spends_nothing_when_every_arm_is_kept() -> None:
    spy = Recorder()
    assert SELECTORS["sr-protegi"](PROMPTS[:2], DATA, spy, random.Random(0), budget=400, keep=2) == [0.0, 0.0]
    assert spy.calls == []
