from __future__ import annotations

import json
import random
import re
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from parity_fixtures import MAGIC, parity_target

import promptopt
from promptopt.exceptions import ConfigError
from promptopt.prompt import Prompt
from promptopt.strategies._pareto import ParetoPool, merge_instructions
from promptopt.strategies.gepa import GEPA, _EpochSampler, _parse_instruction
from promptopt.tasks import Task
from promptopt.testing import FakeBackend
from promptopt.types import Request

IDS = ["e1", "e2", "e3", "e4"]


def _pool(table: dict[str, list[float]], parents: dict[str, list[int]] | None = None) -> ParetoPool:
    pool = ParetoPool(IDS)
    for name, row in table.items():
        pool.add(Prompt(name), dict(zip(IDS, row, strict=True)), (parents or {}).get(name, []))
    return pool


def _events(run_dir: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in Path(run_dir, "events.jsonl").read_text().splitlines()]


def _number(req: Request) -> int:
    return int(re.findall(r"number (\d+)", req.messages[-1].content)[-1])


def _instruction_in(meta_prompt: str) -> str:
    return meta_prompt.split("```")[1].strip()


# -- Pareto bookkeeping on hand-made score tables ------------------------------------------------
def test_front_holds_the_best_on_each_example_with_ties() -> None:
    pool = _pool({"A": [1, 0, 0, 0.5], "B": [0, 1, 0, 0.5], "C": [0, 0, 0, 0.2]})
    assert pool.best_per_example() == [{0}, {1}, {0, 1, 2}, {0, 1}]
    assert pool.dominated() == {2}  # C leads only e3, where A and B tie with it
    assert pool.front() == [{0}, {1}, {0, 1}, {0, 1}]
    assert pool.lead_counts() == {0: 3, 1: 3}


def test_dominated_candidates_are_removed_as_in_the_papers_example() -> None:
    # Candidate 2 is best on task 1 only; candidate 3 is as good there and also best on task 2.
    pool = _pool({"seed": [0, 0, 0, 1], "c2": [1, 0, 0, 0], "c3": [1, 1, 0, 0]})
    assert pool.dominated() == {1}
    assert pool.lead_counts() == {0: 2, 2: 3}  # the seed keeps e4 (and shares e3 with nobody better)
    assert [p.instruction for p in pool.finalists()] == ["c3", "seed"]


def test_a_candidate_whose_leads_are_each_shared_by_some_other_is_dominated() -> None:
    # No single candidate leads both of A's examples, but B shares e1 and C shares e2 (the reference drops A).
    pool = _pool({"A": [1, 1, 0, 0], "B": [1, 0, 1, 0], "C": [0, 1, 0, 1]})
    assert pool.dominated() == {0}
    assert pool.lead_counts() == {1: 2, 2: 2}


def test_removed_candidates_no_longer_cover_for_others() -> None:
    # A and B (mean 0.5) are tested before C (0.75), A first. A goes (B shares e1, C shares e2); B then
    # leads e1 alone and stays, although A and C shared all of B's leads before A went.
    pool = _pool({"A": [1, 1, 0, 0], "B": [1, 0, 1, 0], "C": [0, 1, 1, 1]})
    assert pool.dominated() == {0}
    assert all(pool.front())  # every example keeps a leader


def test_of_two_identical_candidates_the_first_seen_goes_as_in_the_reference() -> None:
    pool = _pool({"old": [1, 1, 0, 0], "new": [1, 1, 0, 0], "other": [0, 0, 1, 1]})
    assert pool.dominated() == {0}
    assert pool.lead_counts() == {1: 2, 2: 2}


def _dominated_by_rescanning(pool: ParetoPool) -> set[int]:
    """The reference's procedure spelled out: scan candidates by ascending mean (ties in first-seen order),
    drop the first whose every lead another survivor shares, and start the scan again."""
    fronts = pool.best_per_example()
    order = sorted(dict.fromkeys(k for f in fronts for k in f), key=pool.mean)
    removed: set[int] = set()
    while True:
        alive = [k for k in order if k not in removed]
        gone = next((k for k in alive if all(f & (set(alive) - {k}) for f in fronts if k in f)), None)
        if gone is None:
            return removed
        removed.add(gone)


