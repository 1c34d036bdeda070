"""Rendering task examples and model results into optimizer meta-prompts.

Shared by every strategy that shows the optimizer model what the target model
did, so meta-prompts look alike and long inputs are cut the same way.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

from promptopt.evaluator import ExampleResult
from promptopt.types import Example

__all__ = ["format_demonstrations", "format_results", "shorten"]


def shorten(text: str, limit: int = 300) -> str:
    """Whitespace collapsed, cut to ``limit`` characters with an ellipsis."""
    text = " ".join(text.split())
    return text if len(text) <= limit else text[:limit] + " ..."


def format_results(results: Sequence[ExampleResult], examples: Mapping[str, Example], *,
                   feedback: Mapping[str, str] | None = None, input_limit: int = 300,
                   task_of: Callable[[str], str] | None = None) -> str:
    """Numbered blocks: input, expected answer, the model's answer (and feedback, if given);
    with ``task_of`` (example id -> task name, on a set of tasks) each block names its task."""
    blocks = []
    for i, res in enumerate(results, 1):
        ex = examples[res.example_id]
        got = res.answer if res.answer is not None else shorten(res.output, 120) or "(nothing)"
        head = f"Example {i} (task {task_of(res.example_id)})" if task_of else f"Example {i}"
        block = f"{head}\nInput: {shorten(ex.input, input_limit)}\nExpected: {ex.target}\nModel answer: {got}"
        if feedback and res.example_id in feedback:
            block += f"\nFeedback: {feedback[res.example_id]}"
        blocks.append(block)
    return "\n\n".join(blocks)


def format_demonstrations(examples: Sequence[Example], *, input_limit: int = 300,
                          task_of: Callable[[str], str] | None = None) -> str:
    """Input/output pairs, as shown to an optimizer inducing an instruction; with ``task_of``
    (example id -> task name, on a set of tasks) each pair is headed by its task."""
    def task(ex: Example) -> str:
        return f"Task: {task_of(ex.id)}\n" if task_of else ""

    return "\n\n".join(f"{task(ex)}Input: {shorten(ex.input, input_limit)}\nOutput: {ex.target}" for ex in examples)
