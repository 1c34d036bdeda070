"""APE: instruction induction from demonstrations and adaptive filtering (iterative resampling optional).

Zhou et al., "Large Language Models Are Human-Level Prompt Engineers", ICLR 2023
(arXiv:2211.01910), Algorithm 1 and Section 3:

1. **proposal** (Section 3.1, "forward" mode): show the optimizer model a few
   input/output demonstrations from the training split and ask which
   instruction produced them; sample many candidates, each demonstration set
   ``prompts_per_demo_set`` times;
2. **adaptive filtering** (Section 3.2, "efficient score estimation"): score
   every candidate on a small subset of the scoring set, keep the better
   part, score the survivors on a *new, non-overlapping* subset and update their
   running means, and repeat until a small set is left, which is scored on the
   whole scoring set;
3. **iterative APE** (Section 3.3, off by default): keep the top
   ``keep_fraction`` of candidates and ask the optimizer for variations of them
   that keep their meaning; filter the elites and their variations again,
   ``resample_rounds`` times.

The defaults are plain APE, the method behind the paper's main results and
the only one its reference code (keirp/automatic_prompt_engineer) runs: one
pool of proposals, filtered once. Iterative APE is the paper's ablation
(Section 5.3); ``resample_rounds=3`` runs it as studied there.

The paper scores on training data and returns the instruction with the best
score on it. Here the scoring set is, by default, the dev split: the small set
that survives filtering is scored on all of dev, which is exactly what the Run
compares, and every finished round leaves fully scored candidates behind if the
budget runs out. Demonstrations always come from the training split. With
``score_examples=k`` the scoring set is a fixed, seeded sample of ``k`` training
examples instead, and the Run's dev evaluation of the elites picks the final one.

An optimizer call cap reached while proposals are being collected ends the
collecting, not the search: the proposals in hand are filtered and scored.

Cost drivers: ``n_demo_sets`` × ``prompts_per_demo_set`` optimizer calls for
the proposals and about as many per resampling round (``resample_rounds``, 0
by default); each filtering pass costs about ``candidates`` × ``stage_examples``
/ (1 - ``stage_keep``) evaluations (a geometric series) where scoring everything
would cost ``candidates`` × the scoring set. Needs only generation from the
optimizer; in ``choice`` answer mode the target model must also score
log-probabilities.

On a set of tasks it induces the shared system prompt (``ctx.text``): each
demonstration set is spread over the tasks and names each pair's task, the
requests ask for a system prompt, and each filtering stage takes its examples
from every task in turn.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, ClassVar

from promptopt.prompt import Prompt
from promptopt.strategies._base import Scalable, Spend, StepPlan, Strategy
from promptopt.strategies._formatting import format_demonstrations
from promptopt.strategies._params import Interval, OneOf
from promptopt.strategies._parsing import clean_prompt_text, parse_instruction
from promptopt.strategies._task_sets import task_namer, worded

if TYPE_CHECKING:
    from promptopt.context import Context
    from promptopt.types import Example

__all__ = ["APE"]

INDUCTION_PROMPT = """Someone was given an instruction and, following it, wrote the output for each \
of these inputs:

{demos}

What was the instruction? Reply with the instruction alone.

The instruction was:"""

RESAMPLE_PROMPT = """Write a variation of the following instruction. Keep its meaning; change the wording.

Instruction: {instruction}

