"""Scoring on the embedded model: prompt reuse across labels, and loss throughput vs raw llama-cpp-python.

``python -m bench scoring [--data-dir D] [--n-dev 100] [--out bench/results/scoring]``

1. Prompt reuse. A full-dev choice-mode evaluation of each task's seed prompt on
   sst2 (2 labels) and trec (6 labels), by the llama.cpp backend as it is (a
   scored prompt is kept while the next request has the same prompt: the other
   labels of one example) and with that reuse switched off (every label reads
   its prompt again). Reported: tokens the model evaluated per example, as a
   multiple of one prompt's length, and wall time.
2. Loss throughput. The gold loss of the same dev examples through the whole
   stack (``Evaluator.aloss`` behind the meter and retry layers, no cache) vs a
   plain loop of llama-cpp-python's forward passes over the same token sequences
   (``reset``, ``eval`` of prompt + gold).
3. Loss vs choice: loss evaluations per second against choice-mode evaluations
   of the same examples.

One process, one thread (``n_threads=1``), run on an idle machine.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import time
from pathlib import Path
from typing import Any

from promptopt.backends._retry import RetryingBackend
from promptopt.backends.llamacpp import LlamaCppBackend, smollm2_path
from promptopt.budget import Meter, MeteredBackend
from promptopt.evaluator import Evaluator
from promptopt.tasks import Task, load_task
from promptopt.types import LogProb, ScoreRequest

HERE = Path(__file__).resolve().parent


class _NoReuse(LlamaCppBackend):
    """The same backend with prompt reuse switched off: each label evaluates its prompt again."""

    def _score_one(self, req: ScoreRequest) -> LogProb:
        self._scored_prefix = None
        return super()._score_one(req)


def _stack(backend: LlamaCppBackend) -> MeteredBackend:
    return MeteredBackend(RetryingBackend(backend), Meter())


def _prompt_tokens(backend: LlamaCppBackend, task: Task) -> int:
    llm = backend._model()
    return sum(len(llm.tokenize(backend.render_prefix(task.render(task.seed_prompt, ex)).encode(), add_bos=False,
                                special=True)) for ex in task.splits.dev)


def reuse(task: Task, threads: int) -> dict[str, Any]:
    out: dict[str, Any] = {"task": task.name, "labels": len(task.labels or ()), "n": len(task.splits.dev)}
    for name, cls in (("reuse", LlamaCppBackend), ("no_reuse", _NoReuse)):
        backend = cls("smollm2", n_threads=threads)
        try:
            one_pass = _prompt_tokens(backend, task)
            started = time.perf_counter()
            (res,) = asyncio.run(Evaluator(task, _stack(backend), "choice").aevaluate([task.seed_prompt],
                                                                                      task.splits.dev))
            out[name] = {"seconds": round(time.perf_counter() - started, 2), "tokens": backend.tokens_evaluated,
                         "tokens_per_example": round(backend.tokens_evaluated / len(task.splits.dev), 1),
                         "x_one_prompt": round(backend.tokens_evaluated / one_pass, 3), "accuracy": res.mean}
        finally:
            backend.close()
    return out


def _raw_forward_loop(sequences: list[tuple[list[int], list[int]]], threads: int) -> float:
    """Seconds for llama-cpp-python alone to run the forward pass over every prompt + gold sequence
    (``reset`` then ``eval``; the floor any loss computation must pay)."""
    from llama_cpp import Llama

    llm = Llama(model_path=smollm2_path(), n_ctx=4096, n_threads=threads, n_threads_batch=threads, verbose=False)
    started = time.perf_counter()
    for prefix, gold in sequences:
        llm.reset()  # type: ignore[no-untyped-call]  # untyped in llama-cpp-python
        llm.eval(prefix + gold)
    seconds = time.perf_counter() - started
    llm.close()
    return seconds


def loss_throughput(task: Task, threads: int) -> dict[str, Any]:
    backend = LlamaCppBackend("smollm2", n_threads=threads)
    try:
        llm = backend._model()
        sequences = [(llm.tokenize(backend.render_prefix(task.render(task.seed_prompt, ex)).encode(),
                                   add_bos=False, special=True),
                      llm.tokenize(task.gold_text(ex).encode(), add_bos=False, special=False))
                     for ex in task.splits.dev]
        started = time.perf_counter()
        asyncio.run(Evaluator(task, _stack(backend), "choice").aloss([task.seed_prompt], task.splits.dev))
        ours = time.perf_counter() - started
        started = time.perf_counter()
        asyncio.run(Evaluator(task, _stack(backend), "choice").aevaluate([task.seed_prompt], task.splits.dev))
        choice = time.perf_counter() - started
    finally:
        backend.close()
    raw = _raw_forward_loop(sequences, threads)
    n = len(task.splits.dev)
    return {"task": task.name, "n": n, "loss_seconds": round(ours, 2), "raw_seconds": round(raw, 2),
            "loss_per_s": round(n / ours, 2), "raw_per_s": round(n / raw, 2),
            "loss_vs_raw": round(raw / ours, 3), "choice_seconds": round(choice, 2),
            "loss_vs_choice": round(choice / ours, 3)}


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench scoring")
    parser.add_argument("--data-dir", default=str(HERE.parent.parent / "shared" / "data"))
    parser.add_argument("--n-dev", type=int, default=100)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", default=str(HERE / "results" / "scoring"))
    args = parser.parse_args(argv)
    tasks = {name: load_task(name, data_dir=Path(args.data_dir), n_dev=args.n_dev, n_train=10, n_test=10,
                             offline=True) for name in ("sst2", "trec")}
    rows = {"reuse": [reuse(tasks[name], args.threads) for name in ("sst2", "trec")],
            "loss": [loss_throughput(tasks[name], args.threads) for name in ("sst2", "trec")],
            "machine": {"python": platform.python_version(), "cpu_threads": args.threads}}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "scoring.json").write_text(json.dumps(rows, indent=2) + "\n", encoding="utf-8")
    print(json.dumps(rows, indent=2))
    return 0
