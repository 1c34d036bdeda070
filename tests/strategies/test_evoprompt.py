"""EvoPrompt GA and DE on FakeBackend: roulette parents, top-N survival, the DE request's differing parts."""

from __future__ import annotations

import hashlib
import itertools
import json
import re
from pathlib import Path
from typing import Any

import pytest

import promptopt
from promptopt.prompt import Prompt
from promptopt.strategies.evoprompt import de_request, differing_parts, final_instruction
from promptopt.tasks import Task, load_task
from promptopt.testing import FakeBackend
from promptopt.types import Request

SEED = "Classify the sentiment of the sentence as negative or positive. Answer with the label only."
#: the paraphrases the fake optimizer gives, by sample index: three that are always wrong (DULL)
PARAPHRASES = tuple(f"{SEED} {end}" for end in ("DULL one.", "DULL two.", "DULL three.", "++ four."))
_PARTS = re.compile(r"Parts where A and B differ:\n(.*?)\nInstruction C: (.*?)\nBase instruction: (.*?)\n",
                    re.DOTALL)


@pytest.fixture
def task(tmp_path: Path) -> Task:
    return load_task("synthetic:sentiment", data_dir=tmp_path, n_train=20, n_dev=6, n_test=6)


def _h(text: str) -> int:
    return int(hashlib.sha256(text.encode()).hexdigest()[:8], 16)


def _fake(task: Task) -> FakeBackend:
    """The target is right on an input when its hash mod 5 is below 1 + the '+' signs in the
    instruction (never with DULL). The optimizer numbers its children and gives them '+' signs."""
    splits = task.splits
    gold = {ex.input: str(ex.target) for ex in (*splits.train, *splits.dev, *splits.test)}
    count = itertools.count(1)

    def reply(req: Request) -> str:
        content = req.messages[-1].content
        if req.role == "optimizer":
            if content.startswith("Say this instruction"):
                return PARAPHRASES[req.sample_index]
            n = next(count)
            return f"Step 1 done.\n<prompt>{SEED} Child {n} {'+' * (_h(content) % 4)}</prompt>"
        instruction, _, rest = content.partition("\n\nText: ")
        sentence = rest.split("\nAnswer:")[0]
        right = "DULL" not in instruction and _h(sentence) % 5 < 1 + instruction.count("+")
        return gold[sentence] if right else ("negative" if gold[sentence] == "positive" else "positive")

    return FakeBackend(reply=reply)


def _run(task: Task, name: str, tmp_path: Path, *, seed: int = 0, calls: int = 3000,
         **params: Any) -> tuple[promptopt.Result, list[dict[str, Any]], FakeBackend]:
    params = {"population_size": 5, "n_score": 10, "max_iterations": 3, **params}
    backend = _fake(task)
    result = promptopt.optimize(task, name, backend, answer_mode="generate", strategy_params=params,
                                budget=promptopt.Budget(target_calls=calls), seed=seed, cache=False,
                                runs_dir=tmp_path / f"runs{seed}-{calls}")
    events = [json.loads(line) for line in Path(result.run_dir, "events.jsonl").read_text().splitlines()]
    return result, events, backend


def _fitness(events: list[dict[str, Any]]) -> dict[str, float]:
    """Score-set fitness by prompt id (evaluations of 10 training examples)."""
    return {e["prompt_id"]: e["mean"] for e in events if e["type"] == "evaluation" and not e["dev"]}


