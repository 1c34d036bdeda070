"""Reports on finished (or interrupted) runs: one self-contained HTML page per run, and a run list.

Example:
    >>> from promptopt.report import list_runs, write_report
    >>> path = write_report("runs/synthetic-sentiment-apo-e8b414a0")  # doctest: +SKIP
    >>> [run.status for run in list_runs("runs")]  # doctest: +SKIP
    ['finished']

The plots need matplotlib (``pip install 'promptopt[plot]'``), imported only
when a report is written; :func:`list_runs` needs nothing extra.
"""

from __future__ import annotations

from pathlib import Path

from promptopt.report._data import build_report
from promptopt.report._runs import RunSummary, format_runs, list_runs, load_run
from promptopt.store import write_atomic

__all__ = ["RunSummary", "format_runs", "list_runs", "write_report"]


def write_report(run_dir: str | Path) -> Path:
    """Write ``<run_dir>/report.html`` and return its path.

    The page embeds its plots as PNG data URIs and inline CSS, so it opens
    offline and can be mailed as one file. A run without ``result.json``
    (crashed or still running) gets a report of what its event log holds,
    marked incomplete.

    Args:
        run_dir: a run directory, ``runs/<id>``.

    Returns:
        The path of the written ``report.html``.

    Raises:
        ConfigError: ``run_dir`` is not a run directory, its files are damaged,
            or matplotlib is missing (install the ``plot`` extra).
    """
    from promptopt.report._render import render_html

    files = load_run(run_dir)
    data = build_report(files.dir.name, files.config, files.events, files.result)
    path = files.dir / "report.html"
    write_atomic(path, render_html(data))
    return path
