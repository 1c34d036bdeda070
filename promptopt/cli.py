"""The ``promptopt`` command: a thin shell over :func:`promptopt.optimize` and friends.

Bad input exits with code 2 and one line saying what to fix; a failed backend
call exits with code 1. Neither prints a traceback.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Optional

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from promptopt.budget import Budget
from promptopt.exceptions import BackendError, ConfigError, PromptoptError
from promptopt.prompt import Prompt

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="Find better prompts for LLMs you can only call. Runs offline on an embedded model by default.")
out = Console()
err = Console(stderr=True)

# Option declarations shared by several commands (Typer reads them from defaults).
TASK = typer.Option("gsm8k", "--task", "-t", help="Task: gsm8k, sst2, agnews, bbh:<subtask>, synthetic:<kind>, "
                    "file:<path.jsonl|csv> (see `promptopt tasks`).")
MODEL = typer.Option("llamacpp:smollm2", "--model", "-m", help="Target model as backend:model, e.g. "
                     "llamacpp:smollm2 (embedded), openai:<name> (with --base-url or OPENAI_BASE_URL).")
BASE_URL = typer.Option(None, "--base-url", help="Endpoint of an openai: model (else $OPENAI_BASE_URL). "
                        "The API key is read from $OPENAI_API_KEY.")
ANSWER_MODE = typer.Option("auto", "--answer-mode", help="auto (choice where the task has labels and the model "
                           "can score), generate (parse the reply) or choice (most likely label).")
SEED = typer.Option(0, "--seed", help="Seeds splits, sampling and the search.")
N_TRAIN = typer.Option(None, "--n-train", help="Training examples (default: all).")
N_DEV = typer.Option(30, "--n-dev", help="Dev examples used to select prompts.")
N_TEST = typer.Option(50, "--n-test", help="Test examples for the final score (raise it to compare prompts).")
DATA_DIR = typer.Option(None, "--data-dir", help="Dataset folder (else $PROMPTOPT_DATA_DIR, else the user cache).")
OFFLINE = typer.Option(False, "--offline", help="Never download datasets.")
INPUT_FIELD = typer.Option(None, "--input-field", help="file: tasks: the field holding the input.")
TARGET_FIELD = typer.Option(None, "--target-field", help="file: tasks: the field holding the gold answer.")
METRIC = typer.Option(None, "--metric", help="file: tasks: exact, contains or numeric.")
LABELS = typer.Option(None, "--labels", help="file: tasks: comma-separated closed label set (enables choice mode).")
RUNS_DIR = typer.Option(Path("runs"), "--runs-dir", help="Where run directories and the cache go.")
CACHE = typer.Option(None, "--cache", help="Cache file (default: <runs-dir>/cache.sqlite).")
NO_CACHE = typer.Option(False, "--no-cache", help="Do not read or write the response cache.")
MAX_CONCURRENCY = typer.Option(None, "--max-concurrency", help="openai: models: requests in flight (default 8).")
TIMEOUT = typer.Option(None, "--timeout", help="openai: models: seconds before a request is given up and retried.")
REQUESTS_PER_SECOND = typer.Option(None, "--requests-per-second", help="Any model: start at most this many "
                                    "requests per second, evenly spaced (retries included).")
TOKENS_PER_MINUTE = typer.Option(None, "--tokens-per-minute", help="Any model: send no new request while the "
                                 "replies of the last 60 s used this many tokens.")
ROUTER = typer.Option(None, "--router", help="litellm: models: a router file (.toml, or .yaml with PyYAML) listing "
                      "deployments; --model litellm:<model_name> then spreads calls over them.")


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


def _parse_params(items: list[str]) -> dict[str, Any]:
    params: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--param expects name=value (e.g. --param beam_size=2); got {item!r}")
        try:
            params[key.strip()] = json.loads(raw)
        except json.JSONDecodeError:
            params[key.strip()] = raw
    return params


def _cache_arg(cache: Optional[Path], no_cache: bool) -> bool | Path:
    return False if no_cache else (cache if cache is not None else True)


def _labels(labels: Optional[str]) -> list[str] | None:
    return [x.strip() for x in labels.split(",") if x.strip()] if labels else None


def _model_options(base_url: Optional[str], max_concurrency: Optional[int] = None,
                   timeout: Optional[float] = None, router: Optional[Path] = None,
                   requests_per_second: Optional[float] = None,
                   tokens_per_minute: Optional[int] = None) -> dict[str, Any]:
    """Endpoint and throttle options; only what was given, so backends that take none get none."""
    given = {"base_url": base_url, "max_concurrency": max_concurrency, "timeout": timeout, "router": router,
             "requests_per_second": requests_per_second, "tokens_per_minute": tokens_per_minute}
    return {k: v for k, v in given.items() if v is not None}


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
def optimize(
    task: str = TASK,
    strategy: str = typer.Option("apo", "--strategy", "-s", help="Search strategy (see `promptopt strategies`)."),
    model: str = MODEL,
    optimizer_model: Optional[str] = typer.Option(None, "--optimizer-model",
                                                  help="Model that writes prompts (default: the target model)."),
    base_url: Optional[str] = BASE_URL,
    max_concurrency: Optional[int] = MAX_CONCURRENCY,
    timeout: Optional[float] = TIMEOUT,
    router: Optional[Path] = ROUTER,
    requests_per_second: Optional[float] = REQUESTS_PER_SECOND,
    tokens_per_minute: Optional[int] = TOKENS_PER_MINUTE,
    optimizer_base_url: Optional[str] = typer.Option(None, "--optimizer-base-url",
                                                     help="Endpoint of the optimizer model."),
    param: list[str] = typer.Option([], "--param", "-p", help="Strategy hyper-parameter name=value (repeatable)."),
    budget_target_calls: Optional[int] = typer.Option(
        None, "--budget-target-calls", help="Cap on target-model calls (default when no cap is given: "
        "200 in generate mode, 1500 in choice mode, whose calls are single cheap scores)."),
    budget_optimizer_calls: Optional[int] = typer.Option(None, "--budget-optimizer-calls",
                                                         help="Cap on optimizer calls."),
    budget_tokens: Optional[int] = typer.Option(None, "--budget-tokens", help="Cap on tokens (both roles)."),
    budget_usd: Optional[float] = typer.Option(None, "--budget-usd", help="Cap on dollars (both roles)."),
    budget_seconds: Optional[float] = typer.Option(None, "--budget-seconds", help="Cap on search wall time."),
    finalist_reserve: Optional[int] = typer.Option(
        None, "--finalist-reserve", help="Partly scored candidates to keep target calls back for, so they can "
        "still be scored on all of dev when the strategy runs out (0: the strategy gets the whole cap; default: "
        "1 for apo, fewshot and gepa when they score candidates on samples of dev, else 0)."),
    seed: int = SEED, answer_mode: str = ANSWER_MODE,
    n_train: Optional[int] = N_TRAIN, n_dev: Optional[int] = N_DEV, n_test: Optional[int] = N_TEST,
    data_dir: Optional[Path] = DATA_DIR, offline: bool = OFFLINE,
    input_field: Optional[str] = INPUT_FIELD, target_field: Optional[str] = TARGET_FIELD,
    metric: Optional[str] = METRIC, labels: Optional[str] = LABELS,
    runs_dir: Path = RUNS_DIR, run_id: Optional[str] = typer.Option(None, "--run-id", help="Run directory name "
                                                                    "(default: derived from the configuration)."),
    cache: Optional[Path] = CACHE, no_cache: bool = NO_CACHE,
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show a progress bar on stderr."),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON instead of a table."),
    mlflow: bool = typer.Option(False, "--mlflow", help="Also log the run to MLflow (params, metrics per step, "
                                "best prompt; store from MLFLOW_TRACKING_URI; extra promptopt[mlflow])."),
    mlflow_experiment: str = typer.Option("promptopt", "--mlflow-experiment", help="MLflow experiment name."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Check the options and print the most the run "
                                 "could spend (calls, tokens, dollars), without calling any model."),
) -> None:
    """Search for a better prompt, then score the seed and the best prompt once on test."""
    from promptopt.estimate import estimate
    from promptopt.run import check_finalist_reserve
    from promptopt.run import optimize as run_optimize

    with _friendly_errors():
        caps: dict[str, Any] = dict(target_calls=budget_target_calls, optimizer_calls=budget_optimizer_calls,
                                    tokens=budget_tokens, usd=budget_usd, seconds=budget_seconds)
        budget = Budget(**caps) if any(v is not None for v in caps.values()) else None
        kwargs: dict[str, Any] = dict(
            optimizer_model=optimizer_model, budget=budget, seed=seed, answer_mode=answer_mode,
            strategy_params=_parse_params(param), n_train=n_train, n_dev=n_dev, n_test=n_test,
            data_dir=data_dir, offline=offline, input_field=input_field, target_field=target_field,
            metric=metric, labels=_labels(labels), runs_dir=runs_dir, run_id=run_id,
            cache=_cache_arg(cache, no_cache), model_options=_model_options(
                base_url, max_concurrency, timeout, router, requests_per_second, tokens_per_minute),
            optimizer_options=_model_options(optimizer_base_url) or None)
        check_finalist_reserve(finalist_reserve)  # also on a dry run, which checks the options
        if dry_run:
            spend_keys = ("optimizer_model", "budget", "seed", "answer_mode", "strategy_params", "n_train", "n_dev",
                          "n_test", "data_dir", "offline", "input_field", "target_field", "metric", "labels",
                          "model_options", "optimizer_options")
            _print_estimate(estimate(task, strategy, model, **{k: kwargs[k] for k in spend_keys}))
            return
        view = _ProgressView() if progress else None
        try:
            result = run_optimize(task, strategy, model, on_event=view, finalist_reserve=finalist_reserve,
                                  mlflow=mlflow_experiment if mlflow else False, **kwargs)
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
    out.print(table)
    search, total = result.usage["search"], result.usage["total"]
    for role in ("target", "optimizer"):
        s, t = search[role], total[role]
        out.print(f"{role:9s} calls: search {s['calls']} (paid {s['paid_calls']}), with test {t['calls']} "
                  f"(paid {t['paid_calls']}); tokens {t['tokens']:,}", highlight=False)
    out.print(f"candidates: {result.n_candidates}; stopped by: {result.stopped_by or 'finished'}", highlight=False)
    out.print(f"best prompt: {result.best_prompt.instruction!r}", highlight=False, soft_wrap=True)
    out.print(f"run directory: {result.run_dir}", highlight=False, soft_wrap=True)


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
    table.add_row("dollars", "unknown (no price for this backend)" if est.usd is None else show(est.usd, "$"))
    out.print(table)
    out.print(f"calls per example: {est.calls_per_example:g}; target tokens per call ≈ "
              f"{est.target_tokens_per_call} (text length / 4). Nothing was run or written.", highlight=False)


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
def evaluate(
    task: str = TASK, model: str = MODEL, base_url: Optional[str] = BASE_URL,
    instruction: Optional[str] = typer.Option(None, "--instruction", "-i", help="Instruction to score "
                                              "(placed in the task's seed prompt; default: the seed instruction)."),
    prompt_file: Optional[Path] = typer.Option(None, "--prompt-file", help="A .txt instruction, a Prompt .json, "
                                               "or a run's result.json (scores its best prompt)."),
    split: str = typer.Option("test", "--split", help="train, dev or test."),
    seed: int = SEED, answer_mode: str = ANSWER_MODE,
    n_train: Optional[int] = N_TRAIN, n_dev: Optional[int] = N_DEV, n_test: Optional[int] = N_TEST,
    data_dir: Optional[Path] = DATA_DIR, offline: bool = OFFLINE,
    input_field: Optional[str] = INPUT_FIELD, target_field: Optional[str] = TARGET_FIELD,
    metric: Optional[str] = METRIC, labels: Optional[str] = LABELS,
    runs_dir: Path = RUNS_DIR, cache: Optional[Path] = CACHE, no_cache: bool = NO_CACHE,
) -> None:
    """Score one prompt on a split of a task (no search)."""
    from promptopt.evaluate import evaluate as run_evaluate

    with _friendly_errors():
        ev = run_evaluate(_load_prompt(instruction, prompt_file), task, model, split=split,  # type: ignore[arg-type]
                          answer_mode=answer_mode, seed=seed, n_train=n_train, n_dev=n_dev, n_test=n_test,
                          data_dir=data_dir, offline=offline, input_field=input_field, target_field=target_field,
                          metric=metric, labels=_labels(labels), cache=_cache_arg(cache, no_cache),
                          runs_dir=runs_dir, model_options=_model_options(base_url))
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