Variation:"""

# An induced instruction is a sentence (the reference code allows 50 tokens).
INSTRUCTION_TOKENS = 80
# Chat models often restate the question: "The instruction was to ...".
_RESTATED = re.compile(r"^(?:the\s+)?instruction\s+(?:was|is)\s*(?:to\s+)?:?\s*", re.IGNORECASE)
_RESTATED_SYSTEM = re.compile(r"^(?:the\s+)?system\s+prompt\s+(?:was|is)\s*(?:to\s+)?:?\s*", re.IGNORECASE)


class APE(Strategy):
    """Automatic Prompt Engineer (plain APE by default; iterative APE with ``resample_rounds``).

    Args:
        n_demo_sets: demonstration sets the proposals are induced from (reference
            code: 50 proposals split into sets of 10).
        prompts_per_demo_set: proposals sampled per demonstration set; the pool size
            is ``n_demo_sets * prompts_per_demo_set`` (paper: 50, Section 5.2).
        n_demos: demonstrations per set (paper: 5, Section 4.1).
        temperature: optimizer sampling temperature (reference config: 0.9).
        keep_fraction: the top fraction kept after each filtering pass, "top k%"
            in Algorithm 1 (the paper gives no number; 10% keeps 5 of 50).
        resample_rounds: rounds of iterative APE after the first pass; 0 (the
            default) is plain APE, the paper's main method; the paper's iterative
            runs use 3 (Section 5.3: returns diminish after three rounds).
        stage_examples: scoring examples per filtering stage (ours; the paper
            gives no number).
        stage_keep: fraction of candidates that survive a filtering stage (ours).
        score_examples: ``None`` scores on the dev split (see the module
            docstring); an int scores on that many seeded training examples.

    Example:
        >>> APE().get_params()["resample_rounds"]
        0
    """

    name: ClassVar[str] = "ape"
    supports_task_sets: ClassVar[bool] = True
    summary: ClassVar[str] = ("instruction induction from demonstrations and adaptive filtering, "
                              "optionally iterative resampling (Zhou et al., 2023)")
    constraints: ClassVar[dict[str, Any]] = {
        "n_demo_sets": Interval(int, 1), "prompts_per_demo_set": Interval(int, 1), "n_demos": Interval(int, 1),
        "temperature": Interval(float, 0, 2), "keep_fraction": Interval(float, 0.001, 1),
        "resample_rounds": Interval(int, 0), "stage_examples": Interval(int, 1),
        "stage_keep": Interval(float, 0.001, 1), "score_examples": (Interval(int, 1), OneOf((None,))),
    }
    #: scaled to a budget: the filtering stages' sample first, then the proposals
    scalable: ClassVar[tuple[Scalable, ...]] = (
        Scalable("stage_examples", 3), Scalable("n_demo_sets", 1, stage=1),
        Scalable("prompts_per_demo_set", 3, stage=1))

    def __init__(self, *, n_demo_sets: int = 5, prompts_per_demo_set: int = 10, n_demos: int = 5,
                 temperature: float = 0.9, keep_fraction: float = 0.1, resample_rounds: int = 0,
                 stage_examples: int = 10, stage_keep: float = 0.5, score_examples: int | None = None) -> None:
        self.n_demo_sets = n_demo_sets
        self.prompts_per_demo_set = prompts_per_demo_set
        self.n_demos = n_demos
        self.temperature = temperature
        self.keep_fraction = keep_fraction
        self.resample_rounds = resample_rounds
        self.stage_examples = stage_examples
        self.stage_keep = stage_keep
        self.score_examples = score_examples

    def finalist_gap(self, n_dev: int) -> int:
        """A candidate dropped or stopped after the first filtering stage has ``stage_examples`` dev
        examples scored; scored on train (``score_examples``), it has none."""
        return max(0, n_dev - self.stage_examples) if self.score_examples is None else n_dev

    def step_plan(self, n_dev: int, n_train: int, *, n_tasks: int = 1) -> StepPlan:
        """One round, the first (the costliest: every candidate is new): the pool of proposals,
        then adaptive filtering on the scoring set; its last survivors are scored on all of it.
        Scored on train, the elites are scored on dev at the end."""
        pool = self.n_demo_sets * self.prompts_per_demo_set
        keep = max(1, math.ceil(self.keep_fraction * pool))
        on_dev = self.score_examples is None
        evals, survivors = self.filtering_cost(pool, n_dev if on_dev else min(self.score_examples or 0, n_train), keep)
        return StepPlan("round", Spend(example_evals=evals, optimizer_calls=pool, new_full=survivors if on_dev else 0),
                        paper_steps=self.resample_rounds + 1,
                        finish=Spend() if on_dev else Spend(example_evals=keep * n_dev, new_full=keep))

    def filtering_cost(self, n_candidates: int, n_examples: int, keep: int) -> tuple[int, int]:
        """Evaluations :meth:`adaptive_filter` spends on ``n_candidates`` new candidates, and how
        many of them end scored on all ``n_examples`` (its stages, counted)."""
        alive, done, evals = n_candidates, 0, 0
        while alive and done < n_examples:
            size = n_examples - done if alive <= keep else min(self.stage_examples, n_examples - done)
            evals, done = evals + alive * size, done + size
            if done < n_examples:
                alive = min(alive, max(keep, math.ceil(alive * self.stage_keep)))
        return evals, alive if done else 0

    def optimize(self, ctx: Context) -> Sequence[Prompt]:
        scoring_set = ctx.dev if self.score_examples is None else ctx.sample_across_tasks(
            ctx.train, self.score_examples, lambda ex: ex.id)
        pool_size = self.n_demo_sets * self.prompts_per_demo_set
        keep = max(1, math.ceil(self.keep_fraction * pool_size))
        candidates = self.propose(ctx)
        elites: list[Prompt] = []
        for round_index in range(self.resample_rounds + 1):
            elites = self.adaptive_filter(ctx, elites + candidates, scoring_set, keep)
            ctx.note("round", index=round_index, elites=[p.id for p in elites])
            if ctx.optimizer_cap_hit or round_index == self.resample_rounds:
                break
            candidates = self.resample(ctx, elites, pool_size - len(elites))
        return elites or [ctx.seed_prompt]

    # -- proposals ----------------------------------------------------------------------------
    def propose(self, ctx: Context) -> list[Prompt]:
        """Instructions induced from ``n_demo_sets`` sets of training demonstrations."""
        out = []
        for _ in range(self.n_demo_sets):
            demos = format_demonstrations(ctx.sample_across_tasks(ctx.train, self.n_demos, lambda ex: ex.id),
                                          task_of=task_namer(ctx))
            # APE collects a pool before scoring any: a cap reached while collecting leaves the pool in hand
            replies = ctx.propose_within_cap(worded(INDUCTION_PROMPT, ctx.text_field).format(demos=demos),
                                             n=self.prompts_per_demo_set,
                                             temperature=self.temperature, max_tokens=INSTRUCTION_TOKENS)
            if replies is None:
                break
            out += self._candidates(ctx, "induce", replies, parent=None)
        return out

    def resample(self, ctx: Context, elites: Sequence[Prompt], n: int) -> list[Prompt]:
        """About ``n`` variations of the elites that keep their meaning, spread evenly over them."""
        if not elites or n <= 0:
            return []
        per_elite = math.ceil(n / len(elites))
        out = []
        for elite in elites:
            request = worded(RESAMPLE_PROMPT, ctx.text_field).format(instruction=ctx.text(elite))
            replies = ctx.propose_within_cap(request, n=per_elite, temperature=self.temperature,
                                             max_tokens=INSTRUCTION_TOKENS)
            if replies is None:
                break
            out += self._candidates(ctx, "resample", replies, parent=elite)
        return out

    @staticmethod
    def _candidates(ctx: Context, operator: str, replies: Sequence[str], parent: Prompt | None) -> list[Prompt]:
        base = parent or ctx.seed_prompt  # keeps the seed's template, system text and demos
        restated = _RESTATED_SYSTEM if ctx.text_field == "system" else _RESTATED
        out = []
        for reply in replies:
            text, how = parse_instruction(reply)
            text = clean_prompt_text(restated.sub("", text)) if text else None
            if text is None:
                ctx.skip(operator, f"no usable instruction ({how})", reply)
                continue
            child = ctx.with_text(base, text[0].upper() + text[1:])
            ctx.record(child, [parent] if parent else [], operator)
            out.append(child)
        return out

    # -- adaptive filtering -------------------------------------------------------------------
    def adaptive_filter(self, ctx: Context, candidates: Sequence[Prompt], examples: Sequence[Example],
                        keep: int) -> list[Prompt]:
        """The best ``keep`` candidates by multi-stage evaluation on non-overlapping subsets.

        Each stage scores the survivors on the next ``stage_examples`` examples of
        a fresh random order and keeps the ``stage_keep`` best by running mean;
        once ``keep`` or fewer are left they are scored on all remaining examples.
        """
        alive = list({p.id: p for p in candidates}.values())
        order = ctx.sample_across_tasks(examples, len(examples), lambda ex: ex.id)  # on a set, tasks take turns
        scores: dict[str, list[float]] = {p.id: [] for p in alive}
        done = 0
        while alive and done < len(order):
            size = len(order) - done if len(alive) <= keep else self.stage_examples
            stage = order[done:done + size]
            done += len(stage)
            for res in ctx.evaluate(alive, stage):
                scores[res.prompt.id] += [e.score for e in res.examples]
            alive.sort(key=lambda p: -sum(scores[p.id]) / len(scores[p.id]))  # stable: earlier wins ties
            if done < len(order):
                alive = alive[: max(keep, math.ceil(len(alive) * self.stage_keep))]
            ctx.note("filter_stage", n_examples=done, survivors=[p.id for p in alive])
            ctx.offer(alive[:keep])  # the leaders by running mean, for the Run to finish if the budget stops us
        return alive[:keep]
