"""Every strategy that rewrites prompt text searches a set of tasks: the shared system prompt only, each task
keeping its own instruction, examples drawn from every task and named with it; and on one task each runs exactly
as it did before it could."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from set_runs import PARAMS, SET_SYSTEM, events, fake_model, fingerprint, run, system_of, yes_no_task

import promptopt
from promptopt.prompt import Prompt
from promptopt.strategies import BUILTIN, PMPO
from promptopt.tasks import CustomTask, Splits, load_file_task
from promptopt.types import Example

CONVERTED = tuple(PARAMS)

# Computed with tests/strategies/set_runs.py on main's code as it was before these strategies could search a set
# of tasks (commit 0d19e63), one run per strategy and answer mode: the run id, the best prompt's id, the seed's and
# the best's dev scores, a digest of the event log (times left out) and a digest of every request the fake model
# received (target and optimizer, in order: the meta-prompts word for word).
ON_MAIN: dict[tuple[str, str], tuple[str, str, float, float, str, str]] = {
    ("opro", "generate"): ("alpha-opro-86a279a9", "23dba09d3978", 0.6666666666666666, 0.6666666666666666,
                           "f6a2fa22c0f076a4", "7626ca49acbd3ff4"),
    ("opro", "choice"): ("alpha-opro-8c2e164f", "c52d5b505ae2", 0.6666666666666666, 0.8333333333333334,
                         "057b96c3cacd7017", "98a0ef24263f32e5"),
    ("ape", "generate"): ("alpha-ape-31825f26", "23dba09d3978", 0.6666666666666666, 0.6666666666666666,
                          "bb9c45f9479db98c", "afe1392f64c95f2a"),
    ("ape", "choice"): ("alpha-ape-85662598", "826f1debba0f", 0.6666666666666666, 0.8333333333333334,
                        "191cc30d85a7fbf1", "0b3d3763ed4568a2"),
    ("gepa", "generate"): ("alpha-gepa-00c7ceab", "23dba09d3978", 0.6666666666666666, 0.6666666666666666,
                           "2c5e3ab58c46086f", "aca07cdb21772f52"),
    ("gepa", "choice"): ("alpha-gepa-87e086a3", "32080dc9430d", 0.6666666666666666, 1.0,
                         "5b9d3419da81d4a7", "91ef12aff847ee74"),
    ("promptwizard", "generate"):
        ("alpha-promptwizard-182c0770", "23dba09d3978", 0.6666666666666666, 0.6666666666666666,
         "0497c86944a373c5", "cb0a9647f4ce5166"),
    ("promptwizard", "choice"): ("alpha-promptwizard-55adea16", "6e35ccf87355", 0.6666666666666666, 0.8333333333333334,
                                 "8884bcbef8c4388c", "df197e14b13ee955"),
    ("evoprompt-ga", "generate"):
        ("alpha-evoprompt-ga-aed4a9df", "23dba09d3978", 0.6666666666666666, 0.6666666666666666,
         "a78e3fc0bb35f858", "880743c2276ead65"),
    ("evoprompt-ga", "choice"): ("alpha-evoprompt-ga-9bb73f85", "6f4042985185", 0.6666666666666666, 0.8333333333333334,
                                 "5cc3f1b01983f3e3", "86add1ca8e929ae9"),
    ("evoprompt-de", "generate"):
        ("alpha-evoprompt-de-501158ae", "23dba09d3978", 0.6666666666666666, 0.6666666666666666,
         "c9a446dd18e0adde", "015a21407dbd19d3"),
    ("evoprompt-de", "choice"): ("alpha-evoprompt-de-9657d3fc", "6f4042985185", 0.6666666666666666, 0.8333333333333334,
                                 "92cb044e2cc3ee27", "5eb93fbebcbb07bf"),
    ("promptbreeder", "generate"):
        ("alpha-promptbreeder-59464b01", "23dba09d3978", 0.6666666666666666, 0.6666666666666666,
         "c9ab3eb5aed68c80", "32b57a02c72f570b"),
    ("promptbreeder", "choice"): ("alpha-promptbreeder-0f5c96e5", "6315b280ea36", 0.6666666666666666, 1.0,
                                  "0d078c30ceef2290", "78c53f801067e501"),
    ("hill-climb", "generate"): ("alpha-hill-climb-c56d60e1", "23dba09d3978", 0.6666666666666666, 0.6666666666666666,
                                 "e26083d3147e4426", "45744557084d7157"),
    ("hill-climb", "choice"): ("alpha-hill-climb-b0027376", "af80cdf02fde", 0.6666666666666666, 0.8333333333333334,
                               "f38c8acb36c8bf9d", "fd23563816ba0efc"),
    ("simulated-annealing", "generate"):
        ("alpha-simulated-annealing-c819ab49", "23dba09d3978", 0.6666666666666666, 0.6666666666666666,
         "e1b763bcb58c5afb", "4749a798192291fd"),
    ("simulated-annealing", "choice"):
        ("alpha-simulated-annealing-fffdd3b3", "af80cdf02fde", 0.6666666666666666, 0.8333333333333334,
         "f6f6e4fe07cd4a8d", "1084a11dbfb1e4a7"),
    ("tabu", "generate"): ("alpha-tabu-60319ffa", "23dba09d3978", 0.6666666666666666, 0.6666666666666666,
                           "b23cc40c447c4974", "45744557084d7157"),
    ("tabu", "choice"): ("alpha-tabu-a67a1db7", "af80cdf02fde", 0.6666666666666666, 0.8333333333333334,
                         "1c48e9c1e3acbd2c", "fd23563816ba0efc"),
    ("genetic-mutation", "generate"):
        ("alpha-genetic-mutation-3cd65b59", "23dba09d3978", 0.6666666666666666, 0.6666666666666666,
         "cb2375b7d9885acf", "74e9e922e22c1080"),
    ("genetic-mutation", "choice"):
        ("alpha-genetic-mutation-3843eb6c", "6af48617008b", 0.6666666666666666, 0.8333333333333334,
         "9e6fb41523db6ac0", "38b82f64e056fff7"),
    ("genetic", "generate"): ("alpha-genetic-89fc7c0c", "23dba09d3978", 0.6666666666666666, 0.6666666666666666,
                              "ebdc7fd773aa9605", "b1afa8180ffc23ca"),
    ("genetic", "choice"): ("alpha-genetic-67ba23f1", "32c6302368d7", 0.6666666666666666, 0.8333333333333334,
                            "f5d05937b499e6d3", "ab1a36f86e0df243"),
    ("harmony", "generate"): ("alpha-harmony-91d1ee22", "23dba09d3978", 0.6666666666666666, 0.6666666666666666,
                              "e5d0551c40dd1100", "74fb297cf9273b3f"),
    ("harmony", "choice"): ("alpha-harmony-de6cec3c", "23dba09d3978", 0.6666666666666666, 0.6666666666666666,
                            "f02b0edf0de6370b", "f7ef3a97b6dea15b"),
    ("multiobjective", "generate"): ("alpha-multiobjective-792bea9f", "d1be639f6a2d", 0.6666666666666666, 1.0,
                                     "5effd4ef92f6bb75", "a1a7b51b64c48ea6"),
    ("multiobjective", "choice"): ("alpha-multiobjective-c377d32a", "d1be639f6a2d", 0.6666666666666666, 1.0,
                                   "e67043e1f58164fa", "669fe23434df3736"),
    ("pmpo", "generate"): ("alpha-pmpo-b413cfb1", "23dba09d3978", 0.6666666666666666, 0.6666666666666666,
                           "034bbef181c376a5", "260473139a64a136"),
    ("pmpo", "choice"): ("alpha-pmpo-bee9fab8", "23dba09d3978", 0.6666666666666666, 0.6666666666666666,
                         "c89975c905bffee3", "50a52d604d5ec45c"),
    ("rlprompt", "generate"): ("alpha-rlprompt-522926a2", "23dba09d3978", 0.6666666666666666, 0.6666666666666666,
                               "a9bba1b83d99e58c", "7860a8ea9821e5d6"),
    ("rlprompt", "choice"): ("alpha-rlprompt-82178fa2", "23dba09d3978", 0.6666666666666666, 0.6666666666666666,
                             "b269a360822ba55a", "6c75dd512fc3d04b"),
}


@pytest.mark.parametrize(("strategy", "mode"), list(ON_MAIN))
def test_a_single_task_run_is_what_it_was_before_sets(tmp_path: Path, strategy: str, mode: str) -> None:
    model = fake_model()
    result = run(yes_no_task("alpha"), strategy, tmp_path, model, mode=mode)
    assert fingerprint(result, model) == ON_MAIN[(strategy, mode)]


def test_the_converted_strategies_are_those_that_say_they_search_sets() -> None:
    able = {name for name, cls in BUILTIN.items() if cls.supports_task_sets}
    assert able == {"apo", *CONVERTED, "sprig", "metaspo"}  # the last two were written for sets (own tests)
    assert {"fewshot", "tapruning", "promptquine", "prompt-selection"}.isdisjoint(able)


# --- on a set of tasks ------------------------------------------------------------------------------------

# what each shown example looks like on a set: its task's name, then its input
_SHOWN = re.compile(r"(?:\(task (\w+)\)|Task: (\w+))\n(?:Input: )?(\w+) item")
_INPUT = re.compile(r"(?:Input: )?(\w+) item \d+ \[")
# requests that ask for PromptBreeder's mutation prompts (instructions to the optimizer) or hints
_NOT_ABOUT_THE_TEXT = ("Summarize and improve this instruction", "Write one short instruction", "100 hints")
# the strategies that always show the optimizer examples of several tasks (errors, exemplars, demonstrations,
# hard examples); PromptWizard shows a candidate's errors in one batch, which may all be one task's
_SHOWS_EXAMPLES = {"opro", "ape", "gepa", "pmpo"}
# on a set, PromptWizard's scoring batches of four questions: two from each task
_SET_PARAMS = {"promptwizard": {"questions_batch_size": 4, "mutate_refine_iterations": 3, "mutation_rounds": 2}}


def _set_run(strategy: str, tmp_path: Path) -> tuple[promptopt.Result, list[dict[str, Any]], Any]:
    model = fake_model()
    # beta has a third of alpha's training examples: a draw from the pooled examples would be mostly alpha's
    result = run([yes_no_task("alpha"), yes_no_task("beta", n_train=4)], strategy, tmp_path, model, mode="choice",
                 params=_SET_PARAMS.get(strategy), system=SET_SYSTEM)
    return result, events(result), model


@pytest.mark.parametrize("strategy", CONVERTED)
def test_on_a_set_only_the_system_prompt_changes_and_every_task_keeps_its_instruction(
        tmp_path: Path, strategy: str) -> None:
    result, log, model = _set_run(strategy, tmp_path)
    candidates = [Prompt.from_dict(e["prompt"]) for e in log if e["type"] == "candidate"]
    assert all(c == Prompt(system=c.system) for c in candidates)  # no instruction, demos or template of its own
    systems = {c.system for c in candidates}
    assert SET_SYSTEM in systems and len(systems) > 1 and result.best_prompt == Prompt(system=result.best_prompt.system)
    asked = [r for r in model.score_requests]
    assert asked
    for req in asked:  # each example is asked with its own task's instruction, under a candidate's system prompt
        task = re.match(r"Text: (\w+) item", req.messages[-1].content.split("\n\n")[1])
        assert task is not None
        assert req.messages[-1].content.startswith(f"Read the {task.group(1)} item. Say whether it holds.")
        assert system_of(req.messages) in systems
    assert set(result.per_task) == {"alpha", "beta"}


@pytest.mark.parametrize("strategy", CONVERTED)
def test_on_a_set_examples_come_from_every_task_and_the_optimizer_reads_of_a_system_prompt(
        tmp_path: Path, strategy: str) -> None:
    _, log, model = _set_run(strategy, tmp_path)
    drawn = [e for e in log if e["type"] == "evaluation" and not e["dev"] and e["n"] >= 2]
    if strategy == "gepa":  # an epoch's minibatches take the tasks in turn until beta's four examples are used
        drawn = drawn[:1]
    if strategy == "ape":  # its filtering stages: parts of dev
        drawn = [e for e in log if e["type"] == "evaluation" and e["dev"] and 2 <= e["n"] < 12]
    for evaluation in drawn:  # what a strategy draws from training examples is spread evenly over the tasks
        assert _even([evaluation["per_task"].get(name, {"n": 0})["n"] for name in ("alpha", "beta")]), evaluation
    requests = [r.messages[-1].content for r in model.generate_requests if r.role == "optimizer"]
    about_the_text = [r for r in requests if not any(s in r for s in _NOT_ABOUT_THE_TEXT)]
    assert all("system prompt" in r.lower() for r in about_the_text)
    shown_tasks: set[str] = set()
    for request in requests:
        named = [(a or b, c) for a, b, c in _SHOWN.findall(request)]
        assert all(task == seen for task, seen in named), request  # each shown example names its own task
        assert len(named) == len(_INPUT.findall(request)), request  # and none is shown unnamed
        shown_tasks |= {task for task, _ in named}
        if strategy in ("opro", "ape"):  # a step's exemplars, a demonstration set: spread over the tasks
            assert _even([sum(task == name for task, _ in named) for name in ("alpha", "beta")]), request
    if strategy in _SHOWS_EXAMPLES:
        assert shown_tasks == {"alpha", "beta"}
    if strategy in ("gepa", "promptwizard", "pmpo"):  # their requests describe the task: here, the set
        assert requests and all("a system prompt shared by 2 tasks" in r for r in requests)
    if strategy not in ("opro", "ape"):  # these score candidates on dev
        assert drawn


def _even(counts: list[int]) -> bool:
    return max(counts) - min(counts) <= 1


def test_a_draw_smaller_than_the_set_does_not_always_take_the_first_tasks(tmp_path: Path) -> None:
    model = fake_model()
    tasks = [yes_no_task(name) for name in ("alpha", "beta", "gamma")]
    promptopt.optimize(tasks, "opro", model, strategy_params={"n_steps": 6, "instructions_per_step": 1,
                                                              "n_exemplars": 1}, answer_mode="choice", seed=3,
                       system=SET_SYSTEM, runs_dir=tmp_path, cache=False)
    requests = [r.messages[-1].content for r in model.generate_requests if r.role == "optimizer"]
    shown = [re.findall(r"Task: (\w+)\nInput", r) for r in requests]
    assert len(shown) == 6 and all(len(s) == 1 for s in shown)
    assert len({s[0] for s in shown}) > 1  # one exemplar a step, not always from the set's first task


def test_promptwizard_on_a_set_leaves_out_demos_and_persona(tmp_path: Path) -> None:
    result, log, model = _set_run("promptwizard", tmp_path)
    operators = {e["operator"] for e in log if e["type"] == "candidate"}
    assert "combine" not in operators and operators <= {"seed", "mutate", "refine"}
    requests = [r.messages[-1].content for r in model.generate_requests if r.role == "optimizer"]
    assert requests and not any("Expert description" in r or "to the correct answer" in r for r in requests)
    one_task = run(yes_no_task("alpha"), "promptwizard", tmp_path / "one", fake_model(), mode="choice")
    assert "combine" in {e["operator"] for e in events(one_task) if e["type"] == "candidate"}


def test_plum_on_a_set_edits_the_system_prompt_whatever_field_says(tmp_path: Path) -> None:
    model = fake_model()
    result = promptopt.optimize([yes_no_task("alpha"), yes_no_task("beta")], "hill-climb", model,
                                strategy_params={**PARAMS["hill-climb"], "field": "instruction"}, seed=3,
                                answer_mode="choice", system=SET_SYSTEM, runs_dir=tmp_path, cache=False)
    edits = [edit for e in events(result) if e["type"] == "edit" for edit in e["edits"]]
    assert edits and {edit["field"] for edit in edits} == {"system"}


def test_pmpo_on_a_set_builds_rewrites_around_each_tasks_hardest_example_in_turn() -> None:
    class Meter:
        def measure(self, prompts: list[Prompt], examples: list[Example]) -> list[Any]:
            class Measured:
                losses = [3.0, 2.9, 2.8, 0.1]  # alpha's three are harder than beta's one
            return [Measured()]

    score_set = [Example(f"alpha/{i}", "x", "y") for i in range(3)] + [Example("beta/0", "x", "y")]
    hard = PMPO(n_hard=2).hardest(Meter(), Prompt(), score_set,  # type: ignore[arg-type]
                                  task_of=lambda i: i.split("/")[0])
    assert [ex.id for ex, _ in hard] == ["alpha/0", "beta/0"]
    alone = PMPO(n_hard=2).hardest(Meter(), Prompt(), score_set)  # type: ignore[arg-type]
    assert [ex.id for ex, _ in alone] == ["alpha/0", "alpha/1"]


def test_pmpo_refuses_a_set_of_preference_tasks(tmp_path: Path) -> None:
    tasks = []
    for name in ("one", "two"):
        rows = [{"input": f"question {i}", "chosen": "Sure, here it is.", "rejected": "No.",
                 "split": "train" if i < 4 else "dev" if i < 6 else "test"} for i in range(8)]
        (tmp_path / f"{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), "utf-8")
        tasks.append(load_file_task(tmp_path / f"{name}.jsonl"))
    with pytest.raises(promptopt.ConfigError, match="preference pairs .* on one task, not on a set of tasks"):
        promptopt.optimize(tasks, "pmpo", fake_model(), system=SET_SYSTEM, runs_dir=tmp_path / "runs", cache=False)


def test_multiobjective_on_a_mixed_set_refuses_an_objective_one_task_cannot_measure(tmp_path: Path) -> None:
    examples = tuple(Example(f"e{i}", f"free item {i} [yes]", "yes") for i in range(4))
    free = CustomTask("free", Splits(examples, examples, examples), instruction="Answer freely.")
    with pytest.raises(promptopt.ConfigError, match="'output-length' .* exists only in generate answer mode"):
        promptopt.optimize([yes_no_task("alpha"), free], "multiobjective", fake_model(), system=SET_SYSTEM,
                           strategy_params={"objectives": "accuracy,output-length", "n_generations": 0},
                           runs_dir=tmp_path, cache=False)


def test_gepa_merges_system_prompts_on_a_set(tmp_path: Path) -> None:
    result = run([yes_no_task("alpha"), yes_no_task("beta")], "gepa", tmp_path, fake_model(), mode="choice",
                 params={"max_iterations": 40, "minibatch_size": 3}, system=SET_SYSTEM)
    log = [e for e in events(result) if e["type"] == "candidate"]
    systems = {e["prompt_id"]: e["prompt"]["system"] for e in log}
    merges = [e for e in log if e["operator"] == "merge"]
    assert merges
    for merge in merges:  # a system prompt alone, made of its two parents' sentences
        assert Prompt.from_dict(merge["prompt"]) == Prompt(system=merge["prompt"]["system"])
        parents = [Prompt(systems[p]).segments() for p in merge["parents"]]
        assert all(any(s in found for found in parents) for s in Prompt(merge["prompt"]["system"]).segments())
