from __future__ import annotations

import random
from collections import Counter

import pytest

from promptopt.prompt import Demo, Prompt
from promptopt.strategies._edits import LEVELS, Units, split
from promptopt.strategies._operators import (
    Edit,
    add,
    clean_paraphrase,
    crossover,
    delete,
    demo_texts,
    draw_edit,
    on_field,
    paraphrase,
    splice,
    swap,
    unit_pool,
)

TEXTS = [
    "Classify the sentiment of the review as positive or negative. Be brief, please.\nAnswer with one word.",
    "  Say whether the number is even or odd;  think first!\n\nThen answer.  ",
    "Solve the problem. Reason step by step, then end with \"The answer is N.\"",
]


def _cases() -> list[tuple[str, str]]:
    return [(text, level) for text in TEXTS for level in LEVELS]


@pytest.mark.parametrize("text,level", _cases())
def test_a_deleted_unit_is_gone_and_nothing_else_moved(text: str, level: str) -> None:
    units = split(text, level)  # type: ignore[arg-type]
    for i in range(len(units)):
        child, edit = delete(units, i)
        assert child.pieces == units.pieces[:i] + units.pieces[i + 1:]
        assert (child.lead, child.tail) == (units.lead, units.tail)
        # the separators are the parent's, less the one next to the deleted unit
        gone = min(i, len(units.seps) - 1)
        assert list(child.seps) == [s for k, s in enumerate(units.seps) if k != gone]
        assert edit == Edit("delete", (i,), (units.pieces[i],), (), units.level)
        # in the text, the unit and one separator are cut out; what is left is in order, untouched
        removed = units.pieces[i] + (units.seps[gone] if units.seps else "")
        if i == len(units) - 1 and units.seps:
            removed = units.seps[gone] + units.pieces[i]
        assert child.join() in _cut_once(units.join(), removed)


def _cut_once(text: str, part: str) -> set[str]:
    return {text[:k] + text[k + len(part):] for k in range(len(text)) if text.startswith(part, k)}


@pytest.mark.parametrize("text,level", _cases())
def test_a_swap_keeps_the_multiset_of_units_and_moves_only_two(text: str, level: str) -> None:
    units = split(text, level)  # type: ignore[arg-type]
    rng = random.Random(0)
    for _ in range(20):
        i, j = rng.sample(range(len(units)), 2)
        child, edit = swap(units, i, j)
        assert Counter(child.pieces) == Counter(units.pieces)
        assert child.seps == units.seps and (child.lead, child.tail) == (units.lead, units.tail)
        assert [k for k in range(len(units)) if child.pieces[k] != units.pieces[k]] in ([], sorted([i, j]))
        assert (child.pieces[i], child.pieces[j]) == (units.pieces[j], units.pieces[i])
        assert edit.indices == (i, j) and edit.before == (units.pieces[i], units.pieces[j])


def test_add_inserts_one_unit_at_its_position_with_the_usual_separator() -> None:
    units = split("One. Two. Three.", "sentence")
    for position in range(4):
        child, edit = add(units, position, "New.")
        expected = list(units.pieces)
        expected.insert(position, "New.")
        assert list(child.pieces) == expected and set(child.seps) == {" "}
        assert edit.indices == (position,) and edit.after == ("New.",) and edit.before == ()
    lines = split("One.\nTwo.\nThree. Four.", "sentence")
    assert add(lines, 1, "New.")[0].join() == "One.\nNew.\nTwo.\nThree. Four."  # commonest separator
    assert add(split("", "word"), 0, "Hi")[0].join() == "Hi"


def test_paraphrase_replaces_one_unit_or_gives_none() -> None:
    units = split("Be brief, say yes or no.", "phrase")
    child, edit = paraphrase(units, 0, lambda u: u.upper())  # type: ignore[misc]
    assert child.pieces == ("BE BRIEF,",) + units.pieces[1:]
    assert edit == Edit("paraphrase", (0,), ("Be brief,",), ("BE BRIEF,",), "phrase")
    assert paraphrase(units, 0, lambda u: None) is None
    assert paraphrase(units, 0, lambda u: u) is None  # unchanged is no edit


