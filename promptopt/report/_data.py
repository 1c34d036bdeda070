"""Pure functions from a run's logged data (config, events, result) to what the report shows.

Nothing here reads files or imports matplotlib: every function takes plain
JSON-like values (the parsed lines of ``events.jsonl``, ``result.json``) and
returns small frozen records, so they are tested on hand-made event lists.

Which evaluations count as "full dev": the Run scores the seed on the whole dev
split before the search starts, so the largest ``n`` among evaluations with
``dev: true`` is the dev size, and an evaluation of that size is a full-dev
score. A candidate scored on dev in several partial batches is not shown as a
point (events carry means, not the per-example scores needed to merge them),
although the logged ``best_dev`` still counts it.
"""

from __future__ import annotations

import difflib
import html
import re
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from promptopt.events import (
    BUDGET_EXHAUSTED,
    CANDIDATE,
    EVALUATION,
    FINALIST_RESERVE,
    RESULT,
    SKIP,
    TEST,
    UNSEEN_TEST,
)
from promptopt.replacement import Replacement

Event = Mapping[str, Any]

_POST_SEARCH = frozenset({TEST, UNSEEN_TEST, RESULT})
_ROLES = ("target", "optimizer")


@dataclass(frozen=True)
class SeriesPoint:
    """The best full-dev score known once ``target_calls`` calls and ``tokens`` tokens were spent."""

    target_calls: int
    tokens: int
    elapsed: float
    best_dev: float


@dataclass(frozen=True)
class CandidatePoint:
    """A candidate's first full-dev score and the spend at that moment."""

    prompt_id: str
    operator: str
    target_calls: int
    tokens: int
    mean: float


@dataclass(frozen=True)
class LineageNode:
    """One ancestor of the best prompt; ``prompt`` is None when its candidate event is not in the log."""

    prompt_id: str
    operator: str
    parents: tuple[str, ...]
    dev: float | None
    prompt: Mapping[str, Any] | None


@dataclass(frozen=True)
class WinLoss:
    """Per-example comparison of the best prompt against the seed on test.

    ``differing`` holds ``(example_id, seed_score, best_score)`` for each example
    where they differ, in natural id order.
    """

    wins: int
    losses: int
    ties: int
    differing: tuple[tuple[str, float, float], ...]

    @property
    def n(self) -> int:
        return self.wins + self.losses + self.ties


@dataclass(frozen=True)
class SpendRow:
    """Calls and tokens of one role, during the search and in total (search + final test)."""

    role: str
    search_calls: int
    search_paid_calls: int
    search_tokens: int
    total_calls: int
    total_paid_calls: int
    total_tokens: int
    usd: float


@dataclass(frozen=True)
class Snapshot:
    """The spend logged with the last event (what an incomplete run had used)."""

    target_calls: int
    optimizer_calls: int
    tokens: int
    elapsed: float


# -- events -------------------------------------------------------------------------------------
def search_events(events: Sequence[Event]) -> list[Event]:
    """The events of the search: everything before the final test evaluation."""
    out: list[Event] = []
    for ev in events:
        if ev.get("type") in _POST_SEARCH:
            break
        out.append(ev)
    return out


def dev_size(events: Sequence[Event]) -> int:
    """Size of the dev split: the largest dev evaluation (the seed is always scored on all of it)."""
    return max((int(ev.get("n", 0)) for ev in events if _is_dev_eval(ev)), default=0)


def _is_dev_eval(ev: Event) -> bool:
    return ev.get("type") == EVALUATION and bool(ev.get("dev", True))


def _full_dev_evaluations(events: Sequence[Event]) -> Iterator[Event]:
    size = dev_size(events)
    for ev in events:
        if _is_dev_eval(ev) and size and int(ev.get("n", 0)) >= size:
            yield ev


def candidates(events: Sequence[Event]) -> dict[str, Event]:
    """Candidate events by prompt id, in the order they were proposed."""
    out: dict[str, Event] = {}
    for ev in events:
        if ev.get("type") == CANDIDATE and ev.get("prompt_id") not in out:
            out[str(ev["prompt_id"])] = ev
    return out


def dev_means(events: Sequence[Event]) -> dict[str, float]:
    """Each prompt's full-dev mean (the last one logged; repeats replay the same answers)."""
    return {str(ev["prompt_id"]): float(ev["mean"]) for ev in _full_dev_evaluations(events)}


def seed_id(events: Sequence[Event]) -> str | None:
    """The seed prompt's id: the candidate recorded with operator ``seed`` (else the first candidate)."""
    cands = candidates(events)
    for pid, ev in cands.items():
        if ev.get("operator") == "seed":
            return pid
    return next(iter(cands), None)


