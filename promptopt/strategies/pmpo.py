"""PMPO: probabilistic metric prompt optimization (mask segments, rewrite around hard examples, keep the lowest loss).

Zhao et al., "PMPO: Probabilistic Metric Prompt Optimization for Small and
Large Language Models", Findings of EMNLP 2025 (arXiv:2505.16307). Candidates
are ranked by the loss of the gold continuation (``ctx.loss``: one scored
continuation per example, no sampling, no parsing) on a fixed *score set* of
``n_score`` training examples. Each iteration:

1. **mask analysis** — the incumbent's ``field`` is cut into at most
   ``max_segments`` contiguous segments of edit units (``level``: sentences or
   phrases); each segment is removed in turn and the loss change
   ``ΔL_j = L(P without segment j) - L(P)`` measured: a segment whose removal
   lowers the loss (ΔL < 0) is harmful;
2. **hard examples** — the ``n_hard`` score-set examples with the highest loss
   under the incumbent;
3. **rewrite** — for each hard example, the optimizer model is shown the
   incumbent, the segments with their ΔL (harmful ones marked) and the example,
   and asked for ``n_variants`` rewrites;
4. **select** — the candidate with the lowest loss among the incumbent and the
   rewrites becomes the incumbent (ties keep the incumbent).

**Preference mode.** When the task's examples are (chosen, rejected) pairs
(a ``file:`` task with ``chosen`` / ``rejected`` fields), an example's loss is
the paper's pairwise loss ``-log σ(β (log P(chosen) - log P(rejected)))``
(see ``_loss_signals``), and the rewrite request shows both replies.

The Run picks the final prompt by dev accuracy: every new incumbent is scored
on all of dev as it is found (``score_incumbents``), and with ``record_both``
each candidate's accuracy on the score set is measured beside its loss (a
``signals`` event each), so a run shows how well loss predicts accuracy.

Cost drivers, per iteration: ``(segments + n_hard · n_variants)`` new prompts,
each scored on ``n_score`` examples (one target call each for the loss, twice
that in preference mode, plus an evaluation with ``record_both``), and
``n_hard`` optimizer calls of ``n_variants`` samples. Needs log-probabilities
from the target backend (``needs_score``).

On a set of tasks the optimised field is the shared system prompt whatever
``field`` says; the score set is drawn evenly from every task (a prompt's loss
is the mean over its examples), the hard examples are each task's hardest in
turn (losses of different tasks are not on one scale), and each names its task.
Preference pairs are scored on one task only.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from promptopt.exceptions import ConfigError
from promptopt.strategies._base import Scalable, Spend, StepPlan, Strategy
from promptopt.strategies._edits import Level, field_text, split, with_field
from promptopt.strategies._formatting import shorten
from promptopt.strategies._loss_signals import SignalMeter, Signals
from promptopt.strategies._params import Interval, OneOf
from promptopt.strategies._parsing import parse_instruction
from promptopt.strategies._pruning import contiguous_groups, keep_units
from promptopt.strategies._task_sets import describe_task, task_namer, worded
from promptopt.tasks._preference import rejected_text

if TYPE_CHECKING:
    from promptopt.context import Context
    from promptopt.prompt import Prompt
    from promptopt.types import Example

__all__ = ["PMPO", "Segment", "harmful", "mask_segments"]

REWRITE_PROMPT = """I am improving the instruction of a prompt for a language model.
Task: {description}

Current instruction:
"{instruction}"

I removed each part of the instruction in turn and measured how the model's loss on the expected \
answers changed (lower loss is better):
{segments}

The model finds this example hardest (loss {loss:.3f}):
{example}

