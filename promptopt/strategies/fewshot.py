"""Few-shot demonstration selection as a search dimension (DSPy / MIPROv2).

Khattab et al., "DSPy: Compiling Declarative Language Model Calls into
Self-Improving Pipelines", 2023 (arXiv:2310.03714): LabeledFewShot, random
search over demo sets, and BootstrapFewShot (run the program on training
inputs and keep its own traces that pass the metric as demonstrations).
Opsahl-Ong et al., "Optimizing Instructions and Demonstrations for
Multi-Stage Language Model Programs", 2024 (arXiv:2406.11695): MIPROv2, which
proposes instructions grounded in training data and searches instruction ×
demo-set combinations with a Bayesian (TPE) surrogate on minibatches.

Three ``method`` values:

* ``"random"`` — ``n_trials`` random sets of ``n_demos`` labelled training
  examples (one per label in turn where the task has labels);
* ``"bootstrap"`` — run the seed prompt on training examples, keep the
  model's *own* outputs that the metric scores correct, and search random sets
  of those;
* ``"joint"`` (default, MIPROv2) — instruction pool = the seed + proposals of
  the optimizer shown training exemplars and a random writing tip; demo-set
  pool = the seed's own demos, a labelled set and bootstrapped sets (filled up
  with labelled demos, as BootstrapFewShot does); a categorical TPE
  (:mod:`promptopt.strategies._tpe`) picks the combination for each trial.

Every trial is scored on a fresh dev minibatch; every ``full_eval_steps``
trials (and at the end) the combination with the best mean minibatch score
not yet fully scored is re-scored on the whole dev split, and those are the
finalists. The Run then picks by full-dev score.

Cost drivers: ``n_trials`` × ``minibatch_size`` target calls (× labels in
choice mode) plus about ``n_trials / full_eval_steps + 1`` full dev passes;
bootstrapping runs the seed on ``n_demo_sets × n_demos`` training examples;
the joint mode adds ``n_instructions - 1`` optimizer calls. Needs generation
only (scoring too in choice answer mode).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

from promptopt.prompt import Demo, Prompt
from promptopt.strategies._base import Spend, StepPlan, Strategy
from promptopt.strategies._formatting import format_demonstrations
from promptopt.strategies._params import Interval, OneOf
from promptopt.strategies._parsing import clean_prompt_text, parse_items
from promptopt.strategies._tpe import CategoricalTPE

if TYPE_CHECKING:
    from promptopt.context import Context
    from promptopt.types import Example

__all__ = ["FewShot", "round_robin_by_label"]

T = TypeVar("T")
Config = tuple[int, int]  # (instruction index, demo-set index)

PROPOSE_PROMPT = """I need an instruction that tells a language model how to do a task.
Task: {description}

Inputs of the task and the outputs we want:
{examples}

