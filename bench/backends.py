"""Requests per second through promptopt's call layer vs a bare client, and in-process vs server.

Three measurements, each promptopt's evaluate (the Evaluator over the full
backend stack: meter, cache, in-flight merging, retries, the openai backend)
against the same requests sent by a bare ``openai.AsyncOpenAI`` loop with a
semaphore:

1. a fake OpenAI-compatible server (bench/fake_openai_server.py, its own
   process) answering after a fixed 50 ms, at 1, 4, 16 and 64 in flight —
   this isolates our overhead; the target is >= 0.95x the bare client;
2. the real ``python -m llama_cpp.server`` serving SmolLM2, at 1 and 4 in flight;
3. the embedded llama.cpp backend in-process on the same requests as 2.

Every request is distinct (no cache hit, nothing merged). Each cell is the
median of ``--repeats`` alternating rounds. Results go to
``bench/results/backends/results.json`` and ``table.md``.

    python -m bench backends
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from typing import Any

from promptopt import Budget
from promptopt.evaluator import Evaluator
from promptopt.session import Session
from promptopt.tasks import Task, load_task
from promptopt.testing import run_llama_server
from promptopt.types import Request


def _parse(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench backends", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--concurrency", default="1,4,16,64", help="in-flight levels against the fake server")
    p.add_argument("--latency", type=float, default=0.05, help="fake server latency in seconds")
    p.add_argument("--requests-per-slot", type=int, default=40, help="fake server: requests = this x concurrency")
    p.add_argument("--llama-concurrency", default="1,4")
    p.add_argument("--llama-requests", type=int, default=24)
    p.add_argument("--llama-threads", type=int, default=2, help="CPU threads for the server and in-process")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--skip-llama", action="store_true", help="only the fake-server measurement")
    p.add_argument("--out", default="bench/results/backends")
    return p.parse_args(argv)


# --- the requests: a file task whose test split holds n distinct sentences ----------------------


def _task(n: int, folder: Path) -> Task:
    path = folder / f"sentences-{n}.jsonl"
    words = ("great", "awful", "fine", "dull", "superb", "poor", "lovely", "bad")
    with path.open("w", encoding="utf-8") as fh:
        for i in range(n + 2):
            split = "train" if i == 0 else "dev" if i == 1 else "test"
            text = f"Review {i}: the {words[i % len(words)]} film number {i} was {words[(i * 3) % len(words)]}."
            fh.write(json.dumps({"input": text, "target": "positive" if i % 2 else "negative", "split": split}) + "\n")
    return load_task(f"file:{path}", data_dir=folder, labels=["negative", "positive"])


# --- the two clients --------------------------------------------------------------------------


def _promptopt_rps(model: str, options: dict[str, Any], task: Task, cache: Path | None) -> float:
    with Session(model, None, budget=Budget(), cache_path=cache, model_options=options) as session:
        evaluator = Evaluator(task, session.target, "generate")
        warm = task.splits.train[:1]  # the client's first-call set-up is not timed
        session.loop.run(evaluator.aevaluate([task.seed_prompt], warm))
        examples = task.splits.test
        started = time.perf_counter()
        [result] = session.loop.run(evaluator.aevaluate([task.seed_prompt], examples))
        elapsed = time.perf_counter() - started
        assert len(result.examples) == len(examples)
        assert session.meter.usage.target.paid_calls == len(examples) + 1, "a request was not sent (cache hit?)"
    return len(examples) / elapsed


def _bare_rps(base_url: str, model: str, task: Task, concurrency: int) -> float:
    import openai

    requests = [Request(task.render(task.seed_prompt, ex), max_tokens=task.max_tokens, temperature=0.0)
                for ex in task.splits.test]

    async def go() -> float:
        client = openai.AsyncOpenAI(base_url=base_url, api_key="bench", max_retries=0)
        slots = asyncio.Semaphore(concurrency)

        async def one(req: Request) -> str:
            async with slots:
                reply = await client.chat.completions.create(
                    model=model, messages=[{"role": m.role, "content": m.content} for m in req.messages],  # type: ignore[misc]
                    max_tokens=req.max_tokens, temperature=req.temperature, top_p=req.top_p)  # promptopt's body
                return reply.choices[0].message.content or ""

        await one(requests[0])  # warm-up, untimed
        started = time.perf_counter()
        answers = await asyncio.gather(*(one(r) for r in requests))
        elapsed = time.perf_counter() - started
        await client.close()
        assert len(answers) == len(requests)
        return len(requests) / elapsed

    return asyncio.run(go())


# --- servers ------------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def fake_server(latency: float) -> Iterator[str]:
    port = _free_port()
    proc = subprocess.Popen([sys.executable, "-m", "bench.fake_openai_server", "--port", str(port),
                             "--latency", str(latency)])
    base_url = f"http://127.0.0.1:{port}/v1"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                urllib.request.urlopen(base_url + "/models", timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise RuntimeError("the fake server did not start") from None
                time.sleep(0.1)
        yield base_url
    finally:
        proc.terminate()
        proc.wait(timeout=10)


# --- the three measurements ---------------------------------------------------------------------


def _median_rounds(repeats: int, **cells: Any) -> dict[str, float]:
    """Run each named cell ``repeats`` times, alternating, and keep the median of each."""
    runs: dict[str, list[float]] = {name: [] for name in cells}
    for _ in range(repeats):
        for name, fn in cells.items():
            runs[name].append(fn())
    return {name: statistics.median(values) for name, values in runs.items()}


def measure_fake(args: argparse.Namespace, folder: Path) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    with fake_server(args.latency) as url:
        for c in (int(x) for x in args.concurrency.split(",")):
            task = _task(args.requests_per_slot * c, folder)
            options = {"base_url": url, "max_concurrency": c, "api_key": "bench"}
            caches = (folder / f"cache-{c}-{i}.sqlite" for i in range(args.repeats))  # a fresh, empty one each round
            cells = _median_rounds(
                args.repeats,
                bare=partial(_bare_rps, url, "fake", task, c),
                promptopt_cache=lambda task=task, options=options, caches=caches: _promptopt_rps(
                    "openai:fake", options, task, next(caches)),
                promptopt_no_cache=partial(_promptopt_rps, "openai:fake", options, task, None))
            row = {"server": f"fake {args.latency * 1000:.0f} ms", "concurrency": c, "requests": len(task.splits.test),
                   **{k: round(v, 1) for k, v in cells.items()},
                   "ratio_cache": round(cells["promptopt_cache"] / cells["bare"], 3),
                   "ratio_no_cache": round(cells["promptopt_no_cache"] / cells["bare"], 3),
                   "ideal": round(c / args.latency, 1)}
            print(json.dumps(row), flush=True)
            rows.append(row)
    return rows


def measure_llama(args: argparse.Namespace, folder: Path) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    task = _task(args.llama_requests, folder)
    with run_llama_server(n_threads=args.llama_threads) as url:
        for c in (int(x) for x in args.llama_concurrency.split(",")):
            options = {"base_url": url, "max_concurrency": c, "api_key": "bench"}
            cells = _median_rounds(
                args.repeats,
                bare=partial(_bare_rps, url, "smollm2", task, c),
                promptopt_no_cache=partial(_promptopt_rps, "openai:smollm2", options, task, None))
            row = {"server": "llama_cpp.server SmolLM2", "concurrency": c, "requests": len(task.splits.test),
                   **{k: round(v, 2) for k, v in cells.items()},
                   "ratio_no_cache": round(cells["promptopt_no_cache"] / cells["bare"], 3)}
            print(json.dumps(row), flush=True)
            rows.append(row)
    in_process = _median_rounds(args.repeats, rps=lambda: _promptopt_rps(
        "llamacpp:smollm2", {"n_threads": args.llama_threads}, task, None))["rps"]
    server_c1 = float(rows[0]["promptopt_no_cache"])
    row = {"server": "in-process llama.cpp SmolLM2", "concurrency": 1, "requests": len(task.splits.test),
           "promptopt_no_cache": round(in_process, 2), "ratio_to_server_c1": round(in_process / server_c1, 3)}
    print(json.dumps(row), flush=True)
    rows.append(row)
    return rows


def write_table(rows: list[dict[str, Any]], path: Path) -> None:
    lines = ["| server | in flight | requests | bare client req/s | promptopt req/s (cache on) | ratio | "
             "promptopt req/s (no cache) | ratio |", "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['server']} | {r['concurrency']} | {r['requests']} | {r.get('bare', '–')} | "
                     f"{r.get('promptopt_cache', '–')} | {r.get('ratio_cache', '–')} | "
                     f"{r.get('promptopt_no_cache', '–')} | "
                     f"{r.get('ratio_no_cache', r.get('ratio_to_server_c1', '–'))} |")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def main(argv: list[str]) -> int:
    args = _parse(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        rows = measure_fake(args, Path(tmp))
        if not args.skip_llama:
            rows += measure_llama(args, Path(tmp))
    meta = {"date": time.strftime("%Y-%m-%d %H:%M"), "machine": f"{platform.machine()}, {os.cpu_count()} cores",
            "load_average_after": os.getloadavg(),
            "python": platform.python_version(), "argv": argv}
    (out / "results.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=2) + "\n", encoding="utf-8")
    write_table(rows, out / "table.md")
    print((out / "table.md").read_text())
    return 0
