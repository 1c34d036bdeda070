from __future__ import annotations

import os
import random
from pathlib import Path

import pytest

from promptopt.prompt import Demo, Prompt
from promptopt.strategies._edits import (
    LEVELS,
    Units,
    field_names,
    field_text,
    split,
    split_field,
    with_field,
)
from promptopt.tasks import list_tasks, load_task

#: the benchmark data folder beside the repository, as the task tests find it
DATA_DIR = Path(os.environ.get("PROMPTOPT_DATA_DIR") or Path(__file__).parents[2].parent / "shared" / "data")


@pytest.fixture(scope="module")
def seeds() -> list[tuple[str, Prompt]]:
    """The seed prompt of every registered task: classification sets, gsm8k, every BBH subtask, synthetic."""
    if not (DATA_DIR / "MANIFEST.json").is_file():
        pytest.fail(f"benchmark data not found at {DATA_DIR}; set PROMPTOPT_DATA_DIR to the shared data folder")
    return [(info.name, load_task(info.name, data_dir=DATA_DIR, offline=True, n_train=2, n_dev=2,
                                  n_test=2).seed_prompt)
            for info in list_tasks() if not info.name.startswith("file:")]


def test_every_shared_dataset_has_a_seed_prompt_to_check(seeds: list[tuple[str, Prompt]]) -> None:
    names = {name for name, _ in seeds}
    assert {"sst2", "subj", "agnews", "trec", "sst-5", "mr", "gsm8k", "synthetic:sentiment"} <= names
    assert len([n for n in names if n.startswith("bbh:")]) == len(list((DATA_DIR / "bbh").glob("*.json"))) == 24


@pytest.mark.parametrize("level", LEVELS)
def test_every_seed_prompt_field_splits_and_joins_back_exactly(level: str, seeds: list[tuple[str, Prompt]]) -> None:
    for name, prompt in seeds:
        for field in field_names(prompt):
            text = field_text(prompt, field)
            assert split(text, level).join() == text, (name, field)  # type: ignore[arg-type]
        assert split(prompt.template, level).join() == prompt.template  # type: ignore[arg-type]
        assert split(prompt.instruction, level).pieces, name  # type: ignore[arg-type]


@pytest.mark.parametrize("level", LEVELS)
def test_long_multiline_texts_round_trip(level: str) -> None:
    texts = [p.read_text("utf-8") for p in sorted((DATA_DIR / "bbh" / "cot-prompts").glob("*.txt"))]
    for text in texts:
        units = split(text, level)  # type: ignore[arg-type]
        assert units.join() == text
        assert all(p and p == p.strip() for p in units.pieces)


_ALPHABET = ["a", "Be", "word", "and", "of", "to", "which", ",", ".", "!", "?", ";", ":", ")", "(", '"', "'",
             " ", "  ", "\t", "\n", "\n\n", " \n ", "\r\n", "\u00a0", "é", "{input}", "-", "42"]


@pytest.mark.parametrize("level", LEVELS)
def test_random_strings_round_trip_and_units_are_well_formed(level: str) -> None:
    rng = random.Random(level)
    for _ in range(3000):
        text = "".join(rng.choice(_ALPHABET) for _ in range(rng.randrange(0, 30)))
        units = split(text, level)  # type: ignore[arg-type]
        assert units.join() == text, repr(text)
        assert all(p and not p[0].isspace() and not p[-1].isspace() for p in units.pieces), repr(text)
        assert all(s and s.isspace() for s in units.seps), repr(text)
        assert units.lead.isspace() or units.lead == ""
        assert units.tail.isspace() or units.tail == ""


def test_sentence_units_are_the_prompts_segments(seeds: list[tuple[str, Prompt]]) -> None:
    rng = random.Random(1)
    texts = [p.instruction for _, p in seeds]
    texts += ["".join(rng.choice(_ALPHABET) for _ in range(25)) for _ in range(500)]
    for text in texts:
        assert split(text, "sentence").pieces == Prompt(text).segments(), repr(text)


def test_phrase_rule_cuts_at_clause_punctuation_and_before_function_words() -> None:
    units = split("Classify the sentiment of the review as positive or negative. Be brief, please.", "phrase")
    assert units.pieces == ("Classify the sentiment", "of the review", "as positive", "or negative.", "Be brief,",
                            "please.")
    # no cut before a function word until the phrase has two words
    assert split("Answer with yes or no.", "phrase").pieces == ("Answer with yes", "or no.")
    assert split("Say (yes) or no", "phrase").pieces == ("Say (yes)", "or no")


def test_word_units_keep_punctuation_and_separators_keep_layout() -> None:
    units = split("  Hello,  world!\nBye.\n", "word")
    assert units == Units("word", ("Hello,", "world!", "Bye."), ("  ", "\n"), "  ", "\n")
    assert split("", "phrase") == Units("phrase", ())
    assert split(" \n ", "word") == Units("word", (), (), " \n ", "")


def test_units_need_one_separator_between_each_pair() -> None:
    with pytest.raises(ValueError, match="need 1 separators"):
        Units("word", ("a", "b"), ())
    with pytest.raises(ValueError, match="level must be one of"):
        split("a", "clause")  # type: ignore[arg-type]


def test_fields_read_and_write_exactly() -> None:
    prompt = Prompt(instruction="Do it.", system="You help.", demos=(Demo("in one", "out one"),))
    assert field_names(prompt) == ("instruction", "system", "demos[0].input", "demos[0].output")
    assert field_text(prompt, "demos[0].output") == "out one"
    changed = with_field(prompt, "demos[0].input", "  spaced  ")
    assert changed.demos == (Demo("  spaced  ", "out one"),) and changed.instruction == "Do it."
    assert with_field(prompt, "instruction", " x ").instruction == " x "  # not stripped
    assert with_field(prompt, "system", "Be kind.").system == "Be kind."
    assert split_field(prompt, "system", "word").pieces == ("You", "help.")
    with pytest.raises(ValueError, match="no field 'demos.1..input'"):
        field_text(prompt, "demos[1].input")
