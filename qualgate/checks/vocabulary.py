"""A small children's vocabulary (TinyStories-style word list, inflections and names allowed) and words a text
must use. Rule-based and per sample.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from functools import lru_cache
from typing import Any

from pydantic import Field, field_validator

from qualgate.checks.base import Check, Measurement, Params, register
from qualgate.checks.common import FieldName, where
from qualgate.findings import Finding
from qualgate.packs import list_param, read_list
from qualgate.sample import FieldProblem, Sample

_WORD = re.compile(r"[A-Za-z]+(?:['’][A-Za-z]+)*")
_SENTENCE_END = set(".!?:;\"“”'‘’«»—–-([")
_NOT = {"ca": "can", "wo": "will", "sha": "shall", "ai": "be"}
_CLITICS = {"s", "re", "ll", "ve", "d", "m"}
IRREGULAR = {
    "went": "go", "gone": "go", "ran": "run", "saw": "see", "seen": "see", "ate": "eat", "eaten": "eat",
    "came": "come", "took": "take", "taken": "take", "gave": "give", "given": "give", "found": "find",
    "made": "make", "said": "say", "had": "have", "has": "have", "got": "get", "felt": "feel", "fell": "fall",
    "fallen": "fall", "flew": "fly", "flown": "fly", "drew": "draw", "sang": "sing", "sung": "sing",
    "swam": "swim", "sat": "sit", "stood": "stand", "told": "tell", "thought": "think", "bought": "buy",
    "brought": "bring", "caught": "catch", "taught": "teach", "knew": "know", "known": "know", "grew": "grow",
    "grown": "grow", "threw": "throw", "thrown": "throw", "wore": "wear", "won": "win", "lost": "lose",
    "left": "leave", "kept": "keep", "slept": "sleep", "woke": "wake", "rode": "ride", "wrote": "write",
    "written": "write", "drove": "drive", "broke": "break", "broken": "break", "began": "begin", "hid": "hide",
    "held": "hold", "heard": "hear", "met": "meet", "built": "build", "sent": "send", "spent": "spend",
    "fed": "feed", "led": "lead", "dug": "dig", "hung": "hang", "blew": "blow", "shook": "shake", "spoke": "speak",
    "stuck": "stick", "swung": "swing", "did": "do", "done": "do", "was": "be", "were": "be", "been": "be",
    "is": "be", "am": "be", "are": "be", "children": "child", "mice": "mouse", "feet": "foot", "teeth": "tooth",
    "men": "man", "women": "woman", "geese": "goose", "people": "person", "better": "good", "best": "good",
    "worse": "bad", "worst": "bad",
}


def _stems(word: str) -> list[str]:
    """Bases a word may be an inflection of (plural, -ed, -ing, -er, -est, -ly), one step."""
    out: list[str] = []
    w = word

    def add(s: str) -> None:
        if len(s) >= 2:
            out.append(s)

    if w in IRREGULAR:
        add(IRREGULAR[w])
    if w.endswith("ies") or w.endswith("ied") or w.endswith("ier"):
        add(w[:-3] + "y")
    if w.endswith("iest"):
        add(w[:-4] + "y")
    if w.endswith("ily"):
        add(w[:-3] + "y")
    if w.endswith("ying"):
        add(w[:-4] + "ie")
    if w.endswith("es"):
        add(w[:-2])
    if w.endswith("s") and not w.endswith("ss"):
        add(w[:-1])
    if w.endswith("ly"):
        add(w[:-2])
        add(w[:-1] + "e")
    for suffix in ("ed", "ing", "er", "est"):
        if w.endswith(suffix) and len(w) > len(suffix) + 1:
            s = w[: -len(suffix)]
            add(s)
            add(s + "e")
            if len(s) >= 3 and s[-1] == s[-2]:
                add(s[:-1])
    return out


def _plain(token: str) -> str:
    """Lowercase, without a contraction or possessive ending: "Lily's" -> "lily", "can't" -> "can"."""
    w = token.lower().replace("’", "'")
    if w.endswith("n't"):
        return _NOT.get(w[:-3], w[:-3])
    head, _, tail = w.rpartition("'")
    return head if head and tail in _CLITICS else w


def _forms(token: str) -> list[str]:
    """The token (lowercase), without its contraction, and what it may be an inflection of, two steps deep."""
    w = token.lower().replace("’", "'")
    out = [w]
    if (plain := _plain(w)) != w:
        out.append(plain)
    for base in list(out):
        for s in _stems(base):
            out.append(s)
            out.extend(_stems(s))
    return out


@lru_cache(maxsize=8)
def _word_set(words_file: str) -> frozenset[str]:
    return frozenset(w.lower().replace("’", "'") for w in read_list(words_file))


def _required(record: Mapping[str, Any], key: str) -> list[str]:
    if key not in record:
        raise FieldProblem("missing_field", key, f"field '{key}' is missing")
    value = record[key]
    if isinstance(value, str):
        items = value.split(",")
    elif isinstance(value, list) and all(isinstance(x, str) for x in value):
        items = value
    else:
        raise FieldProblem("wrong_type", key, f"field '{key}' should be a list of words or a comma-separated string")
    return [s for x in items if (s := " ".join(x.lower().split()))]


class VocabularyParams(Params):
    field: FieldName = Field(None, description="record field to read; unset = the configured text view")
    words_file: str = Field("tinystories_words.txt", description="allowed words: a path, or a list shipped in rules/")
    extra_words: list[str] = Field(default_factory=list, description="more allowed words")
    max_outside_share: float = Field(0.05, ge=0, le=1, description="largest share of words outside the list "
                                     "(inflections -s, -es, -ed, -ing, -er, -est, -ly and 's count as known)")
    allow_names: bool = Field(True, description="words not in the list that are capitalised mid-sentence, or "
                                                "every time they occur (names such as Lily or Tom), count as known")
    required_field: str | None = Field(None, description="record field with words the text must each contain "
                                                         "(a list, or a comma-separated string); unset = none")

    @field_validator("words_file")
    @classmethod
    def _exists(cls, v: str) -> str:
        return list_param(v)


@register
class Vocabulary(Check[VocabularyParams]):
    """Text uses words outside a simple word list (TinyStories-style), or misses a required word."""

    kind = "vocabulary"
    decision_params = frozenset({"max_outside_share"})
    params_model = VocabularyParams
    score_names = ("words", "outside_share", "missing_required")
    cost = 2

    def __init__(self, name: str, params: VocabularyParams) -> None:
        super().__init__(name, params)
        self._words = _word_set(params.words_file) | {w.lower() for w in params.extra_words}

    def _known(self, forms: list[str]) -> bool:
        return any(f in self._words for f in forms)

    def score(self, sample: Sample) -> Measurement:
        text = sample.view(self.params.field)
        tokens = list(_WORD.finditer(text))
        names: set[str] = set()  # capitalised words seen mid-sentence: names, when not in the list
        if self.params.allow_names:
            lower = {_plain(m.group(0)) for m in tokens if not m.group(0)[0].isupper()}
            for m in tokens:
                before = text[max(0, m.start() - 20): m.start()].rstrip()
                word = _plain(m.group(0))
                # a name: capitalised mid-sentence, or capitalised every time it occurs ("Tom was sad.")
                if m.group(0)[0].isupper() and ((before and before[-1] not in _SENTENCE_END) or word not in lower):
                    names.add(word)
        seen: set[str] = set()
        present: set[str] = set()
        unknown: list[str] = []
        outside = 0
        for m in tokens:
            forms = _forms(m.group(0))
            present.update(forms)
            if self._known(forms) or (m.group(0)[0].isupper() and _plain(m.group(0)) in names):
                continue
            outside += 1
            if forms[0] not in seen:
                seen.add(forms[0])
                unknown.append(forms[0])
        share = round(outside / len(tokens), 6) if tokens else None
        evidence: dict[str, Any] = {"unknown": unknown[:20], "share": share, "outside": outside}
        missing_n: float | None = None
        if self.params.required_field is not None:
            required = _required(sample.record or {}, self.params.required_field)
            lowered = " ".join(text.lower().split())
            missing = [r for r in required if (r not in present if " " not in r
                                                 else not re.search(rf"\b{re.escape(r)}\b", lowered))]
            evidence.update(required=required, missing=missing)
            missing_n = float(len(missing))
        return Measurement({"words": float(len(tokens)), "outside_share": share, "missing_required": missing_n},
                           evidence)

    def decide(self, m: Measurement) -> list[Finding]:
        out, place, ev = [], where(self.params.field), m.evidence
        share = m.values["outside_share"]
        if share is not None and share > self.params.max_outside_share:
            out.append(self.finding("outside_vocabulary", share, self.params.max_outside_share,
                                    f"{place}: {share:.0%} of words are outside the word list "
                                    f"(most allowed {self.params.max_outside_share:.0%}), e.g. "
                                    f"{', '.join(ev['unknown'][:5])}",
                                    unknown=ev["unknown"], share=share, outside=ev["outside"]))
        if m.values["missing_required"]:
            missing = ev["missing"]
            out.append(self.finding("missing_required_word", m.values["missing_required"], 0,
                                    f"{place} does not use required word(s): {', '.join(missing)}",
                                    missing=missing, required=ev["required"]))
        return out
