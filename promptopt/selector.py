"""A fitted per-input prompt selector, kept as plain numbers and saved as JSON.

The ``prompt-selection`` strategy fits one :class:`PromptSelector`: for every
candidate prompt a logistic regression that predicts, from an input's text, the
probability that the target model answers it correctly under that prompt. For a
new input the selector picks the prompt with the highest predicted probability.

Input features come from scikit-learn's ``HashingVectorizer``, which is
stateless: its settings are all there is to it (no vocabulary is learnt). A
selector is therefore fully described by those settings, each prompt's
intercept and non-zero weights, and the prompts themselves, and is saved as
JSON (``selector.json`` in the run directory), never pickled: loading it runs
no code from the file and gives the same picks.

Needs scikit-learn (``pip install 'promptopt[select]'``) to turn text into
features, both when fitting and when picking.

Example:
    >>> from promptopt.prompt import Prompt
    >>> a, b = Prompt(instruction="Prompt A."), Prompt(instruction="Prompt B.")
    >>> inputs = [f"marker item {i}" for i in range(10)] + [f"plain item {i}" for i in range(10)]
    >>> a_right = [1.0] * 10 + [0.0] * 10
    >>> selector = fit_selector([a, b], inputs, [a_right, [1 - s for s in a_right]])
    >>> selector.pick("marker item 99").instruction, selector.pick("plain item 99").instruction
    ('Prompt A.', 'Prompt B.')
"""

from __future__ import annotations

import importlib.util
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from promptopt.exceptions import ConfigError
from promptopt.prompt import Prompt

__all__ = ["SELECTOR_FILE", "HashedFeatures", "PromptModel", "PromptSelector", "fit_selector", "load_selector",
           "require_sklearn"]

#: the selector's file in a run directory
SELECTOR_FILE = "selector.json"
#: the saved format; a file of another format is refused rather than misread
FORMAT = "promptopt-selector/1"
INSTALL_HINT = "install it with: pip install 'promptopt[select]'"


def require_sklearn(user: str) -> None:
    """Raise ConfigError naming the ``select`` extra if scikit-learn is not installed.

    Args:
        user: what needs it, for the message (e.g. ``"strategy 'prompt-selection'"``).
    """
    if importlib.util.find_spec("sklearn") is None:
        raise ConfigError(f"{user} needs scikit-learn, which is not installed; {INSTALL_HINT}")


@dataclass(frozen=True)
class HashedFeatures:
    """Settings of the stateless ``HashingVectorizer`` that turns an input into features.

    Word unigrams and bigrams, hashed into ``n_features`` columns without sign
    flipping, each row scaled to unit length.
    """

    n_features: int = 2**14
    ngram_range: tuple[int, int] = (1, 2)
    lowercase: bool = True
    alternate_sign: bool = False
    norm: str = "l2"

    def transform(self, texts: Sequence[str]) -> Any:
        """A sparse (texts × ``n_features``) matrix."""
        require_sklearn("turning inputs into features")
        from sklearn.feature_extraction.text import HashingVectorizer

        vectorizer = HashingVectorizer(n_features=self.n_features, ngram_range=self.ngram_range,
                                       lowercase=self.lowercase, alternate_sign=self.alternate_sign, norm=self.norm)
        return vectorizer.transform(list(texts))

    def to_dict(self) -> dict[str, Any]:
        return {"vectorizer": "sklearn.feature_extraction.text.HashingVectorizer", "n_features": self.n_features,
                "ngram_range": list(self.ngram_range), "lowercase": self.lowercase,
                "alternate_sign": self.alternate_sign, "norm": self.norm}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> HashedFeatures:
        low, high = data["ngram_range"]
        return cls(n_features=int(data["n_features"]), ngram_range=(int(low), int(high)),
                   lowercase=bool(data["lowercase"]), alternate_sign=bool(data["alternate_sign"]),
                   norm=str(data["norm"]))


@dataclass(frozen=True)
class PromptModel:
    """One prompt's evaluator: P(correct | x) = sigmoid(intercept + Σ weights[j] · x[indices[j]]).

    ``train_mean`` and ``n_train`` describe the (input, prompt) pairs it was fitted on.
    """

    intercept: float
    indices: tuple[int, ...] = ()
    weights: tuple[float, ...] = ()
    train_mean: float = 0.0
    n_train: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {"intercept": self.intercept, "indices": list(self.indices), "weights": list(self.weights),
                "train_mean": self.train_mean, "n_train": self.n_train}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PromptModel:
        return cls(intercept=float(data["intercept"]), indices=tuple(int(i) for i in data["indices"]),
                   weights=tuple(float(w) for w in data["weights"]), train_mean=float(data["train_mean"]),
                   n_train=int(data["n_train"]))


