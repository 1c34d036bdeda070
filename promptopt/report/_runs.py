"""Reading run directories (``config.json``, ``events.jsonl``, ``result.json``) and summing them up."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from promptopt.exceptions import ConfigError
from promptopt.report import _data
from promptopt.store import RunStore


@dataclass(frozen=True)
class RunFiles:
    """What a run directory holds; ``result`` is None for a run that crashed or is still going."""

    dir: Path
    config: Mapping[str, Any]
    events: tuple[Mapping[str, Any], ...]
    result: Mapping[str, Any] | None


@dataclass(frozen=True)
class RunSummary:
    """One line of ``promptopt runs``.

    Attributes:
        run_id: the run directory name.
        status: ``finished`` (result.json written) or ``incomplete``.
        seed_dev / best_dev: full-dev means of the seed and the best prompt (None if not scored yet).
        best_test: the best prompt's test mean (finished runs only).
        target_calls / optimizer_calls: calls so far, including the final test evaluation.
        mtime: the newest modification time of the run's files (seconds since the epoch).
        strategy_output: what the strategy added to its result, if anything: its own
            selection rule, the size of its Pareto front (e.g. ``picked by knee; front of 6``).
        select_on: the split the final prompt was picked on: ``dev``, or ``held-out`` (dev, kept
            from a search on examples drawn from train); ``seed_dev``/``best_dev`` are its means.
        per_task: on a set of tasks, each task's best test mean, then each unseen task's
            (e.g. ``sst2 0.700, mr 0.650; unseen subj 0.600``); empty on one task.
    """

    run_id: str
    path: Path
    task: str
    strategy: str
    status: str
    seed_dev: float | None
    best_dev: float | None
    best_test: float | None
    target_calls: int
    optimizer_calls: int
    mtime: float
    strategy_output: str = ""
    select_on: str = "dev"
    per_task: str = ""


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{path} is not valid JSON (line {exc.lineno}): {exc.msg}; "
                          "it is written atomically, so the file was edited or damaged") from None


def load_run(run_dir: str | Path) -> RunFiles:
    """Read a run directory; a torn last line of ``events.jsonl`` is skipped.

    Raises:
        ConfigError: the directory is missing or holds neither ``config.json`` nor ``events.jsonl``.
    """
    path = Path(run_dir)
    store = RunStore(path)
    if not path.is_dir() or not ((path / "config.json").is_file() or store.events_path.is_file()):
        raise ConfigError(f"{str(path)!r} is not a run directory (no config.json or events.jsonl); "
                          "pass runs/<id> as printed by `promptopt optimize` or listed by `promptopt runs`")
    config = _read_json(path / "config.json") if (path / "config.json").is_file() else {}
    try:
        events = tuple(store.events())
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{store.events_path} has a malformed line before its end ({exc.msg}); "
                          "only a torn last line is expected after a crash") from None
    result = _read_json(path / "result.json") if (path / "result.json").is_file() else None
    return RunFiles(path, config, events, result)


def _mtime(path: Path) -> float:
    return max((p.stat().st_mtime for p in path.iterdir() if p.is_file()), default=path.stat().st_mtime)


def summarize_run(files: RunFiles, mtime: float = 0.0) -> RunSummary:
    """The :class:`RunSummary` of loaded run files (pure: no file access)."""
    events, result, config = files.events, files.result, files.config
    means = _data.dev_means(events)
    seed, best = _data.seed_id(events), _data.best_id(events)
    snap = _data.last_snapshot(events)
    if result is not None:
        usage = (result.get("usage") or {}).get("total") or {}
        seed_dev, best_dev = result.get("seed_dev"), result.get("best_dev")
        best_test = (result.get("best_test") or {}).get("mean")
        target = int((usage.get("target") or {}).get("calls", 0))
        optimizer = int((usage.get("optimizer") or {}).get("calls", 0))
    else:
        seed_dev, best_dev, best_test = means.get(seed or ""), means.get(best or ""), None
        target, optimizer = (snap.target_calls, snap.optimizer_calls) if snap else (0, 0)
    return RunSummary(
        run_id=files.dir.name, path=files.dir,
        task=str(config.get("task") or (result or {}).get("task") or "?"),
        strategy=str(config.get("strategy") or (result or {}).get("strategy") or "?"),
        status="finished" if result is not None else "incomplete",
        seed_dev=None if seed_dev is None else float(seed_dev), best_dev=None if best_dev is None else float(best_dev),
        best_test=None if best_test is None else float(best_test), target_calls=target, optimizer_calls=optimizer,
        mtime=mtime, strategy_output=_strategy_output(result), per_task=_per_task(result),
        select_on=str((result or {}).get("select_on") or config.get("select_on") or "dev"))


def _strategy_output(result: Mapping[str, Any] | None) -> str:
    if result is None:
        return ""
    parts = []
    if result.get("selection", "best-dev-mean") != "best-dev-mean":
        parts.append(f"picked by {result['selection']}")
    if result.get("front"):
        parts.append(f"front of {len(result['front'])}")
    return "; ".join(parts)


def _per_task(result: Mapping[str, Any] | None) -> str:
    def means(scores: Mapping[str, Any]) -> str:
        return ", ".join(f"{name} {float(s['best_test']['mean']):.3f}" for name, s in scores.items())

    if not result or not result.get("per_task"):
        return ""
    unseen = result.get("unseen") or {}
    return means(result["per_task"]) + (f"; unseen {means(unseen)}" if unseen else "")


def list_runs(runs_dir: str | Path = "runs") -> list[RunSummary]:
    """Summaries of the run directories under ``runs_dir``, oldest first (by file modification time).

    Directories without ``config.json`` or ``events.jsonl`` are not runs and are left out.

    Raises:
        ConfigError: ``runs_dir`` does not exist, or a run's files are damaged.

    Example:
        >>> for run in list_runs("runs"):  # doctest: +SKIP
        ...     print(run.run_id, run.status, run.best_test)
    """
    root = Path(runs_dir)
    if not root.is_dir():
        raise ConfigError(f"runs directory {str(root)!r} does not exist; pass --runs-dir (default: runs)")
    out = []
    for path in root.iterdir():
        if path.is_dir() and ((path / "config.json").is_file() or (path / "events.jsonl").is_file()):
            out.append(summarize_run(load_run(path), _mtime(path)))
    return sorted(out, key=lambda s: (s.mtime, s.run_id))


def _fmt(x: float | None) -> str:
    return "–" if x is None else f"{x:.3f}"


def format_runs(runs: Sequence[RunSummary]) -> list[str]:
    """Aligned text lines for ``promptopt runs``: a header, then one line per run."""
    extra = any(r.strategy_output for r in runs)  # the column only when a strategy added something
    sets = any(r.per_task for r in runs)  # likewise for runs on a set of tasks
    rows = [("run", "task", "strategy", "status", "dev seed→best", "best test", "calls (target+optimizer)")
            + (("strategy output",) if extra else ()) + (("best test per task",) if sets else ())]
    for r in runs:
        # a held-out run's dev means are on held-out dev once finished, on the search split until then
        picked_on = "" if r.select_on == "dev" else " (held-out)" if r.status == "finished" else " (search)"
        rows.append((r.run_id, r.task, r.strategy, r.status, f"{_fmt(r.seed_dev)}→{_fmt(r.best_dev)}{picked_on}",
                     _fmt(r.best_test), f"{r.target_calls}+{r.optimizer_calls}")
                    + ((r.strategy_output,) if extra else ()) + ((r.per_task,) if sets else ()))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() for row in rows]
