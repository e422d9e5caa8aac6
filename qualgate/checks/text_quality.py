"""Text-quality rule checks: Gopher repetition and quality filters, flagged words, personal data (PII).

The repetition and quality heuristics follow Rae et al. 2021 ("Scaling Language Models: Methods, Analysis &
Insights from Training Gopher", MassiveText quality filtering), with the paper's thresholds as defaults.
"""

from __future__ import annotations

import ipaddress
import re
import string
from collections import Counter
from collections.abc import Iterator
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from qualgate.checks.base import Check, Measurement, Params, register
from qualgate.checks.common import CODE_BLOCK, FENCE_LINE, FIELD_DOC, WORD_RE, FieldName, code_line, where
from qualgate.checks.rules import phrase_regex
from qualgate.checks.tasks import transformation_task
from qualgate.findings import Finding
from qualgate.packs import list_param, read_list
from qualgate.sample import Sample

EVIDENCE_CHARS = 80


def _fmt(x: float) -> str:
    return f"{x:.2f}".rstrip("0").rstrip(".") if x == x else "nan"


# ------------------------------------------------------------------------------------------- layout
# Gopher's heuristics were tuned on web prose. Lists (parallel items share their phrasing), numbers and code
# (few letters, few stop words, repeated statements) fail them without being degenerate, so a text whose
# measured layout is mostly one of these is not judged by them, as short texts are not.
_LIST_LINE = re.compile(
    r"^[ \t]*(?:[-*+•▪◦–]|\(?\d{1,3}[.):]|\(?[A-Za-z][.)]|\(?[ivxIVX]{1,4}[.)]|\|)[ \t]*\S"  # bullet, item, row
    r"|[^|\w\n]*\w[^|\n]*\|[^|\w\n]*\w"                                                # "cell | cell"
    r"|^[ \t]*[^\W\d_][^:.!?\n]{0,40}:[ \t]+\S"  # "Label: value", "Day 1: ...", "Person 2: ..."
    r"|^[ \t]*\w[^-–—:.!?\n]{0,40}[ \t][-–—]{1,2}[ \t]+\S")  # "Nile - River", "1564 - Born in Pisa"
_CHORUS = re.compile(r"(?im)^[ \t]*[\[(*]*(?:chorus|refrain|hook|pre-chorus)\b[^\n]{0,20}$")
_MATH = frozenset("+-=*/×÷±√^<>≤≥≈−")


#: a line of at most this many words, in a text of at least SHORT_LINES lines, is an item (or a verse line)
SHORT_LINE_WORDS, SHORT_LINES = 8, 4


def _comma_list(line: str) -> bool:
    """A line of short comma-separated items ("baby, shower, joy, love, ...")."""
    if line.count(",") < 4:  # five items need four commas (the common case, decided without splitting)
        return False
    items = [i for i in line.split(",") if i.strip()]
    return len(items) >= 5 and sum(len(i.split()) for i in items) / len(items) <= 3


#: whitespace-separated tokens without an ASCII letter: the only ones that can lack a letter altogether, so the
#: per-character tests below run on these few instead of on every word
_NO_ASCII_LETTER = re.compile(r"(?<!\S)[^\sA-Za-z]+(?!\S)")


def _numeric_token(t: str) -> bool:
    return not any(c.isalpha() for c in t) and (any(c.isdigit() for c in t) or t.strip("()[]") in _MATH)


def letterless_tokens(text: str) -> int:
    """How many of ``text.split()`` contain no alphabetic character (``str.isalpha``)."""
    return sum(1 for t in _NO_ASCII_LETTER.findall(text) if not any(c.isalpha() for c in t))


#: layout_shares of recent texts: the repetition and quality checks measure the same parts of a sample, one
#: check after the other over a batch, so a batch's worth (and more) is kept. Only texts up to
#: _LAYOUT_CACHE_CHARS are kept (the keys are the texts: 8,192 records near the 16 MiB limit must not stay alive)
_LAYOUT_CACHE: dict[str, dict[str, float]] = {}
_LAYOUT_CACHE_SIZE = 8192
_LAYOUT_CACHE_CHARS = 20_000


def layout_shares(text: str) -> dict[str, float]:
    """Share of words in list-like lines (bullets, numbered or lettered items, table rows, "Label: value" and
    "Term - value" lines, short comma-separated items, short lines one after another), share of whitespace
    tokens that are numbers or math (no letter; a digit, or an operator such as '+' or '='), and share of
    non-blank lines that look like code (fenced lines, statements, pseudocode, braces, assignments, calls)."""
    if len(text) > _LAYOUT_CACHE_CHARS:
        return _layout_shares(text)
    cached = _LAYOUT_CACHE.get(text)
    if cached is None:
        if len(_LAYOUT_CACHE) >= _LAYOUT_CACHE_SIZE:
            _LAYOUT_CACHE.clear()
        cached = _LAYOUT_CACHE[text] = _layout_shares(text)
    return dict(cached)


