"""The prompt policy of ``rlprompt``: a softmax table per prompt position, and Adam, in numpy.

The policy writes a prompt of ``length`` tokens, each an index into the candidate
vocabulary, drawn independently per position from ``softmax(logits[t])``. The
logits start at zero, so the first prompts are uniform over the vocabulary (the
reference code initialises its MLP near zero for the same reason: to start from
the policy's prior, which for us is "no preference").

Why a table and not RLPrompt's network: the paper's policy is a frozen language
model with a trainable MLP on top, and what its autoregression mostly carries is
that model's prior over fluent token sequences. We have no policy model (the core
stays numpy-only), and learned from scratch on a few hundred rewarded samples, a
network over learned token embeddings shares one output row per token across
positions and often collapsed early: on the toy bandit of the tests (20 words,
5 positions, 8 prompts a step) an embedding + MLP policy found the best sequence
on 0 to 4 seeds of 5 at learning rates 0.01-0.05 in five of six settings, and
took 33-82 steps at 0.003-0.005; the table found it on 20 seeds of 20 by step 32
at 0.05. Under Adam a table's logit also moves at most about the learning rate
per step, a step size one can reason about.

Training is a policy gradient (REINFORCE): the strategy hands each sampled prompt
an advantage (its stabilised reward), :meth:`TokenPolicy.gradient` returns the
gradient of ``mean_b A_b · log π(prompt_b) + β · Σ_t H(π_t)`` and :class:`Adam`
follows it uphill. The entropy term ``β`` stands in for the maximum-entropy side
of RLPrompt's soft Q-learning.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

__all__ = ["Adam", "TokenPolicy"]

Array = NDArray[np.float64]
Actions = NDArray[np.int64]


class TokenPolicy:
    """Independent softmax distributions over ``n_tokens`` candidates for each of ``length`` positions.

    Args:
        n_tokens: size of the candidate vocabulary.
        length: tokens per prompt (RLPrompt's T).

    Example:
        >>> policy = TokenPolicy(10, 3)
        >>> policy.sample(2, np.random.default_rng(0)).shape
        (2, 3)
        >>> round(policy.entropy(), 4) == round(float(np.log(10)), 4)  # uniform at the start
        True
    """

    def __init__(self, n_tokens: int, length: int) -> None:
        self.n_tokens, self.length = n_tokens, length
        self.params: dict[str, Array] = {"logits": np.zeros((length, n_tokens))}

    def log_probs(self) -> Array:
        """log π(token | position), a (length, n_tokens) array."""
        logits = self.params["logits"]
        shifted = logits - logits.max(axis=1, keepdims=True)
        return np.asarray(shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True)))

    def sample(self, n: int, rng: np.random.Generator) -> Actions:
        """``n`` prompts drawn from the policy, as an (n, length) array of token indices."""
        cumulative = np.exp(self.log_probs()).cumsum(axis=1)  # (length, n_tokens)
        draws = rng.random((n, self.length))
        # inverse-CDF draw per position; the clip guards against a cumulative sum ending just below 1
        below = (cumulative[None, :, :] < draws[:, :, None]).sum(axis=2)
        return np.asarray(np.minimum(below, self.n_tokens - 1), dtype=np.int64)

    def greedy(self) -> Actions:
        """The most likely token at each position, as a (length,) array."""
        return np.asarray(self.params["logits"].argmax(axis=1), dtype=np.int64)

    def entropy(self) -> float:
        """Mean entropy (nats) of the positions' distributions: how undecided the policy still is."""
        log_probs = self.log_probs()
        return float(-(np.exp(log_probs) * log_probs).sum(axis=1).mean())

    def objective(self, actions: Actions, advantages: Array, entropy_coef: float) -> float:
        """``mean_b A_b · log π(actions_b) + entropy_coef · Σ_t H(π_t)``: what training raises."""
        log_probs = self.log_probs()
        chosen = log_probs[np.arange(self.length)[None, :], actions].sum(axis=1)
        entropy = -(np.exp(log_probs) * log_probs).sum()
        return float(np.mean(advantages * chosen) + entropy_coef * entropy)

    def gradient(self, actions: Actions, advantages: Array, entropy_coef: float) -> dict[str, Array]:
        """The gradient of :meth:`objective` with respect to the logits."""
        log_probs = self.log_probs()
        probs = np.exp(log_probs)
        # d log π(a) / d logits = onehot(a) - π, averaged over the batch with each prompt's advantage
        chosen = np.zeros((self.length, self.n_tokens))
        for t in range(self.length):
            np.add.at(chosen[t], actions[:, t], advantages)
        d_logits = (chosen - probs * advantages.sum()) / len(actions)
        if entropy_coef:  # d H / d logits = -π (log π + H)
            entropy = -(probs * log_probs).sum(axis=1, keepdims=True)
            d_logits -= entropy_coef * probs * (log_probs + entropy)
        return {"logits": d_logits}


class Adam:
    """Adam (Kingma & Ba, 2015) taking steps *up* the gradient, one state per parameter.

    Args:
        learning_rate: the step size.
        beta1: decay of the gradient's running mean.
        beta2: decay of the squared gradient's running mean.
        eps: added to the denominator for stability.
    """

    def __init__(self, learning_rate: float, *, beta1: float = 0.9, beta2: float = 0.999, eps: float = 1e-8) -> None:
        self.learning_rate, self.beta1, self.beta2, self.eps = learning_rate, beta1, beta2, eps
        self._mean: dict[str, Array] = {}
        self._square: dict[str, Array] = {}
        self._steps = 0

    def ascend(self, params: dict[str, Array], grads: dict[str, Array]) -> None:
        """Move ``params`` in place one step up ``grads``."""
        self._steps += 1
        for name, grad in grads.items():
            mean = self.beta1 * self._mean.get(name, np.zeros_like(grad)) + (1 - self.beta1) * grad
            square = self.beta2 * self._square.get(name, np.zeros_like(grad)) + (1 - self.beta2) * grad**2
            self._mean[name], self._square[name] = mean, square
            mean_hat = mean / (1 - self.beta1**self._steps)
            square_hat = square / (1 - self.beta2**self._steps)
            params[name] += self.learning_rate * mean_hat / (np.sqrt(square_hat) + self.eps)
