"""The DSPy half of the peer benchmarks; runs inside the DSPy venv (bench/setup_dspy.sh).

It needs only DSPy and the standard library, never promptopt, so each system
runs in its own environment and the driver (bench/quality.py, bench/overhead.py)
talks to this script through files and command-line flags.

    python bench/dspy_side.py optimize --splits s.json --optimizer gepa --target-url URL \\
        --optimizer-url URL --budget 200 --seed 0 --out result.json
    python bench/dspy_side.py overhead --sizes 10,100,1000,10000 --out overhead.json

``optimize`` compiles a one-predictor program (signature ``text -> label``
whose instructions are the task's seed instruction) with COPRO, MIPROv2 or GEPA,
or leaves it as it is (``none``), then scores it once on the test split.
``overhead`` times ``dspy.Evaluate`` with ``DummyLM`` on the same prompt ×
example grid as bench/overhead.py.
"""

from __future__ import annotations

import argparse
import json
import logging
import re
import sys
import time
from importlib.metadata import version
from typing import Any

# dspy is imported inside the functions that use it, so that bench/overhead.py can
# share this file's grid helpers (grid_shape, example_text, ...) without DSPy installed.

# The metric reads a label the way promptopt's classification tasks do: the reply,
# trimmed, is a label (any case), or exactly one label occurs in it as a whole word.
_TRIM = " \t\r\n.!\"'`*:"


def read_label(text: str, labels: list[str]) -> str | None:
    cleaned = text.strip().strip(_TRIM).casefold()
    for label in labels:
        if cleaned == label.casefold():
            return label
    found = [label for label in labels
             if re.search(rf"(?<!\w){re.escape(label.casefold())}(?!\w)", text.casefold())]
    return found[0] if len(found) == 1 else None


def make_metric(labels: list[str]) -> Any:
    """Accuracy, with promptopt's textual verdict as GEPA's feedback (GEPA calls it with five arguments)."""
    import dspy

    def metric(gold: Any, pred: Any, trace: Any = None, pred_name: Any = None, pred_trace: Any = None) -> Any:
        answer = read_label(str(getattr(pred, "label", "") or ""), labels)
        score = 1.0 if answer is not None and answer.casefold() == str(gold.label).casefold() else 0.0
        if pred_name is None and pred_trace is None:
            return score  # Evaluate, COPRO and MIPROv2 want a number
        got = "no parsable answer" if answer is None else repr(answer)
        return dspy.Prediction(score=score, feedback="correct" if score else f"expected {gold.label!r}, got {got}")

    return metric


