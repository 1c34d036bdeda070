"""Edit units: a prompt field split into sentences, phrases or words, and joined back exactly.

Edit-based strategies (Plum's delete / swap / add / paraphrase, crossover)
work on *units* of a prompt's text. :func:`split` cuts a text into units at
one of three granularities and keeps every separator, so that
``split(text, level).join() == text`` for any text: nothing is normalised,
whitespace and newlines included.

A :class:`Units` value holds the units (``pieces``, none empty, none starting
or ending with whitespace), the whitespace between consecutive units
(``seps``), and the whitespace before the first and after the last (``lead``,
``tail``). Operators rearrange pieces; separators stay where they were, so a
swap of two sentences keeps the text's layout.

The rules (no parser, no download):

* **sentence** — a boundary is a run of whitespace that follows ``.``, ``!``,
  ``?``, ``;`` or ``:``, or any run of whitespace holding a newline. These are
  :meth:`Prompt.segments`' boundaries, so the sentence units of an instruction
  are its segments; this module adds the separators and the join.
* **phrase** — within a sentence, a boundary is also a run of whitespace after
  ``,`` or a closing bracket, or a run before a function word
  (:data:`FUNCTION_WORDS`: prepositions, conjunctions, subordinators and
  relative words) once the phrase so far has at least two words. So
  "Classify the sentiment of the review as positive or negative." becomes
  "Classify the sentiment" / "of the review" / "as positive" / "or negative."
  — chunks in the spirit of the constituency-parse leaves Plum uses.
* **word** — every run of whitespace; punctuation stays with its word.

Fields are named as :func:`field_names` lists them: ``instruction``,
``system``, and ``demos[i].input`` / ``demos[i].output``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from typing import Literal

from promptopt.prompt import Prompt

__all__ = ["FUNCTION_WORDS", "LEVELS", "Level", "Units", "field_names", "field_text", "split", "split_field",
           "with_field"]

Level = Literal["sentence", "phrase", "word"]
LEVELS: tuple[Level, ...] = ("sentence", "phrase", "word")

#: words a phrase boundary may come before (lower case)
FUNCTION_WORDS = frozenset((
    "about", "above", "across", "after", "against", "along", "although", "among", "and", "around", "as", "at",
    "because", "before", "behind", "below", "beneath", "beside", "between", "beyond", "but", "by", "despite",
    "during", "except", "for", "from", "if", "in", "inside", "into", "like", "near", "nor", "of", "off", "on",
    "once", "onto", "or", "out", "outside", "over", "since", "so", "than", "that", "though", "through",
    "throughout", "till", "to", "toward", "towards", "under", "unless", "until", "upon", "via", "when",
    "whenever", "where", "whereas", "wherever", "whether", "which", "while", "who", "whom", "whose", "with",
    "within", "without", "yet",
))

_SENTENCE_END = ".!?;:"
_PHRASE_END = ",)]}"
_WHITESPACE = re.compile(r"\s+")
_FIELD = re.compile(r"demos\[(\d+)\]\.(input|output)")


@dataclass(frozen=True)
class Units:
    """A text cut into units, with the whitespace around them.

    Attributes:
        level: the granularity it was split at.
        pieces: the units, in order.
        seps: the whitespace between ``pieces[i]`` and ``pieces[i + 1]``
            (one fewer than the pieces; empty when there are none).
        lead: whitespace before the first unit (all of a blank text).
        tail: whitespace after the last unit.

    Example:
        >>> units = split("Be brief.  Answer yes or no.", "sentence")
        >>> units.pieces, units.seps
        (('Be brief.', 'Answer yes or no.'), ('  ',))
        >>> units.join()
        'Be brief.  Answer yes or no.'
    """

    level: Level
    pieces: tuple[str, ...]
    seps: tuple[str, ...] = ()
    lead: str = ""
    tail: str = ""

    def __post_init__(self) -> None:
        if len(self.seps) != max(0, len(self.pieces) - 1):
            raise ValueError(f"{len(self.pieces)} units need {max(0, len(self.pieces) - 1)} separators; "
                             f"got {len(self.seps)}")

    def __len__(self) -> int:
        return len(self.pieces)

    def join(self) -> str:
        """The text again: lead, units with their separators, tail."""
        if not self.pieces:
            return self.lead + self.tail
        body = [self.pieces[0]]
        for sep, piece in zip(self.seps, self.pieces[1:], strict=True):
            body += [sep, piece]
        return self.lead + "".join(body) + self.tail

    def typical_sep(self) -> str:
        """The separator to put next to a new unit: the commonest one here, else one space
        (a newline between sentences when the text's sentences are on lines of their own)."""
        if not self.seps:
            return " "
        return max(dict.fromkeys(self.seps), key=self.seps.count)

    def rebuilt(self, pieces: list[str], seps: list[str]) -> Units:
        """The same lead and tail around other pieces and separators."""
        return replace(self, pieces=tuple(pieces), seps=tuple(seps))


def split(text: str, level: Level) -> Units:
    """Cut ``text`` into units at ``level``; ``split(text, level).join() == text`` always.

    Example:
        >>> split("Classify the sentiment of the review, please.", "phrase").pieces
        ('Classify the sentiment', 'of the review,', 'please.')
        >>> split(" two  words\\n", "word")
        Units(level='word', pieces=('two', 'words'), seps=('  ',), lead=' ', tail='\\n')
    """
    if level not in LEVELS:
        raise ValueError(f"level must be one of {', '.join(LEVELS)}; got {level!r}")
    pieces: list[str] = []
    seps: list[str] = []
    lead = tail = ""
    start = 0  # where the current piece starts
    for match in _WHITESPACE.finditer(text):
        if match.start() == 0:
            lead, start = match.group(), match.end()
            continue
        if match.end() == len(text):
            tail = match.group()
            break
        if _is_boundary(text, start, match, level):
            pieces.append(text[start:match.start()])
            seps.append(match.group())
            start = match.end()
    if start < len(text) - len(tail):  # a boundary is never the last whitespace run: a unit follows it
        pieces.append(text[start:len(text) - len(tail)])
    return Units(level, tuple(pieces), tuple(seps), lead, tail)


def _is_boundary(text: str, start: int, gap: re.Match[str], level: Level) -> bool:
    """Whether the whitespace run ``gap`` ends the unit that began at ``start``."""
    before, after = text[gap.start() - 1], text[gap.end():]
    if level == "word" or "\n" in gap.group() or before in _SENTENCE_END:
        return True
    if level == "sentence":
        return False
    if before in _PHRASE_END:
        return True
    next_word = re.match(r"[A-Za-z]+", after)
    if next_word is None or next_word.group().lower() not in FUNCTION_WORDS:
        return False
    return len(text[start:gap.start()].split()) >= 2


# -- prompt fields -------------------------------------------------------------------------------
def field_names(prompt: Prompt) -> tuple[str, ...]:
    """Every text field of ``prompt`` an edit can change, empty ones included."""
    demo_fields = [f"demos[{i}].{part}" for i in range(len(prompt.demos)) for part in ("input", "output")]
    return ("instruction", "system", *demo_fields)


def field_text(prompt: Prompt, field: str) -> str:
    """The text of one field (see :func:`field_names`)."""
    if field in ("instruction", "system"):
        return str(getattr(prompt, field))
    index, part = _demo_field(prompt, field)
    return str(getattr(prompt.demos[index], part))


def with_field(prompt: Prompt, field: str, text: str) -> Prompt:
    """A copy of ``prompt`` with one field's text replaced, exactly as given (not stripped)."""
    if field == "instruction":
        return replace(prompt, instruction=text)
    if field == "system":
        return replace(prompt, system=text)
    index, part = _demo_field(prompt, field)
    demos = list(prompt.demos)
    demos[index] = replace(demos[index], **{part: text})
    return replace(prompt, demos=tuple(demos))


def split_field(prompt: Prompt, field: str, level: Level) -> Units:
    """One field of ``prompt`` cut into units."""
    return split(field_text(prompt, field), level)


def _demo_field(prompt: Prompt, field: str) -> tuple[int, str]:
    match = _FIELD.fullmatch(field)
    if match is None or int(match.group(1)) >= len(prompt.demos):
        raise ValueError(f"no field {field!r} in this prompt; its fields are: {', '.join(field_names(prompt))}")
    return int(match.group(1)), match.group(2)