def test_one_pass_removes_what_rescanning_after_each_removal_removes() -> None:
    rng = random.Random(3)
    ids = [f"e{i}" for i in range(6)]
    for _ in range(300):
        pool = ParetoPool(ids)
        for n in range(rng.randint(1, 7)):
            pool.add(Prompt(f"p{n}"), {i: rng.choice([0.0, 0.5, 1.0]) for i in ids})
        assert pool.dominated() == _dominated_by_rescanning(pool)


def test_best_mean_candidate_is_a_finalist_even_when_dominated() -> None:
    # "steady" leads only e1, which "spiky" also leads, so it leaves the front; it still has the best mean.
    pool = _pool({"steady": [1, 0.8, 0.8, 0.8], "spiky": [1, 1, 0, 0], "other": [0, 0, 1, 1]})
    assert 0 in pool.dominated()
    assert [p.instruction for p in pool.finalists()] == ["steady", "spiky", "other"]  # equal means: older first


def test_parents_are_sampled_in_proportion_to_lead_counts() -> None:
    pool = _pool({"A": [1, 0, 0, 0], "B": [0, 1, 1, 1], "C": [0, 0, 0, 0]})
    assert pool.lead_counts() == {0: 1, 1: 3}
    rng = random.Random(0)
    draws = Counter(pool.select(rng) for _ in range(4000))
    assert set(draws) == {0, 1}  # C is never drawn
    assert draws[0] / 4000 == pytest.approx(0.25, abs=0.03)
    assert [pool.select(random.Random(7)) for _ in range(3)] == [pool.select(random.Random(7))] * 3


def test_pool_refuses_a_candidate_not_scored_on_every_pareto_example() -> None:
    with pytest.raises(ValueError, match="no score"):
        ParetoPool(IDS).add(Prompt("x"), {"e1": 1.0})


# -- merge on a scripted lineage -----------------------------------------------------------------
def test_three_way_merge_takes_each_descendants_changes() -> None:
    ancestor = Prompt("Say even or odd. Be brief.")
    first = Prompt("Say even or odd. Be brief. Check the last digit.")  # added a sentence
    second = Prompt("Say even or odd. Answer in one word.")  # replaced a sentence
    assert merge_instructions(ancestor, first, second) == "Say even or odd. Check the last digit. Answer in one word."
    # nothing from one side to combine: no merge
    assert merge_instructions(ancestor, first, ancestor) is None
    assert merge_instructions(ancestor, first, first) is None


def test_merge_triplets_need_a_common_ancestor_and_different_lineages() -> None:
    table = {"root": [0, 0, 0, 0], "left": [1, 1, 0, 0], "right": [0, 0, 1, 1], "left2": [1, 1, 0.5, 0]}
    pool = _pool(table, parents={"left": [0], "right": [0], "left2": [1]})
    assert pool.ancestors(3) == {0, 1}
    # front: left2 (e1, e2, e3) and right (e3 tie? no: 1 > 0.5, so e3, e4); left is dominated by left2
    assert pool.lead_counts() == {2: 2, 3: 2}
    assert pool.merge_triplet(random.Random(0), set()) == (2, 3, 0)
    assert pool.merge_triplet(random.Random(0), {(2, 3, 0)}) is None  # already tried
    subsample = pool.merge_subsample(2, 3, random.Random(0), 3)
    assert len(subsample) == 3 and {"e1", "e2"} & set(subsample) and {"e3", "e4"} & set(subsample)


def _lineage_target(req: Request, *, clash: bool = False) -> str:
    """Right on small numbers with SMALL, on large ones with LARGE, everywhere with both
    (nowhere with both when they ``clash``)."""
    text, n = req.messages[-1].content, _number(req)
    small, large = "Small numbers matter." in text, "Large numbers matter." in text
    right, wrong = ("even", "odd") if n % 2 == 0 else ("odd", "even")
    if small and large:
        return wrong if clash else right
    if small or large:
        return right if (small and n < 30) or (large and n >= 30) else wrong
    return "even"


