"""OPRO: the optimizer model reads a score-sorted trajectory and writes better instructions.

Yang et al., "Large Language Models as Optimizers", ICLR 2024 (arXiv:2309.03409),
Section 4 (prompt optimization) and Section 5.1 (setup). Each step:

1. build the **meta-prompt**: the best ``max_shown`` instructions found so far,
   sorted by score *ascending* (so the best sit closest to the request), each
   with its score as an integer in 0-100; then ``n_exemplars`` task examples
   (input and expected output) drawn afresh from the training split; then the
   request for a new instruction, different from the old ones and scoring higher;
2. sample ``instructions_per_step`` replies at ``temperature``;
3. score every new instruction on the same fixed scoring set and add it to the
   trajectory; repeat for ``n_steps``.

The paper scores every instruction on one fixed subset of the training data and
keeps the instruction with the highest score. Here that fixed set is, by default,
the dev split: the Run picks the final prompt by its dev score, so the strategy
and the Run agree on what "best" means, and every scored candidate stays eligible
when the budget runs out. The exemplars shown to the optimizer always come from
the training split, so dev answers never appear in a meta-prompt (only scores
do). With ``score_examples=k`` the scoring set is instead a fixed, seeded sample
of ``k`` training examples, and the Run's dev evaluation of the ``n_finalists``
best instructions picks the final one.

Cost drivers: ``n_steps`` × ``instructions_per_step`` optimizer calls, and as
many candidates, each scored on the whole scoring set (dev, or
``score_examples``), plus ``n_finalists`` dev evaluations in train-scoring
mode. Needs only generation from the optimizer; in ``choice`` answer mode the
target model must also score log-probabilities.

On a set of tasks it writes the shared system prompt (``ctx.text``): the
meta-prompt asks for a system prompt, each step's exemplars are spread over the
tasks and name their task, and a training scoring set (``score_examples``) is
drawn evenly from every task.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from promptopt.prompt import Prompt
from promptopt.strategies._base import Scalable, Spend, StepPlan, Strategy
from promptopt.strategies._formatting import format_demonstrations
from promptopt.strategies._params import Interval, OneOf
from promptopt.strategies._parsing import parse_instruction
from promptopt.strategies._task_sets import task_namer, worded

if TYPE_CHECKING:
    from promptopt.context import Context
    from promptopt.types import Example

__all__ = ["OPRO", "build_meta_prompt"]

META_PROMPT = """Your job is to write an instruction for a language model. Below are instructions \
tried so far, each followed by its score: the percentage of task examples the model answered \
correctly when given that instruction. They are listed from the lowest score to the highest.

{trajectory}

