"""The Run: drives a strategy under a budget, picks the best prompt on dev, scores it on test.

``optimize`` is the one entry point shared by the Python API and the CLI.
Resume is replay: the run directory name is derived from the configuration,
and every finished call is in the cache, so running the same configuration
again (after a crash, or to reproduce) replays instead of paying.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from promptopt import events
from promptopt._held_out import DevSelection, HeldOutPlan, plan_held_out
from promptopt._set_run import (
    dev_scores_to_compare,
    per_task_fields,
    set_config,
    set_results,
    test_score,
    with_seed_system,
)
from promptopt.backends import Backend, RetryPolicy
from promptopt.budget import Budget
from promptopt.config import DEFAULT_MODEL, RunConfig, config_from_call, default_budget
from promptopt.context import Context, Selection
from promptopt.estimate import scaled_to_budget
from promptopt.evaluator import AnswerMode, EvalResult, Evaluator, resolve_answer_mode, resolve_answer_modes
from promptopt.exceptions import BudgetExhausted, PromptoptError
from promptopt.history import Candidate, History
from promptopt.prompt import Prompt
from promptopt.replacement import DEFAULT_RULE, decide, resolve_rule
from promptopt.result import Result
from promptopt.selector import SELECTOR_FILE, PromptSelector
from promptopt.session import Session
from promptopt.stats import Score, summarize
from promptopt.store import RunStore
from promptopt.strategies import Strategy
from promptopt.task_options import check_run_inputs
from promptopt.tasks import Task, TaskSet
from promptopt.types import Example

__all__ = ["DEFAULT_MODEL", "Result", "default_budget", "optimize"]

EventCallback = Callable[[dict[str, Any]], None]


def _config_id(config: Mapping[str, Any]) -> str:
    blob = json.dumps(config, sort_keys=True, ensure_ascii=False)
    digest = hashlib.sha256(blob.encode("utf-8")).hexdigest()[:8]
    slug = "".join(ch if ch.isalnum() else "-" for ch in str(config["task"]))[:40].strip("-")
    return f"{slug}-{config['strategy']}-{digest}"


class _Run:
    """One run's state while it executes."""

    def __init__(self, *, task: Task, strategy: Strategy, session: Session, mode: str, seed: int,
                 store: RunStore, on_event: EventCallback | None, finalist_reserve: int,
                 held_out: HeldOutPlan | None = None, modes: Mapping[str, AnswerMode] | None = None,
                 seed_prompt: Prompt | None = None) -> None:
        self.task, self.strategy, self.session, self.seed = task, strategy, session, seed
        self.finalist_reserve = finalist_reserve
        self.store, self.on_event = store, on_event
        self.seed_prompt = task.seed_prompt if seed_prompt is None else seed_prompt
        self.held_out = held_out
        #: the split the strategy scores candidates on (its ctx.dev)
        self.search_dev = held_out.search if held_out is not None else task.splits.dev
        task_of = task.task_of if isinstance(task, TaskSet) else None
        self.history = History(tuple(ex.id for ex in self.search_dev), task_of)
        self.evaluator = Evaluator(task, session.target, mode, modes)  # type: ignore[arg-type]
        self.dev_selection = None if held_out is None else DevSelection(
            held_out, evaluator=self.evaluator, meter=session.meter, loop=session.loop, emit=self.emit)
        self.returned: tuple[Prompt, ...] = ()  # the strategy's finalists
        self.tested: dict[str, EvalResult] = {}
        self.started = time.monotonic()
        self.strategy_seconds = 0.0
        self._last_progress = 0.0
        if on_event is not None:
            session.meter.listener = self._progress

    def _snapshot(self) -> dict[str, Any]:
        usage = self.session.meter.usage
        return {"elapsed": round(time.monotonic() - self.started, 3), "target_calls": usage.target.calls,
                "target_cap": self.session.meter.budget.target_calls,
                "optimizer_calls": usage.optimizer.calls, "tokens": usage.tokens,
                "n_candidates": len(self.history.candidates), "best_dev": self.history.best_partial()}

    def emit(self, event: dict[str, Any]) -> None:
        """Log an event (with the spend so far) and pass it to the caller's callback."""
        event = {**event, **self._snapshot()}
        self.store.append(event)
        if self.on_event is not None:
            self.on_event(event)

    def _progress(self) -> None:
        """Between events, tell the callback about answered calls (not logged), at most 5 times a second."""
        now = time.monotonic()
        if self.on_event is not None and now - self._last_progress >= 0.2:
            self._last_progress = now
            self.on_event({**events.make(events.PROGRESS), **self._snapshot()})

    def context(self) -> Context:
        ctx = Context(task=self.task, seed_prompt=self.seed_prompt, evaluator=self.evaluator,
                      optimizer=self.session.optimizer, loop=self.session.loop, history=self.history,
                      emit=self.emit, seed=self.seed, meter=self.session.meter)
        if self.held_out is not None:  # the strategy searches on examples drawn from train; dev is the Run's
            ctx.train, ctx.dev = self.held_out.train, self.held_out.search
        return ctx

    @property
    def selection_reserve(self) -> int:
        """Target calls kept from the search to score the finalists on the held-out dev split."""
        return self.held_out.reserve if self.held_out is not None else 0

    def search(self, ctx: Context) -> str | None:
        """Score the seed on dev, run the strategy, score its finalists; return the cap hit, if any.

        While the strategy runs, the meter keeps back the target calls that
        ``finalist_reserve`` partly scored candidates need to be scored on the
        rest of dev, so a strategy stopped by the target cap still has its most
        promising candidates scored on all of dev (the Run can only pick a prompt
        scored there). With a held-out selection, "dev" here is the split the strategy
        searches on, and the calls to score the finalists on dev are kept back too.
        """
        self.session.meter.held_back = self.selection_reserve
        try:
            ctx.record(ctx.seed_prompt, operator="seed")
            ctx.evaluate([ctx.seed_prompt])
        except BudgetExhausted as exc:
            self.emit(events.make(events.BUDGET_EXHAUSTED, reason=str(exc)))
            return str(exc)
        meter = self.session.meter
        held_back = self.held_back_for_finalists()
        meter.held_back = self.selection_reserve + held_back
        if self.finalist_reserve:
            self.emit(events.make(events.FINALIST_RESERVE, candidates=self.finalist_reserve, calls=held_back))
        stopped_by: str | None = None
        finalists: Sequence[Prompt] = ()
        started, waited = time.perf_counter(), ctx.waiting_seconds
        try:
            finalists = self.strategy.optimize(ctx)
        except BudgetExhausted as exc:
            self.emit(events.make(events.BUDGET_EXHAUSTED, reason=str(exc)))
            stopped_by = str(exc)
        finally:
            meter.held_back = self.selection_reserve  # what is kept for dev stays kept while finalists complete
            self.strategy_seconds = time.perf_counter() - started - (ctx.waiting_seconds - waited)
        if stopped_by is None and ctx.optimizer_cap_hit:  # the strategy scored what it held, then stopped
            self.emit(events.make(events.BUDGET_EXHAUSTED, reason=ctx.optimizer_cap_hit))
            stopped_by = ctx.optimizer_cap_hit
        self.returned = tuple(finalists)
        refused = self.score_finalists(ctx, finalists, stopped=stopped_by is not None)
        if stopped_by is None and refused is not None:
            self.emit(events.make(events.BUDGET_EXHAUSTED, reason=refused))
            stopped_by = refused
        return stopped_by

    def held_back_for_finalists(self) -> int:
        """Target calls to keep from the strategy: what ``finalist_reserve`` partly scored
        candidates need to be scored on the rest of dev (all of it if the strategy does not
        say), if that is at most half of what is left after the seed (and the selection reserve);
        else nothing."""
        cap, meter = self.session.meter.budget.target_calls, self.session.meter
        dev = self.search_dev
        if self.finalist_reserve == 0:
            return 0
        gap = self.strategy.finalist_gap(len(dev))
        # the examples a candidate lacks may be the ones with the most labels (choice mode)
        per_example = sorted((self.evaluator.calls_for([ex]) for ex in dev), reverse=True)
        need = self.finalist_reserve * sum(per_example[: len(dev) if gap is None else gap])
        return need if cap is not None and 2 * need <= cap - meter.usage.target.calls - self.selection_reserve else 0

    def score_finalists(self, ctx: Context, finalists: Sequence[Prompt], *, stopped: bool) -> str | None:
        """Score on all of dev, while the budget lasts, the finalists the strategy returned, in its order.

        A strategy the budget ``stopped`` returned none: with a finalist reserve, the
        leaders it last offered (:meth:`Context.offer`, up to ``finalist_reserve`` of
        those not yet scored on all of dev, in its order), then the candidates it scored
        on part of dev whose partial mean beats the best full one, best first, are scored
        instead.
        Returns why the budget refused a returned finalist, if it did; every
        candidate left unscored is noted.
        """
        refused = None
        for prompt in {p.id: p for p in finalists}.values():
            reason = self._complete(ctx, prompt)  # tried even after a refusal: a later one may fit
            refused = refused or reason
        if stopped and self.finalist_reserve > 0:
            # a leader already scored on all of dev (the seed, often) needs no calls: the next one gets them
            unscored = [p for p in ctx.offered if not self.history.is_fully_scored(p.id)]
            for prompt in unscored[: self.finalist_reserve]:
                self._complete(ctx, prompt)
            for cand in self.history.partly_scored():
                best = self.history.best()
                if best is None or cand.dev_mean() > best.dev_mean():
                    self._complete(ctx, cand.prompt)
        return refused

    @staticmethod
    def _complete(ctx: Context, prompt: Prompt) -> str | None:
        """Score ``prompt`` on all of dev; if the budget refuses, note it and return why."""
        try:
            ctx.evaluate([prompt])
        except BudgetExhausted as exc:  # another candidate, with fewer dev examples left, may still fit
            ctx.note(events.FINALIST_UNSCORED, prompt_id=prompt.id, reason=str(exc))
            return str(exc)
        return None

    def test(self, prompts: Sequence[Prompt]) -> list[Score]:
        self.session.meter.enforce = False  # the final test evaluation is never cut short
        results = self.session.loop.run(self.evaluator.aevaluate(prompts, self.task.splits.test))
        for res in results:
            self.emit(events.make(events.TEST, prompt_id=res.prompt.id, mean=res.mean, n=len(res.examples),
                                  scores={e.example_id: e.score for e in res.examples}, **per_task_fields(res)))
            self.tested[res.prompt.id] = res
        return [test_score(r) for r in results]

    def test_unseen(self, prompts: Sequence[Prompt]) -> dict[str, list[Score]]:
        """After the test evaluation: each unseen task's test scores of ``prompts`` (outside the budget)."""
        scores: dict[str, list[Score]] = {}
        for name, examples in (self.task.unseen_tests if isinstance(self.task, TaskSet) else {}).items():
            results = self.session.loop.run(self.evaluator.aevaluate(prompts, examples))
            for res in results:
                self.emit(events.make(events.UNSEEN_TEST, prompt_id=res.prompt.id, task=name, mean=res.mean,
                                      n=len(res.examples), scores={e.example_id: e.score for e in res.examples}))
            scores[name] = [summarize([e.score for e in r.examples]) for r in results]
        return scores

    def score_selector(self, selector: PromptSelector) -> tuple[float, Score]:
        """The selector's dev mean and test score, each example scored with the prompt it picks for it.

        Outside the budget, like the final test evaluation (the Run does not choose by it); pairs
        scored before (the best and the seed on test, candidates on dev) cost nothing again.
        """
        self.session.meter.enforce = False
        dev = self._score_picks(selector, "dev", self.task.splits.dev)
        return dev.mean, self._score_picks(selector, "test", self.task.splits.test)

    def _score_picks(self, selector: PromptSelector, split: str, examples: Sequence[Example]) -> Score:
        groups: dict[str, tuple[Prompt, list[Example]]] = {}
        for prompt, ex in zip(selector.pick_many([ex.input for ex in examples]), examples, strict=True):
            groups.setdefault(prompt.id, (prompt, []))[1].append(ex)
        scores: dict[str, float] = {}
        for prompt, picked in groups.values():
            result = self.session.loop.run(self.evaluator.aevaluate([prompt], picked))[0]
            scores.update({e.example_id: e.score for e in result.examples})
        score = summarize([scores[ex.id] for ex in examples])
        self.emit(events.make("selector_score", split=split, mean=score.mean, n=score.n,
                              picks={pid: len(picked) for pid, (_, picked) in groups.items()}))
        return score