def _lineage_run(task: Task, tmp_path: Path, *, clash: bool = False, use_merge: bool = True) -> promptopt.Result:
    edits = iter(["Small numbers matter.", "Large numbers matter."] * 50)

    def optimizer(req: Request) -> str:  # two edits of the seed; nothing more from either lineage
        current = _instruction_in(req.messages[-1].content)
        return "ok" if "matter" in current else f"```\n{current} {next(edits)}\n```"

    backend = FakeBackend(reply=lambda r: optimizer(r) if r.role == "optimizer" else _lineage_target(r, clash=clash))
    return promptopt.optimize(task, GEPA(use_merge=use_merge, max_iterations=40, minibatch_size=4), backend,
                              answer_mode="generate", budget=promptopt.Budget(target_calls=3000),
                              runs_dir=tmp_path, cache=False)


def test_gepa_merges_two_lineages_into_the_best_prompt(parity_task: Task, tmp_path: Path) -> None:
    result = _lineage_run(parity_task, tmp_path)
    events = _events(result.run_dir)
    candidates = {e["prompt_id"]: e for e in events if e["type"] == "candidate"}
    merges = [e for e in candidates.values() if e["operator"] == "merge"]
    assert merges, "no merge was proposed"
    merged = merges[0]
    parent_texts = {candidates[p]["prompt"]["instruction"] for p in merged["parents"]}
    assert parent_texts == {f"{parity_task.seed_prompt.instruction} Small numbers matter.",
                            f"{parity_task.seed_prompt.instruction} Large numbers matter."}
    assert set(Prompt(merged["prompt"]["instruction"]).segments()) == {
        parity_task.seed_prompt.instruction, "Small numbers matter.", "Large numbers matter."}
    assert any(e["type"] == "accept" and e.get("operator") == "merge" for e in events)
    assert result.best_prompt.id == merged["prompt_id"] and result.best_dev == 1.0


def test_a_merge_worse_than_its_parents_on_the_subsample_is_not_scored_on_all_of_dev(
        parity_task: Task, tmp_path: Path) -> None:
    result = _lineage_run(parity_task, tmp_path, clash=True)
    events = _events(result.run_dir)
    merged = [e["prompt_id"] for e in events if e["type"] == "candidate" and e["operator"] == "merge"]
    assert len(merged) == 1
    assert any(e["type"] == "reject" and e["prompt_id"] == merged[0] for e in events)
    sizes = [e["n"] for e in events if e["type"] == "evaluation" and e["prompt_id"] == merged[0]]
    assert sizes == [5]  # the stratified subsample only
    assert result.best_dev < 1.0


def test_merge_is_off_by_default(parity_task: Task, tmp_path: Path) -> None:
    assert GEPA().use_merge is False
    result = _lineage_run(parity_task, tmp_path, use_merge=False)
    assert not [e for e in _events(result.run_dir) if e["type"] == "candidate" and e["operator"] == "merge"]
    assert result.best_dev < 1.0


# -- the accept-only-if-better rule ---------------------------------------------------------------
def _gate_target(req: Request) -> str:
    """PARITY: always right; WRONG: always wrong; anything else: always 'even'."""
    text = req.messages[-1].content
    if "WRONG" in text:
        return "odd" if _number(req) % 2 == 0 else "even"
    return parity_target(req)


def _scripted(replies: list[str]) -> FakeBackend:
    stream = iter(replies + ["ok"] * 1000)
    return FakeBackend(reply=lambda r: next(stream) if r.role == "optimizer" else _gate_target(r))


def _dev_inputs(task: Task) -> set[str]:
    return {ex.input for ex in task.splits.dev}


def _requests_for(backend: FakeBackend, instruction: str) -> list[str]:
    """Example inputs the target model was asked about under ``instruction``."""
    return [re.findall(r"number \d+", r.messages[-1].content)[-1] for r in backend.generate_requests
            if r.role == "target" and r.messages[-1].content.startswith(instruction + "\n")]


