"""Small yes/no tasks, a fake model whose answers depend on the whole prompt, and tiny runs of every
strategy that searches sets of tasks, shared by the tests of single-task and set runs."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Any

import promptopt
from promptopt.tasks import ClassificationTask, Splits, Task
from promptopt.testing import FakeBackend
from promptopt.types import Example, Message, Request, ScoreRequest

#: the seed system prompt of set runs: two sentences, so that edits and masks have units to work on
SET_SYSTEM = "Be exact in every reply. Answer with care."
_GOLD = re.compile(r"\[(yes|no)\]")
_WORDS = ("label", "input", "answer", "evidence", "question", "meaning", "tone", "detail", "word", "clue",
          "context", "claim", "fact", "reason", "sentence", "topic")

#: tiny parameters for each strategy that searches sets of tasks (a few calls each)
PARAMS: dict[str, dict[str, Any]] = {
    "opro": {"n_steps": 3, "instructions_per_step": 3, "n_exemplars": 3, "n_finalists": 2},
    "ape": {"n_demo_sets": 2, "prompts_per_demo_set": 3, "n_demos": 3, "stage_examples": 2, "resample_rounds": 1,
            "keep_fraction": 0.34},
    "gepa": {"minibatch_size": 3, "max_iterations": 12, "use_merge": True, "skip_perfect_score": False},
    "promptwizard": {"mutate_refine_iterations": 1, "mutation_rounds": 1, "style_variation": 3,
                     "max_eval_batches": 3, "min_correct_count": 2, "refine_task_eg_iterations": 2,
                     "seen_set_size": 8, "few_shot_count": 2},
    "evoprompt-ga": {"population_size": 4, "max_iterations": 2, "n_score": 6},
    "evoprompt-de": {"population_size": 4, "max_iterations": 2, "n_score": 6},
    "promptbreeder": {"population_size": 4, "n_generations": 8, "minibatch_size": 4, "crossover_prob": 0.5},
    "hill-climb": {"n_candidates": 3, "max_iterations": 3, "n_score": 6},
    "simulated-annealing": {"n_candidates": 3, "max_iterations": 3, "n_score": 6},
    "tabu": {"n_candidates": 3, "max_iterations": 3, "n_score": 6},
    "genetic-mutation": {"n_candidates": 3, "max_iterations": 3, "n_score": 6},
    "genetic": {"population_size": 3, "n_offspring": 2, "n_candidates": 2, "max_iterations": 2, "n_score": 6},
    "harmony": {"memory_size": 3, "n_segments": 2, "n_candidates": 3, "max_iterations": 3, "n_score": 6},
    "multiobjective": {"population_size": 4, "n_generations": 2, "n_score": 6},
    "pmpo": {"max_segments": 3, "n_score": 6, "n_hard": 2, "n_variants": 2, "max_iterations": 2},
    "rlprompt": {"words": "alpha,beta,gamma,delta,omega,sigma", "prompt_length": 2, "n_prompts": 3,
                 "max_steps": 3, "n_examples": 4, "eval_every": 2},
}


def _unit(text: str) -> float:
    return int(hashlib.sha256(text.encode("utf-8")).hexdigest()[:8], 16) / 2**32


def yes_no_task(name: str, n_train: int = 12, n_dev: int = 6, n_test: int = 4) -> Task:
    """A two-label task whose inputs carry their gold word (``[yes]``), with a three-sentence instruction."""
    def examples(split: str, n: int) -> tuple[Example, ...]:
        return tuple(Example(f"{split}-{i}", f"{name} item {i} [{'yes' if i % 2 else 'no'}]", "yes" if i % 2 else "no")
                     for i in range(n))

    splits = Splits(examples("train", n_train), examples("dev", n_dev), examples("test", n_test))
    return ClassificationTask(name, ("yes", "no"), splits,
                              instruction=f"Read the {name} item. Say whether it holds. Reply yes or no.")


def system_of(messages: tuple[Message, ...]) -> str:
    return messages[0].content if messages[0].role == "system" else ""


def _right(messages: tuple[Message, ...]) -> bool:
    """Right on an example with a chance set by the prompt (system text and the user message's first
    paragraph, the instruction), decided by a hash of the whole request: prompts differ in quality."""
    system, user = system_of(messages), messages[-1].content
    quality = _unit(f"q|{system}|{user.split(chr(10) * 2)[0]}")
    return _unit(f"n|{system}|{user}") < 0.25 + 0.7 * quality


def _gold(messages: tuple[Message, ...]) -> str:
    found = _GOLD.findall(messages[-1].content)
    return found[-1] if found else "?"


def _optimizer_reply(req: Request) -> str:
    """A new one- to three-sentence text chosen by a hash of the whole request: a changed meta-prompt
    changes the reply, and so the rest of the run."""
    text = "\n".join(m.content for m in req.messages) + f"|{req.seed}|{req.sample_index}"
    picks = [_WORDS[int(_unit(f"{k}|{text}") * len(_WORDS))] for k in range(6)]
    sentences = [f"Check the {picks[0]} first.", f"Answer from the {picks[1]} and the {picks[2]}.",
                 f"Weigh each {picks[3]}."]
    return " ".join(sentences[: 1 + int(_unit(f"n|{text}") * 3)])


def fake_model() -> FakeBackend:
    """Replies to optimizer requests with new texts; on the target, right or wrong as :func:`_right` says."""
    def reply(req: Request) -> str:
        if req.role == "optimizer":
            return _optimizer_reply(req)
        gold = _gold(req.messages)
        return gold if _right(req.messages) else ("no" if gold == "yes" else "yes")

    def score(req: ScoreRequest) -> float:
        noise = _unit(f"s|{req.continuation}|{req.messages[-1].content}")
        if req.continuation != _gold(req.messages):
            return -1.0 - noise
        return -0.2 - noise if _right(req.messages) else -2.0 - noise

    return FakeBackend("sets", reply=reply, score=score)


def run(task: Any, strategy: str, tmp_path: Path, model: FakeBackend, *, mode: str = "generate",
        params: dict[str, Any] | None = None, **kw: Any) -> promptopt.Result:
    """A tiny run of ``strategy`` with its :data:`PARAMS` (updated with ``params``)."""
    kw.setdefault("budget", promptopt.Budget(target_calls=2000, optimizer_calls=60))
    return promptopt.optimize(task, strategy, model, strategy_params={**PARAMS[strategy], **(params or {})},
                              answer_mode=mode, seed=3, runs_dir=tmp_path / "runs", cache=False, **kw)


_VOLATILE = {"elapsed", "seconds", "waiting_seconds", "strategy_seconds", "time", "started", "finished",
             "wall_seconds", "run_dir"}


def events(result: promptopt.Result) -> list[dict[str, Any]]:
    return [json.loads(line) for line in Path(result.run_dir, "events.jsonl").read_text().splitlines()]


def _stable(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _stable(v) for k, v in value.items() if k not in _VOLATILE}
    if isinstance(value, list):
        return [_stable(v) for v in value]
    return value


def digest(value: Any) -> str:
    return hashlib.sha256(json.dumps(_stable(value), sort_keys=True).encode("utf-8")).hexdigest()[:16]


def fingerprint(result: promptopt.Result, model: FakeBackend) -> tuple[str, str, float, float, str, str]:
    """What must not move on one task: the run id, the best prompt, the seed's and the best's dev
    scores, the event log (times left out) and every request the model received, in order."""
    requests = [[m.content for m in r.messages] + [r.role, str(r.seed)] for r in model.generate_requests]
    requests += [[m.content for m in r.messages] + [r.continuation] for r in model.score_requests]
    return (result.run_id, result.best_prompt.id, result.seed_dev, result.best_dev, digest(events(result)),
            digest(requests))