def best_id(events: Sequence[Event]) -> str | None:
    """The best prompt's id: from the ``result`` event, else the highest full-dev mean so far
    (an unfinished run's leader: the ``replace_if`` rule is applied only when a run finishes).

    Ties go to the earlier candidate, as in the Run's own choice.
    """
    for ev in events:
        if ev.get("type") == RESULT and ev.get("best_prompt_id"):
            return str(ev["best_prompt_id"])
    means = dev_means(search_events(events))
    order = {pid: i for i, pid in enumerate(candidates(events))}
    if not means:
        return None
    return max(means, key=lambda pid: (means[pid], -order.get(pid, len(order))))


# -- series -------------------------------------------------------------------------------------
def best_so_far_series(events: Sequence[Event]) -> list[SeriesPoint]:
    """A step line of the best full-dev score against spend, from the search events.

    One point where the logged ``best_dev`` changes, starting at the first
    full-dev evaluation (before it there is no best), plus one at the end of the
    search so the line reaches the spend of the last event.
    """
    search = search_events(events)
    first_full = next(iter(_full_dev_evaluations(search)), None)
    if first_full is None:
        return []
    points: list[SeriesPoint] = []
    last: SeriesPoint | None = None
    started = False
    for ev in search:
        started = started or ev is first_full
        if not started or "best_dev" not in ev:
            continue
        point = SeriesPoint(int(ev.get("target_calls", 0)), int(ev.get("tokens", 0)),
                            float(ev.get("elapsed", 0.0)), float(ev["best_dev"]))
        if not points or point.best_dev != points[-1].best_dev:
            points.append(point)
        last = point
    if last is not None and points and last != points[-1]:
        points.append(last)
    return points


def candidate_points(events: Sequence[Event]) -> list[CandidatePoint]:
    """Every candidate's first full-dev score, with the spend when it was logged."""
    cands = candidates(events)
    seen: set[str] = set()
    out: list[CandidatePoint] = []
    for ev in _full_dev_evaluations(search_events(events)):
        pid = str(ev["prompt_id"])
        if pid in seen:
            continue
        seen.add(pid)
        operator = str(cands[pid].get("operator") or "unrecorded") if pid in cands else "unrecorded"
        out.append(CandidatePoint(pid, operator, int(ev.get("target_calls", 0)), int(ev.get("tokens", 0)),
                                  float(ev["mean"])))
    return out


# -- lineage and prompts ------------------------------------------------------------------------
def lineage(events: Sequence[Event], best: str) -> list[LineageNode]:
    """The ancestors of ``best`` (following every parent), oldest first, ``best`` last.

    Parents missing from the log (a torn or foreign log) appear as nodes with
    ``prompt=None``; a cycle in corrupt data is cut rather than followed forever.
    """
    cands = candidates(events)
    means = dev_means(events)
    found: dict[str, LineageNode] = {}
    stack = [best]
    while stack:
        pid = stack.pop()
        if pid in found:
            continue
        ev = cands.get(pid)
        parents = tuple(str(p) for p in ev.get("parents", ())) if ev else ()
        operator = str(ev.get("operator") or "unrecorded") if ev else "unknown"
        prompt = ev.get("prompt") if ev else None
        found[pid] = LineageNode(pid, operator, parents, means.get(pid), prompt)
        stack.extend(p for p in parents if p not in found)
    order = {pid: i for i, pid in enumerate(cands)}
    nodes = sorted(found.values(), key=lambda n: (n.prompt_id == best, order.get(n.prompt_id, -1)))
    return nodes


def prompt_text(prompt: Mapping[str, Any]) -> str:
    """A prompt as readable text (the layout of ``best_prompt.txt``), for diffs and display."""
    parts = []
    if prompt.get("system"):
        parts.append(f"# system\n{prompt['system']}")
    parts.append(f"# instruction\n{prompt.get('instruction', '')}")
    for i, demo in enumerate(prompt.get("demos") or (), 1):
        parts.append(f"# demo {i}\ninput: {demo.get('input', '')}\noutput: {demo.get('output', '')}")
    parts.append(f"# template\n{prompt.get('template', '')}")
    return "\n\n".join(parts)


_TOKEN = re.compile(r"\s+|[^\s]+")


def word_diff(a: str, b: str) -> str:
    """A word-level diff of ``a`` → ``b`` as HTML: removed words in ``<del>``, added in ``<ins>``.

    All text is HTML-escaped (prompts are model output and must never be markup).

    Example:
        >>> word_diff("classify <b>the</b> text", "classify this text")
        'classify <del>&lt;b&gt;the&lt;/b&gt;</del><ins>this</ins> text'
    """
    old, new = _TOKEN.findall(a), _TOKEN.findall(b)
    out: list[str] = []
    for op, i1, i2, j1, j2 in difflib.SequenceMatcher(None, old, new, autojunk=False).get_opcodes():
        removed, added = html.escape("".join(old[i1:i2])), html.escape("".join(new[j1:j2]))
        if op == "equal":
            out.append(removed)
            continue
        if removed:
            out.append(f"<del>{removed}</del>")
        if added:
            out.append(f"<ins>{added}</ins>")
    return "".join(out)


