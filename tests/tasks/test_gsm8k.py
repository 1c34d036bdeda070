"""GSM8K: gold extraction, the dev split carved from train, parsing and scoring."""

from __future__ import annotations

from pathlib import Path

import pytest

from promptopt.exceptions import DataError
from promptopt.tasks import DataStore, GSM8KTask
from promptopt.tasks._gsm8k import DEV_SIZE, gold_answer
from promptopt.tasks._parsing import normalize_number


@pytest.fixture(scope="module")
def gsm8k(data_dir: Path) -> GSM8KTask:
    return GSM8KTask.load(DataStore(data_dir, offline=True))


def test_gold_answer() -> None:
    assert gold_answer("She sold 48/2 = <<48/2=24>>24 clips.\n#### 72") == "72"
    assert gold_answer("a #### b\n#### 1,072") == "1072"
    with pytest.raises(DataError, match="no '#### ' answer marker"):
        gold_answer("no marker here")


def test_split_sizes_and_disjointness(gsm8k: GSM8KTask) -> None:
    s = gsm8k.splits
    assert (len(s.train), len(s.dev), len(s.test)) == (7473 - DEV_SIZE, DEV_SIZE, 1319)
    inputs = [{e.input for e in part} for part in (s.train, s.dev, s.test)]
    assert not inputs[0] & inputs[1] and not inputs[1] & inputs[2]
    ids = [e.id for part in (s.train, s.dev, s.test) for e in part]
    assert len(ids) == len(set(ids))
    assert s.test[0].id == "test-0" and all(e.id.startswith("dev-") for e in s.dev)


def test_dev_is_fixed_and_sizes_use_the_seed(data_dir: Path, gsm8k: GSM8KTask) -> None:
    store = DataStore(data_dir, offline=True)
    again = GSM8KTask.load(store, seed=5)
    assert [e.id for e in again.splits.dev] == [e.id for e in gsm8k.splits.dev]
    small = [GSM8KTask.load(store, n_train=8, n_dev=4, n_test=6, seed=seed) for seed in (0, 0, 1)]
    assert [len(small[0].splits.train), len(small[0].splits.dev), len(small[0].splits.test)] == [8, 4, 6]
    assert small[0].splits == small[1].splits and small[0].splits.test != small[2].splits.test
    assert set(small[0].splits.dev) <= set(gsm8k.splits.dev)


def test_every_gold_is_a_number_and_first_test_problem(gsm8k: GSM8KTask) -> None:
    s = gsm8k.splits
    assert all(normalize_number(e.target) is not None for part in (s.train, s.dev, s.test) for e in part)
    first = s.test[0]
    assert first.input.startswith("Janet’s ducks lay 16 eggs") and first.target == "18"


@pytest.mark.parametrize(("reply", "score"), [
    ("She makes 9 * 2 = 18 dollars. The answer is 18.", 1.0),
    ("The answer is $18.00", 1.0),
    ("16 - 3 - 4 = 9 eggs, 9 * 2 = 18", 1.0),
    ("The answer is 16.", 0.0),
    ("I don't know", 0.0),
])
def test_parse_and_metric(gsm8k: GSM8KTask, reply: str, score: float) -> None:
    example = gsm8k.splits.test[0]
    assert gsm8k.metric(gsm8k.parse(reply), example) == score


def test_prompt_and_gold_text(gsm8k: GSM8KTask) -> None:
    assert "The answer is <number>." in gsm8k.seed_prompt.instruction
    assert gsm8k.max_tokens == 256 and gsm8k.labels is None and gsm8k.choices(gsm8k.splits.dev[0]) is None
    example = gsm8k.splits.test[0]
    gold = gsm8k.gold_text(example)
    assert gold.endswith("The answer is 18.") and "<<" not in gold and "####" not in gold
    assert gsm8k.metric(gsm8k.parse(gold), example) == 1.0
