"""Resume is replay: a finished run rerun from its cache, and a run killed with SIGKILL then rerun.

Every run is the same ``promptopt optimize`` command (the CLI, in a child
process) against a llama.cpp server on 127.0.0.1, through the counting proxy
(bench/proxy.py), so the calls that reach the model are counted outside
promptopt:

1. ``first``: an uninterrupted run with an empty cache;
2. ``rerun``: the same command again. Backend calls must be 0; its wall time
   is reported as a fraction of the first run's;
3. ``killed``: the same command with a new, empty cache and runs directory,
   killed with SIGKILL once the proxy has seen ``--kill-at`` of the first run's
   target calls, then ``resumed`` by running the same command to the end. The
   calls paid over both parts are compared with the first run's, and the
   result with the first run's result.

    python -m bench replay --task sst2 --strategy apo --target-calls 100
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench.proxy import CountingProxy, summarize_calls


def _parse(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench replay", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--task", default="sst2")
    p.add_argument("--strategy", default="apo")
    p.add_argument("--target-calls", type=int, default=100)
    p.add_argument("--optimizer-calls", type=int, default=20,
                   help="room for one full APO expansion (about 18 calls with its paper defaults)")
    p.add_argument("--n-train", type=int, default=20)
    p.add_argument("--n-dev", type=int, default=10)
    p.add_argument("--n-test", type=int, default=20)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--kill-at", type=float, default=0.5, help="fraction of the first run's target calls")
    p.add_argument("--data-dir", default=None)
    p.add_argument("--out", default="bench/results/replay")
    return p.parse_args(argv)


def cli_command(args: argparse.Namespace, proxy: CountingProxy, workdir: Path) -> list[str]:
    """The one command every phase runs; only ``workdir`` (runs and cache) differs between the two runs."""
    data_dir = args.data_dir or str(Path(__file__).resolve().parents[2] / "shared" / "data")
    return [sys.executable, "-c", "from promptopt.cli import main; main()", "optimize",
            "--task", args.task, "--strategy", args.strategy, "--answer-mode", "generate",
            "--model", "openai:smollm2", "--base-url", proxy.base_url("target"),
            "--optimizer-model", "openai:smollm2", "--optimizer-base-url", proxy.base_url("optimizer"),
            "--budget-target-calls", str(args.target_calls), "--budget-optimizer-calls", str(args.optimizer_calls),
            "--n-train", str(args.n_train), "--n-dev", str(args.n_dev), "--n-test", str(args.n_test),
            "--seed", str(args.seed), "--data-dir", data_dir, "--offline",
            "--runs-dir", str(workdir / "runs"), "--cache", str(workdir / "cache.sqlite"),
            "--no-progress", "--json"]


def run_phase(name: str, command: list[str], proxy: CountingProxy, *, kill_after_target_calls: int | None = None,
              ) -> dict[str, Any]:
    """Run the command once (or until the proxy has seen enough target calls, then SIGKILL it)."""
    first = len(proxy.records())
    start_count = proxy.count("target")
    started = time.monotonic()
    child = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    killed, answered_at_kill = False, None
    if kill_after_target_calls is not None:
        while child.poll() is None:
            if proxy.count("target") - start_count >= kill_after_target_calls:
                os.kill(child.pid, signal.SIGKILL)
                killed, answered_at_kill = True, proxy.count("target") - start_count
                break
            time.sleep(0.01)
    stdout, stderr = child.communicate()
    seconds = time.monotonic() - started
    if not killed and child.returncode != 0:
        raise RuntimeError(f"{name} exited with code {child.returncode}:\n{stderr[-2000:]}")
    # Requests in flight at the kill are still answered (and paid) upstream: wait for them, so
    # they count toward this phase and not the next.
    deadline = time.monotonic() + 300
    while proxy.in_flight() and time.monotonic() < deadline:
        time.sleep(0.05)
    calls = summarize_calls(proxy.records()[first:])
    result = json.loads(stdout) if not killed else None
    return {"phase": name, "seconds": round(seconds, 2), "killed": killed, "target_calls_at_kill": answered_at_kill,
            "target_calls": calls.get("target", {}).get("calls", 0),
            "optimizer_calls": calls.get("optimizer", {}).get("calls", 0),
            "failed_calls": sum(row["failed"] for row in calls.values()),
            "best_instruction": result["best_prompt"]["instruction"] if result else None,
            "best_test": result["best_test"]["mean"] if result else None,
            "paid_calls_reported": ({role: result["usage"]["total"][role]["paid_calls"]
                                     for role in ("target", "optimizer")} if result else None)}


def trajectory(workdir: Path) -> list[tuple[str, str, Any]]:
    """The search as its event log tells it: every candidate and evaluation, in order, with scores."""
    (events,) = workdir.glob("runs/*/events.jsonl")
    rows = [json.loads(line) for line in events.read_text().splitlines() if line.strip()]
    steps = [e for e in rows if e["type"] in ("candidate", "evaluation")]
    return [(e["type"], e.get("prompt_id", ""), e.get("mean")) for e in steps]


def summarize(phases: dict[str, dict[str, Any]]) -> dict[str, Any]:
    first, rerun, killed, resumed = (phases[k] for k in ("first", "rerun", "killed", "resumed"))

    def total(p: dict[str, Any]) -> int:
        return int(p["target_calls"] + p["optimizer_calls"])

    return {"rerun_backend_calls": total(rerun),
            "rerun_time_fraction": round(rerun["seconds"] / first["seconds"], 3),
            "rerun_same_result": (rerun["best_instruction"], rerun["best_test"])
            == (first["best_instruction"], first["best_test"]),
            "killed_at_target_calls": killed["target_calls_at_kill"],
            "answered_after_kill": killed["target_calls"] - killed["target_calls_at_kill"],
            "kill_resume_paid_calls": total(killed) + total(resumed),
            "uninterrupted_paid_calls": total(first),
            "kill_resume_call_ratio": round((total(killed) + total(resumed)) / total(first), 3),
            "kill_resume_time_fraction": round((killed["seconds"] + resumed["seconds"]) / first["seconds"], 3),
            "resumed_same_result": (resumed["best_instruction"], resumed["best_test"])
            == (first["best_instruction"], first["best_test"])}


def write_table(phases: dict[str, dict[str, Any]], summary: dict[str, Any], path: Path) -> None:
    lines = ["| phase | wall time (s) | target calls reaching the server | optimizer calls | "
             "paid calls by promptopt's own count | best test | same result as first run |",
             "|---|---|---|---|---|---|---|"]
    first = phases["first"]
    for name, p in phases.items():
        same = "–" if p["killed"] or name == "first" else (
            "yes" if (p["best_instruction"], p["best_test"]) == (first["best_instruction"], first["best_test"])
            else "no")
        test = "killed" if p["killed"] else f"{p['best_test']:.3f}"
        own = "–" if p["killed"] else sum(p["paid_calls_reported"].values())
        lines.append(f"| {name} | {p['seconds']:.1f} | {p['target_calls']} | {p['optimizer_calls']} | {own} | "
                     f"{test} | {same} |")
    lines += ["", f"- rerun of a finished run: {summary['rerun_backend_calls']} backend calls, wall time "
              f"{summary['rerun_time_fraction']:.1%} of the first run",
              f"- SIGKILL after {summary['killed_at_target_calls']} target calls had been answered "
              f"({summary['answered_after_kill']} more were in flight and answered after it), "
              "then the same command again: "
              f"{summary['kill_resume_paid_calls']} calls paid in all vs {summary['uninterrupted_paid_calls']} "
              f"uninterrupted (ratio {summary['kill_resume_call_ratio']:.3f})",
              f"- the resumed run's event log has the same {summary['trajectory_steps']} candidates and evaluations, "
              f"in the same order and with the same scores, as the first run's: "
              f"{'yes' if summary['resumed_same_trajectory'] else 'no'}"]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def plot(proxy: CountingProxy, marks: dict[str, float], path: Path) -> None:
    """Cumulative calls reaching the server over time, with each phase's start marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    records = [r for r in proxy.records() if r.is_completion]
    t0 = min(marks.values())
    fig, ax = plt.subplots(figsize=(7, 3.5))
    ax.plot([r.started - t0 for r in records], range(1, len(records) + 1), drawstyle="steps-post")
    for i, (name, at) in enumerate(marks.items()):
        ax.axvline(at - t0, color="grey", linestyle=":")
        # staggered: the rerun takes about a second, so its mark sits on top of the next one
        ax.text(at - t0, len(records) * (0.98 - 0.08 * i), f" {name}", fontsize=8, va="top")
    ax.set(xlabel="seconds", ylabel="calls reaching the server (cumulative)",
           title="first run, rerun, killed run and its resumption")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: list[str]) -> int:
    from promptopt.testing import run_llama_server

    args = _parse(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    work = out / "runs"  # run directories and caches (ignored by git, like every runs/ folder)
    shutil.rmtree(work, ignore_errors=True)  # every phase starts from the state this benchmark made
    phases: dict[str, dict[str, Any]] = {}
    marks: dict[str, float] = {}
    with run_llama_server(n_ctx=4096) as url, CountingProxy(url.removesuffix("/v1")) as proxy:
        first_cmd, killed_cmd = cli_command(args, proxy, work / "first"), cli_command(args, proxy, work / "killed")
        plan: list[tuple[str, list[str]]] = [("first", first_cmd), ("rerun", first_cmd), ("killed", killed_cmd),
                                             ("resumed", killed_cmd)]
        for name, command in plan:
            kill_after = round(phases["first"]["target_calls"] * args.kill_at) if name == "killed" else None
            marks[name] = time.time()
            phases[name] = run_phase(name, command, proxy, kill_after_target_calls=kill_after)
            print(json.dumps(phases[name]), flush=True)
        summary = summarize(phases)
        first_steps, resumed_steps = trajectory(work / "first"), trajectory(work / "killed")
        summary["trajectory_steps"] = len(first_steps)
        summary["resumed_same_trajectory"] = first_steps == resumed_steps
        plot(proxy, marks, out / "calls_over_time.png")
    meta = {"date": time.strftime("%Y-%m-%d"), "argv": ["python", "-m", "bench", "replay", *argv],
            "command": " ".join(first_cmd[3:])}
    (out / "results.json").write_text(json.dumps({"meta": meta, "phases": phases, "summary": summary}, indent=2)
                                      + "\n", encoding="utf-8")
    write_table(phases, summary, out / "table.md")
    print((out / "table.md").read_text())
    return 0