def _layout_shares(text: str) -> dict[str, float]:
    lines = [line for line in text.split("\n") if line.strip()]
    words = list_words = code = 0
    fenced = False
    short_lines_are_items = len(lines) >= SHORT_LINES
    for line in lines:
        n = len(line.split())
        words += n
        if FENCE_LINE.match(line):
            fenced = not fenced
            code += 1
            continue
        if fenced:
            code += 1
        elif _LIST_LINE.match(line) or _comma_list(line):  # an item ending in ';' is still an item
            list_words += n
        elif code_line(line):
            code += 1
        elif short_lines_are_items and n <= SHORT_LINE_WORDS:  # "Paris is a city." one per line, verse
            list_words += n
    n_tokens = len(text.split())
    numeric = sum(1 for t in _NO_ASCII_LETTER.findall(text) if _numeric_token(t))
    return {"list": list_words / words if words else 0.0,
            "numeric": numeric / n_tokens if n_tokens else 0.0,
            "code": code / len(lines) if lines else 0.0}


def structured_layout(shares: dict[str, float], limits: dict[str, float | None]) -> str | None:
    """The first layout whose share reaches its limit (None: prose, or every limit unset)."""
    for kind in ("code", "numeric", "list"):
        limit = limits.get(kind)
        if limit is not None and shares[kind] >= limit:
            return kind
    return None


LIST_DOC = ("texts whose words are at least this share in list-like lines (bullets, numbered items, table "
            "rows, 'Label: value' lines, comma-separated items, runs of short lines) are not judged by {what}; "
            "unset = always judged")
NUMERIC_DOC = ("texts whose whitespace tokens are at least this share numbers or math (no letter; a digit or an "
               "operator: '42', '$2.50', '(33%)', '+', '=') are not judged by {what}; unset = always judged")
CODE_DOC = ("texts whose non-blank lines are at least this share code-like (fenced, statements, braces, "
            "assignments, calls) are not judged by {what}; unset = always judged")


# ----------------------------------------------------------------------------------------- repetition
_ALNUM = re.compile(r"[^\W_]")
_PARAGRAPH_BREAK = re.compile(r"\n[ \t\r\f\v]*\n")
TOP_NS = (2, 3, 4)
DUP_NS = (5, 6, 7, 8, 9, 10)


def _units(parts: list[str], skip_symbol_only: bool) -> list[str]:
    """Lines or paragraphs, whitespace-normalised, blank ones dropped (and symbol-only ones, if asked)."""
    units = [" ".join(p.split()) for p in parts]
    return [u for u in units if u and (not skip_symbol_only or _ALNUM.search(u))]


def lower_words(text: str) -> list[str]:
    """The words of ``text`` (``WORD_RE``), lower-cased."""
    if text.isascii():  # lower-casing ASCII changes no word boundary: one call for the whole text
        return WORD_RE.findall(text.lower())
    return [w.lower() for w in WORD_RE.findall(text)]


def _duplicates(units: list[str]) -> tuple[float, float, str | None]:
    """Share of units that repeat an earlier one, share of characters in those repeats, the most repeated unit."""
    if not units:
        return 0.0, 0.0, None
    seen: set[str] = set()
    dup = dup_chars = 0
    for u in units:
        if u in seen:
            dup += 1
            dup_chars += len(u)
        else:
            seen.add(u)
    top, count = Counter(units).most_common(1)[0]
    total = sum(map(len, units))
    return dup / len(units), dup_chars / total, top if count > 1 else None


def _ngrams(words: list[str], n: int) -> list[tuple[str, ...]]:
    return list(zip(*(words[i:] for i in range(n)), strict=False))  # the shorter tails end it


def _top_ngram(words: list[str], n: int, total_chars: int) -> tuple[float, str | None]:
    """Share of word characters in all occurrences of the most frequent n-gram (0 when none repeats)."""
    grams = _ngrams(words, n)
    if not grams:
        return 0.0, None
    gram, count = Counter(grams).most_common(1)[0]
    if count < 2:
        return 0.0, None
    return min(1.0, sum(map(len, gram)) * count / total_chars), " ".join(gram)


def _duplicated_ngrams(words: list[str], n: int, total_chars: int) -> tuple[float, str | None]:
    """Share of word characters covered by n-grams that occur more than once (overlaps counted once)."""
    grams = _ngrams(words, n)
    if not grams:
        return 0.0, None
    counts = Counter(grams)
    chars = covered_until = 0
    for i, gram in enumerate(grams):
        if counts[gram] > 1:
            for j in range(max(i, covered_until), i + n):
                chars += len(words[j])
            covered_until = i + n
    gram, count = counts.most_common(1)[0]
    return chars / total_chars, " ".join(gram) if count > 1 else None


def _check_limits(v: dict[int, float], allowed: tuple[int, ...]) -> dict[int, float]:
    for n, limit in v.items():
        if n not in allowed:
            raise ValueError(f"n must be one of {list(allowed)}, not {n}")
        if not 0 <= limit <= 1:
            raise ValueError(f"limit for n={n} must be between 0 and 1, not {limit}")
    return v


