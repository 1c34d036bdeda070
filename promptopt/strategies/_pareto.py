"""GEPA's candidate pool: per-example scores, the Pareto front, lineage and merges.

Agrawal et al., "GEPA: Reflective Prompt Evolution Can Outperform Reinforcement
Learning" (arXiv:2507.19457). The pool keeps every accepted candidate with its
score on each example of the Pareto set, the candidates it was derived from,
and answers the questions the search asks of it:

* which candidates are best on each example (ties included), Algorithm 2 ``P*[i]``;
* which of those are dominated and dropped (Algorithm 2's ``D``, tested as the
  reference implementation does);
* how many examples each survivor leads (``f[Φ]``), and a parent drawn with
  probability proportional to that count;
* pairs of candidates from different lineages with a common ancestor, for
  the system-aware merge (Section 3.3 / Appendix, "GEPA+Merge").

Candidates are numbered in the order they were added; number 0 is the seed.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence

from promptopt.prompt import Prompt

__all__ = ["ParetoPool", "merge_instructions"]


class ParetoPool:
    """Accepted candidates and their scores on the Pareto set.

    Args:
        example_ids: ids of the Pareto-set examples, in a fixed order.

    Example:
        >>> pool = ParetoPool(["a", "b"])
        >>> pool.add(Prompt("seed"), {"a": 1.0, "b": 0.0})
        0
        >>> pool.add(Prompt("child"), {"a": 0.0, "b": 1.0}, parents=[0])
        1
        >>> pool.lead_counts()
        {0: 1, 1: 1}
    """

    def __init__(self, example_ids: Sequence[str]) -> None:
        self.example_ids = tuple(example_ids)
        self.prompts: list[Prompt] = []
        self.parents: list[tuple[int, ...]] = []
        self.scores: list[tuple[float, ...]] = []

    def __len__(self) -> int:
        return len(self.prompts)

    def add(self, prompt: Prompt, scores: Mapping[str, float], parents: Sequence[int] = ()) -> int:
        """Add a candidate scored on every Pareto example; returns its number."""
        missing = [i for i in self.example_ids if i not in scores]
        if missing:
            raise ValueError(f"candidate {prompt.id} has no score on Pareto examples {missing[:3]}")
        self.prompts.append(prompt)
        self.parents.append(tuple(parents))
        self.scores.append(tuple(float(scores[i]) for i in self.example_ids))
        return len(self.prompts) - 1

    def index(self, prompt: Prompt) -> int | None:
        """The number of ``prompt`` in the pool, or None."""
        ids = [p.id for p in self.prompts]
        return ids.index(prompt.id) if prompt.id in ids else None

    def mean(self, k: int) -> float:
        """Mean Pareto-set score of candidate ``k``."""
        row = self.scores[k]
        return sum(row) / len(row) if row else 0.0

    def scores_by_id(self, k: int) -> dict[str, float]:
        """Candidate ``k``'s score on each Pareto example, by example id."""
        return dict(zip(self.example_ids, self.scores[k], strict=True))

    # -- the front (Algorithm 2) ------------------------------------------------------------
    def best_per_example(self) -> list[set[int]]:
        """``P*[i]``: the candidates with the highest score on example ``i`` (ties included)."""
        fronts: list[set[int]] = []
        for i in range(len(self.example_ids)):
            top = max(row[i] for row in self.scores)
            fronts.append({k for k, row in enumerate(self.scores) if row[i] == top})
        return fronts

    def dominated(self) -> set[int]:
        """Candidates on some ``P*[i]`` whose every lead another surviving candidate shares.

        Φ is dominated when each example it is best on also has another surviving
        candidate among its best (one per example; no single candidate need lead
        them all). As in the reference implementation (``remove_dominated_programs``
        in gepa-ai/gepa), candidates are tested in ascending order of mean score,
        equal means in the order they first appear on the examples' fronts
        (examples in order; within one front, the order Python iterates its set
        of candidate numbers, as the reference's sets do: ascending unless the
        numbers outgrow the set's hash table), and each test counts only the
        candidates not removed yet.
        The reference restarts its scan after every removal; one pass removes the
        same candidates, since a removal only takes leads away and so never makes
        a candidate tested earlier dominated.

        Example:
            >>> pool = ParetoPool(["e1", "e2", "e3", "e4"])
            >>> for text, row in [("A", [1, 1, 0, 0]), ("B", [1, 0, 1, 0]), ("C", [0, 1, 0, 1])]:
            ...     _ = pool.add(Prompt(text), dict(zip(pool.example_ids, row)))
            >>> pool.dominated()  # B shares e1 with A and C shares e2: A goes
            {0}
        """
        fronts = self.best_per_example() if self.prompts else []
        first_seen = list(dict.fromkeys(k for front in fronts for k in front))
        removed: set[int] = set()
        for k in sorted(first_seen, key=self.mean):  # stable: equal means keep first-seen order
            survivors = set(first_seen) - removed - {k}
            if all(front & survivors for front in fronts if k in front):
                removed.add(k)
        return removed

    def front(self) -> list[set[int]]:
        """``P̂*[i]``: the best candidates on each example, dominated ones removed."""
        gone = self.dominated()
        return [f - gone for f in self.best_per_example()] if self.prompts else []

    def lead_counts(self) -> dict[int, int]:
        """``f[Φ]``: on how many examples each front candidate is among the best."""
        counts: dict[int, int] = {}
        for f in self.front():
            for k in sorted(f):
                counts[k] = counts.get(k, 0) + 1
        return dict(sorted(counts.items()))

    def select(self, rng: random.Random) -> int:
        """A parent drawn from the front with probability proportional to its lead count."""
        counts = self.lead_counts()
        if not counts:  # an empty Pareto set: fall back to the best mean (the seed)
            return self.best()
        keys = list(counts)
        return rng.choices(keys, weights=[counts[k] for k in keys])[0]

    def best(self) -> int:
        """The candidate with the highest mean; ties go to the older one."""
        return max(range(len(self)), key=lambda k: (self.mean(k), -k))

    def finalists(self) -> list[Prompt]:
        """Front candidates (and the best mean) sorted by mean score, best first."""
        keep = set(self.lead_counts()) | {self.best()}
        return [self.prompts[k] for k in sorted(keep, key=lambda k: (-self.mean(k), k))]

    # -- lineage and merge candidates --------------------------------------------------------
    def ancestors(self, k: int) -> set[int]:
        """Every candidate ``k`` descends from (parents, their parents, ...)."""
        found: set[int] = set()
        stack = list(self.parents[k])
        while stack:
            p = stack.pop()
            if p not in found:
                found.add(p)
                stack.extend(self.parents[p])
        return found

    def merge_triplet(self, rng: random.Random, tried: set[tuple[int, int, int]],
                      max_attempts: int = 10) -> tuple[int, int, int] | None:
        """Two front candidates from different lineages and a common ancestor, or None.

        As in GEPA's merge: draw a pair of front candidates, neither descending
        from the other; keep common ancestors whose mean is no better than either
        descendant's and that were not tried with this pair before; pick one with
        probability proportional to its mean.
        """
        candidates = sorted(self.lead_counts())
        for _ in range(max_attempts if len(candidates) >= 2 else 0):
            i, j = sorted(rng.sample(candidates, 2))
            anc_i, anc_j = self.ancestors(i), self.ancestors(j)
            if i in anc_j or j in anc_i:
                continue
            common = sorted(a for a in anc_i & anc_j if (i, j, a) not in tried
                            and self.mean(a) <= min(self.mean(i), self.mean(j)))
            if common:
                weights = [self.mean(a) for a in common]
                a = rng.choices(common, weights=weights if sum(weights) > 0 else None)[0]
                return i, j, a
        return None

    def merge_subsample(self, i: int, j: int, rng: random.Random, size: int) -> list[str]:
        """Pareto example ids to test a merge of ``i`` and ``j`` on, balanced over where
        ``i`` wins, where ``j`` wins and where they tie (as GEPA's merge does)."""
        si, sj = self.scores[i], self.scores[j]
        idx = range(len(self.example_ids))
        buckets = [[n for n in idx if si[n] > sj[n]], [n for n in idx if sj[n] > si[n]],
                   [n for n in idx if si[n] == sj[n]]]
        per_bucket = max(1, -(-size // 3))
        chosen: list[int] = []
        for bucket in buckets:
            chosen += rng.sample(bucket, min(len(bucket), per_bucket, size - len(chosen)))
        rest = [n for n in idx if n not in chosen]
        chosen += rng.sample(rest, min(len(rest), size - len(chosen)))
        return [self.example_ids[n] for n in chosen]


def merge_instructions(ancestor: Prompt, first: Prompt, second: Prompt) -> str | None:
    """A three-way merge of two descendants' instructions, sentence by sentence.

    GEPA's system-aware merge takes, for each module, the version changed from
    the common ancestor. With a single instruction we treat each sentence
    (:meth:`Prompt.segments`) as a module: keep ``first``'s sentences except the
    ancestor's sentences that ``second`` dropped, then add the sentences
    ``second`` introduced. Returns None when the result equals either descendant
    (nothing from one side to combine, GEPA's "desirable modules" check) or is empty.
    Sentences are joined with single spaces.

    Example:
        >>> a = Prompt("Say even or odd. Be brief.")
        >>> b = Prompt("Say even or odd. Be brief. Check the last digit.")
        >>> c = Prompt("Say even or odd. Answer in one word.")
        >>> merge_instructions(a, b, c)
        'Say even or odd. Check the last digit. Answer in one word.'
    """
    base, one, two = set(ancestor.segments()), first.segments(), second.segments()
    merged = [s for s in one if s not in base or s in two]
    merged += [s for s in two if s not in base and s not in merged]
    merged = list(dict.fromkeys(merged))
    if not merged or merged == list(one) or merged == list(two):
        return None
    return " ".join(merged)