The instruction used so far: "{instruction}"
{tip}
Write one new instruction for this task. Put it between <START> and <END>."""

# MIPROv2 samples one writing tip per proposal; these are our own wording of the same ideas.
TIPS = ("", "Feel free to be creative in how you phrase it.", "Keep it short and simple.",
        "Describe the task and what a good answer looks like in some detail.",
        "Make clear that the answers matter and must be correct.",
        "Open with a persona suited to the task.")
PROPOSE_TOKENS = 200


def round_robin_by_label(items: Sequence[T], label: Callable[[T], str | None], k: int) -> list[T]:
    """Up to ``k`` items, taking one per label in turn so that different labels are represented.

    Labels take turns in the order they first occur in ``items``, and within a
    label the items keep their order, so a caller puts preferred items first.

    Example:
        >>> round_robin_by_label(["a1", "a2", "b1", "a3"], lambda s: s[0], 3)
        ['a1', 'b1', 'a2']
    """
    groups: dict[str | None, deque[T]] = {}
    for item in items:
        groups.setdefault(label(item), deque()).append(item)
    out: list[T] = []
    while len(out) < k and any(groups.values()):
        for queue in groups.values():
            if queue and len(out) < k:
                out.append(queue.popleft())
    return out


class FewShot(Strategy):
    """Search over demonstration sets (and, in ``joint`` mode, instructions), DSPy/MIPROv2-style.

    Args:
        method: ``"joint"`` (MIPROv2), ``"random"`` (random labelled sets) or
            ``"bootstrap"`` (sets of the model's own correct outputs).
        n_demos: demonstrations per set (MIPROv2 ``max_bootstrapped_demos`` =
            ``max_labeled_demos`` = 4).
        n_demo_sets: demo-set candidates in joint mode (MIPROv2 ``auto="light"``: 6).
        n_instructions: instruction candidates in joint mode, the seed included
            (``auto="light"`` with demos: 6 / 2 = 3).
        n_trials: minibatch trials (``auto="light"``: max(2·2·log2 6, 1.5·6) = 10).
        minibatch_size: dev examples per trial (MIPROv2 ``minibatch_size`` = 35).
        full_eval_steps: re-score the best combination on full dev every this
            many trials (MIPROv2 ``minibatch_full_eval_steps`` = 5).
        n_startup_trials: random trials before TPE models the results. Ours:
            Optuna's default of 10 would leave no model-based trial at 10 trials.
        n_exemplars: training examples shown per instruction proposal
            (MIPROv2 ``view_data_batch_size`` = 10).
        temperature: optimizer sampling temperature (MIPROv2 ``init_temperature`` = 0.5).

    Example:
        >>> FewShot(method="random", n_demos=2).get_params()["n_demos"]
        2
    """

    name: ClassVar[str] = "fewshot"
    summary: ClassVar[str] = ("demonstration selection: random, bootstrapped, or joint with instructions via "
                              "TPE (DSPy, Khattab et al., 2023; MIPROv2, Opsahl-Ong et al., 2024)")
    constraints: ClassVar[dict[str, Any]] = {
        "method": OneOf(("joint", "random", "bootstrap")), "n_demos": Interval(int, 1),
        "n_demo_sets": Interval(int, 2), "n_instructions": Interval(int, 1), "n_trials": Interval(int, 1),
        "minibatch_size": Interval(int, 1), "full_eval_steps": Interval(int, 1),
        "n_startup_trials": Interval(int, 0), "n_exemplars": Interval(int, 1),
        "temperature": Interval(float, 0, 2),
    }

    def __init__(self, *, method: str = "joint", n_demos: int = 4, n_demo_sets: int = 6, n_instructions: int = 3,
                 n_trials: int = 10, minibatch_size: int = 35, full_eval_steps: int = 5, n_startup_trials: int = 4,
                 n_exemplars: int = 10, temperature: float = 0.5) -> None:
        self.method = method
        self.n_demos = n_demos
        self.n_demo_sets = n_demo_sets
        self.n_instructions = n_instructions
        self.n_trials = n_trials
        self.minibatch_size = minibatch_size
        self.full_eval_steps = full_eval_steps
        self.n_startup_trials = n_startup_trials
        self.n_exemplars = n_exemplars
        self.temperature = temperature

    def finalist_gap(self, n_dev: int) -> int:
        """A combination tried once has ``minibatch_size`` dev examples scored."""
        return max(0, n_dev - self.minibatch_size)

    def step_plan(self, n_dev: int, n_train: int, *, n_tasks: int = 1) -> StepPlan:
        """One trial: a combination on a dev minibatch, and every ``full_eval_steps`` trials the best
        one on the rest of dev. Before them, bootstrapping runs the seed on training examples and
        joint mode asks for ``n_instructions - 1`` instructions."""
        batch = min(self.minibatch_size, n_dev)
        full = 1.0 if batch == n_dev else 1 / self.full_eval_steps
        setup = Spend(example_evals=min(self.n_demo_sets * self.n_demos, n_train) if self.method != "random" else 0,
                      optimizer_calls=self.n_instructions - 1 if self.method == "joint" else 0)
        return StepPlan("trial", Spend(example_evals=batch + (n_dev - batch) / self.full_eval_steps, new_full=full),
                        paper_steps=self.n_trials, setup=setup)

    def optimize(self, ctx: Context) -> Sequence[Prompt]:
        seed = ctx.seed_prompt
        if self.method == "random":
            return self.search(ctx, [seed], [self.labeled_set(ctx, self.n_demos) for _ in range(self.n_trials)])
        pool = self.bootstrap(ctx)
        if self.method == "bootstrap":
            if not pool:
                return [seed]
            sets = [self.sample_set(ctx, pool, self.n_demos) for _ in range(self.n_trials)]
            return self.search(ctx, [seed], sets)
        instructions = [seed] + self.propose_instructions(ctx)
        return self.search(ctx, instructions, self.demo_candidates(ctx, pool), joint=True)

    # -- demonstrations -----------------------------------------------------------------------
    def bootstrap(self, ctx: Context) -> list[tuple[Example, Demo]]:
        """Run the seed on training examples; keep (example, the model's own correct output)."""
        examples = ctx.sample(ctx.train, self.n_demo_sets * self.n_demos)
        result = ctx.evaluate([ctx.seed_prompt], examples)[0]
        pool = []
        for ex, res in zip(examples, result.examples, strict=True):
            if res.score < 1.0 or res.answer is None:
                continue
            # Choice mode has no free text: the model's output is the verbalizer of the label it chose.
            output = res.output.strip() if ctx.answer_mode == "generate" else ctx.task.verbalize(res.answer)
            pool.append((ex, Demo(ex.input, output)))
        ctx.note("bootstrap", n_run=len(examples), n_kept=len(pool))
        return pool

    def labeled_set(self, ctx: Context, k: int, exclude: frozenset[str] = frozenset()) -> tuple[Demo, ...]:
        """``k`` training examples with their gold outputs, different labels in turn."""
        shuffled = [ex for ex in ctx.sample(ctx.train, len(ctx.train)) if ex.id not in exclude]
        chosen = round_robin_by_label(shuffled, self._label_of(ctx), k)
        return tuple(Demo(ex.input, ctx.task.gold_text(ex)) for ex in chosen)

    def sample_set(self, ctx: Context, pool: Sequence[tuple[Example, Demo]], k: int) -> tuple[Demo, ...]:
        """``k`` bootstrapped demos, different labels in turn."""
        label = self._label_of(ctx)
        chosen = round_robin_by_label(ctx.sample(pool, len(pool)), lambda pair: label(pair[0]), k)
        return tuple(demo for _, demo in chosen)

    def demo_candidates(self, ctx: Context, pool: Sequence[tuple[Example, Demo]]) -> list[tuple[Demo, ...]]:
        """MIPROv2's demo-set pool: the seed's demos, a labelled set, then bootstrapped sets.

        The first bootstrapped set asks for ``n_demos`` bootstrapped demos, later
        ones for a random number in [1, ``n_demos``]; labelled demos fill each set
        up to ``n_demos`` when the pool runs short (as in DSPy's BootstrapFewShot).
        """
        sets = [ctx.seed_prompt.demos, self.labeled_set(ctx, self.n_demos)]
        for i in range(self.n_demo_sets - 2):
            size = self.n_demos if i == 0 else ctx.rng.randint(1, self.n_demos)
            boot = self.sample_set(ctx, pool, size)
            used = frozenset(ex.id for ex, demo in pool if demo in boot)
            sets.append(boot + self.labeled_set(ctx, self.n_demos - len(boot), exclude=used))
        return sets

    @staticmethod
    def _label_of(ctx: Context) -> Callable[[Example], str | None]:
        has_labels = ctx.task.labels is not None
        return lambda ex: ex.target if has_labels else None

    # -- instructions -------------------------------------------------------------------------
    def propose_instructions(self, ctx: Context) -> list[Prompt]:
        """``n_instructions - 1`` instructions grounded in training exemplars, one tip each."""
        seed = ctx.seed_prompt
        out: list[Prompt] = []
        for _ in range(self.n_instructions - 1):
            reply = ctx.propose(PROPOSE_PROMPT.format(
                description=ctx.task.description or ctx.task.name, instruction=seed.instruction,
                examples=format_demonstrations(ctx.sample(ctx.train, self.n_exemplars)),
                tip=ctx.rng.choice(TIPS)), temperature=self.temperature, max_tokens=PROPOSE_TOKENS)[0]
            items, how = parse_items(reply)
            text = next((c for c in (clean_prompt_text(i) for i in items) if c), None)
            if text is None or text in {p.instruction for p in [seed, *out]}:
                ctx.skip("propose", f"no new usable instruction ({how})", reply)
                continue
            out.append(seed.with_instruction(text))
            ctx.record(out[-1], [seed], "propose")
        return out

    # -- search -------------------------------------------------------------------------------
    def search(self, ctx: Context, instructions: Sequence[Prompt], demo_sets: Sequence[tuple[Demo, ...]], *,
               joint: bool = False) -> list[Prompt]:
        """Minibatch trials over (instruction, demo set); the best few re-scored on full dev, best first.

        Joint search lets TPE choose each trial; otherwise every demo set is tried
        once, in order.
        """
        demo_sets = list(dict.fromkeys(demo_sets))
        tpe = CategoricalTPE([len(instructions), len(demo_sets)], ctx.rng,
                             n_startup_trials=self.n_startup_trials) if joint else None
        n_trials = self.n_trials if joint else len(demo_sets)
        minibatch: dict[Config, list[float]] = {}
        full: dict[Config, float] = {}
        for trial in range(n_trials):
            config = self._next_config(tpe, trial)
            prompt = self.build(ctx, instructions, demo_sets, config)
            score = ctx.evaluate([prompt], ctx.sample(ctx.dev, self.minibatch_size))[0].mean
            if tpe is not None:
                tpe.tell(config, score)
            minibatch.setdefault(config, []).append(score)
            ctx.note("trial", index=trial, instruction=config[0], demo_set=config[1], prompt_id=prompt.id,
                     score=score)
            if (trial + 1) % self.full_eval_steps == 0 or trial == n_trials - 1:
                self.full_evaluation(ctx, instructions, demo_sets, minibatch, full)
        ranked = sorted(full, key=lambda c: -full[c])
        return [self.build(ctx, instructions, demo_sets, c) for c in ranked]

    @staticmethod
    def _next_config(tpe: CategoricalTPE | None, trial: int) -> Config:
        if tpe is None:
            return 0, trial  # a sweep: every demo set once, in order
        if trial == 0:
            return 0, 0  # MIPROv2 starts from the unchanged program
        instruction, demo_set = tpe.suggest()
        return instruction, demo_set

    def full_evaluation(self, ctx: Context, instructions: Sequence[Prompt], demo_sets: Sequence[tuple[Demo, ...]],
                        minibatch: dict[Config, list[float]], full: dict[Config, float]) -> None:
        """Score on all of dev the combination with the best mean minibatch score not yet fully scored."""
        pending = [c for c in minibatch if c not in full]
        if not pending:
            return
        best = max(pending, key=lambda c: sum(minibatch[c]) / len(minibatch[c]))
        full[best] = ctx.evaluate([self.build(ctx, instructions, demo_sets, best)])[0].mean
        ctx.note("full_eval", instruction=best[0], demo_set=best[1], score=full[best])

    @staticmethod
    def build(ctx: Context, instructions: Sequence[Prompt], demo_sets: Sequence[tuple[Demo, ...]],
              config: Config) -> Prompt:
        """The candidate for one combination (recorded on first sight)."""
        parent = instructions[config[0]]
        prompt = replace(parent, demos=demo_sets[config[1]])
        if prompt.id != parent.id:
            ctx.record(prompt, [parent], "demos")
        return prompt