PROMPT_FIELDS = ("instruction", "input", "context", "prompt", "question", "system")
_EVIDENCE_KEY = {"dup_line_frac": "line", "dup_line_char_frac": "line", "dup_para_frac": "paragraph",
                 "dup_para_char_frac": "paragraph"}


def view_parts(sample: Sample, text: str, field: str | None, prompt_fields: list[str]) -> list[tuple[str, str]]:
    """The text view cut into the prompt fields found in it (in view order) and the rest ('answer'); the whole
    text as one part ('text') when a field is read or no prompt field is found."""
    if field is not None or sample.record is None or not prompt_fields:
        return [("text", text)]
    spans: list[tuple[int, int, str]] = []
    for key in dict.fromkeys(sample.key(f) for f in prompt_fields):  # a role reads the field it maps to
        value = sample.record.get(key)
        if not isinstance(value, str) or not value.strip():
            continue
        start = text.find(value)
        while start >= 0 and any(start < e and s < start + len(value) for s, e, _ in spans):
            start = text.find(value, start + 1)
        if start >= 0:
            spans.append((start, start + len(value), key))
    if not spans:
        return [("text", text)]
    spans.sort()
    rest, pos = [], 0
    for start, end, _ in spans:
        rest.append(text[pos:start])
        pos = end
    rest.append(text[pos:])
    answer = "\n".join(r.strip("\n") for r in rest if r.strip())
    return [(key, text[s:e]) for s, e, key in spans] + [("answer", answer)]


PROMPT_FIELDS_DOC = ("when the check reads the text view (no field): record fields whose text, where it appears "
                     "in the view, is measured apart from the rest{why}; [] = the view as one text")


class RepetitionParams(Params):
    field: FieldName = Field(None, description=FIELD_DOC)
    max_dup_line_frac: float | None = Field(0.30, ge=0, le=1,
                                            description="most share of lines that repeat an earlier line")
    max_dup_line_char_frac: float | None = Field(0.20, ge=0, le=1,
                                                 description="most share of characters in repeated lines")
    max_dup_para_frac: float | None = Field(0.30, ge=0, le=1,
                                            description="most share of paragraphs that repeat an earlier one")
    max_dup_para_char_frac: float | None = Field(0.20, ge=0, le=1,
                                                 description="most share of characters in repeated paragraphs")
    max_top_ngram_frac: dict[int, float] = Field(
        default_factory=lambda: {2: 0.20, 3: 0.18, 4: 0.16},
        description="n (2-4): most share of word characters in the most frequent word n-gram; n not listed "
                    "is not checked")
    max_dup_ngram_frac: dict[int, float] = Field(
        default_factory=lambda: {5: 0.15, 6: 0.14, 7: 0.13, 8: 0.12, 9: 0.11, 10: 0.10},
        description="n (5-10): most share of word characters in word n-grams that occur more than once; "
                    "n not listed is not checked")
    min_words: int = Field(100, ge=1, description="n-gram measures apply only to texts with at least this many "
                                                 "words (short answers are never judged by them)")
    skip_symbol_lines: bool = Field(True, description="ignore lines and paragraphs without a letter or digit "
                                                      "(closing braces, '---' rules) when counting repeats")
    max_list_share: float | None = Field(0.5, ge=0, le=1, description=LIST_DOC.format(what="the n-gram measures"))
    max_numeric_share: float | None = Field(0.2, ge=0, le=1,
                                            description=NUMERIC_DOC.format(what="the n-gram measures"))
    max_code_share: float | None = Field(0.5, ge=0, le=1, description=CODE_DOC.format(what="any measure "
                                         "(code repeats statements such as 'return a' or 'break;')"))
    prompt_fields: list[str] = Field(
        default_factory=lambda: list(PROMPT_FIELDS),
        description=PROMPT_FIELDS_DOC.format(why=", so an answer that quotes, restates or edits its prompt is "
                                                 "not counted as repeating itself"))
    skip_lyrics: bool = Field(True, description="do not judge songs with a labelled chorus or refrain (a line "
                                                "'Chorus:', '[Refrain]'): they repeat it by design")
    instruction_field: str | None = Field(
        "instruction", description="record field (or role, see input.fields) holding the request: a "
                                   "transformation task there ('repeat the input 5 times', 'sort these items') is "
                                   "not judged, its answer may repeat by design; a record without the field has no "
                                   "task; unset = never")

    @field_validator("max_top_ngram_frac")
    @classmethod
    def _top(cls, v: dict[int, float]) -> dict[int, float]:
        return _check_limits(v, TOP_NS)

    @field_validator("max_dup_ngram_frac")
    @classmethod
    def _dup(cls, v: dict[int, float]) -> dict[int, float]:
        return _check_limits(v, DUP_NS)