def _generations(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [e for e in events if e["type"] == "generation"]


# -- the DE request ------------------------------------------------------------------------------
def test_differing_parts_are_the_word_spans_that_differ() -> None:
    assert differing_parts("Classify the review as good or bad.", "Classify the tweet as good or bad.") == [
        ("review", "tweet")]
    assert differing_parts("Say yes or no.", "Say yes or no, briefly.") == [("no.", "no, briefly.")]
    assert differing_parts("Answer now.", "Please answer now.") == [("Answer", "Please answer")]
    assert differing_parts("Be brief.", "Be brief.") == []


def test_de_request_shows_only_the_donors_differing_parts() -> None:
    request = de_request(base="Name the topic.", first="Read the news story and name its topic in one word.",
                         second="Read the news story and give its category in one word.", best="Say the topic.")
    parts, best, base = _PARTS.findall(request)[-1]
    assert parts == '"name" / "give"\n"topic" / "category"'
    assert "news story" not in parts and "one word" not in request.split("Parts where A and B differ:")[-1]
    assert (best, base) == ("Say the topic.", "Name the topic.")
    assert "(none: A and B are the same)" in de_request("a", "Same words.", "Same words.", "b")


def test_de_run_sends_only_donor_differences_and_replaces_a_base_only_with_a_fitter_child(
        task: Task, tmp_path: Path) -> None:
    result, events, backend = _run(task, "evoprompt-de", tmp_path)
    assert task.seed_prompt.instruction == SEED
    prompts = {e["prompt_id"]: Prompt.from_dict(e["prompt"]) for e in events if e["type"] == "candidate"}
    texts = [p.instruction for p in prompts.values()]
    allowed = {"\n".join(f'"{a}" / "{b}"' if a and b else f'"{a or b}" / (nothing)' for a, b in
                         differing_parts(x, y)) or "(none: A and B are the same)" for x in texts for y in texts}
    requests = [r.messages[-1].content for r in backend.generate_requests
                if r.role == "optimizer" and "Instruction C:" in r.messages[-1].content]
    assert len(requests) == 5 * 3  # every member is the base once per iteration
    for request in requests:
        parts, _, _ = _PARTS.findall(request)[-1]
        assert parts in allowed and "sentiment" not in parts  # every member starts with the seed: never shown
    fitness = _fitness(events)
    generations = _generations(events)
    for before, after in itertools.pairwise(generations):
        for old, new in zip(before["population"], after["population"], strict=True):
            assert new == old or fitness[new] > fitness[old]
    assert any(b["population"] != a["population"] for b, a in itertools.pairwise(generations))
    assert result.usage["search"]["optimizer"]["calls"] == 4 + 15  # 4 paraphrase samples, 15 DE requests


@pytest.mark.parametrize(("reply", "expected"), [
    ("Step 1 done.\nStep 2, changed: <prompt>First.</prompt> then <prompt>Say the label.</prompt>", "Say the label."),
    ("Crossed.\nStep 2, changed: <prompt>Answer with one word only", "Answer with one word only"),
    ("Give the label of the text.\nStep 2, changed: Name the label only.", "Name the label only."),
    ("Give the label of the text.\n\nMore chatter here.", "Give the label of the text."),
    ("<prompt></prompt>", None), ("", None)])
def test_final_instruction_reads_what_small_models_write(reply: str, expected: str | None) -> None:
    assert final_instruction(reply, last_step=2) == expected


# -- the GA ----------------------------------------------------------------------------------------
def test_ga_parents_come_by_roulette_and_the_fittest_survive(task: Task, tmp_path: Path) -> None:
    _, events, _ = _run(task, "evoprompt-ga", tmp_path)
    fitness = _fitness(events)
    children = [e for e in events if e["type"] == "candidate" and e["operator"] == "llm-crossover-mutation"]
    assert len(children) >= 10
    # roulette: a member with fitness 0 (the three DULL paraphrases start as 3 of 5) is never a parent
    assert all(fitness[p] > 0 for c in children for p in c["parents"])
    # each generation keeps the 5 fittest of its parents and the children born since the last one
    population: list[str] = []
    children_since: list[str] = []
    for event in events:
        if event["type"] == "candidate" and event["operator"] == "llm-crossover-mutation":
            children_since.append(event["prompt_id"])
        elif event["type"] == "generation":
            if event["index"] > 0:
                pool = population + children_since
                kept = sorted(pool, key=lambda p: -fitness[p])[:5]  # stable: ties keep parents first
                assert event["population"] == kept and event["fitness"] == [fitness[p] for p in kept]
            population, children_since = event["population"], []
    assert len(_generations(events)) == 4


@pytest.mark.parametrize("name", ["evoprompt-ga", "evoprompt-de"])
def test_same_seed_same_result_and_the_budget_is_kept(task: Task, tmp_path: Path, name: str) -> None:
    first, events, _ = _run(task, name, tmp_path, calls=150)
    assert first.stopped_by is not None and first.usage["search"]["target"]["calls"] <= 150
    lineage = [(e["prompt_id"], e["parents"], e["operator"]) for e in events if e["type"] == "candidate"]
    assert {op for _, _, op in lineage} == {"seed", "llm-paraphrase",
                                            "llm-crossover-mutation" if name == "evoprompt-ga" else "llm-differential"}
    seen: set[str] = set()
    for pid, parents, _ in lineage:
        assert set(parents) <= seen
        seen.add(pid)
    again, events_again, _ = _run(task, name, tmp_path / "again", calls=150)
    assert [(e["prompt_id"], e["parents"], e["operator"]) for e in events_again if e["type"] == "candidate"] == lineage
    assert again.best_prompt == first.best_prompt
    _, other, _ = _run(task, name, tmp_path, seed=3, calls=150)
    assert [(e["prompt_id"], e["parents"]) for e in other if e["type"] == "candidate"] != [x[:2] for x in lineage]


def test_new_bests_are_scored_on_dev_so_the_run_can_pick_them(task: Task, tmp_path: Path) -> None:
    result, events, _ = _run(task, "evoprompt-ga", tmp_path)
    incumbents = [e["prompt_id"] for e in events if e["type"] == "incumbent"]
    on_dev = {e["prompt_id"] for e in events if e["type"] == "evaluation" and e["dev"]}
    assert incumbents and set(incumbents) <= on_dev
    assert result.best_prompt.id in on_dev
