"""The ``promptopt`` command: a thin shell over :func:`promptopt.optimize` and friends.

Bad input exits with code 2 and one line saying what to fix; a failed backend
call exits with code 1. Neither prints a traceback.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Optional

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from promptopt._cli_config import with_run_config
from promptopt.config import RunConfig
from promptopt.exceptions import BackendError, ConfigError, PromptoptError
from promptopt.prompt import Prompt

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="Find better prompts for LLMs you can only call. Runs offline on an embedded model by default.")
out = Console()
err = Console(stderr=True)

RUNS_DIR = typer.Option(Path("runs"), "--runs-dir", help="Where run directories and the cache go.")


@contextmanager
def _friendly_errors() -> Iterator[None]:
    """One line per failure: exit 2 for bad input, 1 for a failed call, 130 on Ctrl-C."""
    try:
        yield
    except ConfigError as exc:
        err.print(f"[bold red]error:[/] {exc}", markup=True, highlight=False, soft_wrap=True)
        raise typer.Exit(2) from None
    except (BackendError, PromptoptError) as exc:
        err.print(f"[bold red]error:[/] {exc}", markup=True, highlight=False, soft_wrap=True)
        raise typer.Exit(1) from None
    except KeyboardInterrupt:
        err.print("interrupted; rerun the same command to resume (finished calls replay from the cache)")
        raise typer.Exit(130) from None


class _ProgressView:
    """Progress bar fed by run events: candidates, best dev score, calls and tokens spent.

    It appears with the first event, so input errors found before any call
    print alone, on one line.
    """

    def __init__(self) -> None:
        self.progress = Progress(TextColumn("{task.description}"), BarColumn(), TimeElapsedColumn(), console=err)
        self.bar = self.progress.add_task("starting", total=None)
        self.started = False

    def __call__(self, event: dict[str, Any]) -> None:
        if not self.started:
            self.progress.start()
            self.started = True
        text = (f"{event['n_candidates']} candidates · best dev {event['best_dev']:.3f} · "
                f"target {event['target_calls']} · optimizer {event['optimizer_calls']} calls · "
                f"{event['tokens']:,} tokens")
        # The bar measures the search against its target-call cap; the final test goes past it.
        self.progress.update(self.bar, completed=event["target_calls"], total=event.get("target_cap"),
                             description=text)

    def stop(self) -> None:
        if self.started:
            self.progress.stop()


@app.command()
@with_run_config(search=True, errors=_friendly_errors)
def optimize(
    config: RunConfig,
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show a progress bar on stderr."),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON instead of a table."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Check the options and print the most the run "
                                 "could spend (calls, tokens, dollars), without calling any model."),
) -> None:
    """Search for a better prompt, then score the seed and the best prompt once on test.

    With no --budget-* cap, the budget is 200 target calls in generate mode and 1500 in
    choice mode (whose calls are single cheap scores).
    """
    from promptopt.estimate import estimate
    from promptopt.run import optimize as run_optimize

    with _friendly_errors():
        if dry_run:
            _print_estimate(estimate(config=config))
            return
        view = _ProgressView() if progress else None
        try:
            result = run_optimize(config=config, on_event=view)
        finally:
            if view is not None:
                view.stop()
    if as_json:
        out.print_json(json.dumps(result.to_dict()))
        return
    _print_result(result)


def _print_result(result: Any) -> None:
    table = Table(title=f"{result.task} · {result.strategy} · {result.model} · {result.answer_mode} mode")
    table.add_column("prompt")
    table.add_column("dev", justify="right")
    table.add_column("test (95% CI)", justify="right")
    table.add_row("seed", f"{result.seed_dev:.3f}", str(result.seed_test))
    table.add_row("best", f"{result.best_dev:.3f}", str(result.best_test))
    if result.selector_test is not None:  # prompt-selection: each example answered with the prompt picked for it
        table.add_row("per-input selector", f"{result.selector_dev:.3f}", str(result.selector_test))
    out.print(table)
    if result.search_dev is not None:  # held-out selection: the dev column is the split the search never saw
        out.print(f"picked on held-out dev; the best prompt's mean on the examples the search used: "
                  f"{result.search_dev:.3f}", highlight=False)
    if result.per_task or result.unseen:
        out.print(_per_task_table(result))
    search, total = result.usage["search"], result.usage["total"]
    for role in ("target", "optimizer"):
        s, t = search[role], total[role]
        out.print(f"{role:9s} calls: search {s['calls']} (paid {s['paid_calls']}), with test {t['calls']} "
                  f"(paid {t['paid_calls']}); tokens {t['tokens']:,}", highlight=False)
    out.print(f"candidates: {result.n_candidates} ({result.n_fully_scored} scored on all of dev); "
              f"stopped by: {result.stopped_by or 'finished'}", highlight=False)
    if result.scaled_to_budget:
        out.print(_scaled_line(result.scaled_to_budget, result.scaling_short), highlight=False, soft_wrap=True)
    if result.scaling_short:  # the step did not fit even at its smallest: say so rather than let it pass
        err.print(f"warning: {result.strategy}: even with every step-size parameter at its smallest, the budget "
                  "did not fit one full step and three new candidates scored on all of dev; --dry-run shows "
                  "the plan and the budget that would fit", markup=False, highlight=False, soft_wrap=True)
    if result.replacement is not None:
        out.print(result.replacement.describe(), highlight=False)
    if result.per_task:  # a set of tasks shares the system prompt; each task keeps its instruction
        out.print(f"best system prompt: {result.best_prompt.system!r}", highlight=False, soft_wrap=True)
    else:
        out.print(f"best prompt: {result.best_prompt.instruction!r}", highlight=False, soft_wrap=True)
    out.print(f"run directory: {result.run_dir}", highlight=False, soft_wrap=True)


def _scaled_line(scaled: Mapping[str, Sequence[int]], smallest: bool) -> str:
    """The parameters a run shrank to fit its budget, e.g. ``scaled to the budget: n_score 100→20; ...``."""
    at_least = " (every one at its smallest)" if smallest else ""
    from promptopt.strategies._scaling import describe_changes

    changes = describe_changes(scaled)
    return f"scaled to the budget: {changes}{at_least}; --no-scale-to-budget runs the paper's values"


def _per_task_table(result: Any) -> Table:
    """Each task of a set: seed → best on dev and test; then the unseen tasks, on test only."""
    def pair(seed: float | None, best: float | None) -> str:
        return " → ".join("–" if x is None else f"{x:.3f}" for x in (seed, best))

    table = Table(title="per task (the set's dev and test scores are the means of these)")
    for name in ("task", "mode", "dev seed → best", "test seed → best", "test n"):
        table.add_column(name, justify="left" if name in ("task", "mode") else "right")
    for name, s in result.per_task.items():
        table.add_row(name, s.answer_mode, pair(s.seed_dev, s.best_dev), pair(s.seed_test.mean, s.best_test.mean),
                      str(s.best_test.n))
    for name, s in result.unseen.items():
        table.add_row(f"{name} (unseen)", s.answer_mode, "–", pair(s.seed_test.mean, s.best_test.mean),
                      str(s.best_test.n))
    return table


def _print_estimate(est: Any) -> None:
    def show(value: float | None, unit: str = "") -> str:
        return "no cap" if value is None else f"{value:,.0f}{unit}" if unit != "$" else f"${value:.2f}"

    table = Table(title=f"dry run: {est.task} · {est.strategy} · {est.model} · {est.answer_mode} mode")
    table.add_column("what")
    table.add_column("at most", justify="right")
    table.add_row("target calls, search (incl. the seed on dev)", show(est.search_target_calls))
    table.add_row("target calls, final test (seed + best)", show(est.test_target_calls))
    table.add_row("optimizer calls", show(est.search_optimizer_calls))
    table.add_row("tokens", show(est.tokens))
    if est.budget.target_tokens is not None:  # checked when each strategy call starts: one call may end past it
        table.add_row("target-model tokens, search (cap)", show(est.budget.target_tokens))
    table.add_row("dollars", "unknown (no price for this backend)" if est.usd is None else show(est.usd, "$"))
    out.print(table)
    out.print(f"calls per example: {est.calls_per_example:g}; target tokens per call ≈ "
              f"{est.target_tokens_per_call} (text length / 4). Nothing was run or written.", highlight=False)
    if est.scaled:  # the plan below is the scaled strategy's
        out.print(_scaled_line(est.scaled, est.scaling_short), highlight=False, soft_wrap=True)
    plan = est.plan
    if plan is not None:
        s, unit = plan.per_step, plan.unit
        losses = f" + {s.loss_calls:,.0f} scored gold continuations" if s.loss_calls else ""
        out.print(f"plan: one {unit} ≈ {s.example_evals:,.0f} example evaluations{losses} "
                  f"({est.target_calls_of(s):,.0f} target calls), {s.optimizer_calls:,.0f} optimizer calls, "
                  f"{s.new_full:.3g} new candidates scored on all of dev", highlight=False)
        paper = "until the budget ends" if plan.paper_steps is None else plan.paper_steps
        out.print(f"{unit}s: the paper's loop runs {paper}; the budget fits "
                  f"{'all (no cap)' if est.steps is None else f'{est.steps:,.2f}'}; new candidates scored on all "
                  f"of dev that fit: {'unknown' if est.new_full is None else est.new_full}", highlight=False)
    for warning in est.warnings:  # advice, not an error: the exit code stays 0
        err.print(f"warning: {warning}", markup=False, highlight=False, soft_wrap=True)


def _load_prompt(instruction: Optional[str], prompt_file: Optional[Path]) -> Prompt | str | None:
    if prompt_file is None:
        return instruction
    if not prompt_file.is_file():
        raise ConfigError(f"prompt file {str(prompt_file)!r} does not exist; pass a .txt instruction, "
                          "a Prompt .json, or a run's result.json")
    text = prompt_file.read_text(encoding="utf-8")
    if prompt_file.suffix != ".json":
        return text.strip()
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"prompt file {str(prompt_file)!r} is not valid JSON "
                          f"(line {exc.lineno}): {exc.msg}") from None
    return Prompt.from_dict(data.get("best_prompt", data))


@app.command()
@with_run_config(search=False, errors=_friendly_errors)
def evaluate(
    config: RunConfig,
    instruction: Optional[str] = typer.Option(None, "--instruction", "-i", help="Instruction to score "
                                              "(placed in the task's seed prompt; default: the seed instruction)."),
    prompt_file: Optional[Path] = typer.Option(None, "--prompt-file", help="A .txt instruction, a Prompt .json, "
                                               "or a run's result.json (scores its best prompt)."),
    split: str = typer.Option("test", "--split", help="train, dev or test."),
) -> None:
    """Score one prompt on a split of a task (no search)."""
    from promptopt.evaluate import evaluate as run_evaluate

    with _friendly_errors():
        ev = run_evaluate(_load_prompt(instruction, prompt_file), split=split, config=config)  # type: ignore[arg-type]
    out.print(f"{ev.task} · {ev.split} · {ev.answer_mode} mode: {ev.score}", highlight=False)
    out.print(f"calls: {ev.usage['target']['calls']} (paid {ev.usage['target']['paid_calls']}); "
              f"tokens {ev.usage['target']['tokens']:,}", highlight=False)


@app.command()
def tasks() -> None:
    """List the built-in tasks."""
    from promptopt.tasks import list_tasks

    table = Table("task", "answers", "description")
    for info in list_tasks():
        table.add_row(info.name, info.answer or "", info.description)
    out.print(table)


@app.command()
def strategies() -> None:
    """List the search strategies with their hyper-parameters and defaults."""
    from promptopt.strategies import list_strategies

    for info in list_strategies():
        needs = " (needs log-probs)" if info.needs_score else ""
        out.print(f"[bold]{info.name}[/]{needs}: {info.summary}", highlight=False, soft_wrap=True)
        out.print("  " + ", ".join(f"{k}={v!r}" for k, v in info.params.items()), highlight=False, soft_wrap=True)


@app.command()
def report(run_dir: Path = typer.Argument(..., help="A run directory, runs/<id>.")) -> None:
    """Write <run_dir>/report.html: score over spend, candidates, lineage, prompt diff, test wins, spend."""
    from promptopt.report import write_report

    with _friendly_errors():
        path = write_report(run_dir)
    out.print(f"report: {path}", highlight=False, soft_wrap=True)


@app.command()
def runs(runs_dir: Path = RUNS_DIR) -> None:
    """List run directories, oldest first: task, strategy, status, dev seed→best, best test, calls."""
    from promptopt.report import format_runs, list_runs

    with _friendly_errors():
        found = list_runs(runs_dir)
    if not found:
        out.print(f"no runs in {runs_dir}", highlight=False, soft_wrap=True)
        return
    for line in format_runs(found):
        out.print(line, markup=False, highlight=False, soft_wrap=True)


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point."""
    app(args=argv if argv is not None else sys.argv[1:])


if __name__ == "__main__":
    main()
