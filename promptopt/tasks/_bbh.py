"""BIG-Bench Hard (Suzgun et al., 2022): 24 hard BIG-Bench subtasks, exact match.

Names are ``bbh:<subtask>``, e.g. ``bbh:navigate``. Upstream ships one list
of examples per subtask, so the split is ours and fixed: the examples are
shuffled with ``random.Random(0)`` (independent of the run seed), then the
first 20 % (rounded) are ``train``, the next 20 % ``dev`` and the rest
``test`` (250 examples → 50 / 50 / 150). The ``seed`` argument only chooses
the subsets asked for with ``n_train`` / ``n_dev`` / ``n_test``, stratified by
answer for the two-answer subtasks. Ids are ``"<split>-<index in the file>"``.

Answers are read after the last "answer is" in the reply: an option letter
``(X)`` for multiple-choice subtasks (a bare ``B``, or the option's text,
counts too), one of two
words for yes/no-style subtasks (any case), a number for the arithmetic and
counting subtasks, and the trimmed text otherwise. The score is exact match
after trimming, ignoring case.
"""

from __future__ import annotations

import re
from typing import Literal

from promptopt.exceptions import DataError, UnknownNameError
from promptopt.prompt import Prompt
from promptopt.tasks._base import Splits, Task
from promptopt.tasks._download import DataStore
from promptopt.tasks._parsing import (
    answer_segment,
    extract_label,
    extract_letter,
    extract_number,
    normalize_text,
    numbers_equal,
)
from promptopt.tasks._records import read_json
from promptopt.tasks._sampling import seeded_order, subset_splits
from promptopt.types import Example

__all__ = ["BBH_SUBTASKS", "BBHTask", "SubtaskInfo", "check_subtask"]

Kind = Literal["choice", "binary", "number", "text"]
SubtaskInfo = tuple[Kind, tuple[str, ...] | None]

_MC: SubtaskInfo = ("choice", None)
#: answer kind (and the two answer words of binary subtasks) of each subtask provided
BBH_SUBTASKS: dict[str, SubtaskInfo] = {
    "boolean_expressions": ("binary", ("True", "False")),
    "disambiguation_qa": _MC,
    "dyck_languages": ("text", None),
    "formal_fallacies": ("binary", ("valid", "invalid")),
    "geometric_shapes": _MC,
    "hyperbaton": _MC,
    "logical_deduction_seven_objects": _MC,
    "logical_deduction_three_objects": _MC,
    "movie_recommendation": _MC,
    "multistep_arithmetic_two": ("number", None),
    "navigate": ("binary", ("Yes", "No")),
    "object_counting": ("number", None),
    "penguins_in_a_table": _MC,
    "reasoning_about_colored_objects": _MC,
    "ruin_names": _MC,
    "salient_translation_error_detection": _MC,
    "snarks": _MC,
    "sports_understanding": ("binary", ("yes", "no")),
    "temporal_sequences": _MC,
    "tracking_shuffled_objects_five_objects": _MC,
    "tracking_shuffled_objects_seven_objects": _MC,
    "tracking_shuffled_objects_three_objects": _MC,
    "web_of_lies": ("binary", ("Yes", "No")),
    "word_sorting": ("text", None),
}

_NOT_PROVIDED = ("causal_judgement", "date_understanding", "logical_deduction_five_objects")
TRAIN_FRACTION = 0.2
DEV_FRACTION = 0.2
_SPLIT_SEED = 0
_OPTION = re.compile(r"^\(([A-Z])\)(.*)$", re.MULTILINE)
_ENDINGS: dict[Kind, str] = {
    "choice": 'end your reply with "So the answer is (X)." where X is the letter of the right option.',
    "number": 'end your reply with "So the answer is N." where N is a number.',
    "text": 'end your reply with "So the answer is <answer>."',
}


