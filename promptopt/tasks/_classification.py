"""Sentence classification sets (sst2, subj, agnews, trec, sst-5, mr), scored by accuracy.

The files are EvoPrompt's (Guo et al., 2023) splits converted to
``{"text", "label"}`` JSONL with a ``labels.json`` beside them; the train,
dev and test files are used as they are. The ``seed`` argument only chooses
the subsets asked for with ``n_train`` / ``n_dev`` / ``n_test``, always
stratified by label (some files are grouped by label, so a prefix would hold
one class). Ids are ``"<split>-<line index>"``.

A reply names a label when, trimmed, it equals one (any case), or else when
exactly one label occurs in it as a whole word.
"""

from __future__ import annotations

from collections.abc import Sequence

from promptopt.exceptions import DataError
from promptopt.prompt import Prompt
from promptopt.tasks._base import Splits, Task
from promptopt.tasks._download import DataStore
from promptopt.tasks._parsing import extract_label
from promptopt.tasks._records import read_json, read_jsonl
from promptopt.tasks._sampling import subset_splits
from promptopt.types import Example

__all__ = ["CLASSIFICATION_SETS", "ClassificationTask", "label_instruction"]

#: name → (what is classified, one-line description)
CLASSIFICATION_SETS: dict[str, tuple[str, str]] = {
    "sst2": ("Classify the sentiment of the sentence as",
             "SST-2 movie-review sentence sentiment (2 classes)."),
    "subj": ("Classify the sentence as",
             "Subj: subjective vs. objective movie sentences (2 classes)."),
    "agnews": ("Classify the topic of the news article as",
               "AG News topic classification (4 classes)."),
    "trec": ("Classify the kind of answer the question asks for as",
             "TREC question-type classification (6 classes)."),
    "sst-5": ("Classify the sentiment of the sentence as",
              "SST-5 fine-grained movie-review sentiment (5 classes)."),
    "mr": ("Classify the sentiment of the movie review as",
           "MR movie-review sentence polarity (2 classes)."),
}


def label_instruction(lead: str, labels: Sequence[str]) -> str:
    """``lead`` followed by the labels as an "a, b or c" list and a one-word-answer request.

    Example:
        >>> label_instruction("Classify the sentence as", ["subjective", "objective"])
        'Classify the sentence as subjective or objective. Answer with the label only.'
    """
    names = list(labels)
    listed = names[0] if len(names) == 1 else f"{', '.join(names[:-1])} or {names[-1]}"
    return f"{lead} {listed}. Answer with the label only."


class ClassificationTask(Task):
    """A closed-label classification task; the verbalizer of a label is the label itself.

    Args:
        name: the task name, e.g. ``"sst2"``.
        labels: the label set, in the dataset's index order.
        splits: the examples; targets must be among ``labels``.
        instruction: the seed prompt's instruction (default: list the labels).
        description: one line for ``list_tasks``.
    """

    max_tokens = 8

    def __init__(self, name: str, labels: Sequence[str], splits: Splits, *,
                 instruction: str | None = None, description: str = "") -> None:
        self.name = name
        self.labels = self._labels = tuple(labels)
        self.description = description
        self._splits = splits
        self._instruction = instruction or label_instruction("Classify the text as", self.labels)

    @classmethod
    def load(cls, store: DataStore, name: str, *, n_train: int | None = None,
             n_dev: int | None = None, n_test: int | None = None, seed: int = 0) -> ClassificationTask:
        """Read one of :data:`CLASSIFICATION_SETS` from ``store`` and cut each split to size."""
        lead, description = CLASSIFICATION_SETS[name]
        labels = tuple(read_json(store.path(f"cls/{name}/labels.json")))
        parts = {split: _read_split(store, name, split, labels) for split in ("train", "dev", "test")}
        splits = subset_splits(Splits(parts["train"], parts["dev"], parts["test"]),
                               n_train=n_train, n_dev=n_dev, n_test=n_test, seed=seed, stratify=True)
        return cls(name, labels, splits, instruction=label_instruction(lead, labels),
                   description=description)

    @property
    def splits(self) -> Splits:
        return self._splits

    @property
    def seed_prompt(self) -> Prompt:
        return Prompt(instruction=self._instruction, template="Text: {input}\nAnswer:")

    def parse(self, text: str) -> str | None:
        return extract_label(text, self._labels)

    def metric(self, answer: str | None, example: Example) -> float:
        if answer is None:
            return 0.0
        return 1.0 if answer.strip().casefold() == example.target.casefold() else 0.0


def _read_split(store: DataStore, name: str, split: str, labels: tuple[str, ...]) -> tuple[Example, ...]:
    path = store.path(f"cls/{name}/{split}.jsonl")
    examples = []
    for index, record in enumerate(read_jsonl(path)):
        label = record.fields["label"]
        if label not in labels:
            raise DataError(f"line {record.line} of {path} has label {label!r}, not one of "
                            f"{', '.join(labels)}; delete the file to download it again")
        examples.append(Example(f"{split}-{index}", str(record.fields["text"]), label))
    return tuple(examples)
