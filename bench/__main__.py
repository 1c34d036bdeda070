"""``python -m bench <name> [options]``: run one benchmark (see bench/README.md)."""

from __future__ import annotations

import sys

from bench import strategies

BENCHMARKS = {"strategies": strategies.main}


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in BENCHMARKS:
        print(f"usage: python -m bench {{{','.join(BENCHMARKS)}}} [options]  (see bench/README.md)", file=sys.stderr)
        return 2
    return BENCHMARKS[argv[0]](argv[1:])


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
