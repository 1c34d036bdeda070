"""When the search's winner replaces the seed: a rule applied to their per-example dev scores.

A winner picked on a small dev split is often a winner by chance, but not
equally in both answer modes. Measured on the embedded model: in generate mode
(replies parsed, 20 dev examples) 9 of 14 winners fell below their seed on test;
in choice mode 6 of 8 rose, and in a later grid (50 dev examples) every winner a
sign test at 0.05 turned down was better than the seed on 200 test examples.

* ``auto`` (default) — ``sign-test:0.05`` in generate mode, ``better`` in choice mode.
* ``better`` — replace when the winner's dev mean is higher (any margin).
* ``sign-test:ALPHA`` — the one-sided exact sign test: over the dev examples
  where the two differ, count the winner's wins and losses; replace when
  P(at least that many wins | no difference) < ALPHA. With 0/1 scores, beating
  the seed needs at least 5 more wins than losses when it never loses
  (0.5^5 = 0.031), 7 wins to 1 loss, and so on.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from math import comb
from typing import Any

from promptopt.exceptions import ConfigError

__all__ = ["DEFAULT_RULE", "Replacement", "check_rule", "decide", "resolve_rule", "sign_test_p"]

DEFAULT_RULE = "auto"


@dataclass(frozen=True)
class Replacement:
    """The decision on one run's winner: the rule, whether it replaced the seed, and the evidence."""

    rule: str
    replaced: bool
    candidate: str
    margin: float
    wins: int
    losses: int
    p_value: float | None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def describe(self) -> str:
        """One line for the report and the CLI."""
        verdict = "replaced" if self.replaced else "kept"
        evidence = f"{self.wins} wins, {self.losses} losses on dev"
        if self.p_value is not None:
            evidence += f", p = {self.p_value:.3g}"
        return f"seed {verdict} ({self.rule}): winner {self.margin:+.3f} dev mean, {evidence}"


def check_rule(rule: object) -> None:
    """Raise ConfigError unless ``rule`` is ``auto``, ``better`` or ``sign-test:ALPHA`` with 0 < ALPHA < 1."""
    if rule in ("auto", "better"):
        return
    if isinstance(rule, str) and rule.startswith("sign-test:"):
        try:
            alpha = float(rule.split(":", 1)[1])
        except ValueError:
            alpha = -1.0
        if 0 < alpha < 1:
            return
    raise ConfigError(f"replace_if must be 'auto', 'better' or 'sign-test:ALPHA' with 0 < ALPHA < 1; got {rule!r} "
                      "(e.g. --replace-if sign-test:0.05)")


def resolve_rule(rule: str, answer_mode: str) -> str:
    """The rule ``auto`` stands for in ``answer_mode`` (any other rule is itself)."""
    if rule != "auto":
        return rule
    return "better" if answer_mode == "choice" else "sign-test:0.05"


def sign_test_p(wins: int, losses: int) -> float:
    """One-sided exact sign test: P(at least ``wins`` of ``wins + losses`` fair coin flips)."""
    n = wins + losses
    return sum(comb(n, k) for k in range(wins, n + 1)) / 2**n if n else 1.0


def decide(rule: str, candidate: str, seed_scores: Mapping[str, float],
           winner_scores: Mapping[str, float]) -> Replacement:
    """Apply ``rule`` to the seed's and the winner's scores on the dev examples both have."""
    shared = sorted(set(seed_scores) & set(winner_scores))
    wins = sum(winner_scores[k] > seed_scores[k] for k in shared)
    losses = sum(winner_scores[k] < seed_scores[k] for k in shared)
    margin = sum(winner_scores[k] - seed_scores[k] for k in shared) / len(shared) if shared else 0.0
    if rule == "better":
        return Replacement(rule, margin > 0, candidate, margin, wins, losses, None)
    p = sign_test_p(wins, losses)
    return Replacement(rule, margin > 0 and p < float(rule.split(":", 1)[1]), candidate, margin, wins, losses, p)
