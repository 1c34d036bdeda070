"""Optional MLflow tracking of a run: its settings, its progress per step and its best prompt.

The run directory stays the record of a run; MLflow gets a copy for people who
compare runs there. Where MLflow logs is MLflow's own choice
(``MLFLOW_TRACKING_URI``, else its default store in the working directory).
A tracking failure mid-run is reported once as a warning and tracking stops:
it never costs the search.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from promptopt.events import BUDGET_EXHAUSTED, EVALUATION
from promptopt.exceptions import ConfigError

__all__ = ["MlflowTracker", "flatten_params"]

log = logging.getLogger(__name__)

INSTALL_HINT = "install it with: pip install 'promptopt[mlflow]'"


def _import_mlflow() -> Any:
    try:
        import mlflow
    except ImportError as exc:
        raise ConfigError(f"MLflow logging needs the mlflow package, which is not installed; {INSTALL_HINT}") from exc
    return mlflow


def flatten_params(config: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """A run's configuration as MLflow params: nested keys joined with dots, values as text.

    Example:
        >>> flatten_params({"strategy": "apo", "budget": {"target_calls": 200, "usd": None}})
        {'strategy': 'apo', 'budget.target_calls': '200', 'budget.usd': 'None'}
    """
    params: dict[str, str] = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            params.update(flatten_params(value, prefix=name + "."))
        else:
            params[name] = str(value)
    return params


class MlflowTracker:
    """Logs one run to MLflow: call it with each event; :meth:`finish` at the end.

    Args:
        config: the run's configuration (as in ``config.json``; it holds no keys).
        run_dir: the run directory, whose name becomes the MLflow run name.
        experiment: the MLflow experiment name.

    Raises:
        ConfigError: mlflow is not installed, or the tracking store cannot be opened.
    """

    def __init__(self, config: Mapping[str, Any], run_dir: Path, experiment: str = "promptopt") -> None:
        self.mlflow = _import_mlflow()
        self.run_dir = run_dir
        try:
            self.mlflow.set_experiment(experiment)
            self.run = self.mlflow.start_run(run_name=run_dir.name)
            self.mlflow.log_params(flatten_params(config))
            self.mlflow.set_tag("promptopt.run_dir", str(run_dir))
        except Exception as exc:  # the store's own errors: bad URI, unreachable server, ...
            self._end("FAILED")
            raise ConfigError(f"MLflow tracking at {self.mlflow.get_tracking_uri()!r} failed to start: "
                              f"{type(exc).__name__}: {exc}; check MLFLOW_TRACKING_URI") from None
        self.active = True

    def __call__(self, event: Mapping[str, Any]) -> None:
        """Log the metrics an event carries; the step is the number of target calls spent."""
        kind = event.get("type")
        # "round" is a strategy's own note (APO's, GEPA's), logged as a point on the curve too
        if not self.active or kind not in (EVALUATION, "round", BUDGET_EXHAUSTED):
            return
        step = int(event.get("target_calls") or 0)
        metrics = {"best_dev": event.get("best_dev"), "optimizer_calls": event.get("optimizer_calls"),
                   "tokens": event.get("tokens"), "n_candidates": event.get("n_candidates")}
        if kind == EVALUATION and event.get("dev"):
            metrics["candidate_dev"] = event.get("mean")
        self._guarded(self.mlflow.log_metrics,
                      {k: float(v) for k, v in metrics.items() if isinstance(v, (int, float))}, step=step)

    def finish(self, result: Any | None) -> None:
        """Log the final scores and the run's files, then close the MLflow run.

        ``result`` is ``None`` when the run failed: the MLflow run is marked failed.
        """
        if result is not None and self.active:
            final = {"seed_dev": result.seed_dev, "final_best_dev": result.best_dev,
                     "seed_test": result.seed_test.mean, "best_test": result.best_test.mean,
                     "best_test_ci_low": result.best_test.low, "best_test_ci_high": result.best_test.high,
                     "n_candidates": result.n_candidates}
            self._guarded(self.mlflow.log_metrics, {k: float(v) for k, v in final.items()})
            self._guarded(self.mlflow.set_tag, "promptopt.stopped_by", result.stopped_by or "strategy finished")
            for name in ("best_prompt.txt", "result.json", "config.json"):
                if (self.run_dir / name).exists():
                    self._guarded(self.mlflow.log_artifact, str(self.run_dir / name))
        self._end("FINISHED" if result is not None else "FAILED")

    def _guarded(self, fn: Any, *args: Any, **kwargs: Any) -> None:
        if not self.active:
            return
        try:
            fn(*args, **kwargs)
        except Exception as exc:
            self.active = False
            log.warning("MLflow logging stopped (the run goes on; its directory has everything): %s: %s",
                        type(exc).__name__, exc)

    def _end(self, status: str) -> None:
        self.active = False
        try:
            self.mlflow.end_run(status=status)
        except Exception as exc:
            log.warning("MLflow could not close its run: %s: %s", type(exc).__name__, exc)
