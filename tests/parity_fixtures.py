"""A small parity task and scripted fake model replies, shared by core tests."""

from __future__ import annotations

import re

from promptopt.types import Request

MAGIC = "PARITY"


def parity_target(req: Request) -> str:
    """Right when the prompt says the magic word, else always 'even' (half right)."""
    text = req.messages[-1].content
    if MAGIC in text:
        n = int(re.findall(r"number (\d+)", text)[-1])
        return "even" if n % 2 == 0 else "odd"
    return "even"


def scripted_optimizer(req: Request) -> str:
    """Critiques and edits in the APO tag format; paraphrases are chatter."""
    text = req.messages[-1].content
    if "reasons why" in text:
        return "<START>The prompt never mentions the magic word.<END>"
    if "improved versions" in text:
        return f"<START>Use {MAGIC}: say whether the number is even or odd.<END>"
    return "ok"  # too short to be a prompt: must be skipped
