"""PromptWizard: mutate with thinking styles, critique and refine, then add reasoned demos and a persona.

Agarwal et al., "PromptWizard: Task-Aware Prompt Optimization Framework",
Microsoft, 2024 (arXiv:2405.18369); defaults from the paper's setup (Sec. 4)
and the reference configuration (microsoft/PromptWizard,
``demos/*/configs/promptopt_config.yaml``). The search, in the paper's order:

1. **Mutate** (Sec. 3.1): each of ``mutation_rounds`` optimizer calls rewrites
   the current instruction into ``style_variation`` variants, each mixing in a
   thinking style (a cognitive heuristic) from a fixed list.
2. **Score**: every candidate answers minibatches of ``questions_batch_size``
   training questions until it gets one wrong, ``min_correct_count`` batches
   right, or ``max_eval_batches`` run out; its score is the fraction of batches
   answered right. The ``top_n`` best are kept (longer wins ties).
3. **Critique and refine**: the optimizer lists what the instruction got wrong
   on the examples it failed (or, if it failed none, how it could do better
   still) and rewrites it from that critique; refinements are scored and the
   best instruction seeds the next of ``mutate_refine_iterations`` rounds.
4. **Examples** (Sec. 3.2): the best instruction runs on the ``seen_set_size``
   training examples; ``few_shot_count`` of them are chosen, the ones it got
   wrong first and, where the task has labels, different labels in turn.
   ``refine_task_eg_iterations`` coin flips then either refine the instruction
   again from a critique on those examples or pick the examples again.
5. **Reasoning chains**: the optimizer explains how each chosen input leads to
   its gold answer; a chain is kept as the demo's output only when the task's
   own parser and metric read the gold answer from it, otherwise the demo
   keeps the plain gold answer.
6. **Expert persona**: the optimizer describes the expert for the task; it
   becomes the system prompt.

The finalists are the combined prompt (instruction + reasoned demos + persona)
and the best instruction-only prompts, so the Run's dev score decides whether
demos and persona help. An optimizer call cap reached in steps 5 or 6 does
not end the search: the demos keep their gold answers, the system prompt stays
the prompt's own, and the combined prompt is still built and scored (the Run
reports the cap). Deviation from the reference code: the paper's
"example branch" synthesises new examples with the optimizer; here it picks
real training examples again, so every demo's gold answer is trustworthy.

Cost drivers: per round, ``mutation_rounds`` + 2 × ``top_n`` optimizer calls
and up to ``(mutation_rounds × style_variation + top_n + 1) ×
(min_correct_count + 1) × questions_batch_size`` target calls (× labels in
choice mode); then ``seen_set_size`` target calls, up to
2 × ``refine_task_eg_iterations`` + ``few_shot_count`` + 1 optimizer calls.
Needs generation only (scoring too in choice answer mode).

On a set of tasks it runs the instruction part (steps 1-3) on the shared system
prompt (``ctx.text``): the seen examples and every scoring batch are spread
evenly over the tasks (a batch of one question comes from any task alike), and
critiques name each example's task. Steps 4-6 are left out:
demonstrations belong to each task's own prompt, not to the shared system
prompt, and the expert persona would replace the very text the search wrote.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, ClassVar

from promptopt.evaluator import ExampleResult
from promptopt.prompt import Demo, Prompt
from promptopt.strategies._base import Spend, StepPlan, Strategy
from promptopt.strategies._formatting import format_results, shorten
from promptopt.strategies._params import Interval, OneOf
from promptopt.strategies._parsing import clean_prompt_text, parse_items, usable_prompts
from promptopt.strategies._task_sets import describe_task, task_namer, worded
from promptopt.strategies.fewshot import round_robin_by_label

if TYPE_CHECKING:
    from promptopt.context import Context
    from promptopt.types import Example

__all__ = ["THINKING_STYLES", "PromptWizard"]

#: Cognitive heuristics mixed into mutations (our wording of the kinds of styles the paper uses).
THINKING_STYLES = (
    "Design a small experiment that would reveal the answer.",
    "List several ways to solve the problem and try each in turn.",
    "Decide how you would know you are making progress.",
    "Simplify the problem until it is easy, then add the details back.",
    "Name the assumptions the problem rests on and check them.",
    "Weigh the risks and weak points of each possible answer.",
    "Look at the problem from another point of view.",
    "Break the problem into smaller parts and solve them one at a time.",
    "Think critically: question the evidence and look for flaws in the reasoning.",
    "Think creatively: look for an unusual way in.",
    "Imagine how a group of experts would discuss the problem.",
    "Treat the problem as part of a larger system and trace its causes.",
    "Step back and reflect on your own biases before answering.",
    "Find the core question that must be answered.",
    "Ask what causes or factors lie underneath the problem.",
    "Recall similar problems and what worked for them.",
    "Anticipate the obstacles an answer might run into.",
    "Ask which facts in the input matter most and why.",
    "Decide whether the problem needs specific expertise, and use it.",
    "Consider what kind of answer this kind of question usually has.",
    "Suppose the obvious answer is wrong: what else could it be?",
    "Ignore the current approach and solve the problem afresh.",
    "Think step by step.",
    "Make a plan first, then carry it out and explain each step.",
)

MUTATE_PROMPT = """I am improving an instruction for a language model.
Task: {description}
Current instruction: "{instruction}"

