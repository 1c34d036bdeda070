"""The candidate vocabulary of ``rlprompt`` and how a sequence of its tokens becomes prompt text.

Two sources:

* a **word list** given by the user: a prompt is its words joined by single
  spaces; no tokenizer is involved, so nothing can drift;
* the **target model's vocabulary** (``ctx.tokenizer.vocabulary()``), filtered to
  *whole-word pieces*: a piece is kept when it is a space followed by ASCII
  letters only (``" great"``, ``" the"``; not ``"ing"``, ``" 42"``, ``" it's"``,
  byte fragments), the first id of each text, and only when the tokenizer reads
  the piece's text back as that one id (a piece the tokenizer never produces
  would drift at once). Of those, the ``max_size`` lowest ids are kept: BPE
  vocabularies number their merges in the order they were learnt, so low ids
  are the frequent pieces. A prompt is ``detokenize(ids)``.

**Re-tokenization drift.** The text scored is the detokenized text, and the
target model reads it with its own tokenizer, so ``tokenize(detokenize(ids))``
can differ from ``ids`` (pieces that merge across a boundary). The prompt is
accepted as it is: its reward is the reward of that text, so the policy still
maximises the expected reward of what the model reads (two sequences with one
text simply share a reward). Each drifted sample is returned with both token
lists so the strategy can record it. The filter above keeps drift rare: on
SmolLM2's first 1,000 whole-word pieces, 2,000 random 5-token prompts had none.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from promptopt.exceptions import ConfigError

if TYPE_CHECKING:
    from promptopt.tokenizer import Tokenizer

__all__ = ["CandidateVocabulary", "Written", "parse_words", "whole_word_ids"]


def parse_words(value: Any) -> tuple[str, ...]:
    """A word list from a list of strings or a comma-separated string: stripped, each once, in order.

    Raises:
        ValueError: not a string or a list of strings, or no word in it.
    """
    if isinstance(value, str):
        words = [w.strip() for w in value.split(",")]
    elif isinstance(value, (list, tuple)) and all(isinstance(w, str) for w in value):
        words = [w.strip() for w in value]
    else:
        raise ValueError(f"words must be a list of strings or a comma-separated string; got {value!r}")
    words = [w for w in words if w]
    if not words:
        raise ValueError(f"words must hold at least one non-empty word; got {value!r}")
    return tuple(dict.fromkeys(words))


def whole_word_ids(pieces: Sequence[str]) -> list[int]:
    """Ids of the pieces that are a space followed by ASCII letters only, the first id of each text.

    Example:
        >>> whole_word_ids(["the", " the", " cat", " it's", " 42", " cat", "\\ufffd"])
        [1, 2]
    """
    seen: set[str] = set()
    kept = []
    for token_id, piece in enumerate(pieces):
        word = piece[1:]
        if piece.startswith(" ") and word.isascii() and word.isalpha() and piece not in seen:
            seen.add(piece)
            kept.append(token_id)
    return kept


@dataclass(frozen=True)
class Written:
    """One sampled prompt as text, with the token ids it came from and those the tokenizer reads back
    (both empty for a word list). ``drifted`` when they differ."""

    text: str
    token_ids: tuple[int, ...] = ()
    retokenized: tuple[int, ...] = ()

    @property
    def drifted(self) -> bool:
        return self.token_ids != self.retokenized


@dataclass(frozen=True)
class CandidateVocabulary:
    """What the policy chooses from: each candidate's text, and its token id in the target model's
    vocabulary (``token_ids`` is empty for a user's word list)."""

    pieces: tuple[str, ...]
    token_ids: tuple[int, ...] = ()

    @classmethod
    def from_words(cls, words: Sequence[str]) -> CandidateVocabulary:
        return cls(tuple(words))

    @classmethod
    def from_tokenizer(cls, tokenizer: Tokenizer, max_size: int) -> CandidateVocabulary:
        """The ``max_size`` lowest-id whole-word pieces that the tokenizer reads back as themselves.

        Raises:
            ConfigError: the vocabulary has no such piece (e.g. a byte-level tokenizer).
        """
        pieces = tokenizer.vocabulary()
        candidates = whole_word_ids(pieces)
        read_back = tokenizer.tokenize_many([pieces[i] for i in candidates]) if candidates else []
        kept = [i for i, ids in zip(candidates, read_back, strict=True) if ids == [i]][:max_size]
        if not kept:
            raise ConfigError("the 'words' parameter of RLPrompt is needed with this model: its vocabulary has "
                              "no whole-word piece (a space then letters) to build prompts from; got words=None; "
                              "pass a word list, e.g. words='great,terrible,movie,film,really'")
        return cls(tuple(pieces[i] for i in kept), tuple(kept))

    def write(self, sequences: Sequence[Sequence[int]], tokenizer: Tokenizer | None) -> list[Written]:
        """Each sequence of candidate indices as text (see the module docstring for drift)."""
        if not self.token_ids:
            return [Written(" ".join(self.pieces[i] for i in seq)) for seq in sequences]
        if tokenizer is None:
            raise ValueError("a vocabulary of model tokens needs the tokenizer to write text")
        ids = [tuple(self.token_ids[i] for i in seq) for seq in sequences]
        texts = [tokenizer.detokenize(seq_ids) for seq_ids in ids]
        read_back = tokenizer.tokenize_many(texts)
        return [Written(text, seq_ids, tuple(back)) for text, seq_ids, back in zip(texts, ids, read_back, strict=True)]