# -- test, spend, skips -------------------------------------------------------------------------
def _natural_key(text: str) -> list[Any]:
    return [(0, int(part), "") if part.isdigit() else (1, 0, part) for part in re.split(r"(\d+)", text)]


def test_wins(events: Sequence[Event], seed: str, best: str) -> WinLoss | None:
    """Count test examples where the best prompt beats, loses to or ties the seed.

    Uses the per-example ``scores`` of the ``test`` events; None when either
    prompt has no test event (an incomplete run). When the seed is the best,
    every example is a tie.
    """
    scores: dict[str, Mapping[str, float]] = {}
    for ev in events:
        if ev.get("type") == TEST:
            scores[str(ev["prompt_id"])] = ev.get("scores") or {}
    if seed not in scores or best not in scores:
        return None
    s, b = scores[seed], scores[best]
    common = sorted(set(s) & set(b), key=_natural_key)
    wins = sum(1 for k in common if b[k] > s[k])
    losses = sum(1 for k in common if b[k] < s[k])
    differing = tuple((k, float(s[k]), float(b[k])) for k in common if b[k] != s[k])
    return WinLoss(wins, losses, len(common) - wins - losses, differing)


def spend(result: Mapping[str, Any]) -> list[SpendRow]:
    """Calls, paid calls (not replayed from the cache) and tokens per role, search vs total."""
    usage = result.get("usage") or {}
    search, total = usage.get("search") or {}, usage.get("total") or {}
    rows = []
    for role in _ROLES:
        s, t = search.get(role) or {}, total.get(role) or {}
        rows.append(SpendRow(role, int(s.get("calls", 0)), int(s.get("paid_calls", 0)), int(s.get("tokens", 0)),
                             int(t.get("calls", 0)), int(t.get("paid_calls", 0)), int(t.get("tokens", 0)),
                             float(t.get("usd", 0.0))))
    return rows


def last_snapshot(events: Sequence[Event]) -> Snapshot | None:
    """The spend recorded with the last event, or None for an empty log."""
    if not events:
        return None
    ev = events[-1]
    return Snapshot(int(ev.get("target_calls", 0)), int(ev.get("optimizer_calls", 0)), int(ev.get("tokens", 0)),
                    float(ev.get("elapsed", 0.0)))


def skips_by_operator(events: Sequence[Event]) -> dict[str, int]:
    """How many optimizer replies were unusable, by operator, most first."""
    counts = Counter(str(ev.get("operator") or "?") for ev in events if ev.get("type") == SKIP)
    return dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))


def stop_reason(events: Sequence[Event], result: Mapping[str, Any] | None) -> str:
    """Why the search ended, in words."""
    if result is not None:
        return str(result.get("stopped_by") or "finished (the strategy completed)")
    reason = next((str(ev.get("reason", "")) for ev in events if ev.get("type") == BUDGET_EXHAUSTED), "")
    return f"incomplete; budget exhausted: {reason}" if reason else "incomplete (crashed or still running)"


def _fmt(x: float | None) -> str:
    return "–" if x is None else f"{x:.3f}"


def _score_text(score: Mapping[str, Any] | None) -> str:
    if not score:
        return "–"
    return f"{float(score['mean']):.3f} [{float(score['low']):.3f}, {float(score['high']):.3f}] (n={score['n']})"


def _budget_text(budget: Mapping[str, Any] | None) -> str:
    caps = [f"{k.replace('_', ' ')} ≤ {v}" for k, v in sorted((budget or {}).items()) if v is not None]
    return ", ".join(caps) or "no cap"


def _reserve_text(config: Mapping[str, Any], events: Sequence[Event]) -> str:
    """How many candidates the run kept target calls back for, and how many calls that was."""
    n = config.get("finalist_reserve")
    if not n:
        return "none"
    held = next((e.get("calls") for e in events if e.get("type") == FINALIST_RESERVE), None)
    calls = "" if held is None else (f": {held} target calls kept back" if held else
                                     ": nothing kept back (no target-call cap, nothing to finish, or "
                                     "more than half of the budget left)")
    return f"{n} candidate(s){calls}"


