"""What the replacement rule turned down: the test score of each winner it kept the seed against.

``python -m bench turned_down --out bench/results/families``

For every finished run in ``<out>/rows.jsonl`` whose ``replace_if`` rule kept the
seed, the winner it judged is scored once on the run's test split (same seed and
sizes, the grid's cache) and written to ``<out>/turned_down.jsonl``; the seed's
test score is the run's own. This says, after the fact, whether the rule kept a
better prompt out (winner above the seed on test) or a worse one.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def main(argv: list[str]) -> int:
    import promptopt
    from bench.strategies import read_rows, run_key
    from promptopt.prompt import Prompt

    parser = argparse.ArgumentParser(prog="python -m bench turned_down")
    parser.add_argument("--out", default="bench/results/families")
    parser.add_argument("--data-dir", default=str(Path(__file__).resolve().parents[2] / "shared" / "data"))
    args = parser.parse_args(argv)
    out = Path(args.out)
    done = {run_key(r) for r in read_rows(out / "turned_down.jsonl")}
    for row in read_rows(out / "rows.jsonl"):
        if run_key(row) in done:
            continue
        result = json.loads(Path(row["run_dir"], "result.json").read_text())
        decision = result.get("replacement")
        if not decision or decision["replaced"]:
            continue
        events = [json.loads(x) for x in Path(row["run_dir"], "events.jsonl").read_text().splitlines()]
        prompt = Prompt.from_dict(next(e["prompt"] for e in events if e["type"] == "candidate"
                                       and e["prompt_id"] == decision["candidate"]))
        scored = promptopt.evaluate(prompt, row["task"], split="test", answer_mode=row["mode"], seed=row["seed"],
                                    n_dev=row["settings"]["n_dev"], n_test=row["settings"]["n_test"],
                                    data_dir=args.data_dir, offline=True, cache=str(out / "cache.sqlite"),
                                    model_options={"n_threads": 1})
        line = {"task": row["task"], "mode": row["mode"], "seed": row["seed"], "strategy": row["strategy"], **decision,
                "seed_test": row["seed_test"], "winner_test": scored.score.mean, "n_test": scored.score.n}
        with open(out / "turned_down.jsonl", "a", encoding="utf-8") as fh:
            fh.write(json.dumps(line) + "\n")
        print(json.dumps(line), flush=True)
    return 0

