"""The search state Plum's six algorithms share: score set, fitness, neighbours, lineage pools.

A :class:`Search` is made inside ``optimize`` for one run and dropped after
it (the strategy object keeps no state). It scores prompts on the fixed score
set, remembers their fitness and the best so far, and makes children with the
edit operators, recording each new one with its parents, operator and edits.

Each prompt has an *add pool*: the units its lineage deleted and did not put
back (Plum's delete tracker, kept per candidate as the reference code's
genetic algorithm does). ``add`` draws from it and is not drawn while it is empty.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from promptopt.prompt import Prompt
from promptopt.strategies._edits import Level, Units, field_text, split_field, with_field
from promptopt.strategies._operators import OPERATORS, Edit, crossover, draw_edit, llm_rewriter, note_edit, splice
from promptopt.strategies._params import parse_names

if TYPE_CHECKING:
    from promptopt.context import Context

__all__ = ["Search", "improvise", "operator_names"]

_LETTER = re.compile(r"[^\W\d_]")


def operator_names(value: Any) -> tuple[str, ...]:
    """Operator names from a list or a comma-separated string, in order, each once (ValueError if bad)."""
    return parse_names(value, OPERATORS, "operators")


class Search:
    """One run's shared state: what is scored where, and how children are made.

    Args:
        ctx: the run's context.
        field: the prompt field edited.
        level: unit granularity.
        operators: edit operators to draw from.
        n_score: score-set size (a seeded sample of train, drawn once; on a set of tasks, from each in turn).
        score_incumbents: score each new best on dev as it is found.
        temperature: optimizer sampling temperature for paraphrases.
    """

    def __init__(self, ctx: Context, *, field: str, level: Level, operators: tuple[str, ...], n_score: int,
                 score_incumbents: bool, temperature: float) -> None:
        self.ctx, self.field, self.level, self.operators = ctx, field, level, operators
        self.score_incumbents = score_incumbents
        self.score_set = ctx.sample_across_tasks(ctx.train, n_score, lambda ex: ex.id)
        self.seed = self.best = ctx.seed_prompt
        self.rewrite = llm_rewriter(ctx, temperature=temperature) if "paraphrase" in operators else None
        self._fitness: dict[str, float] = {}
        self._pools: dict[str, tuple[str, ...]] = {self.seed.id: ()}

    def ready(self) -> bool:
        """Score the seed; False (with a ``stop`` note) when there is nothing to search."""
        if not self.score_set:
            self.ctx.note("stop", reason="no training examples to score candidates on")
            return False
        if not self.units(self.seed):
            self.ctx.note("stop", reason=f"the seed prompt's {self.field} is empty: nothing to edit")
            return False
        self.score([self.seed])
        return True

    # -- fitness ------------------------------------------------------------------------------
    def score(self, prompts: Sequence[Prompt]) -> list[float]:
        """Each prompt's accuracy on the score set; unscored ones go out in one batch."""
        fresh = list({p.id: p for p in prompts if p.id not in self._fitness}.values())
        if fresh:
            for result in self.ctx.evaluate(fresh, self.score_set):
                self._fitness[result.prompt.id] = result.mean
            self._offer(fresh)
        return [self._fitness[p.id] for p in prompts]

    def fitness(self, prompt: Prompt) -> float:
        """A scored prompt's accuracy on the score set."""
        return self._fitness[prompt.id]

    def fittest(self, prompts: Sequence[Prompt]) -> Prompt | None:
        """The fittest of ``prompts`` (scored first), the earlier of equals; None if there are none."""
        if not prompts:
            return None
        fitness = self.score(prompts)
        return prompts[max(range(len(prompts)), key=lambda k: (fitness[k], -k))]

    def _offer(self, prompts: Iterable[Prompt]) -> None:
        """Keep the best so far (the older of equals); score a new best on dev if asked."""
        before = self.best
        for prompt in prompts:
            if self._fitness[prompt.id] > self._fitness[self.best.id]:
                self.best = prompt
        if self.best is not before:
            self.ctx.note("incumbent", prompt_id=self.best.id, fitness=self._fitness[self.best.id])
            if self.score_incumbents:
                self.ctx.evaluate([self.best])

    # -- children -----------------------------------------------------------------------------
    def units(self, prompt: Prompt) -> Units:
        return split_field(prompt, self.field, self.level)

    def allowed(self, prompt: Prompt) -> list[str]:
        """The operators that can apply to ``prompt``: ``add`` only with a non-empty pool."""
        return [op for op in self.operators if op != "add" or self._pools.get(prompt.id)]

    def neighbours(self, parent: Prompt, n: int) -> list[Prompt]:
        """Up to ``n`` distinct children of ``parent``, one random edit each (unusable ones dropped)."""
        ops, units = self.allowed(parent), self.units(parent)
        children: list[Prompt] = []
        for _ in range(n if ops else 0):
            operator = self.ctx.rng.choice(ops)
            done = draw_edit(units, operator, self.ctx.rng, pool=self._pools.get(parent.id, ()),
                             rewrite=self.rewrite)
            if done is not None:
                child = self.child([parent], with_field(parent, self.field, done[0].join()), [done[1]], operator)
                if child is not None and child not in children:
                    children.append(child)
        return children

    def crossover(self, first: Prompt, second: Prompt) -> Prompt | None:
        """A one-point crossover child, the cut drawn below the longer parent's unit count."""
        longest = max(len(self.units(first)), len(self.units(second)))
        if longest == 0:
            return None
        edited = crossover(first, second, self.field, self.level, self.ctx.rng.randrange(longest))
        return self.child([first, second], edited.prompt, [edited.edit], "crossover")

    def child(self, parents: Sequence[Prompt], child: Prompt, edits: Sequence[Edit], operator: str,
              **extra: Any) -> Prompt | None:
        """Record ``child``, made from ``parents`` by ``edits``: None if its field has no letter
        left or it equals a parent. A new child is logged with its lineage and edits and gets
        its add pool."""
        if not _LETTER.search(field_text(child, self.field)) or any(child.id == p.id for p in parents):
            return None
        if self.ctx.record(child, parents, operator):
            note_edit(self.ctx, child, [replace(e, field=self.field) for e in edits], operator=operator, **extra)
            self._pools[child.id] = _pool_after(self.inherited_pool(parents), edits)
        return child

    def inherited_pool(self, parents: Sequence[Prompt]) -> tuple[str, ...]:
        """The first parent's pool, then units only the others' pools hold."""
        return tuple(dict.fromkeys(u for p in parents for u in self._pools.get(p.id, ())))