def test_children_that_tie_or_lose_on_the_minibatch_are_never_scored_on_dev(parity_task: Task,
                                                                             tmp_path: Path) -> None:
    tie, lose, win = ("Decide if the number is even or odd.", "WRONG: give the other parity.",
                      f"Use {MAGIC}: say whether the number is even or odd.")
    backend = _scripted([f"```{tie}```", f"```{lose}```", f"```{win}```"])
    result = promptopt.optimize(parity_task, GEPA(max_iterations=3, skip_perfect_score=False), backend,
                                answer_mode="generate", budget=promptopt.Budget(target_calls=2000),
                                runs_dir=tmp_path, cache=False)
    events = _events(result.run_dir)
    ids = {e["prompt"]["instruction"]: e["prompt_id"] for e in events if e["type"] == "candidate"}
    dev_inputs = _dev_inputs(parity_task)
    for text in (tie, lose):
        assert any(e["type"] == "reject" and e["prompt_id"] == ids[text] for e in events)
        asked = _requests_for(backend, text)
        assert len(asked) == 3 and not dev_inputs & set(asked)  # the minibatch only
        assert not any(e["type"] == "evaluation" and e["prompt_id"] == ids[text] and e["dev"] for e in events)
    accepted = [e for e in events if e["type"] == "accept"]
    assert [e["prompt_id"] for e in accepted] == [ids[win]]
    assert accepted[0]["child_minibatch"] > accepted[0]["minibatch"]
    assert dev_inputs <= set(_requests_for(backend, win))
    assert result.best_prompt.instruction == win and result.best_dev == 1.0


def test_every_reflection_shows_inputs_outputs_and_feedback(parity_task: Task, tmp_path: Path) -> None:
    backend = _scripted([])
    promptopt.optimize(parity_task, GEPA(max_iterations=2, skip_perfect_score=False), backend,
                       answer_mode="generate", budget=promptopt.Budget(target_calls=500), runs_dir=tmp_path,
                       cache=False)
    meta = [r.messages[-1].content for r in backend.generate_requests if r.role == "optimizer"]
    assert len(meta) == 2
    assert parity_task.seed_prompt.instruction in meta[0]
    assert meta[0].count("Input: number") == 3 and meta[0].count("Assistant's answer: even") == 3
    assert "Feedback: correct" in meta[0] or "Feedback: expected 'odd', got 'even'" in meta[0]


def test_minibatches_come_from_train_and_cover_it_each_epoch(parity_task: Task) -> None:
    train = parity_task.splits.train
    sampler = _EpochSampler(train, 5, random.Random(0))
    epoch = [ex for _ in range(sampler.batches_per_epoch) for ex in sampler.next()]
    assert set(epoch) == set(train) and len(epoch) - len(train) < 5
    assert all(len(set(sampler.next())) == 5 for _ in range(30))


def test_search_stops_when_a_whole_epoch_is_already_perfect(parity_task: Task, tmp_path: Path) -> None:
    always_right = FakeBackend(reply=lambda r: "ok" if r.role == "optimizer" else "odd" if _number(r) % 2 else "even")
    result = promptopt.optimize(parity_task, GEPA(), always_right, answer_mode="generate",
                                budget=promptopt.Budget(target_calls=10_000), runs_dir=tmp_path, cache=False)
    events = _events(result.run_dir)
    assert result.stopped_by is None and result.usage["search"]["optimizer"]["calls"] == 0
    assert sum(e["type"] == "perfect" for e in events) == 12  # 36 training examples in minibatches of 3
    assert any(e["type"] == "stop" for e in events)


