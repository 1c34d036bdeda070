"""PromptBreeder's mutation operators, mutation prompts and thinking styles.

Fernando et al., "Promptbreeder: Self-Referential Self-Improvement via Prompt
Evolution", ICML 2024 (arXiv:2309.16797), Section 3.2. Each operator asks the
optimizer model for a new task prompt (instruction) for one unit, the
tournament's winner; the request texts are our own, with the paper's control
structure (an ``INSTRUCTION`` line, then the reply's slot):

* direct: ``zero-order`` (a hint for the problem description, made without any
  parent) and ``first-order`` (the unit's mutation prompt applied to its task prompt);
* estimation of distribution: ``eda`` (the population's task prompts, near
  duplicates filtered out, in random order: "continue the list"),
  ``eda-rank`` (the same list in ascending fitness under a header that calls
  it descending, the paper's deliberate mislabelling for diversity) and
  ``lineage`` (the unit's lineage elites, oldest first);
* hypermutation: ``zero-order-hyper`` (a new mutation prompt from the problem
  description and a thinking style) and ``first-order-hyper`` (the unit's
  mutation prompt summarised and improved), each then applied first-order;
* Lamarckian: ``lamarckian`` (the instruction read back from a correct working-out).

The paper filters near duplicates by BERT embedding similarity (> 0.95); with
no embedding model here, by the similarity of the word sequences
(``difflib`` ratio > 0.95). The problem description is the seed's instruction.

On a set of tasks the task prompt is the shared system prompt (``ctx.text``):
the problem description is the seed's system prompt, and the requests, the
starting mutation prompts and the control labels say "system prompt" where they
said "instruction" (a reply's first line may then start with ``NEW SYSTEM PROMPT:``).
The hypermutation requests keep their wording: what they ask for is a mutation
prompt, an instruction to the optimizer.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from difflib import SequenceMatcher
from typing import TYPE_CHECKING

from promptopt.strategies._parsing import clean_prompt_text
from promptopt.strategies._task_sets import worded

if TYPE_CHECKING:
    from promptopt.context import Context
    from promptopt.prompt import Prompt

__all__ = ["MUTATION_PROMPTS", "MUTATORS", "THINKING_STYLES", "Breeder", "Mutant", "Unit", "distinct", "first_line"]

#: the mutation operators, in the paper's order
MUTATORS = ("zero-order", "first-order", "eda", "eda-rank", "lineage", "zero-order-hyper", "first-order-hyper",
            "lamarckian")

#: starting mutation prompts (the paper has 100; these are ours)
MUTATION_PROMPTS = (
    "Write this instruction another way.",
    "Make the instruction shorter and clearer.",
    "Rewrite the instruction so that a beginner could follow it.",
    "Change the wording of the instruction but keep what it asks for.",
    "Make the instruction more specific about the answer it wants.",
    "Turn the instruction into a friendly request.",
    "Add one useful hint to the instruction.",
    "Simplify the instruction without dropping anything it asks.",
    "Rewrite the instruction with words the original does not use.",
    "Improve the instruction so that answers come out right more often.",
)

#: thinking styles (the paper has 39; these are ours)
THINKING_STYLES = (
    "Think it through step by step.",
    "First find the words that decide the answer.",
    "Consider what a careful expert would check.",
    "Look at the problem from another angle.",
    "Focus on what the answer must look like.",
    "Think of the most common mistake and avoid it.",
    "Break the problem into smaller parts.",
    "Ask which evidence supports each possible answer.",
    "Keep it simple and direct.",
    "Compare it with a familiar situation.",
)

MUTATE = "{mutation}\nINSTRUCTION: {instruction}\nNEW INSTRUCTION:"
INITIAL = "{mutation} {style}\nINSTRUCTION: {instruction}\nNEW INSTRUCTION:"
ZERO_ORDER = "{problem}\nA numbered list of 100 hints for doing this well:\n1."
EDA = "A list of different instructions for the same task:\n{items}\n{next}."
EDA_RANK = ("INSTRUCTION: {mutation}\nResponses ranked from best to worst; response {next} is the best of all "
            "and is closer to {last} than to 1.\n{items}\n{next}.")
LINEAGE = "Instructions found so far, from worst to best:\n{items}\n{next}."
HYPER_ZERO = ("{problem}\n{style}\nWrite one short instruction that tells someone how to improve an instruction "
              "for this task.\nINSTRUCTION:")
HYPER_FIRST = "Summarize and improve this instruction: {mutation}\nIMPROVED INSTRUCTION:"
LAMARCKIAN = "A friend followed an instruction and got these right:\n{working}\nThe instruction was:"

INSTRUCTION_TOKENS = 120
MUTATION_PROMPT_TOKENS = 60
_NUMBERING = re.compile(r"^\s*(?:\d+[.)]|[-*•])\s*")
_LABEL = re.compile(r"^\s*(?:NEW |IMPROVED )?INSTRUCTION:\s*", re.IGNORECASE)
_SYSTEM_LABEL = re.compile(r"^\s*(?:NEW |IMPROVED )?SYSTEM PROMPT:\s*", re.IGNORECASE)


@dataclass(frozen=True)
class Unit:
    """A unit of evolution: a task prompt and the mutation prompt that goes with it.

    Attributes:
        prompt: the task prompt (its instruction evolves).
        mutation_prompt: how first-order mutation changes it.
        fitness: accuracy on the minibatch it was scored on.
        workings: correct working-outs from that minibatch (input and answer), for Lamarckian mutation.
        elites: the prompts in its lineage that were the population's best, oldest first.
    """

    prompt: Prompt
    mutation_prompt: str
    fitness: float = 0.0
    workings: tuple[str, ...] = ()
    elites: tuple[Prompt, ...] = ()


@dataclass(frozen=True)
class Mutant:
    """An operator's result: the new instruction (None if the reply had none), the mutation
    prompt the child carries, and the prompts it was derived from (the winner first)."""

    instruction: str | None
    mutation_prompt: str
    parents: tuple[Prompt, ...]


def _instruction(prompt: Prompt) -> str:
    return prompt.instruction


def distinct(prompts: Sequence[Prompt], threshold: float = 0.95, *,
             text: Callable[[Prompt], str] = _instruction) -> list[Prompt]:
    """``prompts`` without near duplicates: one is left out when its instruction's words (``text``'s:
    the text under search) are more than ``threshold`` similar (difflib ratio) to an earlier kept one's."""
    kept: list[Prompt] = []
    for prompt in prompts:
        words = text(prompt).lower().split()
        if all(SequenceMatcher(None, words, text(k).lower().split(), autojunk=False).ratio() <= threshold
               for k in kept):
            kept.append(prompt)
    return kept