class BBHTask(Task):
    """One BIG-Bench Hard subtask.

    Args:
        subtask: a key of :data:`BBH_SUBTASKS`, e.g. ``"navigate"``.
        splits: the examples; :meth:`load` builds them from the data files.
        description: the one-line task description (from the CoT prompt file).
    """

    max_tokens = 256

    def __init__(self, subtask: str, splits: Splits, description: str = "") -> None:
        check_subtask(subtask)
        self.subtask = subtask
        self.kind, self.labels = BBH_SUBTASKS[subtask]
        self.name = f"bbh:{subtask}"
        self.description = description
        self._splits = splits

    @classmethod
    def load(cls, store: DataStore, subtask: str, *, n_train: int | None = None,
             n_dev: int | None = None, n_test: int | None = None, seed: int = 0) -> BBHTask:
        """Read one subtask from ``store``, split it, and cut each split to size.

        Raises:
            UnknownNameError: ``subtask`` is not one of :data:`BBH_SUBTASKS`.
        """
        check_subtask(subtask)
        rows = read_json(store.path(f"bbh/{subtask}.json"))["examples"]
        n_first, n_second = round(TRAIN_FRACTION * len(rows)), round(DEV_FRACTION * len(rows))
        buckets: dict[str, list[int]] = {"train": [], "dev": [], "test": []}
        for rank, index in enumerate(seeded_order(len(rows), _SPLIT_SEED)):
            split = "train" if rank < n_first else "dev" if rank < n_first + n_second else "test"
            buckets[split].append(index)
        examples = {split: tuple(Example(f"{split}-{i}", rows[i]["input"], rows[i]["target"])
                                 for i in sorted(indices)) for split, indices in buckets.items()}
        splits = Splits(examples["train"], examples["dev"], examples["test"])
        description = _description(store.path(f"bbh/cot-prompts/{subtask}.txt").read_text("utf-8"))
        _, labels = BBH_SUBTASKS[subtask]
        return cls(subtask, subset_splits(splits, n_train=n_train, n_dev=n_dev, n_test=n_test,
                                          seed=seed, stratify=labels is not None), description)

    @property
    def splits(self) -> Splits:
        return self._splits

    @property
    def seed_prompt(self) -> Prompt:
        if self.labels is not None:
            a, b = self.labels
            ending = f'end your reply with "So the answer is {a}." or "So the answer is {b}."'
        else:
            ending = _ENDINGS[self.kind]
        head = f"{self.description}\n" if self.description else ""
        return Prompt(instruction=f"{head}Think step by step, then {ending}",
                      template="Q: {input}\nA:")

    def parse(self, text: str) -> str | None:
        if self.labels is not None:
            return extract_label(text, self.labels)
        if self.kind == "number":
            return extract_number(text)
        if self.kind == "choice":
            letter = extract_letter(text)
            if letter is not None:
                return letter
        segment, marked = answer_segment(text)
        if self.kind == "choice" and not marked:
            return None
        return normalize_text(segment) or None

    def metric(self, answer: str | None, example: Example) -> float:
        if answer is None:
            return 0.0
        if self.kind == "number":
            return 1.0 if numbers_equal(answer, example.target) else 0.0
        golds = {example.target}
        if self.kind == "choice":  # an answer may name the option's text instead of its letter
            golds.add(_options(example.input).get(example.target, example.target))
        same = normalize_text(answer).casefold() in {normalize_text(g).casefold() for g in golds}
        return 1.0 if same else 0.0

    #: ``answer``: the gold answer alone ("(A)", as choice mode scores it); ``sentence``: the
    #: closing sentence the seed prompt asks for ("So the answer is (A).")
    gold_forms = ("answer", "sentence")

    def gold_text(self, example: Example) -> str:
        answer = self.verbalize(example.target)
        return f"So the answer is {answer}." if self.gold == "sentence" else answer

    def choices(self, example: Example) -> tuple[str, ...] | None:
        """Option letters in this example (``("(A)", "(B)", ...)``), the two words, or None."""
        if self.kind == "choice":
            return tuple(_options(example.input)) or None
        return self.labels


def _options(text: str) -> dict[str, str]:
    """``"(A)"`` → option text, for the ``(X) text`` lines of a multiple-choice input."""
    return {f"({letter})": option.strip() for letter, option in _OPTION.findall(text)}


def check_subtask(subtask: str) -> None:
    """Raise UnknownNameError, listing the known subtasks, for an unknown one."""
    if subtask in _NOT_PROVIDED:
        raise UnknownNameError(f"BBH subtask {subtask!r} is not in the provided data (3 of the 27 "
                               f"are not); known: {', '.join(BBH_SUBTASKS)}")
    if subtask not in BBH_SUBTASKS:
        raise UnknownNameError(f"unknown BBH subtask {subtask!r}; known: {', '.join(BBH_SUBTASKS)} "
                               "(use bbh:<subtask>, e.g. bbh:navigate)")


def _description(cot_prompt: str) -> str:
    """The one-line task description: the first line after the ``-----`` separator."""
    _, sep, rest = cot_prompt.partition("-----")
    lines = [line.strip() for line in rest.splitlines() if line.strip()]
    if not sep or not lines:
        raise DataError("BBH chain-of-thought prompt file has no '-----' line followed by a "
                        "description; delete it to download it again")
    return lines[0].removeprefix("Task description:").strip()