def optimize(task: str | Task | Sequence[str | Task] = "gsm8k", strategy: str | Strategy = "apo",
             model: str | Backend = DEFAULT_MODEL, *,
             optimizer_model: str | Backend | None = None, budget: Budget | None = None, seed: int = 0,
             answer_mode: str = "auto", strategy_params: Mapping[str, Any] | None = None,
             n_train: int | None = None, n_dev: int | None = 30, n_test: int | None = 50,
             data_dir: str | Path | None = None, offline: bool = False, input_field: str | None = None,
             target_field: str | None = None, metric: str | None = None, labels: Sequence[str] | None = None,
             gold: str | None = None, runs_dir: str | Path = "runs", run_id: str | None = None,
             cache: bool | str | Path = True,
             model_options: Mapping[str, Any] | None = None, optimizer_options: Mapping[str, Any] | None = None,
             retry: RetryPolicy | None = None, on_event: EventCallback | None = None,
             mlflow: bool | str = False, finalist_reserve: int | None = None,
             replace_if: str = DEFAULT_RULE, select_on: str = "dev", select_top: int = 3,
             task_set: str | Path | None = None,
             unseen: str | Sequence[str | Task] | None = None, system: str | None = None,
             scale_to_budget: bool = True, config: RunConfig | None = None) -> Result:
    """Search for a better prompt and score it once on the test split.

    Every argument but ``on_event`` and ``config`` is the field of :class:`RunConfig`
    with the same name, documented there; the CLI's flags are the same names
    (``--n-dev`` is ``n_dev``).

    Args:
        task: a task name (``gsm8k``, ``sst2``, ``bbh:date_understanding``,
            ``synthetic:sentiment``, ``file:data.jsonl``, ...) or a Task; or a set of tasks
            (``"sst2,mr"``, ``"bbh:all"``, a list) whose shared system prompt is searched.
        strategy: a strategy name (``apo``) or a Strategy instance.
        model: the target model, ``backend:model`` (default: embedded SmolLM2).
        budget: caps on the search (default: :func:`default_budget`, 200 target
            calls in generate mode, 1500 in choice mode).
        on_event: called with every event as it is logged (progress displays).
        config: the whole configuration as one :class:`RunConfig`, instead of
            the other arguments (``optimize(config=RunConfig.from_toml("run.toml"))``).

    Returns:
        The :class:`Result`, also written to ``runs/<id>/result.json``.

    Raises:
        ConfigError: bad input (names, sizes, budget, data); nothing is spent.
        BackendError: a call failed for good (e.g. a bad API key); finished calls stay cached.
    """
    arguments = {k: v for k, v in locals().items() if k not in ("on_event", "config")}  # RunConfig's fields
    return _optimize(config_from_call(config, arguments, "optimize"), on_event)


