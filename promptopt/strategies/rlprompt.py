"""RLPrompt: a policy that writes short discrete prompts, trained from the task model's reward.

Deng et al., "RLPrompt: Optimizing Discrete Text Prompts with Reinforcement
Learning", EMNLP 2022 (arXiv:2205.12548); rewards and defaults checked against
the authors' code (github.com/mingkaid/rl-prompt). No optimizer model is used.

Each training step:

1. the policy samples ``n_prompts`` prompts of ``prompt_length`` tokens from the
   candidate vocabulary (a user's ``words``, or the target model's whole-word
   tokens: see ``_prompt_tokens``), placed before the seed instruction or as the
   whole instruction (``placement``);
2. each is scored on the *reward set*, ``n_examples`` training examples drawn
   once (label-stratified), and rewarded (below);
3. the rewards are stabilised: z-scored across the prompts sampled for that
   input, the reward set, as the reference code does for classification;
4. the policy takes one Adam step of REINFORCE with those z-scores as
   advantages (the step's mean is the baseline) plus an entropy bonus
   (``_policy`` describes the network and why not soft Q-learning).

Rewards (``reward``): ``"auto"`` is the paper's piecewise gap reward in choice
mode (:func:`gap_reward`, from each label's log-probability) and the task metric
in generate mode; ``"metric"`` is the metric (accuracy) on the reward set;
``"loss"`` the negative mean gold-continuation loss (``ctx.loss``).

Every ``eval_every`` steps the greedy prompt is scored on all of dev (the
learning curve's dev accuracy, and candidates the Run can pick); at the end the
greedy prompt and the sampled prompt with the highest reward are scored on dev
and returned. Events: ``rl_step`` (mean and best reward, entropy, drifted
samples) and ``rl_eval`` (dev accuracy of the greedy prompt).

Cost drivers: ``max_steps · n_prompts`` prompt evaluations on ``n_examples``
examples (× the labels in choice mode), fewer as the policy repeats itself
(repeated prompts are free), plus a dev evaluation every ``eval_every`` steps.
Needs a backend that scores log-probabilities, and the target model's tokenizer
unless ``words`` is given. See docs/design-notes.md ("RLPrompt") for the choices
and where they differ from the paper.

On a set of tasks the policy writes the shared system prompt (``ctx.text``):
its tokens go before the seed system prompt (``placement="prefix"``) or are all
of it, each task keeping its own instruction, and the reward set is drawn
evenly from every task.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from promptopt.strategies._base import Scalable, Spend, StepPlan, Strategy
from promptopt.strategies._params import Interval, OneOf
from promptopt.strategies._policy import Adam, TokenPolicy
from promptopt.strategies._prompt_tokens import CandidateVocabulary, Written, parse_words
from promptopt.tasks._sampling import sample_examples

if TYPE_CHECKING:
    from promptopt.context import Context
    from promptopt.prompt import Prompt
    from promptopt.tokenizer import Tokenizer
    from promptopt.types import Example

__all__ = ["RLPrompt", "gap_reward", "zscore"]


def gap_reward(logprobs: Sequence[float], gold: Sequence[bool], *, correct_coeff: float = 200.0,
               incorrect_coeff: float = 180.0) -> float | None:
    """RLPrompt's piecewise reward for one example: the gap between the gold label's probability and the
    best wrong label's, weighted ``correct_coeff`` when positive (right answer) and ``incorrect_coeff`` when not.

    Probabilities are the labels' log-probabilities normalised over the labels (a softmax), as the paper
    normalises the verbalizers' next-token probabilities. None when there is no gold or no wrong label.

    Example:
        >>> round(gap_reward([math.log(0.7), math.log(0.3)], [True, False]), 6)  # 200 · (0.7 - 0.3)
        80.0
    """
    top = max(logprobs)
    weights = [math.exp(lp - top) for lp in logprobs]
    probs = [w / sum(weights) for w in weights]
    right = [p for p, g in zip(probs, gold, strict=True) if g]
    wrong = [p for p, g in zip(probs, gold, strict=True) if not g]
    if not right or not wrong:
        return None
    gap = max(right) - max(wrong)
    return gap * (correct_coeff if gap > 0 else incorrect_coeff)


def zscore(rewards: Sequence[float], eps: float = 1e-4) -> np.ndarray[Any, np.dtype[np.float64]]:
    """Rewards of the prompts sampled for one input, z-scored: ``(r - mean) / (std + eps)``
    (population std; ``eps`` as in the reference code keeps equal rewards at 0).

    Example:
        >>> zscore([1.0, 3.0]).round(3).tolist()
        [-1.0, 1.0]
    """
    values = np.asarray(rewards, dtype=np.float64)
    return np.asarray((values - values.mean()) / (values.std() + eps))


class _WordList:
    """A constraint: None, a list of words or a comma-separated string of them."""

    def allows(self, value: Any) -> bool:
        if value is None:
            return True
        try:
            return bool(parse_words(value))
        except ValueError:
            return False

    def __str__(self) -> str:
        return "None (the model's whole-word tokens) or a non-empty list of words (or words separated by commas)"


@dataclass
class _Best:
    """The sampled prompt with the highest reward so far (the earlier of equals)."""

    prompt: Prompt | None = None
    reward: float = -math.inf

    def offer(self, prompts: Sequence[Prompt], rewards: Sequence[float]) -> None:
        for prompt, reward in zip(prompts, rewards, strict=True):
            if reward > self.reward:
                self.prompt, self.reward = prompt, reward


class RLPrompt(Strategy):
    """RLPrompt (Deng et al., 2022): a policy over prompt tokens trained with stabilised task rewards.

    Args:
        prompt_length: tokens per prompt (the paper's T = 5).
        words: the candidate vocabulary as a word list (a list or comma-separated); None uses the
            target model's whole-word tokens and needs its tokenizer.
        max_vocab: how many of the model's whole-word tokens to keep, lowest ids first (ignored with ``words``).
        placement: ``"prefix"`` puts the tokens before the seed instruction; ``"instruction"`` makes them the
            whole instruction (the paper's prompt has no instruction). On a set of tasks: before the seed
            system prompt, or all of it.
        n_prompts: prompts sampled per step (the paper's 16).
        n_examples: training examples in the reward set (the paper uses its 16-shot training set, 32 for 2 classes).
        max_steps: training steps at most (the budget may stop it first).
        learning_rate: Adam's step size.
        entropy_coef: weight of the policy's entropy in the objective (exploration).
        reward: ``"auto"``, ``"metric"`` or ``"loss"`` (see the module docstring).
        zscore: z-score the rewards of each step; False subtracts the step's mean only (in reward units).
        correct_coeff: the paper's λ2, weight of the gap when the answer is right (200).
        incorrect_coeff: the paper's λ1, weight of the gap when it is wrong (180).
        eval_every: score the greedy prompt on dev every this many steps (0: only at the end).

    Example:
        >>> RLPrompt(words="great,terrible,movie", max_steps=50).get_params()["prompt_length"]
        5
    """

    name: ClassVar[str] = "rlprompt"
    supports_task_sets: ClassVar[bool] = True
    summary: ClassVar[str] = "RLPrompt: a token policy trained from stabilised label rewards (Deng et al., 2022)"
    needs_score: ClassVar[bool] = True
    #: the default vocabulary is the model's; with ``words`` :meth:`uses_vocabulary` says it is not needed
    needs_vocabulary: ClassVar[bool] = True
    constraints: ClassVar[dict[str, Any]] = {
        "prompt_length": Interval(int, 1), "words": _WordList(), "max_vocab": Interval(int, 1),
        "placement": OneOf(("prefix", "instruction")), "n_prompts": Interval(int, 2),
        "n_examples": Interval(int, 1), "max_steps": Interval(int, 0), "learning_rate": Interval(float, 0),
        "entropy_coef": Interval(float, 0), "reward": OneOf(("auto", "metric", "loss")),
        "zscore": OneOf((True, False)), "correct_coeff": Interval(float, 0), "incorrect_coeff": Interval(float, 0),
        "eval_every": Interval(int, 0),
    }
    #: scaled to a budget: the dev check's interval first (a check each step), then prompts x examples per step
    scalable: ClassVar[tuple[Scalable, ...]] = (
        Scalable("eval_every", 1), Scalable("n_prompts", 2, stage=1), Scalable("n_examples", 4, stage=1))

    def __init__(self, *, prompt_length: int = 5, words: Sequence[str] | str | None = None, max_vocab: int = 1000,
                 placement: str = "prefix", n_prompts: int = 8, n_examples: int = 16, max_steps: int = 200,
                 learning_rate: float = 0.05, entropy_coef: float = 0.01, reward: str = "auto",
                 zscore: bool = True, correct_coeff: float = 200.0, incorrect_coeff: float = 180.0,
                 eval_every: int = 10) -> None:
        self.prompt_length = prompt_length
        self.words = words
        self.max_vocab = max_vocab
        self.placement = placement
        self.n_prompts = n_prompts
        self.n_examples = n_examples
        self.max_steps = max_steps
        self.learning_rate = learning_rate
        self.entropy_coef = entropy_coef
        self.reward = reward
        self.zscore = zscore
        self.correct_coeff = correct_coeff
        self.incorrect_coeff = incorrect_coeff
        self.eval_every = eval_every

    def uses_vocabulary(self) -> bool:
        """The model's vocabulary is needed unless a word list is given."""
        return self.words is None

    def finalist_gap(self, n_dev: int) -> int:
        """Prompts are rewarded on training examples, and scored on all of dev or not at all."""
        return 0

    def step_plan(self, n_dev: int, n_train: int, *, n_tasks: int = 1) -> StepPlan:
        """One training step: ``n_prompts`` sampled prompts rewarded on the reward set (losses with
        ``reward="loss"``), and every ``eval_every`` steps the greedy prompt scored on dev. At the
        end the greedy prompt and the best-rewarded sample are scored on dev."""
        rewarded = self.n_prompts * min(self.n_examples, n_train)
        greedy = 1 / self.eval_every if self.eval_every else 0.0  # a dev evaluation per step, on average
        by_loss = self.reward == "loss"
        return StepPlan("step", Spend(example_evals=(0 if by_loss else rewarded) + greedy * n_dev,
                                      loss_calls=rewarded if by_loss else 0, new_full=greedy),
                        paper_steps=self.max_steps, finish=Spend(example_evals=2 * n_dev, new_full=2))

    def optimize(self, ctx: Context) -> Sequence[Prompt]:
        vocabulary = self.vocabulary(ctx)
        reward_set = self.reward_set(ctx)
        if not reward_set:
            ctx.note("stop", reason="no training examples to reward prompts on")
            return []
        rng = np.random.default_rng(ctx.rng.randrange(2**63))
        policy = TokenPolicy(len(vocabulary.pieces), self.prompt_length)
        adam, best = Adam(self.learning_rate), _Best()
        ctx.note("rl_start", vocabulary=len(vocabulary.pieces), reward_set=[ex.id for ex in reward_set],
                 reward=self.reward_kind(ctx))
        for step in range(1, self.max_steps + 1):  # RLPrompt's training loop: sample, reward, update
            actions = policy.sample(self.n_prompts, rng)
            written = vocabulary.write(actions.tolist(), self.tokenizer_for(ctx, vocabulary))
            prompts = [self.place(ctx, w.text, "rl-sample") for w in written]
            rewards = self.rewards(ctx, prompts, reward_set)
            best.offer(prompts, rewards)
            self.note_step(ctx, step, rewards, policy, written)
            advantages = zscore(rewards) if self.zscore else np.asarray(rewards) - np.mean(rewards)
            adam.ascend(policy.params, policy.gradient(actions, advantages, self.entropy_coef))
            if self.eval_every and step % self.eval_every == 0 and step < self.max_steps:
                self.score_greedy(ctx, policy, vocabulary, step)
        greedy = self.score_greedy(ctx, policy, vocabulary, self.max_steps)  # the last point of the curve
        finalists = {p.id: p for p in (greedy, best.prompt) if p is not None}  # the greedy one may be the best
        results = ctx.evaluate(list(finalists.values()))
        return [r.prompt for r in sorted(results, key=lambda r: -r.mean)]

    # -- the steps -------------------------------------------------------------------------------
    def reward_set(self, ctx: Context) -> Sequence[Example]:
        """``n_examples`` training examples, label-stratified; on a set of tasks drawn evenly from each."""
        if ctx.text_field == "system":
            return ctx.sample_across_tasks(ctx.train, self.n_examples, lambda ex: ex.id)
        return sample_examples(ctx.train, self.n_examples, seed=ctx.rng.randrange(2**31),
                               stratify=ctx.task.labels is not None)

    def vocabulary(self, ctx: Context) -> CandidateVocabulary:
        """The candidates the policy chooses from: the word list, or the model's whole-word tokens."""
        if self.words is not None:
            return CandidateVocabulary.from_words(parse_words(self.words))
        return CandidateVocabulary.from_tokenizer(ctx.tokenizer, self.max_vocab)

    @staticmethod
    def tokenizer_for(ctx: Context, vocabulary: CandidateVocabulary) -> Tokenizer | None:
        """The target model's tokenizer when the candidates are its tokens (a word list needs none)."""
        return ctx.tokenizer if vocabulary.token_ids else None

    def place(self, ctx: Context, text: str, operator: str) -> Prompt:
        """The policy's text as a prompt (before the seed instruction, or as all of it; on a set of
        tasks, the seed system prompt), recorded."""
        seed = ctx.seed_prompt  # with_text strips: the first piece's leading space goes (not drift)
        both = self.placement == "prefix" and ctx.text(seed).strip()
        prompt = ctx.with_text(seed, f"{text} {ctx.text(seed)}" if both else text)
        ctx.record(prompt, [seed], operator)
        return prompt

    def reward_kind(self, ctx: Context) -> str:
        """The reward this run uses: ``gap`` (choice mode under ``auto``), ``metric`` or ``loss``."""
        if self.reward == "auto":
            return "gap" if ctx.answer_mode == "choice" else "metric"
        return self.reward

    def rewards(self, ctx: Context, prompts: Sequence[Prompt], reward_set: Sequence[Example]) -> list[float]:
        """Each prompt's mean reward over the reward set."""
        kind = self.reward_kind(ctx)
        if kind == "loss":
            return [-r.mean for r in ctx.loss(prompts, reward_set)]
        results = ctx.evaluate(prompts, reward_set)
        if kind == "metric":
            return [r.mean for r in results]
        gold = [[ctx.task.metric(label, ex) >= 1.0 for label in ctx.task.choices(ex) or ()] for ex in reward_set]
        out = []
        for res in results:
            gaps = [gap_reward(e.logprobs, g, correct_coeff=self.correct_coeff, incorrect_coeff=self.incorrect_coeff)
                    for e, g in zip(res.examples, gold, strict=True)]
            known = [x for x in gaps if x is not None]
            out.append(sum(known) / len(known) if known else 0.0)
        return out

    def note_step(self, ctx: Context, step: int, rewards: Sequence[float], policy: TokenPolicy,
                  written: Sequence[Written]) -> None:
        drifted = [{"text": w.text, "ids": list(w.token_ids), "retokenized": list(w.retokenized)}
                   for w in written if w.drifted]
        ctx.note("rl_step", step=step, mean_reward=float(np.mean(rewards)), max_reward=float(np.max(rewards)),
                 entropy=policy.entropy(), drifted=drifted)

    def score_greedy(self, ctx: Context, policy: TokenPolicy, vocabulary: CandidateVocabulary, step: int) -> Prompt:
        """The policy's greedy prompt, scored on all of dev, as a point of the learning curve."""
        [written] = vocabulary.write([policy.greedy().tolist()], self.tokenizer_for(ctx, vocabulary))
        prompt = self.place(ctx, written.text, "rl-greedy")
        [result] = ctx.evaluate([prompt])
        ctx.note("rl_eval", step=step, prompt_id=prompt.id, text=written.text.strip(), dev_accuracy=result.mean)
        return prompt
