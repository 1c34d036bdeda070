"""Edit operators: pure functions from units (and prompts) to units (and prompts), each with a record.

The unit operators take a :class:`~promptopt.strategies._edits.Units` value
and explicit positions and return the edited units plus an :class:`Edit`
record saying what changed; nothing here draws random numbers or calls a
model on its own. :func:`draw_edit` picks an operator's positions with a
seeded ``random.Random``, and :func:`on_field` applies a unit operation to one
field of a prompt, giving the child prompt and the record. A strategy then
logs the child with ``ctx.record(child, parents, edit.operator)`` and the
record with :func:`note_edit`.

Operators (Plum's edit set, Pan et al., 2024, after GrIPS):

* ``delete`` — remove one unit;
* ``swap`` — exchange two units (separators stay in place);
* ``add`` — insert a unit from a pool (Plum: units its lineage deleted; also
  other candidates, the seed, demonstrations' phrasing: see :func:`unit_pool`);
* ``paraphrase`` — one unit rewritten by the optimizer model
  (:func:`llm_rewriter` asks through ``ctx.propose``);
* ``crossover`` — the first parent's units before a cut, the second's from it.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from promptopt.prompt import Prompt
from promptopt.strategies._edits import Level, Units, field_text, split, split_field, with_field
from promptopt.strategies._task_sets import worded

if TYPE_CHECKING:
    from promptopt.context import Context

__all__ = ["OPERATORS", "Edit", "Edited", "add", "clean_paraphrase", "crossover", "delete", "demo_texts", "draw_edit",
           "llm_rewriter", "note_edit", "on_field", "paraphrase", "splice", "swap", "unit_pool"]

#: the single-parent operators :func:`draw_edit` knows
OPERATORS = ("delete", "swap", "add", "paraphrase")

Rewrite = Callable[[str], "str | None"]

PARAPHRASE_PROMPT = """Rewrite this part of an instruction in other words, keeping its meaning \
and about its length. Reply with the rewritten text only.

Text: {unit}

Rewritten text:"""
PARAPHRASE_TOKENS = 60
_TRAILING_PUNCT = ".,;:!?"
_QUOTES = "\"'`“”‘’"
# "Rewritten text:", "The rewritten text is:", "Paraphrase:", "Here is the paraphrased text:" ...
_LABEL = re.compile(r"^(?:here is |here's )?(?:the )?(?:rewritten|paraphrased?|new)?\s*(?:text|version|phrase)?"
                    r"(?: is)?\s*:\s*", re.IGNORECASE)


@dataclass(frozen=True)
class Edit:
    """What an operator changed, for the candidate's lineage.

    Attributes:
        operator: ``delete``, ``swap``, ``add``, ``paraphrase`` or ``crossover``.
        indices: unit positions in the parent: the deleted / swapped /
            paraphrased units, the insertion point for ``add`` (the new unit's
            position in the child), the cut for ``crossover``.
        before: the parent's units at those positions (for ``crossover``, the
            first parent's units from the cut on; empty for ``add``).
        after: what stands there in the child.
        level: the granularity of the units.
        field: the prompt field edited (empty until :func:`on_field` sets it).
    """

    operator: str
    indices: tuple[int, ...]
    before: tuple[str, ...]
    after: tuple[str, ...]
    level: Level
    field: str = ""

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict for an event."""
        return {"operator": self.operator, "field": self.field, "level": self.level,
                "indices": list(self.indices), "before": list(self.before), "after": list(self.after)}


@dataclass(frozen=True)
class Edited:
    """A child prompt and the edit that made it."""

    prompt: Prompt
    edit: Edit


# -- unit operators (pure) ---------------------------------------------------------------------
def delete(units: Units, index: int) -> tuple[Units, Edit]:
    """Remove unit ``index``; the separator after it goes too (before it, for the last unit)."""
    pieces, seps = list(units.pieces), list(units.seps)
    removed = pieces.pop(index)
    if seps:
        seps.pop(min(index, len(seps) - 1))
    return units.rebuilt(pieces, seps), Edit("delete", (index,), (removed,), (), units.level)