{exemplars}Write a new instruction that differs from every instruction above and scores higher \
than all of them. Keep it short and clear, and make it work for every example of the task. \
Write the new instruction between <INS> and </INS>."""

EXEMPLAR_INTRO = ("Here are examples of the task. The instruction is placed before each input, "
                  "and the model should give the output shown.\n\n")
SET_EXEMPLAR_INTRO = ("Here are examples of the tasks. The system prompt is placed before each task's own "
                      "instruction and input, and the model should give the output shown.\n\n")

# The reference code drops replies longer than this; an instruction is a sentence or two.
MAX_INSTRUCTION_CHARS = 500
# Room for one instruction (with a little chatter around it), not for an essay.
PROPOSAL_TOKENS = 200


@dataclass(frozen=True)
class Scored:
    """One point of the optimization trajectory."""

    prompt: Prompt
    score: float
    step: int


def build_meta_prompt(shown: Sequence[tuple[str, float]], exemplars: Sequence[Example], *,
                      task_of: Callable[[str], str] | None = None) -> str:
    """The OPRO meta-prompt (Section 4 and Figure 3 of the paper), in our wording.

    Args:
        shown: (instruction, score in [0, 1]) pairs to show.
        exemplars: task examples shown with their expected outputs.
        task_of: on a set of tasks, each exemplar's task by example id: the texts shown and asked
            for are then system prompts, and each exemplar names its task.

    Returns:
        The prompt for the optimizer model: the instructions by ascending score
        (ties keep their given order) with scores as integers 0-100, then the exemplars.

    Example:
        >>> text = build_meta_prompt([("Think first.", 0.75), ("Be brief.", 0.4)], [])
        >>> text.index("Think first.") > text.index("Be brief.") and "Score: 75" in text
        True
    """
    field = "system" if task_of else "instruction"
    ordered = sorted(shown, key=lambda pair: pair[1])
    label = worded("Instruction", field)
    lines = "\n\n".join(f"{label}: <INS>{text}</INS>\nScore: {round(score * 100)}" for text, score in ordered)
    intro = SET_EXEMPLAR_INTRO if task_of else EXEMPLAR_INTRO
    examples = intro + format_demonstrations(exemplars, task_of=task_of) + "\n\n" if exemplars else ""
    return worded(META_PROMPT, field).format(trajectory=lines or "(none yet)", exemplars=examples)


class OPRO(Strategy):
    """Optimization by PROmpting (OPRO), with the paper's defaults.

    Args:
        n_steps: optimization steps (the reference code runs 200).
        instructions_per_step: instructions sampled per step (paper: 8, Section 5.1).
        temperature: optimizer sampling temperature (paper: 1.0, Section 5.1).
        max_shown: best past instructions kept in the meta-prompt (paper: 20, Section 5.1).
        n_exemplars: task exemplars in the meta-prompt, resampled each step (paper: 3, Section 5.1).
        min_score_shown: instructions scoring below this are left out of the meta-prompt
            (reference code: 0.0 with a PaLM scorer, i.e. keep all).
        score_examples: ``None`` scores every instruction on the dev split (see the
            module docstring); an int scores on that many seeded training examples.
        n_finalists: best instructions handed to the Run for the final dev comparison.

    Example:
        >>> OPRO(n_steps=3).get_params()["instructions_per_step"]
        8
    """

    name: ClassVar[str] = "opro"
    supports_task_sets: ClassVar[bool] = True
    summary: ClassVar[str] = ("LLM as optimizer: a meta-prompt of past instructions sorted by score "
                              "plus exemplars asks for better ones (Yang et al., 2024)")
    constraints: ClassVar[dict[str, Any]] = {
        "n_steps": Interval(int, 0), "instructions_per_step": Interval(int, 1),
        "temperature": Interval(float, 0, 2), "max_shown": Interval(int, 1), "n_exemplars": Interval(int, 0),
        "min_score_shown": Interval(float, 0, 1), "score_examples": (Interval(int, 1), OneOf((None,))),
        "n_finalists": Interval(int, 1),
    }
    #: scaled to a budget: the instructions proposed (and scored) per step
    scalable: ClassVar[tuple[Scalable, ...]] = (Scalable("instructions_per_step", 3),)

    def __init__(self, *, n_steps: int = 200, instructions_per_step: int = 8, temperature: float = 1.0,
                 max_shown: int = 20, n_exemplars: int = 3, min_score_shown: float = 0.0,
                 score_examples: int | None = None, n_finalists: int = 3) -> None:
        self.n_steps = n_steps
        self.instructions_per_step = instructions_per_step
        self.temperature = temperature
        self.max_shown = max_shown
        self.n_exemplars = n_exemplars
        self.min_score_shown = min_score_shown
        self.score_examples = score_examples
        self.n_finalists = n_finalists

    def finalist_gap(self, n_dev: int) -> int:
        """Scored on dev, a candidate has all of it; scored on train, none of it."""
        return 0 if self.score_examples is None else n_dev

    def step_plan(self, n_dev: int, n_train: int, *, n_tasks: int = 1) -> StepPlan:
        """One step: ``instructions_per_step`` proposals, each scored on the scoring set. On dev
        they are the Run's candidates at once; on train the seed is scored there first, and
        the ``n_finalists`` best are scored on dev at the end."""
        on_dev = self.score_examples is None
        scoring = n_dev if on_dev else min(self.score_examples or 0, n_train)
        new = self.instructions_per_step
        return StepPlan("step", Spend(example_evals=new * scoring, optimizer_calls=new, new_full=new if on_dev else 0),
                        paper_steps=self.n_steps, setup=Spend() if on_dev else Spend(example_evals=scoring),
                        finish=Spend() if on_dev else Spend(example_evals=self.n_finalists * n_dev,
                                                            new_full=self.n_finalists))

    def optimize(self, ctx: Context) -> Sequence[Prompt]:
        scoring_set = ctx.dev if self.score_examples is None else ctx.sample_across_tasks(
            ctx.train, self.score_examples, lambda ex: ex.id)
        trajectory = self.score(ctx, [ctx.seed_prompt], scoring_set, step=-1)
        for step in range(self.n_steps):
            shown = self.shown(trajectory)
            ctx.note("step", index=step, shown=[s.prompt.id for s in shown],
                     best=max(s.score for s in trajectory))
            meta_prompt = build_meta_prompt([(ctx.text(s.prompt), s.score) for s in shown],
                                            ctx.sample_across_tasks(ctx.train, self.n_exemplars, lambda ex: ex.id),
                                            task_of=task_namer(ctx))
            replies = ctx.propose(meta_prompt, n=self.instructions_per_step, temperature=self.temperature,
                                  max_tokens=PROPOSAL_TOKENS)
            new = self.read_replies(ctx, replies, trajectory, [s.prompt for s in shown])
            trajectory += self.score(ctx, new, scoring_set, step=step)
            ctx.offer(self.leaders(trajectory))  # a budget stop then still gets them scored on dev
        return self.leaders(trajectory)

    def leaders(self, trajectory: Sequence[Scored]) -> list[Prompt]:
        """The ``n_finalists`` best instructions so far (earlier wins ties)."""
        return [s.prompt for s in sorted(trajectory, key=lambda s: -s.score)[: self.n_finalists]]

    def shown(self, trajectory: Sequence[Scored]) -> list[Scored]:
        """The best ``max_shown`` points scoring at least ``min_score_shown``, lowest score first."""
        kept = [s for s in trajectory if s.score >= self.min_score_shown]
        return sorted(kept, key=lambda s: s.score)[-self.max_shown:]

    def read_replies(self, ctx: Context, replies: Sequence[str], trajectory: Sequence[Scored],
                     parents: Sequence[Prompt]) -> list[Prompt]:
        """New, never-seen instructions from the optimizer's replies, recorded as candidates."""
        seen = {s.prompt.id for s in trajectory}
        new = []
        for reply in replies:
            text, how = parse_instruction(reply, "<INS>", "</INS>", max_chars=MAX_INSTRUCTION_CHARS)
            if text is None:
                ctx.skip("opro", f"no usable instruction ({how})", reply)
                continue
            child = ctx.with_text(ctx.seed_prompt, text)
            if child.id in seen:  # the reference code never scores an instruction twice
                ctx.skip("opro", "repeats an earlier instruction", reply)
                continue
            seen.add(child.id)
            ctx.record(child, parents, "opro")
            new.append(child)
        return new

    @staticmethod
    def score(ctx: Context, prompts: Sequence[Prompt], examples: Sequence[Example], *, step: int) -> list[Scored]:
        """Each prompt's mean score on the fixed scoring set (one batch)."""
        if not prompts:
            return []
        return [Scored(r.prompt, r.mean, step) for r in ctx.evaluate(prompts, examples)]
