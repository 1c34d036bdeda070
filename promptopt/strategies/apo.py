"""APO / ProTeGi: prompt optimisation with textual gradients and beam search.

Pryzant et al., "Automatic Prompt Optimization with 'Gradient Descent' and
Beam Search", EMNLP 2023 (arXiv:2305.03495). Each round, for every prompt in
the beam:

1. run it on a minibatch of training examples and collect its errors;
2. **gradients**: show the optimizer model groups of errors and ask why the
   prompt failed (natural-language criticism);
3. **edits**: ask the optimizer to rewrite the prompt to fix each criticism;
4. **Monte-Carlo expansion**: paraphrase each new prompt (and the parent)
   while keeping its meaning;
5. keep at most ``max_expansion_factor`` successors per parent.

The beam for the next round is chosen from parents + successors by
best-arm identification on dev samples (``selector``: UCB, UCB-E, successive
rejects, or brute force for comparison). ``"sr"`` is successive rejects as
Audibert & Bubeck (2010) define it, whom the paper cites: each phase adds
examples new to the survivors and rejects the lowest running mean. The paper's
reference code (microsoft/LMOps) rejects on a fresh sample per phase instead,
often of only 4 examples (21 of the 32 phases for a full beam's 36 candidates
under the default budget); ``"sr-protegi"`` runs that variant.

Cost drivers: ``rounds`` × ``beam_size`` × (``minibatch_size`` target calls +
``n_gradients`` × (2 + ``mc_samples_per_step``) optimizer calls) plus the
selection budget (``eval_rounds`` × ``eval_prompts_per_round`` ×
``samples_per_eval`` evaluations, of which repeats on a small dev split are
free). Needs only generation from both models; in ``choice`` answer mode the
target model must also score log-probabilities.

On a set of tasks it rewrites the shared system prompt (``ctx.text``): each
round's minibatch and each critique's errors are spread evenly over the tasks,
and every error shown to the optimizer names its task.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, ClassVar

from promptopt.evaluator import EvalResult
from promptopt.prompt import Prompt
from promptopt.strategies._bandits import SELECTORS
from promptopt.strategies._base import Scalable, Spend, StepPlan, Strategy
from promptopt.strategies._formatting import format_results
from promptopt.strategies._params import Interval, OneOf
from promptopt.strategies._parsing import parse_items, usable_prompts
from promptopt.strategies._task_sets import describe_task, task_namer

if TYPE_CHECKING:
    from promptopt.context import Context
    from promptopt.types import Example

__all__ = ["APO"]

GRADIENT_PROMPT = """I am improving a prompt for a language model.
Task: {description}

Current prompt:
"{prompt}"

With this prompt the model got these examples wrong:
{errors}

Give {n} reasons why the prompt could have led to these mistakes.
Put each reason between <START> and <END>."""

EDIT_PROMPT = """I am improving a prompt for a language model.
Task: {description}

Current prompt:
"{prompt}"

It gets these examples wrong:
{errors}

The problem with the prompt is: {gradient}

Using this, write {n} improved versions of the prompt.
Put each new prompt between <START> and <END>."""

PARAPHRASE_PROMPT = """Rewrite the following instruction in different words, keeping its meaning.

Instruction: {prompt}