def _numbered(instructions: Sequence[str]) -> str:
    return "\n".join(f"{i}. {' '.join(text.split())}" for i, text in enumerate(instructions, 1))


def first_line(reply: str, label: re.Pattern[str] = _LABEL) -> str | None:
    """The first usable line of a reply, without a list number or an echoed control ``label``
    (small models run on past the instruction, so only its first line is taken).

    Example:
        >>> first_line(" 3. Read it twice.\\n4. Then answer.")
        'Read it twice.'
    """
    for line in reply.splitlines():
        text = clean_prompt_text(label.sub("", _NUMBERING.sub("", line)).strip())
        if text:
            return text
    return None


class Breeder:
    """The operators of one run: they ask the optimizer model through ``ctx`` and draw from ``ctx.rng``.

    Args:
        ctx: the run's context.
        problem: the problem description (the seed's text under search).
        temperature: optimizer sampling temperature.

    Once the optimizer's call cap refuses a request, :attr:`capped` is True and
    every operator returns None.
    """

    def __init__(self, ctx: Context, problem: str, temperature: float) -> None:
        self.ctx, self.problem, self.temperature = ctx, problem, temperature
        self.capped = False
        #: the starting mutation prompts, as they read for the text under search
        self.mutation_prompts = tuple(worded(m, ctx.text_field) for m in MUTATION_PROMPTS)

    def request(self, template: str, **fields: str) -> str:
        """A request template, worded for the text under search, filled in."""
        return worded(template, self.ctx.text_field).format(**fields)

    def ask(self, request: str, max_tokens: int = INSTRUCTION_TOKENS) -> str | None:
        """One optimizer reply, or None once the call cap refuses."""
        replies = None if self.capped else self.ctx.propose_within_cap(
            request, temperature=self.temperature, max_tokens=max_tokens)
        self.capped = replies is None
        return replies[0] if replies else None

    def instruction(self, reply: str | None, operator: str) -> str | None:
        """The instruction in a reply (:func:`first_line`); a reply with none is logged as a ``skip``."""
        if reply is None:
            return None
        text = first_line(reply, _SYSTEM_LABEL if self.ctx.text_field == "system" else _LABEL)
        if text is None:
            self.ctx.skip(operator, "no usable instruction", reply)
        return text

    # -- initialisation ----------------------------------------------------------------------------
    def initial(self, seed: Prompt) -> Mutant:
        """A starting unit: a random mutation prompt and thinking style applied to the problem."""
        mutation, style = self.ctx.rng.choice(self.mutation_prompts), self.ctx.rng.choice(THINKING_STYLES)
        reply = self.ask(self.request(INITIAL, mutation=mutation, style=style, instruction=self.problem))
        return Mutant(self.instruction(reply, "init"), mutation, (seed,))

    # -- mutation ----------------------------------------------------------------------------------
    def applicable(self, operators: Sequence[str], unit: Unit, population: Sequence[Unit]) -> list[str]:
        """The operators that can act on ``unit``: EDA needs two distinct task prompts, lineage an
        elite, Lamarckian a correct working-out."""
        many = len(distinct(list({u.prompt.id: u.prompt for u in population}.values()), text=self.ctx.text)) >= 2
        needs = {"eda": many, "eda-rank": many, "lineage": bool(unit.elites), "lamarckian": bool(unit.workings)}
        return [op for op in operators if needs.get(op, True)]

    def mutate(self, operator: str, unit: Unit, population: Sequence[Unit]) -> Mutant:
        """Apply one operator to ``unit`` (the tournament's winner)."""
        if operator in ("eda", "eda-rank", "lineage"):
            return self.from_list(operator, unit, population)
        if operator in ("zero-order-hyper", "first-order-hyper"):
            return self.hypermutate(operator, unit)
        if operator == "zero-order":
            reply = self.ask(ZERO_ORDER.format(problem=self.problem))
            return Mutant(self.instruction(reply, operator), unit.mutation_prompt, (unit.prompt,))
        if operator == "lamarckian":
            reply = self.ask(self.request(LAMARCKIAN, working=self.ctx.rng.choice(unit.workings)))
            return Mutant(self.instruction(reply, operator), unit.mutation_prompt, (unit.prompt,))
        if operator == "first-order":
            return self.first_order(unit, unit.mutation_prompt, operator)
        raise ValueError(f"unknown PromptBreeder operator {operator!r}; known: {', '.join(MUTATORS)}")

    def first_order(self, unit: Unit, mutation: str, operator: str) -> Mutant:
        """The mutation prompt ``mutation`` applied to the unit's task prompt."""
        reply = self.ask(self.request(MUTATE, mutation=mutation, instruction=self.ctx.text(unit.prompt)))
        return Mutant(self.instruction(reply, operator), mutation, (unit.prompt,))

    def from_list(self, operator: str, unit: Unit, population: Sequence[Unit]) -> Mutant:
        """EDA, EDA rank-and-index and lineage mutation: continue a numbered list of instructions."""
        if operator == "lineage":
            listed = list(unit.elites)
            request = self.request(LINEAGE, items=_numbered([self.ctx.text(p) for p in listed]),
                                   next=str(len(listed) + 1))
        else:
            ranked = sorted(population, key=lambda u: u.fitness)  # ascending, ties keep population order
            listed = distinct(list({u.prompt.id: u.prompt for u in ranked}.values()), text=self.ctx.text)
            if operator == "eda":
                listed = self.ctx.rng.sample(listed, len(listed))
            items = _numbered([self.ctx.text(p) for p in listed])
            request = (self.request(EDA, items=items, next=str(len(listed) + 1)) if operator == "eda" else
                       self.request(EDA_RANK, mutation=unit.mutation_prompt, items=items, next=str(len(listed) + 1),
                                    last=str(len(listed))))
        parents = (unit.prompt, *(p for p in listed if p.id != unit.prompt.id))
        reply = self.ask(request)
        return Mutant(self.instruction(reply, operator), unit.mutation_prompt, parents)

    def hypermutate(self, operator: str, unit: Unit) -> Mutant:
        """A new mutation prompt (from the problem and a thinking style, or by improving the unit's),
        then applied first-order."""
        if operator == "zero-order-hyper":
            request = HYPER_ZERO.format(problem=self.problem, style=self.ctx.rng.choice(THINKING_STYLES))
        else:
            request = HYPER_FIRST.format(mutation=unit.mutation_prompt)
        mutation = self.instruction(self.ask(request, MUTATION_PROMPT_TOKENS), operator)
        if mutation is None:
            return Mutant(None, unit.mutation_prompt, (unit.prompt,))
        return self.first_order(unit, mutation, operator)