def _optimize(cfg: RunConfig, on_event: EventCallback | None) -> Result:
    if cfg.mlflow:
        from promptopt.mlflow_logging import _import_mlflow

        _import_mlflow()  # a missing package is bad input, found before anything is spent
    strat, task_obj = check_run_inputs(cfg)
    with _open_session(cfg, task_obj) as session:
        mode = resolve_answer_mode(task_obj, session.target, cfg.answer_mode)
        modes = resolve_answer_modes(task_obj, session.target, cfg.answer_mode)
        task_obj = with_seed_system(task_obj, cfg.system, session.target)
        strat.check_backend(session.target, mode)
        held_out = None if cfg.select_on == "dev" else plan_held_out(
            task_obj, session.target, mode, seed=cfg.seed, select_top=cfg.select_top, budget=session.meter.budget)
        scaling = scaled_to_budget(cfg, strat, task_obj, mode, held_out, modes)  # the budget is known here
        strat = scaling.strategy
        finalist_reserve = cfg.finalist_reserve
        if finalist_reserve is None:
            finalist_reserve = 1 if (strat.finalist_gap(len(task_obj.splits.dev)) or 0) > 0 else 0
        config = {"task": task_obj.name, "strategy": strat.name, "strategy_params": strat.get_params(),
                  "model": session.target.model_string, "optimizer_model": session.optimizer.model_string,
                  "budget": session.meter.budget.to_dict(), "finalist_reserve": finalist_reserve,
                  "replace_if": cfg.replace_if,
                  "seed": cfg.seed, "answer_mode": mode, "task_options": cfg.task_options().to_config(),
                  **scaling.to_config()}  # absent when nothing is scaled: earlier run ids stay
        if held_out is not None:  # absent by default: earlier run ids stay
            config |= {"select_on": cfg.select_on, "select_top": cfg.select_top}
        config.update(set_config(task_obj, modes, cfg.system))  # nothing for one task: run ids stay
        run_dir = Path(cfg.runs_dir) / (cfg.run_id or _config_id(config))
        tracker = None
        if cfg.mlflow:  # started before the run directory exists, so a store that fails leaves nothing behind
            from promptopt.mlflow_logging import MlflowTracker

            experiment = "promptopt" if cfg.mlflow is True else str(cfg.mlflow)
            tracker = MlflowTracker(config, run_dir, experiment=experiment)
            on_event = _both(on_event, tracker)
        store = None
        try:
            store = RunStore(run_dir)
            store.write_json("config.json", config)
            store.start_events()
            seed_prompt = (task_obj.seed_prompt if cfg.system is None or isinstance(task_obj, TaskSet)
                           else replace(task_obj.seed_prompt, system=cfg.system))
            result = _execute(_Run(task=task_obj, strategy=strat, session=session, mode=mode, seed=cfg.seed,
                                   store=store, on_event=on_event, finalist_reserve=finalist_reserve,
                                   held_out=held_out, modes=modes, seed_prompt=seed_prompt), config,
                              scaling_short=scaling.short)
        except BaseException:
            if tracker is not None:
                tracker.finish(None)
            raise
        finally:
            if store is not None:
                store.close()
        if tracker is not None:
            tracker.finish(result)
        return result