Rewritten instruction:"""


# Reply lengths for the optimizer: room for a few reasons / prompts, not for rambling.
GRADIENT_TOKENS, EDIT_TOKENS, PARAPHRASE_TOKENS = 300, 400, 160


class APO(Strategy):
    """Textual-gradient beam search (APO / ProTeGi), with the paper's defaults.

    Args:
        beam_size: prompts kept after each round.
        rounds: expansion rounds.
        minibatch_size: training examples each beam prompt is run on to find errors.
        n_gradients: error groups (one critique request each) per prompt.
        errors_per_gradient: errors shown in one critique request.
        gradients_per_error: reasons asked for per critique request.
        steps_per_gradient: rewritten prompts asked for per reason.
        mc_samples_per_step: paraphrases per new prompt (Monte-Carlo expansion).
        max_expansion_factor: successors kept per parent (sampled down).
        selector: ``"ucb"``, ``"ucb-e"``, ``"sr"`` (successive rejects, Audibert &
            Bubeck), ``"sr-protegi"`` (the reference code's variant: a fresh sample
            per phase, rejection on that sample alone) or ``"bf"`` (brute force).
        eval_rounds: bandit rounds (UCB).
        eval_prompts_per_round: arms pulled per bandit round (UCB).
        samples_per_eval: examples per pull; the selection budget is
            ``eval_rounds * eval_prompts_per_round * samples_per_eval`` evaluations.
        ucb_c: UCB exploration constant.
        temperature: optimizer sampling temperature.

    Example:
        >>> APO(beam_size=2, rounds=1).get_params()["beam_size"]
        2
    """

    name: ClassVar[str] = "apo"
    supports_task_sets: ClassVar[bool] = True
    summary: ClassVar[str] = ("textual gradients: critique errors, edit, paraphrase; beam search "
                              "with bandit selection (Pryzant et al., 2023)")
    constraints: ClassVar[dict[str, Any]] = {
        "beam_size": Interval(int, 1), "rounds": Interval(int, 0), "minibatch_size": Interval(int, 1),
        "n_gradients": Interval(int, 0), "errors_per_gradient": Interval(int, 1),
        "gradients_per_error": Interval(int, 1), "steps_per_gradient": Interval(int, 1),
        "mc_samples_per_step": Interval(int, 0), "max_expansion_factor": Interval(int, 1),
        "selector": OneOf(tuple(SELECTORS)), "eval_rounds": Interval(int, 1),
        "eval_prompts_per_round": Interval(int, 1), "samples_per_eval": Interval(int, 1),
        "ucb_c": Interval(float, 0), "temperature": Interval(float, 0, 2),
    }
    #: scaled to a budget: the minibatch first, then the beam and the successors each parent keeps
    scalable: ClassVar[tuple[Scalable, ...]] = (
        Scalable("minibatch_size", 16), Scalable("beam_size", 1, stage=1), Scalable("max_expansion_factor", 3, stage=1))

    def __init__(self, *, beam_size: int = 4, rounds: int = 6, minibatch_size: int = 64,
                 n_gradients: int = 4, errors_per_gradient: int = 4, gradients_per_error: int = 1,
                 steps_per_gradient: int = 1, mc_samples_per_step: int = 2, max_expansion_factor: int = 8,
                 selector: str = "ucb", eval_rounds: int = 8, eval_prompts_per_round: int = 8,
                 samples_per_eval: int = 32, ucb_c: float = 1.0, temperature: float = 0.7) -> None:
        self.beam_size = beam_size
        self.rounds = rounds
        self.minibatch_size = minibatch_size
        self.n_gradients = n_gradients
        self.errors_per_gradient = errors_per_gradient
        self.gradients_per_error = gradients_per_error
        self.steps_per_gradient = steps_per_gradient
        self.mc_samples_per_step = mc_samples_per_step
        self.max_expansion_factor = max_expansion_factor
        self.selector = selector
        self.eval_rounds = eval_rounds
        self.eval_prompts_per_round = eval_prompts_per_round
        self.samples_per_eval = samples_per_eval
        self.ucb_c = ucb_c
        self.temperature = temperature

    def optimize(self, ctx: Context) -> Sequence[Prompt]:
        ctx.record(ctx.seed_prompt, operator="seed")
        beam = [ctx.seed_prompt]
        for round_index in range(self.rounds):
            ctx.note("round", index=round_index, beam=[p.id for p in beam])
            minibatch = ctx.sample_across_tasks(ctx.train, self.minibatch_size, lambda ex: ex.id)
            candidates = list(beam)
            for parent in beam:
                candidates += self.expand(ctx, parent, minibatch)
            candidates = list({p.id: p for p in candidates}.values())
            beam = self.select(ctx, candidates)
        return beam

    def finalist_gap(self, n_dev: int) -> int:
        """UCB pulls a candidate on ``samples_per_eval`` dev examples at a time; successive
        rejects and brute force split their budget among the candidates, so a candidate's
        first score can cover any part of dev."""
        if self.selector in ("ucb", "ucb-e"):
            return max(0, n_dev - self.samples_per_eval)
        return n_dev

    def step_plan(self, n_dev: int, n_train: int, *, n_tasks: int = 1) -> StepPlan:
        """One round with a full beam: each parent runs on a minibatch and is expanded (critiques,
        edits, paraphrases), then the selection scores the new successors on dev samples."""
        reasons = self.n_gradients * self.gradients_per_error  # one edit request each
        edited = reasons * self.steps_per_gradient
        per_parent = self.n_gradients + reasons + (edited + 1) * self.mc_samples_per_step
        new = self.beam_size * min(self.max_expansion_factor, edited * (1 + self.mc_samples_per_step)
                                   + self.mc_samples_per_step)
        candidates = self.beam_size + new
        if self.selector in ("ucb", "ucb-e"):  # repeated pulls of a prompt on a small dev split are free
            pulls = self.eval_rounds * min(self.eval_prompts_per_round, candidates)
            selection = min(pulls * min(self.samples_per_eval, n_dev), new * n_dev)
            full = min(new, pulls) if self.samples_per_eval >= n_dev else 0
        else:
            budget = self.eval_rounds * self.eval_prompts_per_round * self.samples_per_eval
            selection = min(budget, new * n_dev)
            full = new if budget >= candidates * n_dev else 0
        return StepPlan("round", Spend(example_evals=self.beam_size * min(self.minibatch_size, n_train) + selection,
                                       optimizer_calls=self.beam_size * per_parent, new_full=full),
                        paper_steps=self.rounds)

    # -- expansion ----------------------------------------------------------------------------
    def expand(self, ctx: Context, parent: Prompt, minibatch: Sequence[Example]) -> list[Prompt]:
        """Gradient edits and paraphrases of ``parent``, at most ``max_expansion_factor``."""
        result = ctx.evaluate([parent], minibatch)[0]
        edited: list[str] = []
        for gradient, errors in self.gradients(ctx, parent, result, minibatch):
            edited += self.apply_gradient(ctx, parent, gradient, errors)
        paraphrased: list[str] = []
        for text in edited + [ctx.text(parent)]:
            paraphrased += self.paraphrase(ctx, text)
        texts = [t for t in dict.fromkeys(edited + paraphrased) if t != ctx.text(parent)]
        if len(texts) > self.max_expansion_factor:
            texts = ctx.sample(texts, self.max_expansion_factor)
        children = []
        for text in texts:
            child = ctx.with_text(parent, text)
            ctx.record(child, [parent], "edit" if text in edited else "paraphrase")
            children.append(child)
        return children

    def gradients(self, ctx: Context, parent: Prompt, result: EvalResult,
                  minibatch: Sequence[Example]) -> list[tuple[str, str]]:
        """(criticism, error text) pairs from groups of the parent's errors."""
        by_id = {ex.id: ex for ex in minibatch}
        errors = list(result.errors)
        if not errors:
            return []
        out = []
        for _ in range(self.n_gradients):
            group = ctx.sample_across_tasks(errors, self.errors_per_gradient, lambda r: r.example_id)
            error_text = format_results(group, by_id, task_of=task_namer(ctx))
            reasons = critique(ctx, ctx.text(parent), error_text, description=describe_task(ctx),
                               n=self.gradients_per_error, temperature=self.temperature)
            out += [(r, error_text) for r in reasons]
        return out

    def apply_gradient(self, ctx: Context, parent: Prompt, gradient: str, errors: str) -> list[str]:
        return edit_from_critique(ctx, ctx.text(parent), errors, gradient, description=describe_task(ctx),
                                  n=self.steps_per_gradient, temperature=self.temperature)

    def paraphrase(self, ctx: Context, text: str) -> list[str]:
        if self.mc_samples_per_step == 0:
            return []
        replies = ctx.propose(PARAPHRASE_PROMPT.format(prompt=text), n=self.mc_samples_per_step,
                              temperature=self.temperature, max_tokens=PARAPHRASE_TOKENS)
        out = []
        for reply in replies:
            out += usable_prompts(ctx, "paraphrase", reply)[:1]
        return out

    # -- selection ----------------------------------------------------------------------------
    def select(self, ctx: Context, candidates: list[Prompt]) -> list[Prompt]:
        """The next beam: the ``beam_size`` best candidates by bandit estimate on dev."""
        if len(candidates) <= 1:
            return candidates

        def evaluate(prompts: Sequence[Prompt], examples: Sequence[Example]) -> list[float]:
            return [r.mean for r in ctx.evaluate(prompts, examples)]

        budget = self.eval_rounds * self.eval_prompts_per_round * self.samples_per_eval
        scores = SELECTORS[self.selector](
            candidates, ctx.dev, evaluate, ctx.rng, budget=budget, keep=self.beam_size,
            rounds=self.eval_rounds, prompts_per_round=self.eval_prompts_per_round,
            samples_per_eval=self.samples_per_eval, c=self.ucb_c, variant=self.selector)
        order = sorted(range(len(candidates)), key=lambda i: (-scores[i], i))
        ctx.note("selection", selector=self.selector,
                 scores={candidates[i].id: scores[i] for i in order})
        return [candidates[i] for i in order[: self.beam_size]]