def swap(units: Units, first: int, second: int) -> tuple[Units, Edit]:
    """Exchange units ``first`` and ``second``; every separator stays where it was."""
    pieces = list(units.pieces)
    pieces[first], pieces[second] = pieces[second], pieces[first]
    edit = Edit("swap", (first, second), (units.pieces[first], units.pieces[second]),
                (pieces[first], pieces[second]), units.level)
    return units.rebuilt(pieces, list(units.seps)), edit


def add(units: Units, position: int, piece: str) -> tuple[Units, Edit]:
    """Insert ``piece`` so that it becomes unit ``position`` (0 = first, ``len(units)`` = last),
    separated from its neighbours by the text's commonest separator."""
    pieces, seps = list(units.pieces), list(units.seps)
    if pieces:
        seps.insert(min(position, len(seps)), units.typical_sep())
    pieces.insert(position, piece)
    return units.rebuilt(pieces, seps), Edit("add", (position,), (), (piece,), units.level)


def paraphrase(units: Units, index: int, rewrite: Rewrite) -> tuple[Units, Edit] | None:
    """Unit ``index`` replaced by ``rewrite(unit)``; None when the rewrite failed or changed nothing."""
    old = units.pieces[index]
    new = rewrite(old)
    if new is None or new == old:
        return None
    pieces = list(units.pieces)
    pieces[index] = new
    return units.rebuilt(pieces, list(units.seps)), Edit("paraphrase", (index,), (old,), (new,), units.level)


def splice(parts: Sequence[tuple[Units, int, int]]) -> Units:
    """Units ``start:end`` of each source, one after the other.

    Separators inside a slice come from its source; between two slices, the
    separator that preceded the second slice in its source (else the one that
    followed the first; else a space). The lead is the first source's, the
    tail the last source's.
    """
    pieces: list[str] = []
    seps: list[str] = []
    for n, (units, start, end) in enumerate(parts):
        if start >= end:
            continue
        if pieces:
            seps.append(_seam(units, start, parts[n - 1]))
        pieces += units.pieces[start:end]
        seps += units.seps[start:end - 1]
    return Units(parts[0][0].level, tuple(pieces), tuple(seps), parts[0][0].lead, parts[-1][0].tail)


def _seam(units: Units, start: int, previous: tuple[Units, int, int]) -> str:
    if start > 0:
        return units.seps[start - 1]
    prev_units, _, prev_end = previous
    return prev_units.seps[prev_end - 1] if 0 < prev_end <= len(prev_units.seps) else units.typical_sep()


# -- prompts ----------------------------------------------------------------------------------
def on_field(prompt: Prompt, field: str, level: Level,
             operation: Callable[[Units], tuple[Units, Edit] | None]) -> Edited | None:
    """Apply a unit operation to one field of ``prompt``: the child and its edit record (or None).

    Example:
        >>> p = Prompt("Be brief. Answer yes or no.")
        >>> child = on_field(p, "instruction", "sentence", lambda u: swap(u, 0, 1))
        >>> child.prompt.instruction, child.edit.indices
        ('Answer yes or no. Be brief.', (0, 1))
    """
    done = operation(split_field(prompt, field, level))
    if done is None:
        return None
    units, edit = done
    return Edited(with_field(prompt, field, units.join()), replace(edit, field=field))


def crossover(first: Prompt, second: Prompt, field: str, level: Level, cut: int) -> Edited:
    """One-point crossover on one field: ``first``'s units before ``cut``, ``second``'s from ``cut``.

    The child keeps ``first``'s other fields. As in Plum, the cut is one unit
    index for both parents, so a cut past the end of one takes all or none of it.
    """
    one, two = split_field(first, field, level), split_field(second, field, level)
    units = splice([(one, 0, min(cut, len(one))), (two, min(cut, len(two)), len(two))])
    edit = Edit("crossover", (cut,), one.pieces[cut:], two.pieces[cut:], level, field)
    return Edited(with_field(first, field, units.join()), edit)


