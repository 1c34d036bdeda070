"""The :class:`Prompt` value: what every strategy searches over."""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field, replace
from functools import cached_property
from typing import Any

__all__ = ["Demo", "Prompt"]

INPUT_SLOT = "{input}"
_SENTENCE_END = re.compile(r"(?<=[.!?;:])\s+|\n+")


@dataclass(frozen=True)
class Demo:
    """One few-shot demonstration: an input and the output the model should give."""

    input: str
    output: str


@dataclass(frozen=True)
class Prompt:
    """An immutable prompt: system text, instruction, demonstrations and a template.

    The template places the example input; ``{input}`` marks the spot. Two
    prompts with the same content have the same :attr:`id`, so a candidate is
    evaluated once however many times a strategy proposes it.

    Example:
        >>> p = Prompt(instruction="Classify the sentiment.", template="Text: {input}")
        >>> p.render_user("great film")
        'Classify the sentiment.\\n\\nText: great film'
        >>> p.with_instruction("Is it positive or negative?").id != p.id
        True
    """

    instruction: str = ""
    system: str = ""
    demos: tuple[Demo, ...] = field(default=())
    template: str = INPUT_SLOT

    def __post_init__(self) -> None:
        # Accept lists for convenience while keeping the value hashable.
        object.__setattr__(self, "demos", tuple(
            d if isinstance(d, Demo) else Demo(**d) for d in self.demos))

    @cached_property
    def id(self) -> str:
        """A stable content hash (12 hex digits): the candidate's identity."""
        blob = json.dumps(self.to_dict(), sort_keys=True, ensure_ascii=False)
        return hashlib.sha256(blob.encode("utf-8")).hexdigest()[:12]

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict; :meth:`from_dict` rebuilds the same prompt."""
        return {"instruction": self.instruction, "system": self.system, "template": self.template,
                "demos": [{"input": d.input, "output": d.output} for d in self.demos]}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Prompt:
        """Rebuild a prompt from :meth:`to_dict` output."""
        demos = tuple(Demo(**d) for d in data.get("demos", ()))
        return cls(instruction=str(data.get("instruction", "")), system=str(data.get("system", "")),
                   demos=demos, template=str(data.get("template", INPUT_SLOT)))

    def with_instruction(self, instruction: str) -> Prompt:
        """A copy with another instruction."""
        return replace(self, instruction=instruction.strip())

    def segments(self) -> tuple[str, ...]:
        """The instruction split into sentences/clauses, for edit- and mask-based search."""
        return tuple(s.strip() for s in _SENTENCE_END.split(self.instruction) if s.strip())

    def fill(self, text: str) -> str:
        """The template with the example input in place of ``{input}``."""
        if INPUT_SLOT in self.template:
            return self.template.replace(INPUT_SLOT, text)
        return f"{self.template}\n{text}" if self.template else text

    def render_user(self, text: str) -> str:
        """The user message for one input: instruction, demonstrations, then the input."""
        parts = [self.instruction.strip()] if self.instruction.strip() else []
        parts += [f"{self.fill(d.input)}\n{d.output}" for d in self.demos]
        parts.append(self.fill(text))
        return "\n\n".join(parts)

    def __str__(self) -> str:
        head = f"[system] {self.system}\n" if self.system else ""
        demos = f"\n[{len(self.demos)} demos]" if self.demos else ""
        return f"{head}{self.instruction}{demos}"