@register
class Repetition(Check[RepetitionParams]):
    """Text repeats itself: duplicate lines or paragraphs, or dominant word n-grams (Gopher thresholds).

    Not judged: n-grams of short, list-like or numeric texts; code; songs with a chorus; transformation tasks.
    In a composed view (instruction + input + answer) each part is measured alone: an answer restating its
    question is not a loop.
    """

    kind = "repetition"
    decision_params = frozenset({"max_dup_line_frac", "max_dup_line_char_frac", "max_dup_para_frac",
                                 "max_dup_para_char_frac", "max_top_ngram_frac", "max_dup_ngram_frac"})
    params_model = RepetitionParams
    score_names = ("dup_line_frac", "dup_line_char_frac", "dup_para_frac", "dup_para_char_frac",
                   *(f"top_{n}gram_frac" for n in TOP_NS), *(f"dup_{n}gram_frac" for n in DUP_NS))
    cost = 4

    def score(self, sample: Sample) -> Measurement:
        p = self.params
        text = sample.view(p.field)
        task = None
        if p.instruction_field is not None and sample.record is not None:
            request = sample.record.get(sample.key(p.instruction_field))
            task = transformation_task(request) if isinstance(request, str) else None
        if task is not None:
            return Measurement(dict.fromkeys(self.score_names), {"skipped": {"text": "transformation_task"},
                                                                 "task": task[:EVIDENCE_CHARS]})
        parts = view_parts(sample, text, p.field, p.prompt_fields)
        values: dict[str, float | None] = dict.fromkeys(self.score_names)
        evidence: dict[str, Any] = {"words": 0}
        skipped: dict[str, str] = {}
        for part, part_text in parts:
            v, ev, skip = self._measure(part_text)
            evidence["words"] += ev.pop("words")
            if skip is not None:
                skipped[part] = skip
            for name, value in v.items():  # the worst part decides, and gives the evidence
                old = values[name]
                if value is not None and (old is None or value > old):
                    values[name] = value
                    key = _EVIDENCE_KEY.get(name) or f"ngram_{name.split('_')[1][:-4]}"
                    if key in ev:
                        evidence[key] = ev[key]
        if len(parts) > 1:
            evidence["parts"] = [part for part, _ in parts]
        if skipped:
            evidence["skipped"] = skipped
        return Measurement(values, evidence)

    def _measure(self, text: str) -> tuple[dict[str, float | None], dict[str, Any], str | None]:
        """Scores of one text, their evidence, and why the n-gram measures (or all, for code) were skipped."""
        p = self.params
        values: dict[str, float | None] = dict.fromkeys(self.score_names)
        evidence: dict[str, Any] = {}
        words = lower_words(text)
        total_chars = sum(map(len, words))
        evidence["words"] = len(words)
        skip = None if len(words) >= p.min_words and total_chars > 0 else "too_short"
        if p.skip_lyrics and _CHORUS.search(text):
            return values, evidence, "lyrics"
        if text.strip():
            shares = layout_shares(text)
            layout = structured_layout(shares, {"list": p.max_list_share, "numeric": p.max_numeric_share,
                                                "code": p.max_code_share})
            skip = layout or skip
            if layout == "code":
                return values, evidence, skip
        for unit, parts in (("line", text.split("\n")), ("para", _PARAGRAPH_BREAK.split(text))):
            frac, char_frac, top = _duplicates(_units(parts, p.skip_symbol_lines))
            values[f"dup_{unit}_frac"] = round(frac, 6)
            values[f"dup_{unit}_char_frac"] = round(char_frac, 6)
            if top is not None:
                evidence["line" if unit == "line" else "paragraph"] = top[:EVIDENCE_CHARS]
        if skip is not None:
            return values, evidence, skip
        for n in (*TOP_NS, *DUP_NS):
            name = f"top_{n}gram_frac" if n in TOP_NS else f"dup_{n}gram_frac"
            frac, gram = (_top_ngram if n in TOP_NS else _duplicated_ngrams)(words, n, total_chars)
            values[name] = round(frac, 6)
            if gram is not None:
                evidence[f"ngram_{n}"] = gram[:EVIDENCE_CHARS]
        return values, evidence, None

    def decide(self, m: Measurement) -> list[Finding]:
        p, place = self.params, where(self.params.field)
        # reason, [(score name, limit, n, what the value measures)], evidence key
        families: list[tuple[str, list[tuple[str, float | None, int | None, str]], str]] = [
            ("duplicate_lines", [("dup_line_frac", p.max_dup_line_frac, None, "of lines are repeats"),
                                 ("dup_line_char_frac", p.max_dup_line_char_frac, None,
                                  "of characters are in repeated lines")], "line"),
            ("duplicate_paragraphs", [("dup_para_frac", p.max_dup_para_frac, None, "of paragraphs are repeats"),
                                      ("dup_para_char_frac", p.max_dup_para_char_frac, None,
                                       "of characters are in repeated paragraphs")], "paragraph"),
            ("top_ngram", [(f"top_{n}gram_frac", p.max_top_ngram_frac.get(n), n,
                            f"of word characters are in the most frequent {n}-gram") for n in TOP_NS], "ngram"),
            ("duplicated_ngrams", [(f"dup_{n}gram_frac", p.max_dup_ngram_frac.get(n), n,
                                    f"of word characters are in repeated {n}-grams") for n in DUP_NS], "ngram"),
        ]
        out = []
        for reason, measures, key in families:
            hits = []
            for name, limit, n, what in measures:
                value = m.values.get(name)
                if limit is not None and value is not None and value > limit:
                    hits.append((name, value, limit, n, what))
            if not hits:
                continue
            name, value, limit, n, _ = hits[0]
            exceeded = [{"measure": h[0], "n": h[3], "value": h[1], "limit": h[2]} for h in hits]
            if key == "ngram":
                example = m.evidence.get(f"ngram_{n}")
                parts = [f"{h[3]}-gram {_fmt(h[1])} (limit {_fmt(h[2])})" for h in hits]
                label = "the most frequent n-gram" if reason == "top_ngram" else "repeated n-grams"
                message = f"{place} has too many word characters in {label}: {', '.join(parts)}"
                evidence: dict[str, Any] = {"ngram": example, "exceeded": exceeded}
            else:
                example = m.evidence.get(key)
                parts = [f"{_fmt(h[1])} {h[4]} (limit {_fmt(h[2])})" for h in hits]
                message = f"{place} repeats {key}s: {'; '.join(parts)}"
                evidence = {key: example, "exceeded": exceeded}
            if example is not None:
                message += f"; e.g. {example!r}"
            out.append(self.finding(reason, value, limit, message, **evidence))
        return out