def _pool_after(pool: tuple[str, ...], edits: Sequence[Edit]) -> tuple[str, ...]:
    """A pool with the units ``edits`` deleted added and the units they added taken out."""
    units = list(pool)
    for edit in edits:
        if edit.operator == "delete":
            units += [u for u in edit.before if u not in units]
        elif edit.operator == "add":
            units = [u for u in units if u not in edit.after]
    return tuple(units)


def improvise(search: Search, memory: Sequence[Prompt], n_segments: int, hmcr: float, par: float) -> Prompt | None:
    """One new harmony: segment ``j`` of ``n_segments`` from a random memory member, kept with
    probability ``hmcr`` (then paraphrased with probability ``par``, when paraphrase is an
    operator), else given one random edit; the segments joined in order."""
    rng = search.ctx.rng
    parts: list[tuple[Units, int, int]] = []
    sources: list[Prompt] = []
    edits: list[Edit] = []
    for j in range(n_segments):
        member = rng.choice(list(memory))
        units = search.units(member)
        start, end = -(-j * len(units) // n_segments), -(-(j + 1) * len(units) // n_segments)
        if rng.random() < hmcr:
            ops = ["paraphrase"] if rng.random() < par and "paraphrase" in search.operators else []
        else:
            allowed = search.allowed(member)
            ops = [rng.choice(allowed)] if allowed else []
        done = draw_edit(units, ops[0], rng, pool=search.inherited_pool([member]), rewrite=search.rewrite,
                         span=(start, end)) if ops else None
        if done is not None:
            end += len(done[0]) - len(units)
            units = done[0]
            edits.append(done[1])
        parts.append((units, start, end))
        sources.append(member)
    segments = [{"source": m.id, "units": [s, e]} for m, (_, s, e) in zip(sources, parts, strict=True)]
    parents = list({p.id: p for p in sources}.values())
    harmony = with_field(sources[0], search.field, splice(parts).join())
    return search.child(parents, harmony, edits, "harmony", segments=segments)