# -- garbage, budget, parameters ------------------------------------------------------------------
def test_garbage_optimizer_output_is_skipped_and_recorded(parity_task: Task, tmp_path: Path) -> None:
    garbage = iter(["", "!!!", "```\n```", "12345", "ok", "<START><END>"] * 100)
    backend = FakeBackend(reply=lambda r: next(garbage) if r.role == "optimizer" else parity_target(r))
    result = promptopt.optimize(parity_task, GEPA(max_iterations=6, skip_perfect_score=False), backend,
                                answer_mode="generate", budget=promptopt.Budget(target_calls=500),
                                runs_dir=tmp_path, cache=False)
    events = _events(result.run_dir)
    assert result.best_prompt == result.seed_prompt and result.stopped_by is None
    assert sum(e["type"] == "skip" and e["operator"] == "reflect" for e in events) == 6
    assert not [e for e in events if e["type"] == "candidate" and e["operator"] == "reflect"]


@pytest.mark.parametrize("target_calls,optimizer_calls", [(40, None), (75, None), (1000, 5)])
def test_budget_is_never_exceeded(parity_task: Task, tmp_path: Path,
                                  target_calls: int, optimizer_calls: int | None) -> None:
    def reply(r: Request) -> str:  # every child is new; those with the magic word win and go to dev
        n = len(backend.generate_requests)
        return f"```Use {MAGIC} (try {n}): even or odd?```" if r.role == "optimizer" else parity_target(r)

    backend = FakeBackend(reply=reply)
    budget = promptopt.Budget(target_calls=target_calls, optimizer_calls=optimizer_calls)
    result = promptopt.optimize(parity_task, GEPA(skip_perfect_score=False), backend, answer_mode="generate",
                                budget=budget, runs_dir=tmp_path, cache=False)
    search = result.usage["search"]
    assert result.stopped_by is not None
    assert search["target"]["calls"] <= target_calls
    assert optimizer_calls is None or search["optimizer"]["calls"] == optimizer_calls
    assert any(e["type"] == "accept" for e in _events(result.run_dir))


def test_parse_instruction_reads_fences_tags_and_loose_text() -> None:
    assert _parse_instruction("Sure!\n```text\nSay even or odd.\n```") == ("Say even or odd.", "fenced")
    assert _parse_instruction("<START>Say even or odd.<END>") == ("Say even or odd.", "tagged")
    assert _parse_instruction("Say even or odd, always.") == ("Say even or odd, always.", "loose")
    assert _parse_instruction("```\n42\n```")[0] is None


def test_gepa_parameters_round_trip_and_validate() -> None:
    gepa = GEPA(minibatch_size=5, n_pareto=10)
    assert gepa.get_params()["minibatch_size"] == 5 and gepa.get_params()["use_merge"] is False
    assert repr(gepa).startswith("GEPA(minibatch_size=5, n_pareto=10")
    assert set(vars(GEPA())) == set(GEPA().get_params())
    GEPA(n_pareto=None, max_iterations=None).validate()
    with pytest.raises(ConfigError, match="'minibatch_size' parameter of GEPA must be an int >= 1; got 0"):
        GEPA(minibatch_size=0).validate()
    with pytest.raises(ConfigError, match="n_pareto"):
        GEPA(n_pareto=0).validate()


def test_a_pareto_subset_of_dev_scores_accepted_children(parity_task: Task, tmp_path: Path) -> None:
    win = f"Use {MAGIC}: say whether the number is even or odd."
    backend = _scripted([f"```{win}```"])
    result = promptopt.optimize(parity_task, GEPA(n_pareto=4, max_iterations=1, skip_perfect_score=False), backend,
                                answer_mode="generate", budget=promptopt.Budget(target_calls=500),
                                runs_dir=tmp_path, cache=False)
    events = _events(result.run_dir)
    child = next(e["prompt_id"] for e in events if e["type"] == "accept")
    sizes = [(e["n"], e["dev"]) for e in events if e["type"] == "evaluation" and e["prompt_id"] == child]
    # minibatch, then the 4 Pareto examples during the search, then all 12 dev examples by the Run
    assert sizes == [(3, False), (4, True), (12, True)]
    assert result.best_prompt.instruction == win


def test_a_pareto_subset_leaves_the_rest_of_dev_to_finish() -> None:
    assert GEPA(n_pareto=5).finalist_gap(20) == 15
    assert GEPA().finalist_gap(20) == 0
