"""Which optimizer replies can be a prompt (``clean_prompt_text``)."""

from __future__ import annotations

import pytest

from promptopt.strategies._parsing import clean_prompt_text


@pytest.mark.parametrize("reply", [
    "Variation 1: Variation 2: Variation 3: Variation 4: Variation 5: Variation 6: Variation 7: Variation 8: "
    "Variation 9: Variation 10: Variation 11:",  # PromptWizard's winner that fell 3.5 points on test
    "Business, Business, Business, Business, Business, Business, Business, Business, Business, Business",
    "The model finds this example hardest hardest hardest hardest hardest hardest hardest hardest hardest",
])
def test_a_looping_reply_is_not_a_prompt(reply: str) -> None:
    assert clean_prompt_text(reply) is None


@pytest.mark.parametrize("reply", [
    # words repeat, as a label list does, but no one word is half of the text
    "Classify the sentence as positive or negative. A positive sentence praises the film; a negative "
    "sentence criticises it. Answer positive or negative.",
    "Sentence: positive. Sentence: negative. Sentence: positive. Sentence: negative. Decide which one.",
    "positive positive negative",  # too short to call a loop
])
def test_repeated_words_short_of_a_loop_are_kept(reply: str) -> None:
    assert clean_prompt_text(reply) == reply