def _open_session(cfg: RunConfig, task: Task) -> Session:
    """The Session of a run of ``cfg`` on ``task``; its meter enforces the run's budget from the start.

    The default budget depends on the answer mode, which depends on whether the
    target can score: the Session works it out from the backend it opens.
    """
    def budget(target: Backend) -> Budget:
        return cfg.budget_for(resolve_answer_mode(task, target, cfg.answer_mode))

    return Session(cfg.model, cfg.optimizer_model, budget=budget,
                   cache_path=cfg.cache_path(),
                   model_options=cfg.model_options, optimizer_options=cfg.optimizer_options, retry=cfg.retry)


def _both(first: EventCallback | None, second: EventCallback) -> EventCallback:
    if first is None:
        return second

    def both(event: dict[str, Any]) -> None:
        first(event)
        second(event)

    return both


def _execute(run: _Run, config: dict[str, Any], *, scaling_short: bool = False) -> Result:
    run.emit(events.make(events.RUN_STARTED, schema_version=events.SCHEMA_VERSION))
    ctx = run.context()
    if run.dev_selection is not None:  # the seed's dev score, first, as when the search is on dev
        ctx.record(ctx.seed_prompt, operator="seed")
        run.dev_selection.score(run.history.candidates[ctx.seed_prompt.id])
    stopped_by = run.search(ctx)
    best_cand = _pick_final(run.history, ctx.selection)
    history = run.history
    if run.dev_selection is not None:  # picked again, on dev, among the search's finalists
        history = run.dev_selection.history
        best_cand = run.dev_selection.pick(run.history, returned=run.returned, offered=ctx.offered,
                                           seed_id=ctx.seed_prompt.id,
                                           own_pick=best_cand if ctx.selection is not None else None)
    replacement = None
    seed_cand = history.candidates.get(run.seed_prompt.id)
    if ctx.selection is None and best_cand is not None and seed_cand is not None and best_cand is not seed_cand:
        rule = resolve_rule(config["replace_if"], config["answer_mode"])
        replacement = decide(rule, best_cand.id, *dev_scores_to_compare(history, seed_cand, best_cand))
        run.emit(events.make(events.REPLACEMENT, **replacement.to_dict()))
        if not replacement.replaced:
            best_cand = seed_cand
    seed_prompt = run.seed_prompt
    best = best_cand.prompt if best_cand else seed_prompt
    seed_dev = history.candidates[seed_prompt.id].dev_mean() if seed_prompt.id in history.candidates else 0.0
    search_usage = run.session.meter.usage.to_dict()
    pair = [seed_prompt, best] if best.id != seed_prompt.id else [seed_prompt]
    tests = run.test(pair)
    seed_test, best_test = tests[0], tests[-1]
    unseen = run.test_unseen(pair)
    selector_dev, selector_test = run.score_selector(ctx.selector) if ctx.selector is not None else (None, None)
    total = run.session.meter.usage.to_dict()
    result = Result(
        run_id=run.store.dir.name, run_dir=str(run.store.dir), task=config["task"], strategy=config["strategy"],
        model=config["model"], optimizer_model=config["optimizer_model"], answer_mode=config["answer_mode"],
        seed=config["seed"], seed_prompt=seed_prompt, best_prompt=best, seed_dev=seed_dev,
        best_dev=best_cand.dev_mean() if best_cand else seed_dev, seed_test=seed_test, best_test=best_test,
        usage={"search": search_usage, "total": total}, stopped_by=stopped_by,
        n_candidates=len(run.history.candidates), n_fully_scored=len(history.fully_scored()),
        selection=ctx.selection.rule if ctx.selection else "best-dev-mean",
        replacement=replacement, front=ctx.front, strategy_seconds=round(run.strategy_seconds, 3),
        selector=ctx.selector, selector_dev=selector_dev, selector_test=selector_test,
        select_on=config.get("select_on", "dev"),
        search_dev=None if run.dev_selection is None else run.history.candidates[best.id].dev_mean(),
        **set_results(run.task, config.get("answer_modes", {}), run.tested, (seed_cand, best_cand),
                      (seed_prompt, best), unseen),
        scaled_to_budget=config.get("scaled_to_budget", {}), scaling_short=scaling_short)
    run.emit(events.make(events.RESULT, best_prompt_id=best.id, best_test=best_test.mean))
    if ctx.selector is not None:
        run.store.write_json(SELECTOR_FILE, ctx.selector.to_dict())
    run.store.write_json("result.json", result.to_dict())
    run.store.write_text("best_prompt.txt", _prompt_text(best))
    return result


def _pick_final(history: History, selection: Selection | None) -> Candidate | None:
    """The strategy's own rule among fully scored candidates, else the best dev mean (ties to the seed)."""
    full = history.fully_scored()
    if selection is None or not full:
        return history.best()
    chosen = selection.pick(full)
    if chosen.id not in {c.id for c in full}:
        raise PromptoptError(f"the selection rule {selection.rule!r} picked a candidate not scored on all of dev "
                             "(a defect of the strategy that declared it)")
    return chosen


def _prompt_text(prompt: Prompt) -> str:
    parts = []
    if prompt.system:
        parts.append(f"# system\n{prompt.system}")
    parts.append(f"# instruction\n{prompt.instruction}")
    for i, d in enumerate(prompt.demos, 1):
        parts.append(f"# demo {i}\ninput: {d.input}\noutput: {d.output}")
    parts.append(f"# template\n{prompt.template}")
    return "\n\n".join(parts) + "\n"
