"""Reading what an optimizer model wrote.

Small models rarely follow a format. Parsers here return what they could
recover plus how (``"tagged"`` or ``"loose"``) so strategies can record it, and
:func:`clean_prompt_text` rejects replies that cannot be a prompt at all.
"""

from __future__ import annotations

import re
from collections import Counter
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from promptopt.context import Context

__all__ = ["clean_prompt_text", "parse_instruction", "parse_items", "parse_tagged", "usable_prompts"]

_QUOTES = "\"'`“”‘’"
_PREAMBLE = re.compile(
    r"^(?:sure|certainly|okay|ok|here(?: is| are|'s)|the (?:new|improved|revised) (?:prompt|instruction)s?)"
    r"[^\n:]*:\s*", re.IGNORECASE)
_LIST_ITEM = re.compile(r"^\s*(?:\d+[.)]|[-*•])\s+(.+)$", re.MULTILINE)


def parse_tagged(text: str, start: str = "<START>", end: str = "<END>") -> list[str]:
    """Every non-empty span between ``start`` and ``end`` tags, in order."""
    pattern = re.escape(start) + r"(.*?)" + re.escape(end)
    return [m.strip() for m in re.findall(pattern, text, flags=re.DOTALL) if m.strip()]


def parse_items(text: str, start: str = "<START>", end: str = "<END>") -> tuple[list[str], str]:
    """Tagged spans if there are any, else list items, else the whole reply as one item.

    Returns the items and how they were found: ``"tagged"``, ``"list"``,
    ``"loose"``, or ``"empty"`` when nothing usable is there.
    """
    tagged = parse_tagged(text, start, end)
    if tagged:
        return tagged, "tagged"
    stripped = text.replace(start, "").replace(end, "").strip()
    items = [m.strip() for m in _LIST_ITEM.findall(stripped) if m.strip()]
    if len(items) >= 2:
        return items, "list"
    return ([stripped], "loose") if stripped else ([], "empty")


def clean_prompt_text(text: str, *, min_chars: int = 8, max_chars: int = 2000) -> str | None:
    """Strip chatter and quotes from a proposed instruction; None if it cannot be one."""
    text = _PREAMBLE.sub("", text.strip()).strip()
    if len(text) >= 2 and text[0] in _QUOTES and text[-1] in _QUOTES:
        text = text[1:-1].strip()
    if not (min_chars <= len(text) <= max_chars):
        return None
    if not re.search(r"[A-Za-z]{3}", text):
        return None
    if _looping(text):
        return None
    return text


def _looping(text: str) -> bool:
    """A small model stuck in a loop: one word is more than half of the text's words (of 10 or more).

    Measured over 4,698 candidates of the benchmark grids: 20 such replies ("Variation 1: Variation 2:
    ...", "Business, Business, ..."), one of which PromptWizard's choice-mode run kept as its winner
    (it scored 4 wins to 2 losses on dev and 3.5 points below the seed on test).
    """
    words = [w.lower() for w in re.findall(r"[A-Za-z]{3,}", text)]
    return len(words) >= 10 and Counter(words).most_common(1)[0][1] > len(words) / 2


def usable_prompts(ctx: Context, operator: str, reply: str) -> list[str]:
    """The prompts in an optimizer's list reply, cleaned; none usable is logged as a ``skip`` of ``operator``."""
    items, how = parse_items(reply)
    cleaned = [c for c in (clean_prompt_text(i) for i in items) if c]
    if not cleaned:
        ctx.skip(operator, f"no usable prompt ({how})", reply)
    return cleaned


def parse_instruction(text: str, start: str = "<START>", end: str = "<END>", *,
                      max_chars: int = 2000) -> tuple[str | None, str]:
    """The first usable instruction in a reply (or None), and how it was found.

    Tagged spans and list items are tried in order. An untagged reply is cut at
    its first blank line: small models go on to echo the examples they were shown.
    """
    items, how = parse_items(text, start, end)
    if how == "loose":
        items = [re.split(r"\n\s*\n", items[0], maxsplit=1)[0]]
    for item in items:
        cleaned = clean_prompt_text(item.strip().strip("*_").strip(), max_chars=max_chars)  # markdown emphasis
        if cleaned:
            return cleaned, how
    return None, how