# --------------------------------------------------------------------------------- quality heuristics
STOP_WORDS = ["the", "be", "to", "of", "and", "that", "have", "with"]
_PUNCT = string.punctuation + "“”‘’«»…–—"
_MARKDOWN_MARKER = re.compile(r"(?m)^[ \t]*(?:#{1,6}|[-*+•]|\d{1,3}[.)])(?=[ \t])")


class QualityHeuristicsParams(Params):
    field: FieldName = Field(None, description=FIELD_DOC)
    min_words: int = Field(50, ge=1, description="texts with fewer whitespace-separated words are not judged "
                                                 "(short answers such as 'Positive' or '4' are legitimate)")
    max_symbol_ratio: float | None = Field(0.1, ge=0, description="most '#' per word, and most ellipses "
                                                                 "('...' or '…') per word")
    min_mean_word_length: float | None = Field(3, ge=0, description="least mean word length in characters")
    max_mean_word_length: float | None = Field(10, ge=0, description="most mean word length in characters")
    min_alphabetic_share: float | None = Field(0.8, ge=0, le=1,
                                               description="least share of words with an alphabetic character")
    stop_words: list[str] = Field(default_factory=lambda: list(STOP_WORDS),
                                  description="common words a natural text contains")
    min_stop_words: int = Field(2, ge=0, description="fewest distinct stop words the text must contain")
    strip_markdown: bool = Field(True, description="drop markdown heading, bullet and numbered-list markers at "
                                                   "line starts before measuring")
    skip_code_blocks: bool = Field(True, description="drop fenced ``` code blocks before measuring")
    max_list_share: float | None = Field(0.5, ge=0, le=1, description=LIST_DOC.format(what="this check"))
    max_numeric_share: float | None = Field(0.2, ge=0, le=1, description=NUMERIC_DOC.format(what="this check"))
    max_code_share: float | None = Field(0.3, ge=0, le=1, description=CODE_DOC.format(what="this check"))
    prompt_fields: list[str] = Field(
        default_factory=lambda: list(PROMPT_FIELDS),
        description=PROMPT_FIELDS_DOC.format(why=": a list-like, numeric or code part (a table given as input) "
                                                 "is left out, the prose parts are measured"))

    @model_validator(mode="after")
    def _bounds(self) -> QualityHeuristicsParams:
        lo, hi = self.min_mean_word_length, self.max_mean_word_length
        if lo is not None and hi is not None and lo > hi:
            raise ValueError(f"min_mean_word_length ({lo}) is greater than max_mean_word_length ({hi})")
        return self


