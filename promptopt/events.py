"""The kinds of event a run logs to ``events.jsonl``, defined once.

The Run and the Context write events through :func:`make`, which checks each
core kind's fields; the report, MLflow logging and ``promptopt runs`` read them
through :func:`read_events` and the kind names below. A run's log starts with a
``run_started`` event carrying :data:`SCHEMA_VERSION`; a log without one was
written before versions were recorded and reads as version 1.

Every logged event also carries the run's spend at that moment (the
:data:`SNAPSHOT` fields). A type that is not a core kind is a strategy's own
note (``ctx.note("round", ...)``): its fields are the strategy's to choose.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from promptopt.exceptions import ConfigError

__all__ = ["KINDS", "SCHEMA_VERSION", "SNAPSHOT", "EventKind", "check", "make", "read_events"]

#: raised when a field changes meaning or a kind goes away (adding kinds or optional fields does not)
SCHEMA_VERSION = 1

_NUMBER = (int, float)
_OPTIONAL_NUMBER = (int, float, type(None))


@dataclass(frozen=True)
class EventKind:
    """One core kind: its name, required fields with their JSON types, and optional ones."""

    name: str
    fields: Mapping[str, type | tuple[type, ...]]
    optional: Mapping[str, type | tuple[type, ...]] = field(default_factory=dict)
    doc: str = ""


#: the spend at the moment of an event, added to every logged event by the Run
SNAPSHOT: Mapping[str, type | tuple[type, ...]] = {
    "elapsed": _NUMBER, "target_calls": int, "target_cap": (int, type(None)), "optimizer_calls": int,
    "tokens": int, "n_candidates": int, "best_dev": _NUMBER}

RUN_STARTED = "run_started"
CANDIDATE = "candidate"
EVALUATION = "evaluation"
LOSS = "loss"
SKIP = "skip"
FRONT = "front"
BUDGET_EXHAUSTED = "budget_exhausted"
FINALIST_RESERVE = "finalist_reserve"
FINALIST_UNSCORED = "finalist_unscored"
OFFER = "offer"
REPLACEMENT = "replacement"
TEST = "test"
RESULT = "result"
PROGRESS = "progress"
UNSEEN_TEST = "unseen_test"

KINDS: Mapping[str, EventKind] = {k.name: k for k in (
    EventKind(RUN_STARTED, {"schema_version": int}, doc="the first line of a log"),
    EventKind(CANDIDATE, {"prompt_id": str, "parents": list, "operator": str, "prompt": dict},
              doc="a new distinct prompt and where it came from"),
    EventKind(EVALUATION, {"prompt_id": str, "n": int, "mean": _NUMBER, "dev": bool},
              {"margin": _NUMBER, "selection": bool, "task": str, "per_task": dict},
              doc="a prompt scored on n examples (dev: all of them from the split the strategy scores on, "
                  "ctx.dev); margin in choice mode; selection: scored by the Run on the dev split held out "
                  "from the search (select_on='held-out'), to pick the final prompt; the task's name, or on a "
                  "set of tasks per_task: each task's n and mean (mean: the mean of those means)"),
    EventKind(LOSS, {"prompt_id": str, "n": int, "mean": _NUMBER, "gold_tokens": int},
              doc="a prompt's mean gold-continuation loss on n examples, over `gold_tokens` gold tokens"),
    EventKind(SKIP, {"operator": str, "reason": str, "raw": str}, doc="optimizer output that could not be used"),
    EventKind(FRONT, {"entries": list}, doc="the strategy's Pareto front: prompt ids with objective values"),
    EventKind(BUDGET_EXHAUSTED, {"reason": str}, doc="a cap stopped the search (or refused a finalist)"),
    EventKind(FINALIST_RESERVE, {"candidates": int, "calls": int}, doc="target calls kept back for finalists"),
    EventKind(FINALIST_UNSCORED, {"prompt_id": str, "reason": str}, doc="a finalist the budget refused"),
    EventKind(OFFER, {"prompt_ids": list}, doc="the strategy's current leaders, best first (ctx.offer)"),
    EventKind(REPLACEMENT, {"rule": str, "replaced": bool, "candidate": str, "margin": _NUMBER, "wins": int,
                             "losses": int, "p_value": _OPTIONAL_NUMBER},
              doc="whether the search's winner replaced the seed (the replace_if rule and its evidence)"),
    EventKind(TEST, {"prompt_id": str, "mean": _NUMBER, "n": int, "scores": dict}, {"per_task": dict},
              doc="the final test evaluation of the seed or the best prompt (per_task on a set of tasks)"),
    EventKind(UNSEEN_TEST, {"prompt_id": str, "task": str, "mean": _NUMBER, "n": int, "scores": dict},
              doc="after the test evaluation, the seed or the best prompt on an unseen task's test split"),
    EventKind(RESULT, {"best_prompt_id": str, "best_test": _NUMBER}, doc="the run's end"),
    EventKind(PROGRESS, {}, doc="answered calls between events: passed to callbacks, never logged"),
)}


# the Run adds the snapshot to every event: a kind's own field of the same name would be overwritten
assert not {name for kind in KINDS.values() for name in [*kind.fields, *kind.optional]} & set(SNAPSHOT)


def check(event: Mapping[str, Any]) -> list[str]:
    """What is wrong with a core event (missing fields, wrong types); empty if nothing is, or if it is a note."""
    kind = KINDS.get(str(event.get("type")))
    if kind is None:
        return []
    problems = []
    for name, types in kind.fields.items():
        if name not in event:
            problems.append(f"{kind.name} event without {name!r}")
        elif not _is(event[name], types):
            problems.append(f"{kind.name} event's {name!r} is {type(event[name]).__name__}")
    for name, types in kind.optional.items():
        if name in event and not _is(event[name], types):
            problems.append(f"{kind.name} event's {name!r} is {type(event[name]).__name__}")
    return problems


def _is(value: Any, types: type | tuple[type, ...]) -> bool:
    # a JSON true is not a number, whatever Python's bool says
    if isinstance(value, bool) and not (types is bool or (isinstance(types, tuple) and bool in types)):
        return False
    return isinstance(value, types)


def make(kind: str, **fields: Any) -> dict[str, Any]:
    """An event of ``kind``; a core kind's fields are checked (a wrong one is a defect: ValueError)."""
    event = {"type": kind, **fields}
    problems = check(event)
    if problems:
        raise ValueError("; ".join(problems))
    return event


def read_events(path: Path) -> Iterator[dict[str, Any]]:
    """The events of a log; a torn (unterminated, unparsable) last line is skipped.

    Raises:
        ConfigError: the log was written by a newer promptopt (a schema version this one does not know).
        json.JSONDecodeError: a malformed line before the end.
    """
    if not path.exists():
        return
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            try:
                event = json.loads(line)
            except json.JSONDecodeError:
                if line.endswith("\n"):
                    raise
                return
            if event.get("type") == RUN_STARTED and int(event.get("schema_version", 1)) > SCHEMA_VERSION:
                raise ConfigError(f"{path} has event schema version {event['schema_version']}, newer than this "
                                  f"promptopt's {SCHEMA_VERSION}; upgrade promptopt to read it")
            yield event
