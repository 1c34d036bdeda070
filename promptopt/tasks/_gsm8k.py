"""GSM8K: grade-school math word problems scored by numeric answer match.

Splits: ``test`` is the upstream test file (1319 problems). Upstream ships no
dev split, so ``dev`` is a fixed sample of :data:`DEV_SIZE` train problems
(``random.Random(0)``, independent of the run seed, so dev never moves between
runs) and those problems are removed from ``train``. The ``seed`` argument only
chooses the subsets asked for with ``n_train`` / ``n_dev`` / ``n_test``.

Example ids are ``"<split>-<line index in the source file>"``: dev problems
come from the train file, so ``"dev-17"`` is line 18 of ``train.jsonl``.
"""

from __future__ import annotations

import re

from promptopt.exceptions import DataError
from promptopt.prompt import Prompt
from promptopt.tasks._base import Splits, Task
from promptopt.tasks._download import DataStore
from promptopt.tasks._parsing import extract_number, numbers_equal
from promptopt.tasks._records import read_jsonl
from promptopt.tasks._sampling import seeded_order, subset_splits
from promptopt.types import Example

__all__ = ["DEV_SIZE", "GSM8KTask", "gold_answer"]

#: how many train problems are held out as the dev split
DEV_SIZE = 200
_SPLIT_SEED = 0
_CALCULATOR = re.compile(r"<<[^<>]*>>")
_MARK = "#### "


def gold_answer(solution: str) -> str:
    """The final answer of a GSM8K solution: the text after the last ``#### ``, commas removed.

    Example:
        >>> gold_answer("48/2 = <<48/2=24>>24 clips.\\n#### 1,072")
        '1072'
    """
    if _MARK not in solution:
        raise DataError(f"GSM8K solution has no '#### ' answer marker: {solution[-80:]!r}")
    return solution.rsplit(_MARK, 1)[1].strip().replace(",", "")


class GSM8KTask(Task):
    """Grade School Math 8K (Cobbe et al., 2021), scored by numeric equality.

    The reply is read for the number after "The answer is" or, failing that,
    its last number; thousands commas, ``$`` and trailing zeros do not matter.

    Args:
        splits: the examples; :meth:`load` builds them from the data files.
    """

    name = "gsm8k"
    description = "Grade-school math word problems; the answer is a number."
    max_tokens = 256

    def __init__(self, splits: Splits) -> None:
        self._splits = splits

    @classmethod
    def load(cls, store: DataStore, *, n_train: int | None = None, n_dev: int | None = None,
             n_test: int | None = None, seed: int = 0) -> GSM8KTask:
        """Read GSM8K from ``store`` and cut each split to the sizes asked for."""
        train_rows = _examples(store, "train")
        test = tuple(Example(f"test-{i}", q, a, meta) for i, (q, a, meta)
                     in enumerate(_examples(store, "test")))
        held_out = set(seeded_order(len(train_rows), _SPLIT_SEED)[:DEV_SIZE])
        train: list[Example] = []
        dev: list[Example] = []
        for i, (question, answer, meta) in enumerate(train_rows):
            split, bucket = ("dev", dev) if i in held_out else ("train", train)
            bucket.append(Example(f"{split}-{i}", question, answer, meta))
        splits = Splits(tuple(train), tuple(dev), test)
        return cls(subset_splits(splits, n_train=n_train, n_dev=n_dev, n_test=n_test,
                                 seed=seed, stratify=False))

    @property
    def splits(self) -> Splits:
        return self._splits

    @property
    def seed_prompt(self) -> Prompt:
        return Prompt(
            instruction=("Solve the math word problem. Reason step by step, then end your reply "
                         'with "The answer is <number>."'),
            template="Question: {input}\nAnswer:",
        )

    def parse(self, text: str) -> str | None:
        return extract_number(text)

    def metric(self, answer: str | None, example: Example) -> float:
        return 1.0 if numbers_equal(answer, example.target) else 0.0

    #: ``solution``: the dataset's worked solution ending with the answer line (what the seed
    #: prompt asks for); ``answer``: the answer line alone
    gold_forms = ("solution", "answer")
    gold = "solution"

    def gold_text(self, example: Example) -> str:
        """The worked solution (calculator notes removed) ending "The answer is N.", or that line alone."""
        if self.gold == "answer":
            return f"The answer is {example.target}."
        solution = str(example.meta.get("solution", ""))
        steps = _CALCULATOR.sub("", solution.rsplit(_MARK, 1)[0]).strip()
        ending = f"The answer is {example.target}."
        return f"{steps}\n{ending}" if steps else ending


def _examples(store: DataStore, split: str) -> list[tuple[str, str, dict[str, object]]]:
    path = store.path(f"gsm8k/{split}.jsonl")
    rows: list[tuple[str, str, dict[str, object]]] = []
    for record in read_jsonl(path):
        solution = str(record.fields["answer"])
        rows.append((str(record.fields["question"]), gold_answer(solution), {"solution": solution}))
    return rows