def test_on_field_edits_one_field_and_records_it() -> None:
    prompt = Prompt(instruction="Keep me.", system="You help. You are brief.", demos=(Demo("a b", "c"),))
    edited = on_field(prompt, "system", "sentence", lambda u: delete(u, 0))
    assert edited is not None
    assert edited.prompt == Prompt(instruction="Keep me.", system="You are brief.", demos=(Demo("a b", "c"),))
    assert edited.edit.field == "system" and edited.edit.to_dict()["before"] == ["You help."]
    demo = on_field(prompt, "demos[0].input", "word", lambda u: swap(u, 0, 1))
    assert demo is not None and demo.prompt.demos[0] == Demo("b a", "c")
    assert on_field(prompt, "system", "word", lambda u: None) is None


@pytest.mark.parametrize("level", LEVELS)
def test_crossover_children_hold_only_their_parents_units(level: str) -> None:
    first = Prompt("Classify the review. Use one word, positive or negative.\nBe careful.")
    second = Prompt("Read the text carefully; decide its sentiment. Reply with the label only.")
    one, two = split(first.instruction, level), split(second.instruction, level)  # type: ignore[arg-type]
    for cut in range(max(len(one), len(two))):
        child = crossover(first, second, "instruction", level, cut)  # type: ignore[arg-type]
        spliced = splice([(one, 0, min(cut, len(one))), (two, min(cut, len(two)), len(two))])
        assert spliced.pieces == one.pieces[:cut] + two.pieces[cut:]
        assert child.prompt.instruction == spliced.join()
        assert set(spliced.pieces) <= set(one.pieces) | set(two.pieces)
        assert child.edit.indices == (cut,) and child.edit.after == two.pieces[cut:]
    if level == "sentence":  # re-splitting the child finds the same sentences
        child = crossover(first, second, "instruction", "sentence", 1)
        assert split(child.prompt.instruction, "sentence").pieces == (one.pieces[0], *two.pieces[1:])


def test_splice_takes_separators_from_the_sources() -> None:
    one, two = split("A.\nB.\nC.", "sentence"), split("X.  Y.\tZ.", "sentence")
    assert splice([(one, 0, 2), (two, 2, 3)]).join() == "A.\nB.\tZ."  # Z's own separator before it
    assert splice([(two, 0, 1), (one, 0, 1)]).join() == "X.  A."  # A had none before it: X's after it
    assert splice([(one, 0, 0), (two, 0, 3)]).join() == "X.  Y.\tZ."


def test_drawn_edits_stay_in_their_span_and_say_when_impossible() -> None:
    units = split("One. Two. Three. Four. Five.", "sentence")
    rng = random.Random(3)
    for _ in range(50):
        done = draw_edit(units, rng.choice(["delete", "swap", "add", "paraphrase"]), rng, pool=["New."],
                         rewrite=lambda u: u + " Really.", span=(1, 3))
        assert done is not None
        edit = done[1]
        assert all(1 <= i <= 3 for i in edit.indices) and (edit.operator == "add" or max(edit.indices) < 3)
        assert done[0].pieces[0] == "One." and done[0].pieces[-1] == "Five."
    one = split("Only.", "sentence")
    assert draw_edit(one, "swap", rng) is None
    assert draw_edit(one, "add", rng, pool=()) is None
    assert draw_edit(one, "paraphrase", rng) is None  # no rewriter
    assert draw_edit(Units("word", ()), "delete", rng) is None
    with pytest.raises(ValueError, match="unknown edit operator 'mutate'"):
        draw_edit(one, "mutate", rng)


def test_paraphrase_replies_are_cleaned_and_keep_the_units_punctuation() -> None:
    assert clean_paraphrase('Rewritten text: "Be short."\nMore chatter', "Be brief,") == "Be short,"
    assert clean_paraphrase("keep it short", "be brief.") == "keep it short."
    assert clean_paraphrase('The rewritten text is: "In short, keep it."', "or positive.") == "In short, keep it."
    assert clean_paraphrase("Paraphrase: say it: briefly", "be brief") == "say it: briefly"
    assert clean_paraphrase("  \n", "be brief") is None
    assert clean_paraphrase("123 !!", "be brief") is None
    assert clean_paraphrase("x " * 100, "be brief") is None  # chatter, not a paraphrase


def test_unit_pools_collect_distinct_units_from_several_sources() -> None:
    prompt = Prompt("Be brief.", demos=(Demo("Is it good? Yes.", "positive"),))
    assert demo_texts(prompt) == ["Is it good? Yes.", "positive"]
    assert unit_pool(["Be brief. Be kind.", *demo_texts(prompt), "Be brief."], "sentence") == (
        "Be brief.", "Be kind.", "Is it good?", "Yes.", "positive")