def header(config: Mapping[str, Any], result: Mapping[str, Any] | None, events: Sequence[Event]) -> list[
        tuple[str, str]]:
    """The facts at the top of the report, as (label, value) rows."""
    seed, best = seed_id(events), best_id(events)
    means = dev_means(events)
    seed_dev = result.get("seed_dev") if result else means.get(seed or "")
    best_dev = result.get("best_dev") if result else means.get(best or "")
    params = config.get("strategy_params") or {}
    rows = [
        ("status", "finished" if result is not None else "incomplete: no result.json (crashed or still running)"),
        ("task", str(config.get("task", "?"))),
        ("strategy", str(config.get("strategy", "?"))),
        ("strategy params", ", ".join(f"{k}={v}" for k, v in sorted(params.items())) or "defaults"),
        ("target model", str(config.get("model", "?"))),
        ("optimizer model", str(config.get("optimizer_model", "?"))),
        ("answer mode", str(config.get("answer_mode", "?"))),
        ("seed", str(config.get("seed", "?"))),
        ("budget", _budget_text(config.get("budget"))),
        ("finalist reserve", _reserve_text(config, events)),
        ("stopped by", stop_reason(events, result)),
        ("candidates", str(result.get("n_candidates") if result else len(candidates(events)))),
        ("dev (seed → best)", f"{_fmt(seed_dev)} → {_fmt(best_dev)}"),
    ]
    if result is not None:
        rows.append(("test (seed → best, 95% CI)",
                     f"{_score_text(result.get('seed_test'))} → {_score_text(result.get('best_test'))}"))
        rows += _per_task_rows(result)
        rows += _strategy_output_rows(result)
    return rows


def _per_task_rows(result: Mapping[str, Any]) -> list[tuple[str, str]]:
    """On a set of tasks: each task's dev and test, seed → best, then each unseen task's test."""
    rows = []
    for name, s in (result.get("per_task") or {}).items():
        rows.append((f"task {name} ({s.get('answer_mode', '?')})",
                     f"dev {_fmt(s.get('seed_dev'))} → {_fmt(s.get('best_dev'))}; "
                     f"test {_score_text(s.get('seed_test'))} → {_score_text(s.get('best_test'))}"))
    for name, s in (result.get("unseen") or {}).items():
        rows.append((f"unseen task {name} ({s.get('answer_mode', '?')})",
                     f"test {_score_text(s.get('seed_test'))} → {_score_text(s.get('best_test'))}"))
    return rows


def _strategy_output_rows(result: Mapping[str, Any]) -> list[tuple[str, str]]:
    """What a strategy added to its result: its own selection rule, its front, its compute time."""
    rows = []
    if result.get("replacement"):
        rows.append(("seed replaced?", Replacement(**result["replacement"]).describe()))
    if result.get("selection", "best-dev-mean") != "best-dev-mean":
        rows.append(("final prompt picked by", str(result["selection"])))
    front = result.get("front") or []
    if front:
        names = sorted({k for entry in front for k in entry.get("objectives", {})})
        rows.append(("Pareto front", f"{len(front)} candidate(s) over {', '.join(names) or 'no objectives'}"))
    seconds = result.get("strategy_seconds")
    if seconds:
        rows.append(("strategy compute", f"{seconds:.1f} s outside model calls"))
    return rows


@dataclass(frozen=True)
class ReportData:
    """Everything the report shows, computed from one run's config, events and result."""

    run_id: str
    complete: bool
    header: list[tuple[str, str]]
    series: list[SeriesPoint]
    points: list[CandidatePoint]
    seed_id: str | None
    best_id: str | None
    lineage: list[LineageNode]
    seed_text: str | None
    best_text: str | None
    wins: WinLoss | None
    spend: list[SpendRow]
    snapshot: Snapshot | None
    skips: dict[str, int]


def build_report(run_id: str, config: Mapping[str, Any], events: Sequence[Event],
                 result: Mapping[str, Any] | None) -> ReportData:
    """Compute the report's content; ``result`` is None for an incomplete run."""
    seed, best = seed_id(events), best_id(events)
    cands = candidates(events)

    def text(pid: str | None, key: str) -> str | None:
        if result is not None and result.get(key):
            return prompt_text(result[key])
        prompt = cands[pid].get("prompt") if pid in cands else None
        return prompt_text(prompt) if prompt else None

    return ReportData(
        run_id=run_id, complete=result is not None, header=header(config, result, events),
        series=best_so_far_series(events), points=candidate_points(events), seed_id=seed, best_id=best,
        lineage=lineage(events, best) if best else [], seed_text=text(seed, "seed_prompt"),
        best_text=text(best, "best_prompt"),
        wins=test_wins(events, seed, best) if seed and best else None,
        spend=spend(result) if result is not None else [], snapshot=last_snapshot(events),
        skips=skips_by_operator(events))