@register
class QualityHeuristics(Check[QualityHeuristicsParams]):
    """Long prose fails Gopher's quality filters: symbols per word, mean word length, alphabetic words, stop
    words. List-like, numeric and code texts are not judged (they fail these filters by their nature)."""

    kind = "quality_heuristics"
    decision_params = frozenset({"min_words", "min_stop_words", "max_symbol_ratio", "min_mean_word_length",
                                 "max_mean_word_length", "min_alphabetic_share"})
    params_model = QualityHeuristicsParams
    score_names = ("words", "hash_ratio", "ellipsis_ratio", "mean_word_length", "alphabetic_share", "stop_words")
    cost = 2

    def __init__(self, name: str, params: QualityHeuristicsParams) -> None:
        super().__init__(name, params)
        self._stop = {w.lower() for w in params.stop_words}

    def score(self, sample: Sample) -> Measurement:
        p = self.params
        whole = sample.view(p.field)
        limits = {"list": p.max_list_share, "numeric": p.max_numeric_share, "code": p.max_code_share}
        prose, skipped = [], {}
        for part, part_text in view_parts(sample, whole, p.field, p.prompt_fields):
            layout = structured_layout(layout_shares(part_text), limits) if part_text.strip() else None
            if layout is None:
                prose.append(part_text)
            else:
                skipped[part] = layout
        evidence: dict[str, Any] = {"skipped": skipped} if skipped else {}
        if not prose:
            return Measurement({**dict.fromkeys(self.score_names), "words": float(len(whole.split()))}, evidence)
        text = "\n".join(prose)
        if p.skip_code_blocks:
            text = CODE_BLOCK.sub(" ", text)
        if p.strip_markdown:
            text = _MARKDOWN_MARKER.sub(" ", text)
        tokens = text.split()
        n = len(tokens)
        cores = [c for t in tokens if (c := t.strip(_PUNCT))]

        def ratio(x: float, of: int) -> float | None:
            return round(x / of, 6) if of else None

        values: dict[str, float | None] = {
            "words": float(n),
            "hash_ratio": ratio(text.count("#"), n),
            "ellipsis_ratio": ratio(text.count("...") + text.count("…"), n),
            "mean_word_length": ratio(sum(map(len, cores)), len(cores)),
            "alphabetic_share": ratio(n - letterless_tokens(text), n),
            "stop_words": float(len({c.lower() for c in cores} & self._stop)),
        }
        return Measurement(values, evidence)

    def score_limits(self) -> dict[str, list[float]]:
        out = super().score_limits()
        if self.params.max_symbol_ratio is not None:
            out["hash_ratio"] = out["ellipsis_ratio"] = [self.params.max_symbol_ratio]
        return out

    def decide(self, m: Measurement) -> list[Finding]:
        p, v, place = self.params, m.values, where(self.params.field)
        if (v["words"] or 0) < p.min_words:
            return []
        out = []
        hashes, ellipses = v["hash_ratio"], v["ellipsis_ratio"]
        if p.max_symbol_ratio is not None and hashes is not None and ellipses is not None:
            worst = max(hashes, ellipses)
            if worst > p.max_symbol_ratio:
                out.append(self.finding(
                    "symbol_ratio", worst, p.max_symbol_ratio,
                    f"{place} has {_fmt(hashes)} '#' and {_fmt(ellipses)} ellipses per word "
                    f"(limit {_fmt(p.max_symbol_ratio)})", hash_ratio=hashes, ellipsis_ratio=ellipses))
        length = v["mean_word_length"]
        if length is not None:
            lo, hi = p.min_mean_word_length, p.max_mean_word_length
            bound = lo if lo is not None and length < lo else hi if hi is not None and length > hi else None
            if bound is not None:
                side = "below the minimum" if bound == lo and length < bound else "above the maximum"
                out.append(self.finding("mean_word_length", length, bound,
                                        f"{place} has mean word length {_fmt(length)}, {side} {_fmt(bound)}",
                                        mean_word_length=length))
        alpha = v["alphabetic_share"]
        if p.min_alphabetic_share is not None and alpha is not None and alpha < p.min_alphabetic_share:
            out.append(self.finding("alphabetic_share", alpha, p.min_alphabetic_share,
                                    f"only {_fmt(alpha)} of the words in {place} contain a letter "
                                    f"(minimum {_fmt(p.min_alphabetic_share)})", alphabetic_share=alpha))
        stops = v["stop_words"]
        if stops is not None and stops < p.min_stop_words:
            out.append(self.finding("missing_stop_words", stops, p.min_stop_words,
                                    f"{place} contains {int(stops)} of the stop words "
                                    f"({', '.join(p.stop_words)}), fewer than {p.min_stop_words}",
                                    stop_words=stops))
        return out


# ------------------------------------------------------------------------------------- flagged words
class FlaggedWordsParams(Params):
    field: FieldName = Field(None, description=FIELD_DOC)
    words: list[str] = Field(default_factory=list, description="words or phrases to flag (whole words, any case)")
    words_file: str | None = Field(None, description="word list: a path, or a list shipped in rules/ (e.g. the "
                                                     "example flagged_words.txt)")
    max_count: int | None = Field(0, ge=0, description="most flagged words allowed; unset = no count limit")
    max_share: float | None = Field(None, ge=0, le=1, description="most share of words that are flagged")

    @field_validator("words_file")
    @classmethod
    def _exists(cls, v: str | None) -> str | None:
        return None if v is None else list_param(v)

    @model_validator(mode="after")
    def _some(self) -> FlaggedWordsParams:
        if not [w for w in self.words if w.strip()] and self.words_file is None:
            raise ValueError("set words, words_file or both")
        if self.max_count is None and self.max_share is None:
            raise ValueError("set max_count, max_share or both")
        return self


