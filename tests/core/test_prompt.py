from __future__ import annotations

import dataclasses

import pytest

from promptopt import Demo, Prompt


def test_same_content_same_id_and_different_content_different_id() -> None:
    a = Prompt(instruction="Classify.", template="Text: {input}")
    b = Prompt(instruction="Classify.", template="Text: {input}")
    assert a.id == b.id and a == b and hash(a) == hash(b)
    assert a.with_instruction("Classify it.").id != a.id
    assert Prompt(instruction="Classify.", system="Be brief.").id != Prompt(instruction="Classify.").id


def test_prompt_is_immutable_and_round_trips_through_dict() -> None:
    p = Prompt(instruction="Add.", system="Math tutor.", demos=[{"input": "1+1", "output": "2"}],
               template="Q: {input}\nA:")
    with pytest.raises(dataclasses.FrozenInstanceError):
        p.instruction = "x"  # type: ignore[misc]
    assert p.demos == (Demo("1+1", "2"),)
    assert Prompt.from_dict(p.to_dict()) == p


def test_render_places_instruction_demos_and_input_in_order() -> None:
    p = Prompt(instruction="Answer.", demos=(Demo("2+2", "4"),), template="Q: {input}\nA:")
    assert p.render_user("3+3") == "Answer.\n\nQ: 2+2\nA:\n4\n\nQ: 3+3\nA:"


def test_input_with_braces_is_not_formatted() -> None:
    p = Prompt(template="In: {input}")
    assert p.render_user("{x} and {input}") == "In: {x} and {input}"


def test_segments_split_sentences() -> None:
    p = Prompt(instruction="Read the text. Decide the label! Answer with one word.")
    assert p.segments() == ("Read the text.", "Decide the label!", "Answer with one word.")


def test_to_dict_covers_every_field() -> None:
    # to_dict is built by hand for speed; a field added to Prompt later must reach it (and the id).
    p = Prompt(instruction="i", system="s", demos=(Demo("a", "b"),), template="Q: {input}\nA:")
    assert p.to_dict() == dataclasses.asdict(p) | {"demos": [dataclasses.asdict(d) for d in p.demos]}
    assert p.id == Prompt.from_dict(p.to_dict()).id
