"""Answer extraction: numbers, option letters and labels."""

from __future__ import annotations

import pytest

from promptopt.tasks._parsing import (
    answer_segment,
    extract_label,
    extract_letter,
    extract_number,
    normalize_number,
    numbers_equal,
)


@pytest.mark.parametrize(("reply", "expected"), [
    ("The answer is 42.", "42"),
    ("She pays $1,234.50 in total. The answer is $1,234.50.", "1234.5"),
    ("It went from 5 to -3 degrees", "-3"),
    ("3-5 = ?", "5"),  # a minus glued to a digit is subtraction, not a sign
    ("First 12, then 7 more, so 19", "19"),
    ("The answer is 18 dollars. Check: 9 * 2 = 18, and 20 - 2 = 18", "18"),
    ("The answer is 7. (I first thought 9.)", "7"),
    ("#### 72", "72"),
    ("Answer: 0.50", "0.5"),
    ("\u22124 degrees", "-4"),
    ("no numbers here", None),
    ("version x2 of the model", None),
    ("10.00", "10"),
])
def test_extract_number(reply: str, expected: str | None) -> None:
    assert extract_number(reply) == expected


@pytest.mark.parametrize(("a", "b", "equal"), [
    ("42", "42.0", True), ("1,000", "1000", True), ("-5", "5", False), (None, "3", False),
    ("abc", "3", False), ("0.1", "0.10", True),
])
def test_numbers_equal(a: str | None, b: str, equal: bool) -> None:
    assert numbers_equal(a, b) is equal


def test_normalize_number_rejects_non_numbers() -> None:
    assert normalize_number("1,2x") is None
    assert normalize_number("NaN") is None
    assert normalize_number("$3,000") == "3000"


@pytest.mark.parametrize(("reply", "expected"), [
    ("Let's think step by step. ... So the answer is (C).", "(C)"),
    ("So the answer is (C), not (A).", "(C)"),
    ("(A) is tempting but (D) fits", "(D)"),
    ("B", "(B)"),
    (" b. ", "(B)"),
    ("Option C", "(C)"),
    ("B) heptagon", "(B)"),
    ("the answer is D", "(D)"),
    ("I cannot tell.", None),
    ("A man walks in.", None),  # a sentence starting with "A" is not a letter answer
])
def test_extract_letter(reply: str, expected: str | None) -> None:
    assert extract_letter(reply) == expected


@pytest.mark.parametrize(("reply", "expected"), [
    ("positive", "positive"),
    ("  Positive. ", "positive"),
    ("I think the sentiment is negative.", "negative"),
    ("positive or negative, hard to say", None),
    ("It is nonpositive", None),  # whole words only
    ("So the answer is negative, though parts were positive", "negative"),
    ("", None),
])
def test_extract_label_binary(reply: str, expected: str | None) -> None:
    assert extract_label(reply, ["negative", "positive"]) == expected


def test_extract_label_keeps_canonical_spelling_and_whole_words() -> None:
    assert extract_label("the answer is NUMBER", ["Description", "Number"]) == "Number"
    assert extract_label("So the answer is invalid.", ["valid", "invalid"]) == "invalid"
    assert extract_label("valid", ["valid", "invalid"]) == "valid"
    assert extract_label("good, even great", ["bad", "good", "great"]) is None


def test_answer_segment_takes_the_last_marker() -> None:
    assert answer_segment("the answer is 3. No wait, the answer is 4.") == ("4.", True)
    assert answer_segment("just 4") == ("just 4", False)
