"""APS: a prompt per input, chosen by a learned evaluator among prompts generated per cluster of inputs.

Do et al., "Automatic Prompt Selection for Large Language Models" (arXiv:2404.02717, 2024),
Section 3, in three steps:

1. **prompt database** (3.1): cluster the training inputs; for each cluster, show
   the optimizer model a few of its examples and ask for candidate instructions
   suited to inputs like them. The candidates of every cluster, plus the seed,
   form the database;
2. **evaluator training** (3.2): run the target model with every candidate on a
   sample of training inputs; each (input, prompt) pair's correctness is a
   training label, and an evaluator learns to rate (input, prompt) pairs;
3. **prompt ranking** (3.3): for a new input, the prompt the evaluator rates
   highest is used.

What is built here, and where it departs from the paper:

* Clustering is k-means (scikit-learn) over hashed word unigrams and bigrams of
  the inputs (``HashingVectorizer``), not over sentence embeddings: no embedding
  model to download, and the hashing is stateless. At most ``CLUSTER_POOL``
  seeded training inputs are clustered.
* The evaluator is one L2-penalised logistic regression per candidate over the
  same hashed features, predicting the probability that the target model
  answers correctly with that candidate (a prompt right on every training input,
  or on none, gets its smoothed rate), instead of a fine-tuned language model
  trained with a pairwise preference loss on (input, prompt) text. Per-prompt
  models cannot generalise to a prompt they have not seen, which a database of
  fixed candidates never asks of them.
* The paper's voting over the top-ranked prompts is not built: one prompt per input.
* The fitted selector goes to the Run (``ctx.set_selector``), which scores it on
  dev and test (each example with the prompt picked for it) and saves it as JSON
  in the run directory (:mod:`promptopt.selector`). The strategy also returns
  the candidate with the best mean on the training sample, so the Run's usual
  comparison of one best prompt with the seed is unchanged.
* Candidates are scored one at a time; if the budget stops the scoring, the
  selector is fitted on the candidates scored so far (at least two) before the
  search ends.

Cost drivers: ``n_clusters`` optimizer calls of ``prompts_per_cluster`` samples
each, then (1 + ``n_clusters`` × ``prompts_per_cluster``) × ``n_score_examples``
evaluations on training inputs (times the number of labels in choice mode).
Needs generation from the optimizer; in ``choice`` answer mode the target must
score log-probabilities. Needs scikit-learn (``pip install 'promptopt[select]'``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, ClassVar

from promptopt.exceptions import BudgetExhausted
from promptopt.selector import HashedFeatures, fit_selector, require_sklearn
from promptopt.strategies._base import Scalable, Spend, StepPlan, Strategy
from promptopt.strategies._formatting import format_demonstrations
from promptopt.strategies._params import Interval
from promptopt.strategies._parsing import parse_instruction

if TYPE_CHECKING:
    from promptopt.context import Context
    from promptopt.prompt import Prompt
    from promptopt.types import Example

__all__ = ["PromptSelection"]

#: the most training inputs clustered (a seeded sample of them on a larger split)
CLUSTER_POOL = 1000
# A generated instruction is a sentence or two.
INSTRUCTION_TOKENS = 120

GENERATION_PROMPT = """Here are some inputs of a task, all of one kind, each with its correct output:

{demos}

The task's current instruction is:
{instruction}