# -- the critique and the edit, for any text (MetaSPO asks them about a system prompt and about
# each task's instruction) ------------------------------------------------------------------------
def critique(ctx: Context, text: str, errors: str, *, description: str, n: int, temperature: float) -> list[str]:
    """Up to ``n`` reasons (textual gradients) why ``text`` led to ``errors``, asked of the optimizer;
    an empty reply is logged as a ``skip``."""
    reply = ctx.propose(GRADIENT_PROMPT.format(description=description, prompt=text, errors=errors, n=n),
                        temperature=temperature, max_tokens=GRADIENT_TOKENS)[0]
    reasons, _ = parse_items(reply)
    if not reasons:
        ctx.skip("gradient", "empty reply", reply)
    return reasons[:n]


def edit_from_critique(ctx: Context, text: str, errors: str, gradient: str, *, description: str, n: int,
                       temperature: float) -> list[str]:
    """Up to ``n`` rewrites of ``text`` that fix the criticism ``gradient``, asked of the optimizer."""
    reply = ctx.propose(EDIT_PROMPT.format(description=description, prompt=text, errors=errors,
                                           gradient=gradient, n=n), temperature=temperature, max_tokens=EDIT_TOKENS)[0]
    return usable_prompts(ctx, "edit", reply)[:n]
