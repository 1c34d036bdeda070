"""``python -m bench <name> [options]``: run one benchmark (see bench/README.md)."""

from __future__ import annotations

import importlib
import sys

#: benchmark name -> its module (each has ``main(argv) -> int``); imported only when run
BENCHMARKS = {
    "strategies": "bench.strategies",  # seed prompt vs each strategy at an equal budget
    "backends": "bench.backends",  # requests/s of evaluate vs a bare client; in-process vs server
    "throughput": "bench.backends",  # the same benchmark, under the name the peer comparison uses
    "quality": "bench.quality",  # promptopt vs DSPy optimizers on the same server and budget
    "quality-summary": "bench.quality_summary",  # the README's quality tables, from the grid's rows
    "overhead": "bench.overhead",  # engine microseconds per evaluation vs DSPy Evaluate
    "replay": "bench.replay",  # cached rerun and kill -9 + resume vs an uninterrupted run
    "same_results": "bench.same_results",  # every strategy at two checkouts from one cache: same results?
    "scoring": "bench.scoring",  # prompt reuse across labels; gold-loss throughput vs raw llama-cpp-python
    "turned_down": "bench.turned_down",  # test scores of the winners the replacement rule kept the seed against
    "families_figures": "bench.families_figures",  # the families grid's figures and PNGs, from its runs
    "grid_figures": "bench.grid_figures",  # any strategies grid: replacements on test, best minus seed per task
    "plans": "bench.plans",  # how much of each strategy's loop the default budget pays for (no model call)
    "task_sets": "bench.task_sets",  # one system prompt over many tasks (seen, unseen); per-input selection
}


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in BENCHMARKS:
        print(f"usage: python -m bench {{{','.join(BENCHMARKS)}}} [options]  (see bench/README.md)", file=sys.stderr)
        return 2
    module = importlib.import_module(BENCHMARKS[argv[0]])
    return int(module.main(argv[1:]))


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