@register
class FlaggedWords(Check[FlaggedWordsParams]):
    """Text contains words from a flagged-word list (whole words, case-insensitive)."""

    kind = "flagged_words"
    decision_params = frozenset({"max_count", "max_share"})
    params_model = FlaggedWordsParams
    score_names = ("count", "share")
    cost = 3

    def __init__(self, name: str, params: FlaggedWordsParams) -> None:
        super().__init__(name, params)
        words = [w for w in params.words if w.strip()]
        if params.words_file is not None:
            words += read_list(params.words_file)
        self._rx = phrase_regex(words)

    def score(self, sample: Sample) -> Measurement:
        text = sample.view(self.params.field)
        hits = [{"word": m.group(0), "start": m.start(), "end": m.end()} for m in self._rx.finditer(text)]
        n_words = len(text.split())
        share = len(hits) / n_words if n_words else 0.0
        return Measurement({"count": float(len(hits)), "share": round(share, 6)}, {"matches": hits[:50]})

    def decide(self, m: Measurement) -> list[Finding]:
        p = self.params
        count, share = m.values["count"] or 0.0, m.values["share"] or 0.0
        if p.max_count is not None and count > p.max_count:
            score, limit, what = count, float(p.max_count), f"{int(count)} flagged word(s), more than {p.max_count}"
        elif p.max_share is not None and share > p.max_share:
            score, limit, what = share, p.max_share, f"{_fmt(share)} flagged words, more than {_fmt(p.max_share)}"
        else:
            return []
        matches = m.evidence.get("matches", [])
        words = list(dict.fromkeys(str(x["word"]).lower() for x in matches))
        return [self.finding("flagged_word", score, limit,
                             f"{where(p.field)} contains {what}: {', '.join(repr(w) for w in words[:10])}",
                             words=words, matches=matches)]


# ---------------------------------------------------------------------------------------------- PII
PiiKind = Literal["email", "phone", "credit_card", "iban", "ssn", "ipv4", "ipv6"]
PII_KINDS: tuple[PiiKind, ...] = ("email", "phone", "credit_card", "iban", "ssn", "ipv4", "ipv6")

_EMAIL = re.compile(r"(?<![\w.%+-])[A-Za-z0-9][A-Za-z0-9._%+-]*@"
                    r"(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,24}(?![\w-])")
_IBAN = re.compile(r"(?<![A-Za-z0-9])[A-Z]{2}\d{2}(?: ?[A-Z0-9]){11,30}(?![A-Za-z0-9])")
_CARD = re.compile(r"(?<![\w+-])[2-6]\d{3}(?:[ -]?\d){9,15}(?![\w-]|[.,]\d)")
_SSN = re.compile(r"(?<![\w-])(?!000|666|9\d\d)\d{3}-(?!00)\d{2}-(?!0000)\d{4}(?![\w-])")
_OCTET = r"(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)"
_IPV4 = re.compile(rf"(?<![\w.]){_OCTET}(?:\.{_OCTET}){{3}}(?!\w|\.\d)")
_IPV6 = re.compile(r"(?<![\w:.])(?=[0-9A-Fa-f.]*:[0-9A-Fa-f.]*:)[0-9A-Fa-f:.]{3,45}(?![\w:])")
_END = r"(?![\w-]|[.,]\d)"
# the groups are matched atomically (a lookahead, then a backreference: no backtracking into them), so a
# long digit run has one way to be split, not exponentially many
_PHONE_INTL = re.compile(r"(?<![\w+])\+[1-9]\d{0,2}(?=(?P<groups>(?:[ .\-\u00a0]?\(?\d{1,5}\)?){1,6}))(?P=groups)"
                         + _END)
_PHONE_US = re.compile(r"(?<![\w+.-])(?:1[ .-])?(?:\([2-9]\d{2}\) ?|[2-9]\d{2}[ .-])[2-9]\d{2}[ .-]\d{4}" + _END)
_PHONE_NATIONAL = re.compile(r"(?<![\w+.,-])0[1-9]\d{0,3}(?:[ .-]?\d{2,4}){2,4}" + _END)


def _digits(s: str) -> str:
    return "".join(ch for ch in s if ch.isdigit())


def luhn_ok(digits: str) -> bool:
    """Luhn checksum of a string of digits (credit-card numbers)."""
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch) * (2 if i % 2 else 1)
        total += d - 9 if d > 9 else d
    return total % 10 == 0


def iban_ok(compact: str) -> bool:
    """ISO 13616 check: country code, two check digits, 11-30 alphanumerics, mod-97 remainder 1."""
    if not 15 <= len(compact) <= 34 or not compact[:2].isalpha() or not compact[2:4].isdigit():
        return False
    rearranged = compact[4:] + compact[:4]
    return int("".join(str(int(ch, 36)) for ch in rearranged)) % 97 == 1


def _ip_ok(candidate: str, version: int, skip_local: bool) -> bool:
    try:
        ip = ipaddress.IPv4Address(candidate) if version == 4 else ipaddress.IPv6Address(candidate)
    except ValueError:
        return False
    return not (skip_local and (ip.is_loopback or ip.is_unspecified))