# -- drawing an edit --------------------------------------------------------------------------
def draw_edit(units: Units, operator: str, rng: random.Random, *, pool: Sequence[str] = (),
              rewrite: Rewrite | None = None, span: tuple[int, int] | None = None) -> tuple[Units, Edit] | None:
    """One ``operator`` edit at random positions within ``span`` (units ``start:end``, default
    all); None when the units do not allow it (nothing to delete or paraphrase, fewer than
    two units to swap, an empty pool to add from, no rewriter, or a failed paraphrase).

    Example:
        >>> units = split("Be brief. Say yes or no. Think first.", "sentence")
        >>> draw_edit(units, "delete", random.Random(0), span=(1, 2))[1].before
        ('Say yes or no.',)
    """
    lo, hi = span if span is not None else (0, len(units))
    if operator == "delete":
        return delete(units, rng.randrange(lo, hi)) if hi > lo else None
    if operator == "swap":
        return swap(units, *rng.sample(range(lo, hi), 2)) if hi - lo >= 2 else None
    if operator == "add":
        return add(units, rng.randrange(lo, hi + 1), rng.choice(list(pool))) if pool else None
    if operator == "paraphrase":
        return paraphrase(units, rng.randrange(lo, hi), rewrite) if hi > lo and rewrite is not None else None
    raise ValueError(f"unknown edit operator {operator!r}; known: {', '.join(OPERATORS)}")


def unit_pool(texts: Iterable[str], level: Level) -> tuple[str, ...]:
    """The distinct units of several texts (other candidates, the seed, demonstrations), in order."""
    return tuple(dict.fromkeys(piece for text in texts for piece in split(text, level).pieces))


def demo_texts(prompt: Prompt) -> list[str]:
    """The demonstrations' inputs and outputs: phrasing an ``add`` pool may draw on."""
    return [field_text(prompt, f"demos[{i}].{part}") for i in range(len(prompt.demos)) for part in ("input", "output")]


# -- the optimizer model as a rewriter ------------------------------------------------------
def llm_rewriter(ctx: Context, *, temperature: float) -> Rewrite:
    """A rewrite function that asks the optimizer model for a paraphrase of one unit.

    The unit's trailing punctuation is kept (a phrase that ended a sentence
    still does); a reply with no usable text is logged as a ``skip`` and gives None.
    On a set of tasks the request calls the text a system prompt.
    """
    template = worded(PARAPHRASE_PROMPT, ctx.text_field)

    def rewrite(unit: str) -> str | None:
        reply = ctx.propose(template.format(unit=unit), temperature=temperature,
                            max_tokens=PARAPHRASE_TOKENS)[0]
        text = clean_paraphrase(reply, unit)
        if text is None:
            ctx.skip("paraphrase", "no usable paraphrase", reply)
        return text

    return rewrite


def clean_paraphrase(reply: str, unit: str) -> str | None:
    """The first non-empty line of ``reply`` without quotes or a label, ending in ``unit``'s
    punctuation; None if it has no letters or is far longer than the unit (chatter)."""
    lines = [line.strip() for line in reply.splitlines() if line.strip()]
    if not lines:
        return None
    text = _LABEL.sub("", lines[0])
    text = text.strip().strip(_QUOTES).strip().rstrip(_TRAILING_PUNCT).rstrip()
    end = unit[len(unit.rstrip(_TRAILING_PUNCT)):]
    if not re.search(r"[^\W\d_]", text) or len(text) > 3 * len(unit) + 40:
        return None
    return text + end


def note_edit(ctx: Context, child: Prompt, edits: Sequence[Edit], **extra: Any) -> None:
    """Log the edits that made ``child`` (an ``edit`` event), right after ``ctx.record``:
    the candidate event carries parents and operator, this one the edited spans."""
    ctx.note("edit", prompt_id=child.id, edits=[e.to_dict() for e in edits], **extra)