Write an instruction that would lead a model to the correct output for inputs of this kind. \
Reply with the instruction alone, between <START> and <END>."""


class PromptSelection(Strategy):
    """Automatic Prompt Selection (APS): a learned evaluator picks a prompt per input.

    Args:
        n_clusters: clusters of training inputs, each given its own candidates
            (fewer if there are fewer distinct inputs).
        prompts_per_cluster: instructions sampled from the optimizer per cluster.
        n_cluster_examples: examples of a cluster shown to the optimizer.
        n_score_examples: training inputs every candidate is scored on; their
            (input, prompt) scores are the evaluator's training data.
        temperature: optimizer sampling temperature.
        inverse_regularization: ``C`` of the evaluator's logistic regressions
            (smaller is a stronger pull of the weights towards 0).

    Example:
        >>> PromptSelection().get_params()["n_clusters"]
        4
    """

    name: ClassVar[str] = "prompt-selection"
    summary: ClassVar[str] = ("APS: cluster train inputs, generate prompts per cluster, fit an evaluator that "
                              "picks a prompt per input (Do et al., 2024; needs scikit-learn)")
    constraints: ClassVar[dict[str, Any]] = {
        "n_clusters": Interval(int, 1), "prompts_per_cluster": Interval(int, 1),
        "n_cluster_examples": Interval(int, 1), "n_score_examples": Interval(int, 2),
        "temperature": Interval(float, 0, 2), "inverse_regularization": Interval(float, 1e-6, 1e6),
    }
    #: scaled to a budget: the evaluator's training sample first (down to ten inputs per prompt's regression),
    #: then the database (two clusters, so a prompt per input is still a choice; one prompt each)
    scalable: ClassVar[tuple[Scalable, ...]] = (
        Scalable("n_score_examples", 10), Scalable("n_clusters", 2, stage=1),
        Scalable("prompts_per_cluster", 1, stage=1))

    def __init__(self, *, n_clusters: int = 4, prompts_per_cluster: int = 2, n_cluster_examples: int = 5,
                 n_score_examples: int = 40, temperature: float = 0.9, inverse_regularization: float = 1.0) -> None:
        self.n_clusters = n_clusters
        self.prompts_per_cluster = prompts_per_cluster
        self.n_cluster_examples = n_cluster_examples
        self.n_score_examples = n_score_examples
        self.temperature = temperature
        self.inverse_regularization = inverse_regularization

    def validate(self) -> None:
        """The declared constraints, then scikit-learn's presence (before any call)."""
        super().validate()
        require_sklearn(f"strategy {self.name!r}")

    def finalist_gap(self, n_dev: int) -> int:
        """Candidates are scored on training inputs only: the finalist lacks all of dev."""
        return n_dev

    def step_plan(self, n_dev: int, n_train: int, *, n_tasks: int = 1) -> StepPlan:
        """One pass, the whole method: a database of prompts per cluster, each scored on the
        training sample the selector learns from; the best of them is then scored on dev."""
        pool = self.n_clusters * self.prompts_per_cluster
        sample = min(self.n_score_examples, n_train)
        return StepPlan("pass", Spend(example_evals=(1 + pool) * sample, optimizer_calls=pool), paper_steps=1,
                        finish=Spend(example_evals=n_dev, new_full=1))

    def optimize(self, ctx: Context) -> Sequence[Prompt]:
        clusters = self.cluster(ctx)
        candidates = [ctx.seed_prompt] + self.generate(ctx, clusters)
        sample = ctx.sample(ctx.train, self.n_score_examples)
        scores, stopped = self.score(ctx, candidates, sample)
        scored = candidates[: len(scores)]
        if len(scored) >= 2 and sample:  # a selector with one prompt would pick nothing
            selector = fit_selector(scored, [ex.input for ex in sample], scores,
                                    inverse_regularization=self.inverse_regularization)
            ctx.set_selector(selector)
            best = selector.prompts[0]
        else:
            best = ctx.seed_prompt
        ctx.offer([best])
        if stopped is not None:
            raise stopped
        return [best]

    # -- step 1: the prompt database -----------------------------------------------------------
    def cluster(self, ctx: Context) -> list[list[Example]]:
        """The training inputs (a seeded pool of at most ``CLUSTER_POOL``) grouped by k-means."""
        from sklearn.cluster import KMeans

        pool = ctx.sample(ctx.train, CLUSTER_POOL)
        k = min(self.n_clusters, len({ex.input for ex in pool}))
        if k <= 1:
            return [pool] if pool else []
        features = HashedFeatures().transform([ex.input for ex in pool])
        labels = KMeans(n_clusters=k, n_init=10, random_state=ctx.rng.randrange(2**31)).fit_predict(features)
        clusters = [[ex for ex, label in zip(pool, labels, strict=True) if label == c] for c in range(k)]
        for index, members in enumerate(clusters):
            ctx.note("cluster", index=index, size=len(members), example_ids=[ex.id for ex in members[:20]])
        return clusters

    def generate(self, ctx: Context, clusters: Sequence[Sequence[Example]]) -> list[Prompt]:
        """Candidates for each cluster, from a few of its examples and the seed instruction."""
        out: dict[str, Prompt] = {}
        for index, members in enumerate(clusters):
            demos = format_demonstrations(ctx.sample(members, self.n_cluster_examples))
            meta = GENERATION_PROMPT.format(demos=demos, instruction=ctx.seed_prompt.instruction or "(none)")
            # the database is collected before any is scored: an optimizer cap leaves what is in hand
            replies = ctx.propose_within_cap(meta, n=self.prompts_per_cluster, temperature=self.temperature,
                                             max_tokens=INSTRUCTION_TOKENS)
            if replies is None:
                break
            for reply in replies:
                text, how = parse_instruction(reply)
                if text is None:
                    ctx.skip("cluster", f"no usable instruction ({how}) for cluster {index}", reply)
                    continue
                child = ctx.seed_prompt.with_instruction(text)  # keeps the seed's template, system text, demos
                ctx.record(child, [ctx.seed_prompt], "cluster")
                out.setdefault(child.id, child)
        return [p for p in out.values() if p.id != ctx.seed_prompt.id]

    # -- step 2: the evaluator's training data ----------------------------------------------------
    @staticmethod
    def score(ctx: Context, candidates: Sequence[Prompt],
              sample: Sequence[Example]) -> tuple[list[list[float]], BudgetExhausted | None]:
        """Each candidate's score on each sampled input, in order, until the budget stops it.

        One candidate per evaluation, so a stop keeps every candidate scored before
        it; the stop is returned to be raised once the selector is fitted.
        """
        scores: list[list[float]] = []
        for prompt in candidates:
            try:
                result = ctx.evaluate([prompt], sample)[0]
            except BudgetExhausted as exc:
                return scores, exc
            by_id = {e.example_id: e.score for e in result.examples}
            scores.append([by_id[ex.id] for ex in sample])
        return scores, None