def _pii_candidates(text: str, skip_local: bool) -> Iterator[tuple[str, int, int, bool]]:
    """(kind, start, end, valid) in order of precedence; invalid IBAN-shaped runs still block other kinds."""
    for m in _EMAIL.finditer(text):
        yield "email", m.start(), m.end(), True
    for m in _IBAN.finditer(text):
        cand = m.group(0)
        ends = [len(cand), *(i for i in range(len(cand) - 1, 3, -1) if cand[i] == " ")]
        end = next((e for e in ends if iban_ok(cand[:e].replace(" ", ""))), None)
        yield "iban", m.start(), m.start() + (end or len(cand)), end is not None
    for m in _CARD.finditer(text):
        yield "credit_card", m.start(), m.end(), luhn_ok(_digits(m.group(0)))
    for m in _SSN.finditer(text):
        yield "ssn", m.start(), m.end(), True
    for m in _IPV6.finditer(text):
        cand = m.group(0).rstrip(".")
        groups = sum(1 for g in cand.split(":") if g) + (1 if "." in cand else 0)
        if groups >= 3 and _ip_ok(cand, 6, skip_local):
            yield "ipv6", m.start(), m.start() + len(cand), True
        elif _ip_ok(cand, 6, False):
            yield "ipv6", m.start(), m.start() + len(cand), False  # loopback or too short: block, don't report
    for m in _IPV4.finditer(text):
        yield "ipv4", m.start(), m.end(), _ip_ok(m.group(0), 4, skip_local)
    for m in _PHONE_INTL.finditer(text):
        yield "phone", m.start(), m.end(), 8 <= len(_digits(m.group(0))) <= 15
    for m in _PHONE_US.finditer(text):
        yield "phone", m.start(), m.end(), True
    for m in _PHONE_NATIONAL.finditer(text):
        cand = m.group(0)
        separators = set(re.findall(r"[ .-]", cand))
        yield "phone", m.start(), m.end(), 9 <= len(_digits(cand)) <= 12 and len(separators) == 1


def find_pii(text: str, skip_local: bool = True) -> list[tuple[str, int, int]]:
    """Personal data in ``text`` as (kind, start, end), sorted by position; earlier kinds win overlaps."""
    taken = bytearray(len(text))  # 1 where an earlier kind already claimed the character (linear, not pairwise)
    found: list[tuple[str, int, int]] = []
    for kind, start, end, valid in _pii_candidates(text, skip_local):
        if taken.find(1, start, end) != -1:
            continue
        if valid or kind == "iban":
            taken[start:end] = b"\x01" * (end - start)
        if valid:
            found.append((kind, start, end))
    return sorted(found, key=lambda x: x[1])


class PiiParams(Params):
    field: FieldName = Field(None, description=FIELD_DOC)
    kinds: list[PiiKind] = Field(default_factory=lambda: list(PII_KINDS), min_length=1,
                                 description="personal data to look for: email, phone, credit_card (Luhn-checked), "
                                             "iban (mod-97 checked), ssn, ipv4, ipv6")
    max_matches: int = Field(0, ge=0, description="most personal data items allowed")
    skip_local_ips: bool = Field(True, description="do not count loopback and unspecified addresses "
                                                   "(127.0.0.1, 0.0.0.0, ::1)")


@register
class Pii(Check[PiiParams]):
    """Text contains personal data: e-mail, phone, credit card, IBAN, US SSN, IP address (findings give spans only)."""

    kind = "pii"
    decision_params = frozenset({"max_matches"})
    params_model = PiiParams
    score_names = ("matches", *PII_KINDS)
    cost = 4

    def score(self, sample: Sample) -> Measurement:
        found = find_pii(sample.view(self.params.field), self.params.skip_local_ips)
        counts = Counter(kind for kind, _, _ in found)
        values: dict[str, float | None] = {"matches": float(sum(counts[k] for k in set(self.params.kinds)))}
        values.update({k: float(counts[k]) for k in PII_KINDS})
        return Measurement(values, {"matches": [{"kind": k, "start": s, "end": e} for k, s, e in found[:100]]})

    def decide(self, m: Measurement) -> list[Finding]:
        p = self.params
        kinds = list(dict.fromkeys(p.kinds))
        n = sum(m.values.get(k) or 0.0 for k in kinds)
        if n <= p.max_matches:
            return []
        matches = [x for x in m.evidence.get("matches", []) if x["kind"] in kinds]
        listed = ", ".join(f"{x['kind']} at {x['start']}-{x['end']}" for x in matches[:10])
        if n > 10:
            listed += f" and {int(n) - 10} more"
        counts = {k: int(m.values.get(k) or 0) for k in kinds if m.values.get(k)}
        return [self.finding("pii", n, p.max_matches,
                             f"{where(p.field)} contains {int(n)} personal data item{'' if n == 1 else 's'}: "
                             f"{listed}", matches=matches, counts=counts)]
