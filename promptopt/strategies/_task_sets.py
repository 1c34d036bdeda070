"""What a strategy does differently when it searches a set of tasks, in one place.

On a set the text under search is the shared system prompt (``ctx.text_field ==
"system"``). The helpers here return exactly what a strategy did before on one
task, so single-task runs do not move, and on a set (examples are drawn across the
tasks with ``ctx.sample_across_tasks``, which is ``ctx.sample`` on one task):

* :func:`describe_task` tells the optimizer what the text is for (the set's
  tasks, each asked with its own instruction after the system prompt);
* :func:`worded` turns a meta-prompt's "instruction" into "system prompt";
* :func:`task_namer` names each example's task where examples are shown;
* :func:`answer_mode_of` and :func:`shown_answer` read an example's answer in
  its own task's mode.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import TYPE_CHECKING

from promptopt.tasks._set import TaskSet

if TYPE_CHECKING:
    from promptopt.context import Context
    from promptopt.evaluator import ExampleResult

__all__ = ["answer_mode_of", "describe_task", "shown_answer", "task_namer", "worded"]

# not a ``{instruction}`` placeholder, which the template is filled in through
_INSTRUCTION = re.compile(r"\b(?:(an|An) )?(?<!\{)(instruction|Instruction|INSTRUCTION)")
_ON_A_SET = {"instruction": "system prompt", "Instruction": "System prompt", "INSTRUCTION": "SYSTEM PROMPT"}


def worded(template: str, text_field: str) -> str:
    """A meta-prompt template as it reads for the text under search: unchanged for an
    instruction; with "system prompt" for every "instruction" (articles and plurals following)
    when the text is a set's shared system prompt (``{instruction}`` placeholders are kept).
    Apply it to templates, never to filled-in text.

    Example:
        >>> worded("Write an instruction. Instructions tried: {instruction}", "system")
        'Write a system prompt. System prompts tried: {instruction}'
    """
    if text_field != "system":
        return template

    def replace(match: re.Match[str]) -> str:
        article = {"an": "a ", "An": "A "}.get(match.group(1) or "", "")
        return article + _ON_A_SET[match.group(2)]

    return _INSTRUCTION.sub(replace, template)


#: what the optimizer is told the text under search is, on a set of tasks
SET_DESCRIPTION = ("a system prompt shared by {n} tasks, each asked with its own instruction after it; "
                   "the tasks are: {tasks}")


def describe_task(ctx: Context) -> str:
    """The task as the optimizer reads it: its description (or name) on one task; on a set,
    what the system prompt under search is for and the members' descriptions."""
    if ctx.text_field == "instruction":
        return ctx.task.description or ctx.task.name
    return SET_DESCRIPTION.format(n=len(ctx.task_names), tasks=ctx.task.description)


def task_namer(ctx: Context) -> Callable[[str], str] | None:
    """``ctx.task_of`` on a set (to name each shown example's task); None on one task."""
    return ctx.task_of if ctx.text_field == "system" else None


def answer_mode_of(ctx: Context, example_id: str) -> str:
    """The answer mode of an example's task (the run's on one task)."""
    if ctx.text_field == "instruction":
        return ctx.answer_mode
    return ctx.answer_modes[ctx.task_of(example_id)]


def shown_answer(ctx: Context, result: ExampleResult) -> str:
    """The answer as the model gave it: its reply in generate mode, the chosen label's verbalizer
    in choice mode (each in the example's own task and mode on a set)."""
    if answer_mode_of(ctx, result.example_id) == "generate":
        return result.output.strip()
    task = ctx.task.owner(result.example_id).task if isinstance(ctx.task, TaskSet) else ctx.task
    return task.verbalize(str(result.answer))
