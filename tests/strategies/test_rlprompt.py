"""RLPrompt: rewards, the policy and its update, the candidate vocabulary and drift, and whole runs on fakes."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import promptopt
from promptopt._loop import LoopThread
from promptopt.exceptions import CapabilityError, ConfigError
from promptopt.strategies import get_strategy
from promptopt.strategies._policy import Adam, TokenPolicy
from promptopt.strategies._prompt_tokens import CandidateVocabulary, parse_words, whole_word_ids
from promptopt.strategies.rlprompt import RLPrompt, gap_reward, zscore
from promptopt.tasks import Task
from promptopt.testing import FakeBackend
from promptopt.tokenizer import Tokenizer
from promptopt.types import ScoreRequest

WORDS = [f"w{i:02d}" for i in range(20)]
TARGET = ["w07", "w13", "w02", "w19", "w11"]  # the best prompt of the toy bandit
BIG = promptopt.Budget(target_calls=10**7)


# -- the reward ----------------------------------------------------------------------------------

def test_gap_reward_is_the_papers_piecewise_gap_of_label_probabilities() -> None:
    right = gap_reward([math.log(0.7), math.log(0.3)], [True, False])
    wrong = gap_reward([math.log(0.7), math.log(0.3)], [False, True])
    assert right == pytest.approx(200 * 0.4) and wrong == pytest.approx(180 * -0.4)
    # three labels, log-probs not normalised: softmax(-1, -2, -0.5) = (0.331498, 0.121951, 0.546549)
    assert gap_reward([-1.0, -2.0, -0.5], [True, False, False]) == pytest.approx(180 * (0.331498 - 0.546549), abs=1e-3)
    # two gold labels: the better one counts, against the best wrong one
    assert gap_reward([-1.0, -2.0, -0.5], [True, False, True]) == pytest.approx(200 * (0.546549 - 0.121951), abs=1e-3)
    assert gap_reward([-1.0, -1.0], [True, False]) == 0.0  # a tie is not right
    assert gap_reward([-1.0, -2.0], [True, True]) is None and gap_reward([-1.0, -2.0], [False, False]) is None
    assert gap_reward([math.log(0.9), math.log(0.1)], [True, False], correct_coeff=10.0) == pytest.approx(8.0)
    assert gap_reward([math.log(0.9), math.log(0.1)], [False, True], incorrect_coeff=10.0) == pytest.approx(-8.0)


def test_zscore_against_hand_computed_values() -> None:
    # mean 3, population std sqrt((4 + 1 + 0 + 9) / 4) = 1.870829
    expected = [(r - 3) / (1.870829 + 1e-4) for r in (1, 2, 3, 6)]
    assert zscore([1.0, 2.0, 3.0, 6.0]).tolist() == pytest.approx(expected, abs=1e-6)
    assert zscore([5.0, 5.0, 5.0]).tolist() == [0.0, 0.0, 0.0]  # nothing to learn from equal rewards


# -- the policy ----------------------------------------------------------------------------------

def test_policy_gradient_matches_finite_differences() -> None:
    rng = np.random.default_rng(0)
    policy = TokenPolicy(7, 4)
    policy.params["logits"] += rng.normal(0, 1, (4, 7))
    actions, advantages = policy.sample(6, rng), rng.normal(size=6)
    grad = policy.gradient(actions, advantages, 0.3)["logits"]
    logits, numeric = policy.params["logits"], np.zeros((4, 7))
    for index in np.ndindex(*logits.shape):
        old = logits[index]
        logits[index] = old + 1e-6
        up = policy.objective(actions, advantages, 0.3)
        logits[index] = old - 1e-6
        numeric[index] = (up - policy.objective(actions, advantages, 0.3)) / 2e-6
        logits[index] = old
    assert np.abs(grad - numeric).max() < 1e-7 and np.abs(numeric).max() > 0.05


def test_a_step_raises_the_probability_of_prompts_with_positive_advantage() -> None:
    policy = TokenPolicy(3, 2)
    actions = np.array([[0, 1], [2, 2]])
    before = policy.objective(actions, np.array([1.0, 0.0]), 0.0)
    Adam(0.1).ascend(policy.params, policy.gradient(actions, np.array([1.0, -1.0]), 0.0))
    assert policy.greedy().tolist() == [0, 1]
    assert policy.objective(actions, np.array([1.0, 0.0]), 0.0) > before


def test_sampling_follows_the_policy_and_repeats_under_a_seed() -> None:
    policy = TokenPolicy(4, 2)
    policy.params["logits"][0] = np.log([0.7, 0.1, 0.1, 0.1])
    draws = policy.sample(4000, np.random.default_rng(1))
    assert np.mean(draws[:, 0] == 0) == pytest.approx(0.7, abs=0.03)
    assert np.mean(draws[:, 1] == 3) == pytest.approx(0.25, abs=0.03)
    assert (policy.sample(5, np.random.default_rng(2)) == policy.sample(5, np.random.default_rng(2))).all()


# -- the candidate vocabulary and drift ----------------------------------------------------------

def test_word_lists_and_the_whole_word_rule() -> None:
    assert parse_words("great, terrible,,great ") == ("great", "terrible")
    assert parse_words(["a", "b"]) == ("a", "b")
    with pytest.raises(ValueError):
        parse_words(" , ")
    pieces = ["<s>", " the", "ing", " cat", " it's", " 42", " the", "\ufffd", " café", " A", "the"]
    assert whole_word_ids(pieces) == [1, 3, 9]


class _StubTokenizer:
    """A tokenizer whose vocabulary and read-backs the test chooses."""

    def __init__(self, pieces: list[str], read_back: dict[str, list[int]]) -> None:
        self.pieces, self.read_back = pieces, read_back

    def vocabulary(self) -> tuple[str, ...]:
        return tuple(self.pieces)

    def tokenize_many(self, texts: Sequence[str]) -> list[list[int]]:
        return [self.read_back.get(t, [self.pieces.index(t)]) for t in texts]


def test_model_vocabulary_keeps_pieces_read_back_as_themselves_lowest_ids_first() -> None:
    pieces = ["<s>", " the", " cat", "ing", " dog", " sat"]
    stub = _StubTokenizer(pieces, {" dog": [2, 3]})  # " dog" is never produced by this tokenizer
    vocab = CandidateVocabulary.from_tokenizer(stub, max_size=2)  # type: ignore[arg-type]
    assert vocab.pieces == (" the", " cat") and vocab.token_ids == (1, 2)
    assert CandidateVocabulary.from_tokenizer(stub, max_size=9).token_ids == (1, 2, 5)  # type: ignore[arg-type]


def test_drift_is_detected_with_the_fake_byte_tokenizer() -> None:
    loop = LoopThread()
    try:
        tokenizer = Tokenizer(FakeBackend(), loop)
        vocab = CandidateVocabulary(("\ufffd", "A", "h", "i"), (0xC3, 0x41, 0x68, 0x69))
        lone_byte, word = vocab.write([[0, 1], [2, 3]], tokenizer)
    finally:
        loop.close()
    # 0xC3 alone is half a character: it comes back as U+FFFD, three other bytes
    assert lone_byte.text == "\ufffdA" and lone_byte.drifted
    assert lone_byte.token_ids == (0xC3, 0x41) and lone_byte.retokenized == (0xEF, 0xBF, 0xBD, 0x41)
    assert word.text == "hi" and not word.drifted
    assert not CandidateVocabulary.from_words(["hi", "there"]).write([[1, 0]], None)[0].drifted


class _WordPieceBackend(FakeBackend):
    """A fake whose tokenizer has word pieces, and a piece " red blue" that swallows " red" + " blue"."""

    PIECES = ["<s>", " red", " blue", " red blue", "ing", " 42"]

    async def atokenize(self, texts: Sequence[str]) -> list[list[int]]:
        return [self._greedy(t) for t in texts]

    def _greedy(self, text: str) -> list[int]:
        ids = []
        while text:  # longest piece first
            best = max((i for i, p in enumerate(self.PIECES) if p and text.startswith(p)),
                       key=lambda i: len(self.PIECES[i]))
            ids.append(best)
            text = text[len(self.PIECES[best]):]
        return ids

    async def adetokenize(self, ids: Sequence[Sequence[int]]) -> list[str]:
        return ["".join(self.PIECES[i] for i in seq) for seq in ids]

    async def avocabulary(self) -> list[str]:
        return list(self.PIECES)


def test_drifted_prompts_are_scored_as_the_text_and_recorded(parity_task: Task, tmp_path: Path) -> None:
    fake = _WordPieceBackend()
    strategy = RLPrompt(prompt_length=2, placement="instruction", max_steps=6, n_prompts=4, n_examples=2)
    result = promptopt.optimize(parity_task, strategy, fake, answer_mode="choice", cache=False, n_dev=2,
                                n_test=2, runs_dir=tmp_path / "runs", budget=BIG)
    events = _events(result)
    assert events[_first(events, "rl_start")]["vocabulary"] == 2  # " red", " blue": no " red blue", "ing", " 42"
    drifted = [d for e in events if e["type"] == "rl_step" for d in e["drifted"]]
    assert drifted and all(d == {"text": " red blue", "ids": [1, 2], "retokenized": [3]} for d in drifted)
    instructions = {e["prompt"]["instruction"] for e in events if e["type"] == "candidate"} - {
        parity_task.seed_prompt.instruction}
    assert instructions <= {"red red", "red blue", "blue red", "blue blue"} and "red blue" in instructions
    scored = {r.messages[-1].content.split("\n\n")[0] for r in fake.score_requests}
    assert "red blue" in scored  # the model read the detokenized text


# -- whole runs on a scripted scorer --------------------------------------------------------------

def _events(result: promptopt.Result) -> list[dict[str, Any]]:
    return [json.loads(x) for x in Path(result.run_dir, "events.jsonl").read_text().splitlines()]


def _first(events: list[dict[str, Any]], kind: str) -> int:
    return next(i for i, e in enumerate(events) if e["type"] == kind)


def _gold(content: str) -> str:
    return "even" if int(re.findall(r"number (\d+)", content)[-1]) % 2 == 0 else "odd"


def _bandit_scorer(req: ScoreRequest) -> float:
    """Right (gold label more likely) once at least 3 of the instruction's words sit where TARGET has them;
    the margin grows by 0.8 nats a matching word, so TARGET itself is the best prompt."""
    content = req.messages[-1].content
    matches = sum(a == b for a, b in zip(content.split("\n\n")[0].split(), TARGET, strict=False))
    return -1.0 if req.continuation.strip() == _gold(content) else -1.0 - (matches - 2.5) * 0.8


def _bandit_run(task: Task, tmp_path: Path, seed: int, **params: Any) -> promptopt.Result:
    strategy = RLPrompt(words=WORDS, placement="instruction", n_examples=4, **params)
    return promptopt.optimize(task, strategy, FakeBackend(score=_bandit_scorer), answer_mode="choice", cache=False,
                              n_dev=4, n_test=4, seed=seed, runs_dir=tmp_path / f"runs{seed}", budget=BIG)


@pytest.mark.parametrize("seed", range(5))
def test_the_policy_finds_the_best_sequence_of_the_toy_bandit_within_40_steps(parity_task: Task, tmp_path: Path,
                                                                             seed: int) -> None:
    # 20 words, 5 positions: 3.2 million prompts; seeds 0-19 all found it by step 32 (most by 13-25)
    result = _bandit_run(parity_task, tmp_path, seed, max_steps=40, eval_every=0)
    events = _events(result)
    steps = [e for e in events if e["type"] == "rl_step"]
    assert len(steps) == 40
    final = [e for e in events if e["type"] == "rl_eval"][-1]
    assert final["text"] == " ".join(TARGET)
    # the samples still explore (uniform start, 40 steps), but their mean reward has risen
    assert np.mean([s["mean_reward"] for s in steps[-5:]]) > np.mean([s["mean_reward"] for s in steps[:5]])


def test_the_same_seed_repeats_the_run_and_another_seed_does_not(parity_task: Task, tmp_path: Path) -> None:
    def trace(seed: int, where: str) -> list[Any]:
        result = _bandit_run(parity_task, tmp_path / where, seed, max_steps=8, eval_every=4)
        return [(e["type"], e.get("prompt_id"), e.get("mean_reward")) for e in _events(result)
                if e["type"] in ("candidate", "rl_step", "rl_eval")]

    first = trace(3, "a")
    assert trace(3, "b") == first
    assert trace(4, "c") != first


def test_choice_rewards_come_from_each_labels_log_probability(parity_task: Task, tmp_path: Path) -> None:
    # gold label 0.8 vs wrong 0.2 under every prompt: every reward is 200 · 0.6 = 120
    def score(req: ScoreRequest) -> float:
        return math.log(0.8) if req.continuation.strip() == _gold(req.messages[-1].content) else math.log(0.2)

    strategy = RLPrompt(words=WORDS, max_steps=3, n_examples=4, eval_every=0)
    result = promptopt.optimize(parity_task, strategy, FakeBackend(score=score), answer_mode="choice", cache=False,
                                n_dev=4, n_test=4, runs_dir=tmp_path / "runs", budget=BIG)
    steps = [e for e in _events(result) if e["type"] == "rl_step"]
    assert [s["mean_reward"] for s in steps] == pytest.approx([120.0] * 3)


def test_the_learning_curve_goes_to_the_events(parity_task: Task, tmp_path: Path) -> None:
    result = _bandit_run(parity_task, tmp_path, 0, max_steps=7, eval_every=3, n_prompts=4)
    events = _events(result)
    evals = [e for e in events if e["type"] == "rl_eval"]
    assert [e["step"] for e in evals] == [3, 6, 7]
    dev_means = {e["prompt_id"]: e["mean"] for e in events if e["type"] == "evaluation" and e["dev"]}
    assert all(dev_means[e["prompt_id"]] == e["dev_accuracy"] for e in evals)
    steps = [e for e in events if e["type"] == "rl_step"]
    assert [s["step"] for s in steps] == list(range(1, 8)) and steps[0]["entropy"] == pytest.approx(math.log(20))
    assert result.best_prompt.id in dev_means or result.best_prompt == parity_task.seed_prompt


def test_prefix_placement_keeps_the_seed_instruction(parity_task: Task, tmp_path: Path) -> None:
    strategy = RLPrompt(words=WORDS, max_steps=2, n_prompts=3, n_examples=2, prompt_length=3)  # prefix: default
    result = promptopt.optimize(parity_task, strategy, FakeBackend(), answer_mode="choice", cache=False, n_dev=2,
                                n_test=2, runs_dir=tmp_path / "runs", budget=BIG)
    seed = parity_task.seed_prompt.instruction
    sampled = [e["prompt"]["instruction"] for e in _events(result) if e["type"] == "candidate"][1:]
    assert sampled
    for text in sampled:
        head, _, rest = text.partition(" " + seed)
        assert rest == "" and text.endswith(seed) and len(head.split()) == 3 and set(head.split()) <= set(WORDS)


def _learns(events: list[dict[str, Any]], word: str) -> bool:
    final = [e for e in events if e["type"] == "rl_eval"][-1]
    return word in final["text"].split()


def test_generate_mode_learns_from_the_task_metric(parity_task: Task, tmp_path: Path) -> None:
    # right only when the prompt holds w03: the metric rewards it, and the policy learns to write it
    def reply(req: Any) -> str:
        content = req.messages[-1].content
        return _gold(content) if "w03" in content.split("\n\n")[0].split() else "even"

    strategy = RLPrompt(words=WORDS, placement="instruction", max_steps=40, n_examples=4, eval_every=0)
    result = promptopt.optimize(parity_task, strategy, FakeBackend(reply=reply, can_score=True), cache=False,
                                answer_mode="generate", n_dev=4, n_test=4, runs_dir=tmp_path / "runs", budget=BIG)
    events = _events(result)
    assert events[_first(events, "rl_start")]["reward"] == "metric" and _learns(events, "w03")


def test_loss_reward_uses_the_gold_loss(parity_task: Task, tmp_path: Path) -> None:
    # the gold continuation is likelier (lower loss) when the prompt holds w05
    def score(req: ScoreRequest) -> float:
        return -0.2 if "w05" in req.messages[-1].content.split("\n\n")[0].split() else -2.0

    strategy = RLPrompt(words=WORDS, placement="instruction", max_steps=40, n_examples=4, eval_every=0,
                        reward="loss")
    result = promptopt.optimize(parity_task, strategy, FakeBackend(score=score), answer_mode="choice", cache=False,
                                n_dev=4, n_test=4, runs_dir=tmp_path / "runs", budget=BIG)
    events = _events(result)
    assert events[_first(events, "rl_start")]["reward"] == "loss"
    assert any(e["type"] == "loss" for e in events) and _learns(events, "w05")
    # rewards are minus the mean loss: each step's rewards lie in [-2, -0.2]
    assert all(-2.0 <= e["mean_reward"] <= -0.2 for e in events if e["type"] == "rl_step")


def test_a_budget_stop_keeps_the_greedy_prompts_scored_on_dev(parity_task: Task, tmp_path: Path) -> None:
    strategy = RLPrompt(words=WORDS, placement="instruction", n_examples=4, eval_every=2, n_prompts=4)
    result = promptopt.optimize(parity_task, strategy, FakeBackend(score=_bandit_scorer), answer_mode="choice",
                                cache=False, n_dev=4, n_test=4, runs_dir=tmp_path / "runs",
                                budget=promptopt.Budget(target_calls=400))
    events = _events(result)
    assert result.stopped_by is not None and "400" in result.stopped_by
    assert [e for e in events if e["type"] == "rl_eval"]  # the curve's points are candidates the Run could pick
    assert result.usage["search"]["target"]["calls"] <= 400


# -- bad input and missing capabilities, before any call ------------------------------------------

@pytest.mark.parametrize(("params", "fragments"), [
    ({"words": []}, ["'words'", "RLPrompt", "list of words", "[]"]),
    ({"words": 3}, ["'words'", "got 3"]),
    ({"placement": "suffix"}, ["'placement'", "'prefix', 'instruction'", "'suffix'"]),
    ({"n_prompts": 1}, ["'n_prompts'", ">= 2", "got 1"]),
    ({"reward": "gap"}, ["'reward'", "'auto', 'metric', 'loss'"]),
])
def test_bad_parameters_are_refused_before_any_call(parity_task: Task, tmp_path: Path, params: dict[str, Any],
                                                    fragments: list[str]) -> None:
    fake = FakeBackend()
    with pytest.raises(ConfigError) as info:
        promptopt.optimize(parity_task, "rlprompt", fake, strategy_params=params, runs_dir=tmp_path / "runs")
    assert all(f in str(info.value) for f in fragments), str(info.value)
    assert fake.n_calls == 0


def _refused(task: Task, tmp_path: Path, fake: FakeBackend, **params: Any) -> str:
    with pytest.raises(CapabilityError) as info:
        promptopt.optimize(task, RLPrompt(**params), fake, runs_dir=tmp_path / "runs", cache=False)
    assert fake.n_calls == 0 and not (tmp_path / "runs").exists()
    return str(info.value)


def test_missing_scoring_and_tokenizer_are_named_with_the_backends_that_have_them(parity_task: Task,
                                                                                 tmp_path: Path) -> None:
    both = _refused(parity_task, tmp_path, FakeBackend(can_score=False, can_tokenize=False))
    assert "score" in both and "tokenize" in both and "llamacpp:<model>" in both and "vllm:<model>" in both
    tokenizer = _refused(parity_task, tmp_path, FakeBackend(can_tokenize=False))
    assert "tokenize" in tokenizer and "score" not in tokenizer


def test_a_word_list_needs_no_tokenizer(parity_task: Task, tmp_path: Path) -> None:
    score_only = _refused(parity_task, tmp_path, FakeBackend(can_score=False, can_tokenize=False), words=WORDS)
    assert "score" in score_only and "tokenize" not in score_only
    result = promptopt.optimize(parity_task, RLPrompt(words=WORDS, max_steps=2, n_examples=2), answer_mode="choice",
                                model=FakeBackend(can_tokenize=False), runs_dir=tmp_path / "ok", cache=False,
                                n_dev=2, n_test=2)
    assert sum(e["type"] == "rl_step" for e in _events(result)) == 2


def test_a_vocabulary_without_whole_words_asks_for_a_word_list(parity_task: Task, tmp_path: Path) -> None:
    # the fake tokenizer is byte-level: no piece is a space followed by letters
    with pytest.raises(ConfigError, match="'words' parameter of RLPrompt.*no whole-word piece.*words="):
        promptopt.optimize(parity_task, RLPrompt(), FakeBackend(), answer_mode="choice", cache=False,
                           runs_dir=tmp_path / "runs", n_dev=2, n_test=2)


def test_the_cli_refuses_a_backend_without_the_capabilities_in_one_line(monkeypatch: pytest.MonkeyPatch,
                                                                      tmp_path: Path) -> None:
    from typer.testing import CliRunner

    import promptopt.session
    from promptopt.cli import app

    made: list[FakeBackend] = []

    def make(model: str, **options: Any) -> FakeBackend:
        made.append(FakeBackend("bare", can_score=False, can_tokenize=False))
        return made[-1]

    monkeypatch.setattr(promptopt.session, "make_backend", make)
    argv = ["optimize", "--task", "synthetic:sentiment", "--model", "fake:bare", "--strategy", "rlprompt",
            "--no-progress", "--no-cache", "--runs-dir", str(tmp_path / "runs")]
    out = CliRunner().invoke(app, argv, env={"COLUMNS": "200"})
    lines = out.output.strip().splitlines()
    # a missing capability is a CapabilityError, a ConfigError too: bad input, exit code 2
    assert out.exit_code == 2 and len(lines) == 1 and lines[0].startswith("error: "), out.output
    assert "score" in lines[0] and "tokenize" in lines[0] and "llamacpp:<model>" in lines[0]
    assert made and all(b.n_calls == 0 for b in made) and not (tmp_path / "runs").exists()


def test_registered_with_its_defaults() -> None:
    strategy = get_strategy("rlprompt", {"words": "great,terrible"})
    assert isinstance(strategy, RLPrompt) and strategy.prompt_length == 5
    assert (strategy.correct_coeff, strategy.incorrect_coeff) == (200.0, 180.0)
    strategy.validate()

