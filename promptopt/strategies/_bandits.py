"""Best-arm identification over prompts: pick the best few with a limited evaluation budget.

APO (Pryzant et al., 2023) frames beam selection as a bandit problem: each
candidate prompt is an arm, one pull scores it on a random sample of
examples. Each selector returns an estimated score per prompt; higher is better.

``evaluate(prompts, examples)`` returns one mean score per prompt. Pairs seen
before are free in promptopt (the evaluator remembers them), so on a small
dev split repeated pulls cost nothing extra.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Sequence

from promptopt.prompt import Prompt
from promptopt.types import Example

__all__ = ["SELECTORS", "brute_force", "successive_rejects", "successive_rejects_protegi", "ucb"]

EvaluateFn = Callable[[Sequence[Prompt], Sequence[Example]], list[float]]


def brute_force(prompts: Sequence[Prompt], data: Sequence[Example], evaluate: EvaluateFn,
                rng: random.Random, *, budget: int, keep: int, **_: object) -> list[float]:
    """Score every prompt on the same sample of ``budget / len(prompts)`` examples."""
    n = max(1, min(len(data), budget // max(1, len(prompts))))
    return evaluate(prompts, rng.sample(list(data), n))


def ucb(prompts: Sequence[Prompt], data: Sequence[Example], evaluate: EvaluateFn, rng: random.Random, *,
        rounds: int, prompts_per_round: int, samples_per_eval: int, c: float, keep: int,
        variant: str = "ucb", **_: object) -> list[float]:
    """UCB bandit: each round pull the arms with the highest upper confidence bound.

    ``variant="ucb"`` uses mean + c·sqrt(ln t / n); ``"ucb-e"`` uses mean + c·sqrt(c / n).
    Counts are in examples, as in the paper's reference implementation.
    """
    k = len(prompts)
    counts, sums = [0.0] * k, [0.0] * k
    per_round = min(prompts_per_round, k)
    for t in range(rounds):
        if sum(counts) == 0:
            chosen = rng.sample(range(k), per_round)
        else:
            bonus = math.log(max(t, 1)) if variant == "ucb" else c
            bounds = [(sums[i] / counts[i] if counts[i] else 0.0) + c * math.sqrt(bonus / (counts[i] + 1e-3))
                      for i in range(k)]
            chosen = sorted(range(k), key=lambda i: (-bounds[i], i))[:per_round]
        sample = rng.sample(list(data), min(samples_per_eval, len(data)))
        for i, score in zip(chosen, evaluate([prompts[i] for i in chosen], sample), strict=False):
            counts[i] += len(sample)
            sums[i] += score * len(sample)
    return [sums[i] / counts[i] if counts[i] else 0.0 for i in range(k)]


def successive_rejects(prompts: Sequence[Prompt], data: Sequence[Example], evaluate: EvaluateFn,
                       rng: random.Random, *, budget: int, keep: int, **_: object) -> list[float]:
    """Successive Rejects (Audibert & Bubeck, 2010), stopped once ``keep`` arms remain.

    Phase k gives every surviving arm n_k - n_{k-1} more examples, new to it,
    with n_k = ceil((budget - K) / (logbar(K) · (K + 1 - k))), then rejects the
    arm with the lowest mean so far. Survivors rank above the rejected, in order.
    APO's paper cites this algorithm; its reference code runs a variant,
    :func:`successive_rejects_protegi`.
    """
    k = len(prompts)
    if k <= keep:
        return evaluate(prompts, rng.sample(list(data), min(len(data), max(1, budget // max(k, 1)))))
    log_bar = 0.5 + sum(1.0 / i for i in range(2, k + 1))
    alive, sums, counts = list(range(k)), [0.0] * k, [0] * k
    rank = [0.0] * k
    pool, used, n_prev = list(data), 0, 0
    rng.shuffle(pool)
    for phase in range(1, k - keep + 1):
        n_k = math.ceil((budget - k) / (log_bar * (k + 1 - phase)))
        step = max(1, n_k - n_prev)
        n_prev = n_k
        sample = [pool[(used + j) % len(pool)] for j in range(step)]
        sample = list({ex.id: ex for ex in sample}.values())
        used += step
        for i, score in zip(alive, evaluate([prompts[i] for i in alive], sample), strict=False):
            sums[i] += score * len(sample)
            counts[i] += len(sample)
        worst = min(alive, key=lambda i: (sums[i] / counts[i], -i))
        alive.remove(worst)
        rank[worst] = phase - k - 1.0  # rejected earlier ranks lower (negative, below any mean)
    for i in alive:
        rank[i] = sums[i] / counts[i]
    return rank


def successive_rejects_protegi(prompts: Sequence[Prompt], data: Sequence[Example], evaluate: EvaluateFn,
                               rng: random.Random, *, budget: int, keep: int, **_: object) -> list[float]:
    """Successive rejects as APO's reference code runs it (microsoft/LMOps, ``prompt_optimization``).

    It differs from :func:`successive_rejects` in four ways. K counts only the
    arms beyond the ``keep`` that survive. Phase k draws a fresh sample of
    max(4, floor(n_k - n_{k-1})) examples, with n_k = (budget - K) /
    (logbar(K) · (K + 1 - k)) not rounded. The arm rejected is the one with the
    lowest mean on that phase's sample alone (the first of equal ones), not on
    everything it was scored on. And with no more than ``keep`` arms nothing is
    evaluated (every estimate is 0.0). Survivors rank above the rejected, by
    their mean over all examples they were scored on.
    """
    k, n_reject = len(prompts), len(prompts) - keep
    if n_reject <= 0:
        return [0.0] * k
    log_bar = 0.5 + sum(1.0 / i for i in range(2, n_reject + 1))
    alive, sums, counts = list(range(k)), [0.0] * k, [0] * k
    rank = [0.0] * k
    n_prev = 0.0
    for phase in range(1, n_reject + 1):
        n_k = (budget - n_reject) / (log_bar * (n_reject + 1 - phase))
        size, n_prev = max(4, int(n_k - n_prev)), n_k
        sample = rng.sample(list(data), min(len(data), size))
        scores = evaluate([prompts[i] for i in alive], sample)
        for i, score in zip(alive, scores, strict=True):
            sums[i] += score * len(sample)
            counts[i] += len(sample)
        worst = alive[scores.index(min(scores))]
        alive.remove(worst)
        rank[worst] = phase - k - 1.0  # rejected earlier ranks lower (negative, below any mean)
    for i in alive:
        rank[i] = sums[i] / counts[i]
    return rank


#: selector name -> function(prompts, data, evaluate, rng, **knobs) -> estimated score per prompt
SELECTORS: dict[str, Callable[..., list[float]]] = {
    "ucb": ucb, "ucb-e": ucb, "sr": successive_rejects, "sr-protegi": successive_rejects_protegi,
    "bf": brute_force}
