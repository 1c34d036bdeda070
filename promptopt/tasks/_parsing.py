"""Pull answers out of model replies: numbers, option letters and labels.

Plain regular expressions over the text; nothing here evaluates model output.
Replies that follow the usual "... So the answer is X." convention are read
after the last "answer is"; otherwise the whole reply is searched.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from decimal import Decimal, InvalidOperation

__all__ = [
    "answer_segment",
    "extract_label",
    "extract_letter",
    "extract_number",
    "normalize_number",
    "normalize_text",
    "numbers_equal",
]

_ANSWER_IS = re.compile(r"answer\s*(?:is|:)\s*:?|####", re.IGNORECASE)
# A number not glued to a preceding word, dot or digit ("3-5" yields 3 and 5,
# "x2" yields nothing); thousands commas only in groups of three.
_NUMBER = re.compile(r"(?<![\w.])(-)?\$?((?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?)")
_LETTER = re.compile(r"\(([A-Z])\)")
_BARE_LETTER = re.compile(r"^(?:option\s+)?\(?([A-Z])\)?[.:]?$", re.IGNORECASE)
_LEADING_LETTER = re.compile(r"^([A-Z])\)\s")
_TRAILING = " \t\r\n.!\"'`*"


def answer_segment(text: str) -> tuple[str, bool]:
    """The part of ``text`` after the last "answer is" (or "####"), and whether one was found."""
    marks = list(_ANSWER_IS.finditer(text))
    if not marks:
        return text, False
    return text[marks[-1].end():], True


def normalize_text(text: str) -> str:
    """Trimmed (also of trailing punctuation and quotes), whitespace collapsed."""
    return " ".join(text.strip().strip(_TRAILING).split())


def normalize_number(raw: str) -> str | None:
    """Canonical text of a number: no commas, no ``$``, no trailing zeros ("1,200.50" → "1200.5")."""
    cleaned = raw.replace(",", "").replace("$", "").replace("\u2212", "-").strip()
    try:
        value = Decimal(cleaned)
    except InvalidOperation:
        return None
    if not value.is_finite():
        return None
    if value == value.to_integral_value():
        return str(value.quantize(Decimal(1)))
    return format(value.normalize(), "f")


def extract_number(text: str) -> str | None:
    """The answer number in a reply, normalised; None when there is none.

    After "answer is" the first number there wins; otherwise the last number
    in the reply.

    Example:
        >>> extract_number("5 + 7 = 12, so the answer is $1,234.50. Check: 3")
        '1234.5'
        >>> extract_number("It drops by -3 degrees")
        '-3'
    """
    text = text.replace("\u2212", "-")
    segment, marked = answer_segment(text)
    found = list(_NUMBER.finditer(segment))
    if marked and found:
        match = found[0]
    else:
        found = list(_NUMBER.finditer(text))
        if not found:
            return None
        match = found[-1]
    return normalize_number((match.group(1) or "") + match.group(2))


def numbers_equal(answer: str | None, gold: str) -> bool:
    """Numeric equality of two number strings ("42" == "42.0"); False if either is not a number."""
    if answer is None:
        return False
    a, b = normalize_number(answer), normalize_number(gold)
    return a is not None and a == b


def extract_letter(text: str) -> str | None:
    """An option letter as ``"(X)"``: from "(X)" in the reply or a bare-letter reply.

    After "answer is" only that part counts (its first letter); otherwise the
    last "(X)" in the reply.

    Example:
        >>> extract_letter("Let's see... So the answer is (C).")
        '(C)'
        >>> extract_letter(" b. ")
        '(B)'
    """
    segment, marked = answer_segment(text)
    letters = _LETTER.findall(segment)
    if letters:
        return f"({letters[0] if marked else letters[-1]})"
    bare = _BARE_LETTER.match(segment.strip()) or _LEADING_LETTER.match(segment.strip())
    return f"({bare.group(1).upper()})" if bare else None


def extract_label(text: str, labels: Sequence[str]) -> str | None:
    """The label a reply names, in its canonical spelling; None when unclear.

    A reply equal to a label (trimmed, any case) wins; otherwise, the one label
    that occurs as a whole word, first in the text after "answer is" if there
    is one, else in the whole reply. Two different labels and no "answer is"
    give None.

    Example:
        >>> extract_label("Positive.", ["negative", "positive"])
        'positive'
        >>> extract_label("It is positive, not negative", ["negative", "positive"]) is None
        True
    """
    by_fold = {label.casefold(): label for label in labels}
    whole = by_fold.get(normalize_text(text).casefold())
    if whole is not None:
        return whole
    segment, marked = answer_segment(text)
    if marked:
        hits = _label_hits(segment, labels)
        if hits:
            return hits[0][1]
    names = {label for _, label in _label_hits(text, labels)}
    return names.pop() if len(names) == 1 else None


def _label_hits(text: str, labels: Sequence[str]) -> list[tuple[int, str]]:
    """(position, label) of every whole-word, case-insensitive label occurrence, in text order."""
    hits = []
    for label in labels:
        pattern = re.compile(rf"(?<!\w){re.escape(label)}(?!\w)", re.IGNORECASE)
        hits += [(m.start(), label) for m in pattern.finditer(text)]
    return sorted(hits)