def knobs_for_budget(optimizer: str, budget: int, n_train: int, n_dev: int, calls_per_eval: float) -> dict[str, int]:
    """Each optimizer's own knobs, set so that its target calls land near ``budget``.

    ``calls_per_eval`` is target calls per metric evaluation (DSPy's ChatAdapter
    makes a second, JSON call when it cannot parse a reply); the proxy counts
    what really happened, and the driver reports that.
    """
    evals = max(1, int(budget / calls_per_eval))
    if optimizer == "copro":  # every candidate is scored on the whole set it is given (dev)
        candidates = max(2, evals // n_dev)
        depth = 3 if candidates >= 12 else 2 if candidates >= 4 else 1
        return {"breadth": max(2, candidates // depth), "depth": depth}
    if optimizer == "miprov2":  # one full dev evaluation per trial (dev is below its minibatch size)
        trials = max(1, evals // n_dev - 2)  # minus the baseline and the bootstrapped demos' cost
        return {"num_trials": trials, "num_candidates": max(2, min(trials, 6))}
    if optimizer == "gepa":  # GEPA caps metric calls itself
        return {"max_metric_calls": evals}
    return {}


def compile_program(optimizer: str, program: Any, metric: Any, prompt_lm: Any, knobs: dict[str, int],
                    data: dict[str, list[Any]], seed: int) -> Any:
    """Run one DSPy optimizer with single-threaded evaluation; ``none`` returns the program unchanged."""
    import dspy

    if optimizer == "copro":
        copro = dspy.COPRO(prompt_model=prompt_lm, metric=metric, breadth=knobs["breadth"], depth=knobs["depth"])
        # COPRO has one example set, used to score candidates: it gets dev, promptopt's selection split.
        return copro.compile(program, trainset=data["dev"], eval_kwargs={"num_threads": 1, "display_progress": False})
    if optimizer == "miprov2":
        mipro = dspy.MIPROv2(metric=metric, prompt_model=prompt_lm, auto=None, num_candidates=knobs["num_candidates"],
                             max_bootstrapped_demos=2, max_labeled_demos=2, num_threads=1, seed=seed,
                             verbose=False)
        return mipro.compile(program, trainset=data["train"], valset=data["dev"], num_trials=knobs["num_trials"],
                             minibatch=len(data["dev"]) > 35)
    if optimizer == "gepa":
        gepa = dspy.GEPA(metric=metric, reflection_lm=prompt_lm, max_metric_calls=knobs["max_metric_calls"],
                         num_threads=1, seed=seed, track_stats=False)
        return gepa.compile(program, trainset=data["train"], valset=data["dev"])
    return program


def _quiet_evaluate() -> None:
    """Evaluate logs a line per call at INFO; thousands of them would drown the driver's output."""
    logging.getLogger("dspy.evaluate").setLevel(logging.WARNING)


def _examples(rows: list[dict[str, Any]]) -> list[Any]:
    import dspy

    return [dspy.Example(text=r["input"], label=r["target"]).with_inputs("text") for r in rows]


def _lm_usage(lm: Any) -> dict[str, int]:
    """What DSPy itself recorded for an LM (its history), to set beside the proxy's count."""
    tokens = 0
    for entry in getattr(lm, "history", []):
        usage = entry.get("usage") or {}
        tokens += int(usage.get("prompt_tokens") or 0) + int(usage.get("completion_tokens") or 0)
    return {"calls": len(getattr(lm, "history", [])), "tokens": tokens}


def run_optimize(args: argparse.Namespace) -> dict[str, Any]:
    import dspy

    _quiet_evaluate()
    with open(args.splits, encoding="utf-8") as fh:
        splits = json.load(fh)
    data = {name: _examples(splits[name]) for name in ("train", "dev", "test")}
    # A fresh process per run and no disk cache: nothing is reused across runs, as for promptopt.
    dspy.configure_cache(enable_disk_cache=False, enable_memory_cache=True)
    common = {"api_key": "none", "num_retries": 0}
    task_lm = dspy.LM(f"openai/{args.model}", api_base=args.target_url, temperature=0.0,
                      max_tokens=args.max_tokens, **common)
    prompt_lm = dspy.LM(f"openai/{args.model}", api_base=args.optimizer_url, temperature=1.0,
                        max_tokens=args.proposer_max_tokens, **common)
    # Unparsable replies from a small model are failures to score, not reasons to stop the run.
    dspy.configure(lm=task_lm, max_errors=10**9)
    program = dspy.Predict(dspy.Signature("text -> label", splits["instruction"]))
    metric = make_metric(splits["labels"])
    knobs = knobs_for_budget(args.optimizer, args.budget, len(data["train"]), len(data["dev"]), args.calls_per_eval)
    started = time.time()
    compiled = compile_program(args.optimizer, program, metric, prompt_lm, knobs, data, args.seed)
    search_ended = time.time()
    test = dspy.Evaluate(devset=data["test"], metric=metric, num_threads=1, display_progress=False,
                         max_errors=10**9)(compiled)
    predictor = compiled.predictors()[0]
    return {"optimizer": args.optimizer, "seed": args.seed, "knobs": knobs, "dspy": version("dspy"),
            "test_accuracy": sum(float(r[2]) for r in test.results) / max(1, len(test.results)),
            "n_test": len(test.results), "instruction": predictor.signature.instructions,
            "n_demos": len(predictor.demos), "search_started": started, "search_ended": search_ended,
            "search_seconds": round(search_ended - started, 1), "test_seconds": round(time.time() - search_ended, 1),
            "dspy_reported": {"target": _lm_usage(task_lm), "optimizer": _lm_usage(prompt_lm)}}


def run_overhead(args: argparse.Namespace) -> dict[str, Any]:
    """Microseconds per (program, example) evaluation with DummyLM, single-threaded."""
    import dspy

    _quiet_evaluate()
    labels = ["negative", "positive"]
    metric = make_metric(labels)
    rows = []
    for size in (int(s) for s in args.sizes.split(",")):
        n_prompts, n_examples = grid_shape(size)
        examples = [dspy.Example(text=example_text(i), label=labels[i % 2]).with_inputs("text")
                    for i in range(n_examples)]
        programs = [dspy.Predict(dspy.Signature("text -> label", prompt_instruction(j))) for j in range(n_prompts)]
        best = float("inf")
        for _ in range(args.repeats):
            dspy.configure(lm=dspy.utils.DummyLM([{"label": "positive"}] * size), max_errors=10**9)
            evaluate = dspy.Evaluate(devset=examples, metric=metric, num_threads=1, display_progress=False)
            started = time.perf_counter()
            for program in programs:
                evaluate(program)
            best = min(best, time.perf_counter() - started)
        rows.append({"system": "dspy", "evaluations": size, "prompts": n_prompts, "examples": n_examples,
                     "us_per_eval": round(best / size * 1e6, 2)})
        print(json.dumps(rows[-1]), flush=True)
    return {"dspy": version("dspy"), "python": sys.version.split()[0], "rows": rows}


# The shared work of the overhead benchmark; bench/overhead.py builds the same grid.
def grid_shape(size: int) -> tuple[int, int]:
    """(prompts, examples) for ``size`` evaluations: 10 → 1×10, 100 → 1×100, then 100 examples per prompt."""
    return (1, size) if size <= 100 else (size // 100, 100)


def example_text(i: int) -> str:
    return f"review {i}: the film was {'dull and slow' if i % 2 == 0 else 'warm and funny'} from start to end"


def prompt_instruction(j: int) -> str:
    return f"Classify the sentiment of the review as negative or positive (variant {j}). Answer with the label only."


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="dspy_side.py", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    opt = sub.add_parser("optimize", help="compile with one DSPy optimizer and score on test once")
    opt.add_argument("--splits", required=True, help="JSON with instruction, labels, train, dev, test")
    opt.add_argument("--optimizer", choices=("none", "copro", "miprov2", "gepa"), required=True)
    opt.add_argument("--target-url", required=True)
    opt.add_argument("--optimizer-url", required=True)
    opt.add_argument("--model", default="smollm2")
    opt.add_argument("--budget", type=int, default=200, help="target calls to aim the knobs at")
    opt.add_argument("--calls-per-eval", type=float, default=1.0, help="target calls per metric evaluation")
    opt.add_argument("--max-tokens", type=int, default=48, help="reply length of the task model")
    opt.add_argument("--proposer-max-tokens", type=int, default=256, help="reply length of the optimizer model")
    opt.add_argument("--seed", type=int, default=0)
    opt.add_argument("--out", required=True)
    over = sub.add_parser("overhead", help="time Evaluate with DummyLM")
    over.add_argument("--sizes", default="10,100,1000,10000")
    over.add_argument("--repeats", type=int, default=3)
    over.add_argument("--out", required=True)
    args = parser.parse_args(argv)
    result = run_optimize(args) if args.command == "optimize" else run_overhead(args)
    with open(args.out, "w", encoding="utf-8") as fh:
        json.dump(result, fh, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