@dataclass(frozen=True)
class PromptSelector:
    """Picks, for each input, the prompt its evaluator rates most likely to be answered correctly.

    Attributes:
        prompts: the candidates, best mean on the training pairs first; a tie in
            predicted probability goes to the earlier one.
        models: one :class:`PromptModel` per prompt, in the same order.
        features: how an input becomes features.
    """

    prompts: tuple[Prompt, ...]
    models: tuple[PromptModel, ...]
    features: HashedFeatures = field(default_factory=HashedFeatures)

    def __post_init__(self) -> None:
        if not self.prompts or len(self.prompts) != len(self.models):
            raise ValueError(f"a selector needs one model per prompt and at least one prompt; "
                             f"got {len(self.prompts)} prompts and {len(self.models)} models")

    def logits(self, inputs: Sequence[str]) -> np.ndarray:
        """Log-odds of a correct answer, an (inputs × prompts) array."""
        weights = np.zeros((self.features.n_features, len(self.models)))
        for k, model in enumerate(self.models):
            weights[list(model.indices), k] = model.weights
        intercepts = np.array([m.intercept for m in self.models])
        logits: np.ndarray = np.asarray(self.features.transform(inputs) @ weights) + intercepts
        return logits

    def probabilities(self, inputs: Sequence[str]) -> np.ndarray:
        """Predicted probability of a correct answer, an (inputs × prompts) array."""
        return np.asarray(1.0 / (1.0 + np.exp(-self.logits(inputs))))

    def pick_many(self, inputs: Sequence[str]) -> list[Prompt]:
        """The chosen prompt for each input (log-odds order the prompts as probabilities do,
        without rounding near-certain ones into ties)."""
        if not inputs:
            return []
        return [self.prompts[int(k)] for k in np.argmax(self.logits(inputs), axis=1)]  # argmax: earliest of ties

    def pick(self, input_text: str) -> Prompt:
        """The chosen prompt for one input."""
        return self.pick_many([input_text])[0]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: the feature settings, each prompt and its model's numbers."""
        return {"format": FORMAT, "features": self.features.to_dict(),
                "candidates": [{"prompt_id": p.id, "prompt": p.to_dict(), "model": m.to_dict()}
                               for p, m in zip(self.prompts, self.models, strict=True)]}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PromptSelector:
        """Rebuild a selector from :meth:`to_dict` output.

        Raises:
            ConfigError: the data is not a selector of this format.
        """
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            found = data.get("format") if isinstance(data, dict) else type(data).__name__
            raise ConfigError(f"not a promptopt selector of format {FORMAT!r} (found {found!r})")
        candidates = data["candidates"]
        return cls(prompts=tuple(Prompt.from_dict(c["prompt"]) for c in candidates),
                   models=tuple(PromptModel.from_dict(c["model"]) for c in candidates),
                   features=HashedFeatures.from_dict(data["features"]))

    def save(self, path: str | Path) -> None:
        """Write the selector to ``path`` as JSON."""
        Path(path).write_text(json.dumps(self.to_dict(), indent=1) + "\n", encoding="utf-8")


def load_selector(path: str | Path) -> PromptSelector:
    """The selector a ``prompt-selection`` run saved: give its run directory (or the JSON file).

    Example:
        >>> selector = promptopt.load_selector("runs/sst2-prompt-selection-1a2b3c4d")  # doctest: +SKIP
        >>> selector.pick("a gripping, beautifully shot film")  # doctest: +SKIP

    Raises:
        ConfigError: no selector there, or not a selector file.
    """
    path = Path(path)
    file = path / SELECTOR_FILE if path.is_dir() else path
    if not file.is_file():
        raise ConfigError(f"no selector at {str(file)!r}; only a run of the 'prompt-selection' strategy saves one")
    try:
        data = json.loads(file.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{str(file)!r} is not valid JSON ({exc.msg}, line {exc.lineno})") from None
    return PromptSelector.from_dict(data)


def fit_selector(prompts: Sequence[Prompt], inputs: Sequence[str], scores: Sequence[Sequence[float]], *,
                 features: HashedFeatures | None = None, inverse_regularization: float = 1.0) -> PromptSelector:
    """Fit one evaluator per prompt on its (input, score) pairs.

    Args:
        prompts: the candidates, distinct.
        inputs: the training inputs.
        scores: ``scores[k][i]`` is prompt ``k``'s metric score in [0, 1] on ``inputs[i]``;
            a score between 0 and 1 counts as that fraction of a correct answer.
        features: how inputs become features (default :class:`HashedFeatures`).
        inverse_regularization: scikit-learn's ``C`` of the L2-penalised logistic regressions.

    Returns:
        The selector, prompts ordered by their mean score (ties keep the given order).
    """
    require_sklearn("fitting a prompt selector")
    features = features or HashedFeatures()
    if not inputs or any(len(row) != len(inputs) for row in scores) or len(scores) != len(prompts):
        raise ValueError("fit_selector needs one score per (prompt, input) pair and at least one input")
    x = features.transform(inputs)
    models = [_fit_one(x, row, inverse_regularization) for row in scores]
    order = sorted(range(len(prompts)), key=lambda k: -models[k].train_mean)  # stable: earlier wins ties
    return PromptSelector(tuple(prompts[k] for k in order), tuple(models[k] for k in order), features)


def _fit_one(x: Any, scores: Sequence[float], c: float) -> PromptModel:
    """A logistic regression of correctness on the features; a constant where the scores have one class."""
    from scipy.sparse import vstack
    from sklearn.linear_model import LogisticRegression

    y = np.asarray(scores, dtype=float)
    n, mean = len(y), float(y.mean())
    if np.all(y >= 1.0) or np.all(y <= 0.0):  # nothing tells the inputs apart: the smoothed rate
        rate = (float(y.sum()) + 0.5) / (n + 1)
        return PromptModel(intercept=math.log(rate / (1 - rate)), train_mean=mean, n_train=n)
    # each pair is a correct answer with weight y and a wrong one with weight 1 - y (one row each for 0/1 scores)
    rows, labels = vstack([x, x]).tocsr(), np.concatenate([np.ones(n), np.zeros(n)])
    model = LogisticRegression(C=c, max_iter=1000).fit(rows, labels, sample_weight=np.concatenate([y, 1 - y]))
    coef = model.coef_[0]
    nonzero = np.flatnonzero(coef)
    return PromptModel(intercept=float(model.intercept_[0]), indices=tuple(int(i) for i in nonzero),
                       weights=tuple(float(coef[i]) for i in nonzero), train_mean=mean, n_train=n)