Rewrite the instruction so that the model gives the expected answer more readily: rewrite or drop \
the parts marked harmful, keep what helps. Reply with the new instruction between <START> and <END>."""
REWRITE_TOKENS = 300


@dataclass(frozen=True)
class Segment:
    """A contiguous run of edit units of the field and the prompt without it."""

    text: str
    masked: Prompt


def mask_segments(prompt: Prompt, field: str, level: Level, max_segments: int) -> list[Segment]:
    """The field's units cut into at most ``max_segments`` contiguous segments; each with the
    prompt that lacks it (the separator after it goes too).

    Example:
        >>> from promptopt.prompt import Prompt
        >>> [s.masked.instruction for s in mask_segments(Prompt("A b. C d. E f."), "instruction", "sentence", 2)]
        ['E f.', 'A b. C d.']
    """
    units = split(field_text(prompt, field), level)
    segments = []
    for group in contiguous_groups(len(units), max_segments):
        kept = [j for j in range(len(units)) if j not in group]
        text = keep_units(units, list(group)).join().strip()
        segments.append(Segment(text, with_field(prompt, field, keep_units(units, kept).join() if kept else "")))
    return segments


def harmful(deltas: Sequence[float]) -> list[int]:
    """Positions of the segments whose removal lowered the loss (ΔL < 0), most harmful first."""
    return sorted((k for k, d in enumerate(deltas) if d < 0), key=lambda k: (deltas[k], k))


class PMPO(Strategy):
    """Loss-guided masking and rewriting (PMPO), with the paper's defaults.

    Args:
        level: edit-unit granularity the segments are made of, ``"sentence"`` or ``"phrase"``.
        field: the prompt field optimised, ``"instruction"`` or ``"system"`` (on a set of tasks always ``"system"``).
        max_segments: segments masked per iteration at most (the paper: up to 5).
        n_score: training examples every candidate's loss is measured on (the paper: at most 50).
        n_hard: highest-loss examples the rewrites are built around (3).
        n_variants: rewrites asked for per hard example (4).
        max_iterations: iterations (20).
        beta: scale of the preference loss (preference tasks only).
        temperature: optimizer sampling temperature.
        record_both: also measure each candidate's accuracy on the score set.
        score_incumbents: score each new incumbent on all of dev as it is found.

    Example:
        >>> PMPO(n_variants=2).get_params()["n_variants"]
        2
    """

    name: ClassVar[str] = "pmpo"
    supports_task_sets: ClassVar[bool] = True
    summary: ClassVar[str] = ("loss-based: mask segments, rewrite around the highest-loss examples, keep the "
                              "lowest loss (Zhao et al., 2025)")
    needs_score: ClassVar[bool] = True
    constraints: ClassVar[dict[str, Any]] = {
        "level": OneOf(("sentence", "phrase")), "field": OneOf(("instruction", "system")),
        "max_segments": Interval(int, 1), "n_score": Interval(int, 1), "n_hard": Interval(int, 1),
        "n_variants": Interval(int, 1), "max_iterations": Interval(int, 0), "beta": Interval(float, 0),
        "temperature": Interval(float, 0, 2), "record_both": OneOf((True, False)),
        "score_incumbents": OneOf((True, False)),
    }
    #: scaled to a budget: the score set first, then the masks and the rewrites (hard examples x variants)
    scalable: ClassVar[tuple[Scalable, ...]] = (
        Scalable("n_score", 10), Scalable("max_segments", 2, stage=1), Scalable("n_hard", 1, stage=1),
        Scalable("n_variants", 2, stage=1))

    def __init__(self, *, level: Level = "sentence", field: str = "instruction", max_segments: int = 5,
                 n_score: int = 50, n_hard: int = 3, n_variants: int = 4, max_iterations: int = 20,
                 beta: float = 1.0, temperature: float = 0.7, record_both: bool = True,
                 score_incumbents: bool = True) -> None:
        self.level = level
        self.field = field
        self.max_segments = max_segments
        self.n_score = n_score
        self.n_hard = n_hard
        self.n_variants = n_variants
        self.max_iterations = max_iterations
        self.beta = beta
        self.temperature = temperature
        self.record_both = record_both
        self.score_incumbents = score_incumbents

    def finalist_gap(self, n_dev: int) -> int:
        """Candidates are scored on training examples, and on all of dev or not at all."""
        return 0

    def step_plan(self, n_dev: int, n_train: int, *, n_tasks: int = 1) -> StepPlan:
        """One iteration: up to ``max_segments`` masked prompts and ``n_hard · n_variants`` rewrites
        measured on the score set (loss, and accuracy with ``record_both``), and the new incumbent
        scored on dev. The seed is measured in the first. Preference tasks score twice the losses."""
        scored, best = min(self.n_score, n_train), 1 if self.score_incumbents else 0
        rewrites = self.n_hard * self.n_variants

        def measured(prompts: int) -> Spend:
            return Spend(loss_calls=prompts * scored, example_evals=prompts * scored * self.record_both)

        step = measured(self.max_segments + rewrites)
        return StepPlan("iteration", Spend(example_evals=step.example_evals + best * n_dev, loss_calls=step.loss_calls,
                                           optimizer_calls=rewrites, new_full=best),
                        paper_steps=self.max_iterations, setup=measured(1),
                        finish=Spend() if best else Spend(example_evals=n_dev, new_full=1))

    def optimize(self, ctx: Context) -> Sequence[Prompt]:
        meter = SignalMeter(ctx, lead="loss", record_both=self.record_both, beta=self.beta)
        if meter.preference and ctx.text_field == "system":
            raise ConfigError("PMPO scores preference pairs (chosen/rejected) on one task, not on a set of tasks; "
                              "got a set whose tasks are all preference files: optimize each task alone")
        field = self.edited_field(ctx)
        score_set = ctx.sample_across_tasks(ctx.train, self.n_score, lambda ex: ex.id)
        current = ctx.seed_prompt
        if not score_set or not field_text(current, field).strip():
            ctx.note("stop", reason=f"nothing to optimise: {len(score_set)} training examples, "
                                    f"{field} {field_text(current, field)!r}")
            return [current]
        for index in range(1, self.max_iterations + 1):
            deltas, segments = self.mask_analysis(ctx, meter, current, score_set, index)
            hard = self.hardest(meter, current, score_set, task_of=task_namer(ctx))
            children = self.rewrite(ctx, current, segments, deltas, hard)
            current = self.select(ctx, meter, current, children, score_set, index)
        return [current]

    def edited_field(self, ctx: Context) -> str:
        """``field``; on a set of tasks the shared system prompt, the only field its tasks share."""
        return self.field if ctx.text_field == "instruction" else ctx.text_field

    # -- the four steps ---------------------------------------------------------------------
    def mask_analysis(self, ctx: Context, meter: SignalMeter, current: Prompt, score_set: Sequence[Example],
                      index: int) -> tuple[list[float], list[Segment]]:
        """Each segment's ΔL: the loss without it minus the incumbent's loss."""
        segments = mask_segments(current, self.edited_field(ctx), self.level, self.max_segments)
        for segment in segments:
            ctx.record(segment.masked, [current], "mask")
        measured = meter.measure([current, *(s.masked for s in segments)], score_set)
        base = _loss(measured[0])
        deltas = [_loss(m) - base for m in measured[1:]]
        ctx.note("mask", index=index, prompt_id=current.id, loss=base, harmful=harmful(deltas),
                 segments=[{"text": s.text, "prompt_id": s.masked.id, "delta": d}
                           for s, d in zip(segments, deltas, strict=True)])
        return deltas, segments

    def hardest(self, meter: SignalMeter, current: Prompt, score_set: Sequence[Example],
                task_of: Callable[[str], str] | None = None) -> list[tuple[Example, float]]:
        """The ``n_hard`` examples with the highest loss under ``current`` (ties: the earlier); with
        ``task_of`` (on a set of tasks) each task's hardest in turn, the task with the hardest first."""
        losses = meter.measure([current], score_set)[0].losses
        order = sorted(range(len(score_set)), key=lambda k: (-losses[k], k))
        if task_of is not None:
            order = _in_turn(order, [task_of(score_set[k].id) for k in order])
        return [(score_set[k], losses[k]) for k in order[: self.n_hard]]

    def rewrite(self, ctx: Context, current: Prompt, segments: Sequence[Segment], deltas: Sequence[float],
                hard: Sequence[tuple[Example, float]]) -> list[Prompt]:
        """``n_variants`` rewrites of the field per hard example (unusable replies are skipped)."""
        children: list[Prompt] = []
        for example, loss in hard:
            request = worded(REWRITE_PROMPT, ctx.text_field).format(
                description=describe_task(ctx), instruction=field_text(current, self.edited_field(ctx)),
                segments=_segment_report(segments, deltas), loss=loss, example=self._show(ctx, example))
            for reply in ctx.propose(request, n=self.n_variants, temperature=self.temperature,
                                     max_tokens=REWRITE_TOKENS):
                text, how = parse_instruction(reply)
                if text is None:
                    ctx.skip("rewrite", f"no usable instruction ({how})", reply)
                    continue
                child = with_field(current, self.edited_field(ctx), text)
                if child.id != current.id and child not in children:
                    ctx.record(child, [current], "rewrite")
                    children.append(child)
        return children

    def select(self, ctx: Context, meter: SignalMeter, current: Prompt, children: Sequence[Prompt],
               score_set: Sequence[Example], index: int) -> Prompt:
        """The lowest-loss prompt among ``current`` and ``children`` (``current`` on ties)."""
        measured = meter.measure([current, *children], score_set)
        best = min(range(len(measured)), key=lambda k: (_loss(measured[k]), k))
        chosen = measured[best].prompt
        if chosen.id != current.id:
            ctx.note("incumbent", prompt_id=chosen.id, loss=_loss(measured[best]))
            if self.score_incumbents:
                ctx.evaluate([chosen])
        ctx.note("step", index=index, current=chosen.id, loss=_loss(measured[best]), n_children=len(children))
        return chosen

    def _show(self, ctx: Context, example: Example) -> str:
        rejected = rejected_text(example)
        task = f"Task: {ctx.task_of(example.id)}\n" if ctx.text_field == "system" else ""
        text = f"{task}Input: {shorten(example.input)}\n"
        if rejected is None:
            return text + f"Expected answer: {shorten(ctx.task.gold_text(example))}"
        return text + f"Preferred answer: {shorten(example.target)}\nRejected answer: {shorten(rejected)}"


def _loss(signals: Signals) -> float:
    loss = signals.loss
    if loss is None:  # the lead signal is always measured
        raise RuntimeError("PMPO measured a prompt without its loss")
    return float(loss)


def _in_turn(order: Sequence[int], tasks: Sequence[str]) -> list[int]:
    """``order`` regrouped so that the tasks take turns, each keeping its own order, the tasks
    in the order they first appear (``tasks[i]`` is the task of ``order[i]``)."""
    queues: dict[str, list[int]] = {}
    for k, task in zip(order, tasks, strict=True):
        queues.setdefault(task, []).append(k)
    out: list[int] = []
    while any(queues.values()):
        out += [queue.pop(0) for queue in queues.values() if queue]
    return out


def _segment_report(segments: Sequence[Segment], deltas: Sequence[float]) -> str:
    lines = []
    for segment, delta in zip(segments, deltas, strict=True):
        verdict = "harmful: removing it lowers the loss" if delta < 0 else "helps: removing it raises the loss" \
            if delta > 0 else "no effect"
        lines.append(f'- "{shorten(segment.text, 200)}" ({verdict}; change {delta:+.3f})')
    return "\n".join(lines)