Ways of thinking about a problem:
{styles}

Write {n} variations of the current instruction. Each one keeps its meaning but mixes in one of the ways of thinking.
Put each variation between <START> and <END>."""

CRITIQUE_PROMPT = """I am improving an instruction for a language model.
Task: {description}
Current instruction: "{instruction}"

Examples answered with this instruction (expected answer and the model's answer):
{examples}

Give the reasons why the instruction could have led to the wrong answers.
Put each reason between <START> and <END>."""

POSITIVE_CRITIQUE_PROMPT = """I am improving an instruction for a language model.
Task: {description}
Current instruction: "{instruction}"

The model answered these examples correctly with it:
{examples}

Looking at what kind of examples these are and how hard they are, suggest how the instruction could be made
better still for new examples. Put each suggestion between <START> and <END>."""

REFINE_PROMPT = """I am improving an instruction for a language model.
Task: {description}
Current instruction: "{instruction}"

Examples:
{examples}

Feedback on the instruction:
{critique}

Using the feedback, write one improved instruction. Put it between <START> and <END>."""

REASON_PROMPT = """Task: {description}
Instruction: {instruction}

Input: {input}
Correct answer: {answer}

Explain briefly, step by step, how to get from the input to the correct answer.
Finish with the line "Answer: {answer}"."""

EXPERT_PROMPT = """In two or three sentences, describe the expert best suited to do the task below.
Write in the second person, starting with "You are".

Task: {description}
Instruction: {instruction}

Expert description:"""

MUTATE_TOKENS, CRITIQUE_TOKENS, REFINE_TOKENS, REASON_TOKENS, EXPERT_TOKENS = 500, 300, 200, 200, 150


@dataclass(frozen=True)
class Scored:
    """A candidate's minibatch score and the examples to critique it on."""

    prompt: Prompt
    score: float
    shown: tuple[ExampleResult, ...]  # its errors in the failing batch, else the batches it got right
    failed: bool


class PromptWizard(Strategy):
    """PromptWizard (Agarwal et al., 2024) with the reference configuration's defaults.

    Args:
        mutate_refine_iterations: rounds of mutate → score → critique/refine (3).
        mutation_rounds: mutation calls per round (3).
        style_variation: variants asked for per mutation call, and thinking styles shown (5).
        questions_batch_size: training questions per scoring batch (1).
        min_correct_count: batches right after which a candidate stops being scored (3).
        max_eval_batches: most scoring batches per candidate (6).
        top_n: best candidates kept and refined per round (1).
        refine_instruction: whether to critique and refine after mutating (True).
        refine_task_eg_iterations: coin-flip rounds refining instruction or examples (3).
        seen_set_size: training examples the search draws from (25).
        few_shot_count: demonstrations in the final prompt (5).
        generate_reasoning: whether demos get optimizer-written reasoning chains (True).
        generate_expert_identity: whether to write an expert persona system prompt (True).
        temperature: optimizer sampling temperature (ours; the reference leaves it to the model config).

    Example:
        >>> PromptWizard(top_n=2).get_params()["mutation_rounds"]
        3
    """

    name: ClassVar[str] = "promptwizard"
    supports_task_sets: ClassVar[bool] = True
    summary: ClassVar[str] = ("mutate with thinking styles, critique and refine, reasoned demos and an expert "
                              "persona (Agarwal et al., 2024)")
    constraints: ClassVar[dict[str, Any]] = {
        "mutate_refine_iterations": Interval(int, 0), "mutation_rounds": Interval(int, 0),
        "style_variation": Interval(int, 1, len(THINKING_STYLES)), "questions_batch_size": Interval(int, 1),
        "min_correct_count": Interval(int, 1), "max_eval_batches": Interval(int, 1), "top_n": Interval(int, 1),
        "refine_instruction": OneOf((True, False)), "refine_task_eg_iterations": Interval(int, 0),
        "seen_set_size": Interval(int, 1), "few_shot_count": Interval(int, 0),
        "generate_reasoning": OneOf((True, False)), "generate_expert_identity": OneOf((True, False)),
        "temperature": Interval(float, 0, 2),
    }

    def __init__(self, *, mutate_refine_iterations: int = 3, mutation_rounds: int = 3, style_variation: int = 5,
                 questions_batch_size: int = 1, min_correct_count: int = 3, max_eval_batches: int = 6,
                 top_n: int = 1, refine_instruction: bool = True, refine_task_eg_iterations: int = 3,
                 seen_set_size: int = 25, few_shot_count: int = 5, generate_reasoning: bool = True,
                 generate_expert_identity: bool = True, temperature: float = 0.7) -> None:
        self.mutate_refine_iterations = mutate_refine_iterations
        self.mutation_rounds = mutation_rounds
        self.style_variation = style_variation
        self.questions_batch_size = questions_batch_size
        self.min_correct_count = min_correct_count
        self.max_eval_batches = max_eval_batches
        self.top_n = top_n
        self.refine_instruction = refine_instruction
        self.refine_task_eg_iterations = refine_task_eg_iterations
        self.seen_set_size = seen_set_size
        self.few_shot_count = few_shot_count
        self.generate_reasoning = generate_reasoning
        self.generate_expert_identity = generate_expert_identity
        self.temperature = temperature

    def finalist_gap(self, n_dev: int) -> int:
        """Candidates are scored on training examples only: a leader lacks all of dev."""
        return n_dev

    def step_plan(self, n_dev: int, n_train: int, *, n_tasks: int = 1) -> StepPlan:
        """One mutate/refine round: the current instruction and its variants, then the refined
        ``top_n``, each answering up to ``min_correct_count`` batches. After the last round: the
        examples (half the coin flips refine, two calls each), chains, persona, three finalists on dev;
        on a set of tasks only the best system prompt on dev (examples and persona are skipped there)."""
        batches = min(self.max_eval_batches, self.min_correct_count) * self.questions_batch_size
        refined = self.top_n if self.refine_instruction else 0
        variants = self.mutation_rounds * self.style_variation
        examples = min(self.seen_set_size, n_train) + self.refine_task_eg_iterations * self.few_shot_count
        decorate = self.few_shot_count * self.generate_reasoning + self.generate_expert_identity
        finish = Spend(example_evals=n_dev, new_full=1) if n_tasks > 1 else Spend(
            example_evals=examples + 3 * n_dev, new_full=3, optimizer_calls=self.refine_task_eg_iterations + decorate)
        return StepPlan("round", Spend(example_evals=(1 + variants + refined) * batches,
                                       optimizer_calls=self.mutation_rounds + 2 * refined),
                        paper_steps=self.mutate_refine_iterations, finish=finish)

    def optimize(self, ctx: Context) -> Sequence[Prompt]:
        seen = ctx.sample_across_tasks(ctx.train, self.seen_set_size, lambda ex: ex.id)
        best = ctx.seed_prompt
        for round_index in range(self.mutate_refine_iterations):
            ctx.note("round", index=round_index, best=best.id)
            best = self.mutate_and_refine(ctx, best, seen)
            ctx.offer([best])  # scored on train only: the Run finishes it on dev if the budget stops us
        if ctx.text_field == "system":  # demos are each task's own; a persona would replace the text searched
            return [best]
        instruction_only = best
        chosen = self.select_examples(ctx, best, seen)
        best, chosen = self.refine_with_examples(ctx, best, chosen, seen)
        ctx.offer([best, instruction_only])
        demos = self.reasoning_demos(ctx, best, chosen)
        combined = replace(best, demos=demos, system=self.expert_identity(ctx, best))
        ctx.record(combined, [best], "combine")
        return list({p.id: p for p in (combined, instruction_only, best)}.values())

    # -- instruction: mutate, score, critique, refine -----------------------------------------
    def mutate_and_refine(self, ctx: Context, current: Prompt, seen: Sequence[Example]) -> Prompt:
        """One round; returns the best instruction found."""
        top = self.select_top(self.score(ctx, [current, *self.mutate(ctx, current)], seen))
        if self.refine_instruction:
            refined = [r for s in top if (r := self.critique_and_refine(ctx, s, seen, "refine")) is not None]
            top = self.select_top(self.score(ctx, refined, seen) + top)
        return top[0].prompt

    def mutate(self, ctx: Context, current: Prompt) -> list[Prompt]:
        """Variants of the instruction, each mixing in a thinking style."""
        children: dict[str, Prompt] = {}
        for _ in range(self.mutation_rounds):
            styles = ctx.sample(THINKING_STYLES, self.style_variation)
            reply = ctx.propose(worded(MUTATE_PROMPT, ctx.text_field).format(
                description=self._description(ctx), instruction=ctx.text(current),
                styles="\n".join(f"- {s}" for s in styles), n=self.style_variation),
                temperature=self.temperature, max_tokens=MUTATE_TOKENS)[0]
            for text in usable_prompts(ctx, "mutate", reply)[: self.style_variation]:
                child = ctx.with_text(current, text)
                if child.id != current.id and child.id not in children:
                    children[child.id] = child
                    ctx.record(child, [current], "mutate")
        return list(children.values())

    def score(self, ctx: Context, prompts: Sequence[Prompt], seen: Sequence[Example]) -> list[Scored]:
        """The reference's minibatch score: batches answered right / batches asked.

        A candidate is asked batch after batch until it gets one wrong, has
        ``min_correct_count`` right, or ``max_eval_batches`` are used. All
        candidates still being asked share each batch (one backend call).
        """
        prompts = list({p.id: p for p in prompts}.values())
        right, asked = [0] * len(prompts), [0] * len(prompts)
        shown: list[tuple[ExampleResult, ...]] = [()] * len(prompts)
        failed = [False] * len(prompts)
        active = list(range(len(prompts)))
        for _ in range(self.max_eval_batches):
            if not active:
                break
            batch = ctx.sample_across_tasks(seen, self.questions_batch_size, lambda ex: ex.id)
            results = ctx.evaluate([prompts[i] for i in active], batch)
            still = []
            for i, res in zip(active, results, strict=True):
                asked[i] += 1
                if res.errors:
                    failed[i], shown[i] = True, res.errors
                    continue
                right[i] += 1
                shown[i] += res.examples
                if right[i] < self.min_correct_count:
                    still.append(i)
            active = still
        scored = [Scored(p, right[i] / max(asked[i], 1), shown[i], failed[i]) for i, p in enumerate(prompts)]
        ctx.note("scores", scores={s.prompt.id: s.score for s in scored})
        return scored

    def select_top(self, scored: Sequence[Scored]) -> list[Scored]:
        """The ``top_n`` best by score; longer instructions win ties, then the earlier one.

        This is the reference's default (``select_top_prompts`` in
        microsoft/PromptWizard, with ``resolve_tie_criteria="max"``).
        """
        unique = list({s.prompt.id: s for s in scored}.values())
        # the candidates differ only in the text under search (the instruction, or a set's system
        # prompt; the other field is the same for all), so the two lengths' sum ranks that text's
        return sorted(unique, key=lambda s: (-s.score, -len(s.prompt.instruction) - len(s.prompt.system)))[: self.top_n]

    def critique_and_refine(self, ctx: Context, scored: Scored, examples: Sequence[Example],
                            operator: str) -> Prompt | None:
        """Critique the instruction on the examples shown, then rewrite it from the critique."""
        if not scored.shown:
            return None
        by_id = {ex.id: ex for ex in examples}
        shown = format_results(scored.shown, by_id, task_of=task_namer(ctx))
        template = worded(CRITIQUE_PROMPT if scored.failed else POSITIVE_CRITIQUE_PROMPT, ctx.text_field)
        description, instruction = self._description(ctx), ctx.text(scored.prompt)
        reply = ctx.propose(template.format(description=description, instruction=instruction, examples=shown),
                            temperature=self.temperature, max_tokens=CRITIQUE_TOKENS)[0]
        reasons, how = parse_items(reply)
        if not reasons:
            ctx.skip("critique", f"no critique ({how})", reply)
            return None
        critique = "\n".join(f"- {shorten(r, 300)}" for r in reasons)
        reply = ctx.propose(worded(REFINE_PROMPT, ctx.text_field).format(
            description=description, instruction=instruction, examples=shown, critique=critique),
            temperature=self.temperature, max_tokens=REFINE_TOKENS)[0]
        texts = [t for t in usable_prompts(ctx, operator, reply) if t != instruction]
        if not texts:
            return None
        child = ctx.with_text(scored.prompt, texts[0])
        ctx.record(child, [scored.prompt], operator)
        return child

    # -- examples, reasoning, persona ---------------------------------------------------------
    def select_examples(self, ctx: Context, prompt: Prompt,
                        seen: Sequence[Example]) -> list[tuple[Example, ExampleResult]]:
        """``few_shot_count`` seen examples: the prompt's errors first, different labels in turn."""
        results = ctx.evaluate([prompt], seen)[0].examples
        pairs = ctx.sample(list(zip(seen, results, strict=True)), len(seen))
        ordered = [p for p in pairs if p[1].score < 1.0] + [p for p in pairs if p[1].score >= 1.0]
        has_labels = ctx.task.labels is not None
        chosen = round_robin_by_label(ordered, lambda p: p[0].target if has_labels else None, self.few_shot_count)
        ctx.note("examples", ids=[ex.id for ex, _ in chosen], wrong=[ex.id for ex, r in chosen if r.score < 1.0])
        return chosen

    def refine_with_examples(self, ctx: Context, prompt: Prompt, chosen: list[tuple[Example, ExampleResult]],
                             seen: Sequence[Example]) -> tuple[Prompt, list[tuple[Example, ExampleResult]]]:
        """Coin flips (as in the reference): refine the instruction on the examples, or pick them again."""
        for _ in range(self.refine_task_eg_iterations):
            if not chosen:
                break
            if ctx.rng.random() < 0.5:
                examples = [ex for ex, _ in chosen]
                results = ctx.evaluate([prompt], examples)[0]
                scored = Scored(prompt, results.mean, results.examples, failed=bool(results.errors))
                prompt = self.critique_and_refine(ctx, scored, examples, "refine-on-examples") or prompt
            else:
                chosen = self.select_examples(ctx, prompt, seen)
        return prompt, chosen

    def reasoning_demos(self, ctx: Context, prompt: Prompt,
                        chosen: Sequence[tuple[Example, ExampleResult]]) -> tuple[Demo, ...]:
        """One demo per chosen example; its output is a verified reasoning chain or the gold answer."""
        demos = []
        for ex, _ in chosen:
            chain = self.reasoning_chain(ctx, prompt, ex) if self.generate_reasoning else None
            demos.append(Demo(ex.input, chain or ctx.task.gold_text(ex)))
        return tuple(demos)

    def reasoning_chain(self, ctx: Context, prompt: Prompt, example: Example) -> str | None:
        """A chain from the input to the gold answer, or None when the task reads another answer from it."""
        replies = ctx.propose_within_cap(REASON_PROMPT.format(
            description=self._description(ctx), instruction=prompt.instruction, input=example.input,
            answer=example.target), temperature=self.temperature, max_tokens=REASON_TOKENS)
        if replies is None:
            return None  # the optimizer is out of calls: the demo keeps the gold answer
        reply = replies[0]
        chain = clean_prompt_text(self._untagged(reply), max_chars=1500)
        if chain is None:
            ctx.skip("reasoning", "no usable reasoning chain", reply)
            return None
        if ctx.task.metric(ctx.task.parse(chain), example) < 1.0:
            ctx.skip("reasoning", "final answer does not match the gold", reply)
            return None
        return chain

    def expert_identity(self, ctx: Context, prompt: Prompt) -> str:
        """An expert persona for the system prompt (the prompt's own system text if none is usable)."""
        if not self.generate_expert_identity:
            return prompt.system
        replies = ctx.propose_within_cap(EXPERT_PROMPT.format(description=self._description(ctx),
                                                              instruction=prompt.instruction),
                                         temperature=self.temperature, max_tokens=EXPERT_TOKENS)
        if replies is None:
            return prompt.system  # the optimizer is out of calls
        reply = replies[0]
        persona = clean_prompt_text(self._untagged(reply), max_chars=1000)
        if persona is None:
            ctx.skip("persona", "no usable expert description", reply)
            return prompt.system
        return persona

    # -- helpers ------------------------------------------------------------------------------
    @staticmethod
    def _description(ctx: Context) -> str:
        return describe_task(ctx)

    @staticmethod
    def _untagged(reply: str) -> str:
        # Free-text replies (chains, personas) may still carry the tags asked for elsewhere.
        return reply.replace("<START>", " ").replace("<END>", " ").strip()
