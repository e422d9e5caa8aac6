"""Text normalisation shared by training and scoring, and recorded with every model.

A language model's scores are only comparable when the text it scores was cut into tokens exactly as
its training text was. The scheme's name is written into the ARPA header (``# qualgate normalize=v1``)
and into cached models, and a model trained one way refuses to score text normalised another way.
"""

from __future__ import annotations

import functools
import re
import unicodedata
from collections.abc import Callable

#: v1: NFKC, lower case, every digit -> 0, words (with inner apostrophes) and single punctuation marks.
#: "none": split on white space only (for KenLM models trained on text normalised elsewhere).
SCHEMES = ("v1", "none")

#: Subword models read only their first N tokens, yet their tokenizers split the whole text first: a 5.5 MB
#: record cost 4.6 s and 800 MB to tokenise. So a text is cut to ``N * CHARS_PER_TOKEN`` characters before
#: tokenising (and counted in 1 MiB pieces where the count matters). English averages ~4 characters a token:
#: the cut changes nothing unless a text's first tokens average over 64 characters each (long runs of spaces).
CHARS_PER_TOKEN = 64

@functools.cache
def _fill_surrogates(fill: str) -> dict[int, str]:
    return dict.fromkeys(range(0xD800, 0xE000), fill)


def utf8_safe(text: str, fill: str = "\ufffd") -> str:
    """``text`` with each lone surrogate (valid in a Python str, found in real JSON as ``\\ud800``) replaced by
    ``fill``. Libraries that take UTF-8 (RE2, tokenizers, KenLM) raise on one; most texts are returned as they
    are, without a copy."""
    if text.isascii():
        return text
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.translate(_fill_surrogates(fill))
    return text


def model_input(text: str, max_tokens: int) -> str:
    """What a subword model is given of ``text``: the first ``max_tokens * CHARS_PER_TOKEN`` characters, UTF-8
    safe."""
    return utf8_safe(text[:max_tokens * CHARS_PER_TOKEN])

_V1 = re.compile(r"\w+(?:'\w+)*|[^\w\s]")
_DIGIT = re.compile(r"\d")
_QUOTES = str.maketrans({"\u2019": "'", "\u2018": "'", "\u02bc": "'"})


def _v1(text: str) -> list[str]:
    text = unicodedata.normalize("NFKC", text).translate(_QUOTES).lower()
    return _V1.findall(_DIGIT.sub("0", text))


_SPECIAL = {"<s>": "<unk>", "</s>": "<unk>"}  # a literal text-start/end marker must not reset the context


def _none(text: str) -> list[str]:
    return [_SPECIAL.get(t, t) for t in text.split()]


_TOKENIZERS: dict[str, Callable[[str], list[str]]] = {"v1": _v1, "none": _none}


def tokenizer(scheme: str) -> Callable[[str], list[str]]:
    """The function that turns a text into the tokens a model of this scheme scores."""
    try:
        return _TOKENIZERS[scheme]
    except KeyError:
        raise ValueError(f"unknown normalisation {scheme!r}; one of {', '.join(SCHEMES)}") from None
