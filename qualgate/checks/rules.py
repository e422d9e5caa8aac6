"""Rule-based validity checks: cheap, per sample, no models beyond langdetect's profiles."""

from __future__ import annotations

import functools
import re
import string
from collections.abc import Iterator, Mapping
from typing import Any, Generic, TypeVar

from pydantic import Field, field_validator, model_validator

from qualgate.checks.base import Check, Measurement, Params, register
from qualgate.checks.common import FENCE_LINE, FIELD_DOC, FieldName, where
from qualgate.findings import Finding
from qualgate.packs import list_param, read_list
from qualgate.regex import compile_pattern, user_patterns
from qualgate.sample import FieldProblem, Sample


def _compile_all(patterns: list[str], ignore_case: bool = False, trusted: bool = False) -> list[Any]:
    """Config patterns run on RE2 (``qualgate.regex``): linear time, so no pattern can hang the gate."""
    return [compile_pattern(p, ignore_case, trusted) for p in patterns]


# --------------------------------------------------------------------------------------------- length
class LengthParams(Params):
    field: FieldName = Field(None, description=FIELD_DOC)
    min_chars: int | None = Field(None, ge=0, description="fewest characters allowed")
    max_chars: int | None = Field(None, ge=1, description="most characters allowed")
    min_words: int | None = Field(None, ge=0, description="fewest whitespace-separated words allowed")
    max_words: int | None = Field(None, ge=1, description="most whitespace-separated words allowed")

    @model_validator(mode="after")
    def _bounds(self) -> LengthParams:
        for lo, hi in (("min_chars", "max_chars"), ("min_words", "max_words")):
            a, b = getattr(self, lo), getattr(self, hi)
            if a is not None and b is not None and a > b:
                raise ValueError(f"{lo} ({a}) is greater than {hi} ({b})")
        if all(getattr(self, k) is None for k in ("min_chars", "max_chars", "min_words", "max_words")):
            raise ValueError("set at least one of min_chars, max_chars, min_words, max_words")
        return self


@register
class Length(Check[LengthParams]):
    """Text (or one field) is too short or too long, in characters or words."""

    kind = "length"
    decision_params = frozenset({"min_chars", "max_chars", "min_words", "max_words"})
    params_model = LengthParams
    score_names = ("chars", "words")
    cost = 1

    def score(self, sample: Sample) -> Measurement:
        text = sample.view(self.params.field)
        return Measurement({"chars": float(len(text)), "words": float(len(text.split()))})

    def decide(self, m: Measurement) -> list[Finding]:
        p, out, place = self.params, [], where(self.params.field)
        for unit, lo, hi in (("chars", p.min_chars, p.max_chars), ("words", p.min_words, p.max_words)):
            v = m.values[unit]
            assert v is not None
            if lo is not None and v < lo:
                out.append(self.finding(f"too_few_{unit}", v, lo,
                                        f"{place} has {int(v)} {unit}, fewer than the minimum {lo}"))
            if hi is not None and v > hi:
                out.append(self.finding(f"too_many_{unit}", v, hi,
                                        f"{place} has {int(v)} {unit}, more than the maximum {hi}"))
        return out


# -------------------------------------------------------------------------------------------- pattern
def _span(match: Any, pattern: str) -> dict[str, Any]:
    return {"pattern": pattern, "match": match.group(0)[:200], "start": match.start(), "end": match.end()}


class PatternParams(Params):
    field: FieldName = Field(None, description=FIELD_DOC)
    forbidden: list[str] = Field(default_factory=list, description="regexes that must not match")
    required: list[str] = Field(default_factory=list, description="regexes that must each match")
    ignore_case: bool = Field(False, description="match case-insensitively")

    _v = field_validator("forbidden", "required")(user_patterns)

    @model_validator(mode="after")
    def _some(self) -> PatternParams:
        if not self.forbidden and not self.required:
            raise ValueError("set at least one regex in forbidden or required")
        return self


@register
class Pattern(Check[PatternParams]):
    """Text matches a forbidden regular expression, or misses a required one."""

    kind = "pattern"
    params_model = PatternParams
    score_names = ("forbidden", "required_missing")
    cost = 2

    def __init__(self, name: str, params: PatternParams) -> None:
        super().__init__(name, params)
        self._forbidden = _compile_all(params.forbidden, params.ignore_case)
        self._required = _compile_all(params.required, params.ignore_case)

    def score(self, sample: Sample) -> Measurement:
        text = sample.view(self.params.field)
        hits = [_span(m, rx.pattern) for rx in self._forbidden if (m := rx.search(text))]
        missing = [rx.pattern for rx in self._required if not rx.search(text)]
        return Measurement({"forbidden": float(len(hits)), "required_missing": float(len(missing))},
                           {"matches": hits, "missing": missing})

    def decide(self, m: Measurement) -> list[Finding]:
        out, place = [], where(self.params.field)
        forbidden, missing = m.values["forbidden"] or 0.0, m.values["required_missing"] or 0.0
        if forbidden > 0:
            first = m.evidence.get("matches", [{}])[0]
            out.append(self.finding("forbidden_pattern", forbidden, 0,
                                    f"{place} matches forbidden pattern {first.get('pattern')!r}: "
                                    f"{first.get('match')!r}", matches=m.evidence.get("matches", [])))
        if missing > 0:
            pats = m.evidence.get("missing", [])
            out.append(self.finding("missing_required_pattern", missing, 0,
                                    f"{place} does not match required pattern(s) {pats}", missing=pats))
        return out


# ------------------------------------------------------------------------------- boilerplate phrases
class PhraseMatch:
    """One phrase found: ``re.Match``'s ``group(0)``, ``start()`` and ``end()``."""

    __slots__ = ("_end", "_start", "_text")

    def __init__(self, text: str, start: int, end: int) -> None:
        self._text, self._start, self._end = text, start, end

    def group(self, index: int = 0) -> str:
        if index:
            raise IndexError("no such group")
        return self._text[self._start:self._end]

    def start(self) -> int:
        return self._start

    def end(self) -> int:
        return self._end


#: ``re.IGNORECASE`` matches an ASCII letter with its other case and with these four characters only (İ ı: i,
#: ſ: s, K Kelvin: k); translated so, a text keeps its length and its word characters
_FOLD = str.maketrans(string.ascii_uppercase + "\u0130\u0131\u017f\u212a", string.ascii_lowercase + "iisk")


class PhraseRegex:
    """Many phrases as whole words, any case (``finditer``, ``search`` like ``re``).

    Python's ``re`` tries every phrase at every position of a text when the pattern ignores case or opens with a
    lookbehind. For ASCII phrases the text is lower-cased instead (``_FOLD`` beyond ASCII: positions unchanged)
    and searched with a case-sensitive pattern without the lookbehind, which ``re`` skips through by the phrases'
    first letters; a match preceded by a word character is passed over, as the lookbehind would. Same matches,
    several times faster, and the case-blind ``pattern`` (which takes twice as long to compile as the other:
    8 ms for refusal.txt) is compiled only for phrases beyond ASCII."""

    def __init__(self, parts: list[str], ascii_only: bool, trie: str | None = None) -> None:
        """``parts``: a regex per phrase, longest phrase first; ``trie``: the same alternation as ``_trie``
        writes it (for the case-sensitive pattern only: ignoring case, two branches can match one letter)."""
        self._body = "|".join(parts)
        lower = trie if trie is not None else self._body
        self._lower = re.compile(r"(?:" + lower + r")(?!\w)") if parts and ascii_only else None

    @functools.cached_property
    def pattern(self) -> re.Pattern[str]:
        return re.compile(r"(?<!\w)(?:" + self._body + r")(?!\w)", re.IGNORECASE)

    def finditer(self, text: str) -> Iterator[re.Match[str] | PhraseMatch]:
        if self._lower is None:
            yield from self.pattern.finditer(text)
            return
        low, pos, search = text.lower() if text.isascii() else text.translate(_FOLD), 0, self._lower.search
        while (m := search(low, pos)) is not None:
            start = m.start()
            if start and _WORD_CHAR.match(low, start - 1):
                pos = start + 1
                continue
            yield PhraseMatch(text, start, m.end())
            pos = m.end()

    def search(self, text: str) -> re.Match[str] | PhraseMatch | None:
        return next(self.finditer(text), None)


_WORD_CHAR = re.compile(r"\w")


def _trie(phrases: list[str]) -> str:
    """The alternation of ``phrases`` (lower case, single-spaced, no "’") with each shared start written once:
    ``as\\s+an(?:\\s+ai(?:\\s+language\\s+model)?|...)``.

    The same matches as the longest-first alternation: the branches of a node match different characters (one
    letter, ``['’]`` or whitespace), so a text position follows one path, and on it a longer phrase is tried
    before one that ends sooner (``(...)?`` tries the group first). Compiles faster (refusal.txt: 3.9 -> 2.0 ms)
    and matches 4-17 times faster (``re`` no longer tries a hundred phrases that start alike one by one)."""
    root: dict[str, Any] = {}
    for phrase in phrases:
        node = root
        for c in phrase:
            node = node.setdefault(c, {})
        node[""] = {}  # a phrase ends here

    def write(node: dict[str, Any]) -> str:
        branches = [(r"\s+" if c == " " else "['’]" if c == "'" else re.escape(c)) + write(child)
                    for c, child in node.items() if c]
        if not branches:
            return ""
        if len(branches) == 1 and "" not in node:
            return branches[0]
        return "(?:" + "|".join(branches) + ")" + ("?" if "" in node else "")

    return write(root)


def phrase_regex(phrases: list[str]) -> PhraseRegex:
    """One case-insensitive regex for many phrases: apostrophes and whitespace matched loosely."""
    parts = []
    unique = sorted({p.lower() for p in phrases}, key=len, reverse=True)
    for phrase in unique:
        words = [re.escape(w).replace("'", "['’]") for w in phrase.split()]
        parts.append(r"\s+".join(words))
    # a non-ASCII letter may match an ASCII one when case is ignored ("ſ" is "s"): such lists keep ``re``'s way
    ascii_only = all(p.replace("’", "").isascii() for p in unique)
    # a phrase with "’" (matched by "['’]" too) or odd spacing, or a very long one (recursion), stays flat
    tree = ascii_only and all(p and p == " ".join(p.split()) and "’" not in p and len(p) <= 300 for p in unique)
    return PhraseRegex(parts, ascii_only, _trie(unique) if tree else None)


class BoilerplateParams(Params):
    field: FieldName = Field(None, description=FIELD_DOC)
    phrases_file: str = Field("boilerplate.txt", description="phrase list: a path, or a list shipped in rules/")
    extra_phrases: list[str] = Field(default_factory=list, description="more phrases to match")
    max_matches: int = Field(0, ge=0, description="most phrase matches allowed")

    @field_validator("phrases_file")
    @classmethod
    def _exists(cls, v: str) -> str:
        return list_param(v)


PP = TypeVar("PP", bound=BoilerplateParams)


class PhraseCheck(Check[PP], Generic[PP]):
    """Counts the phrases of a list (``phrases_file`` + ``extra_phrases``) in a field; subclasses decide."""

    score_names = ("matches",)
    cost = 3
    #: only phrases starting in the first this many characters count (None: anywhere)
    window: int | None = None

    def __init__(self, name: str, params: PP) -> None:
        super().__init__(name, params)
        self._rx = phrase_regex(read_list(params.phrases_file) + list(params.extra_phrases))

    def score(self, sample: Sample) -> Measurement:
        window = self.window
        hits = [{"match": m.group(0), "start": m.start(), "end": m.end()}
                for m in self._rx.finditer(sample.view(self.params.field)) if window is None or m.start() < window]
        return Measurement({"matches": float(len(hits))}, {"matches": hits[:10]})


@register
class Boilerplate(PhraseCheck[BoilerplateParams]):
    """Text contains model boilerplate or refusal phrases ("As an AI language model", "I cannot fulfill")."""

    kind = "boilerplate"
    decision_params = frozenset({"max_matches"})
    params_model = BoilerplateParams

    def decide(self, m: Measurement) -> list[Finding]:
        n = m.values["matches"] or 0.0
        if n <= self.params.max_matches:
            return []
        first = m.evidence.get("matches", [{}])[0].get("match")
        return [self.finding("boilerplate_phrase", n, self.params.max_matches,
                             f"{where(self.params.field)} contains boilerplate phrase {first!r}",
                             matches=m.evidence.get("matches", []))]


# -------------------------------------------------------------------------------------- empty fields
class EmptyFieldParams(Params):
    fields: list[str] = Field(min_length=1, description="fields that must be present and non-blank")


@register
class EmptyField(Check[EmptyFieldParams]):
    """A required field is empty or whitespace only (a missing field is reported as malformed)."""

    kind = "empty_field"
    params_model = EmptyFieldParams
    score_names = ("empty",)
    cost = 0

    def score(self, sample: Sample) -> Measurement:
        record = sample.record or {}
        empty = []
        for role in self.params.fields:
            key = sample.key(role)  # a role such as output: the field its file holds it in (input.fields)
            if key not in record:
                raise FieldProblem("missing_field", key, f"field '{key}' is missing")
            value = record[key]
            blank = len(value) == 0 if isinstance(value, (list, Mapping)) else not sample.view(role).strip()
            if blank:
                empty.append(key)
        return Measurement({"empty": float(len(empty))}, {"fields": empty})

    def decide(self, m: Measurement) -> list[Finding]:
        empty = m.evidence.get("fields", [])
        n = m.values["empty"] or 0.0
        if n <= 0:
            return []
        names = ", ".join(f"'{f}'" for f in empty) or f"{int(n)} field(s)"
        return [self.finding("empty_field", n, 0, f"{names} {'is' if n == 1 else 'are'} empty", fields=empty)]


# ------------------------------------------------------------------------------------- placeholders
DEFAULT_PLACEHOLDERS = [
    r"<\s*no\s*_?(?:input|output)\s*>",
    r"\[\s*(?:insert|your|add|enter|fill\s+in|placeholder|name\s+of|todo)\b[^\]\n]{0,60}\]",
    r"<\s*(?:insert|placeholder|your)\b[^>\n]{0,60}>",
    r"\{\{\s*[A-Za-z_][\w .-]{0,40}\s*\}\}",
    r"(?m)^[ \t]*(?:N/A|TBD|TODO|\?\?\?|XXX)[ \t]*\.?[ \t]*$",
    r"\blorem ipsum\b",
]


class PlaceholderParams(Params):
    field: FieldName = Field(None, description=FIELD_DOC)
    patterns: list[str] = Field(default_factory=lambda: list(DEFAULT_PLACEHOLDERS),
                                description="placeholder regexes (case-insensitive); replaces the built-in list")
    extra_patterns: list[str] = Field(default_factory=list, description="regexes added to the list")

    _v = field_validator("patterns", "extra_patterns")(user_patterns)


@register
class Placeholder(Check[PlaceholderParams]):
    """Text contains an unfilled placeholder (<noinput>, N/A, [insert name], {{var}}, lorem ipsum)."""

    kind = "placeholder"
    params_model = PlaceholderParams
    score_names = ("matches",)
    cost = 2

    def __init__(self, name: str, params: PlaceholderParams) -> None:
        super().__init__(name, params)
        self._rx = _compile_all(list(params.patterns) + list(params.extra_patterns), ignore_case=True)

    def score(self, sample: Sample) -> Measurement:
        text = sample.view(self.params.field)
        hits = [_span(m, rx.pattern) for rx in self._rx if (m := rx.search(text))]
        return Measurement({"matches": float(len(hits))}, {"matches": hits})

    def decide(self, m: Measurement) -> list[Finding]:
        n = m.values["matches"] or 0.0
        if n <= 0:
            return []
        first = m.evidence.get("matches", [{}])[0].get("match")
        return [self.finding("placeholder", n, 0,
                             f"{where(self.params.field)} contains unfilled placeholder {first!r}",
                             matches=m.evidence.get("matches", []))]


# ----------------------------------------------------------------------------------------- truncated
# Strong signs of a cut (a dangling "the", an open ``` block, a lone "$", a word cut at "1-") count
# anywhere; the weak one (no closing punctuation) only in prose. On Alpaca the weak sign alone rejected
# poems, song lyrics, hashtag tweets, quotes with attributions, forms, tables, Morse code and postfix
# expressions, and on human data (Dolly) answers whose writer skipped the final period.
_TRAILING_TAGS = re.compile(r"(?:\s*(?:[#@]\w+|[\U0001F000-\U0001FAFF\u2600-\u27BF\uFE0F\u200d]+))+\s*$")
_SENTENCE_END = re.compile(r"[.!?…。！？:;][\"'”’)\]]*(?:\s|$)")
_CODE_LIKE = re.compile(r"[=(){};<>\[\]]|^\s{2,}|^\s*(?:def|return|SELECT|import|print)\b")
_INVISIBLE = "\u200b\u200c\u200d\u2060\ufeff"
#: a list or outline marker opening a line: "- ", "* ", "3. ", "b) ", "B. ", "IV. "
_MARKER = re.compile(r"^\s*(?:[-*•–]\s*|\(?(?:\d{1,3}|[A-Za-z]|[IVXLCivxlc]{1,6})[.)]\s+)")
#: a sentence end with more text after it on the same line: the line holds prose of two sentences or more
#: (not a title or an initial: "Dear Dr. Smith,", "J. K. Rowling")
_INNER_END = re.compile(r"(?<!\b[A-Z])(?<!\b(?:Dr|Mr|Ms|St|Jr|Sr|vs|No))(?<!\b(?:Mrs|Rev|etc|e\.g|i\.e))(?<!\bProf)"
                        r"[.!?…。！？][\"'”’)\]]*\s+\S")
#: table cells, arrows, verse written on one line ("... / ..."), "T - Try, E - Endure" mnemonics, timelines
_STRUCTURED = re.compile(r"\||→|⇒|=>|\t|\s/\s|\s[-–—]\s.*\s[-–—]\s")
#: an attribution: '"..." - Walter Winchell', a line "— Mark Twain"
_ATTRIBUTION = re.compile(r"(?:^|[\"'”’»])\s*[-–—~]+\s*[A-Z][\w.'’ -]{0,60}$")
#: a cut value or word: "for a cost of $", "between 1-"
_CUT_TOKEN = re.compile(r"(?:^|\s)[$£€¥]$|\w-$")
DANGLING = [
    "a", "an", "the", "and", "or", "but", "nor", "of", "than", "whose", "because", "whether",
    "their", "its", "our", "your", "my", "such",
]
#: end a sentence that was cut before its value ("is equal to", "will be"); short answers may end so
#: when they fill a blank ("None of the students were"), so a longer sentence is needed
STRANDED = ["to", "is", "are", "was", "were", "be", "will"]


def _final_line(text: str) -> tuple[str, bool] | None:
    """The last line without trailing #hashtags, @mentions and emoji, and whether it had some; None for code.

    A tweet's tags end it, and they may finish its sentence ("get the #HealthyLife"), so a tagged line
    never counts as cut off.
    """
    last = text.rsplit("\n", 1)[-1]
    line = _TRAILING_TAGS.sub("", last).rstrip()
    if not line or _CODE_LIKE.search(line):
        return None
    return line, line != last.rstrip()


def _is_prose(line: str) -> bool:
    """A line of prose: at least two sentences, not a table row, verse, outline item or attribution.

    A single unpunctuated sentence is usually a verse line, a list, a tag cloud or (in human data) an
    answer whose writer skipped the period; a paragraph that ends mid-sentence after finished ones is cut.
    """
    body = _MARKER.sub("", line, count=1)
    return bool(_INNER_END.search(body)) and not _STRUCTURED.search(body) and not _ATTRIBUTION.search(body)


def _final_segment(line: str) -> tuple[list[str], bool]:
    """Words after the last sentence end on ``line``, and whether they form a list of short items."""
    segment = _SENTENCE_END.split(line)[-1]
    commas = segment.count(",")
    return segment.split(), commas >= 2 and len(segment.split()) < 3 * commas


_LIST_ITEM = re.compile(r"^[ \t]*(?:[-*•–][ \t]?|\d{1,3}[.)][ \t]|[a-z][.)][ \t])\S")


def _ends_with_list(text: str) -> bool:
    """The last line is a list item and so is the line before it: list items often go without a final period."""
    lines = [ln for ln in text.splitlines() if ln.strip()]
    return len(lines) >= 2 and all(_LIST_ITEM.match(ln) for ln in lines[-2:])


def _cut_mark(text: str, line: str) -> str | None:
    """The closing mark that shows a cut, if any.

    A lone currency sign or a hyphen joined to a word always does. A comma does after a finished
    sentence on the same line (a single line ending in one is a verse line, a salutation or a clause
    asked for: "Dear Dr. Smith,", "With heartfelt gratitude,"). A colon does unless it ends a form field
    or list item ("* Payment Method:", "Name:" under "Email:"). A lone dash ("a b c + -", Morse) never.
    """
    if _CUT_TOKEN.search(text):
        return text[-1]
    if text[-1] not in ",:" or len(line.split()) < 3:
        return None
    if text[-1] == ",":
        return "," if _is_prose(line) else None
    lines = [ln.rstrip() for ln in text.splitlines() if ln.strip()]
    if _MARKER.match(lines[-1]) or (len(lines) >= 2 and lines[-2].endswith(":")):
        return None
    return ":"


def _unterminated_words(text: str, line: str, words: list[str]) -> int:
    """Length of the final sentence of a prose line that ends on a word with no closing punctuation;
    Title Case headlines count as finished."""
    if not words or not text[-1].isalpha() or not _is_prose(line):
        return 0
    capitalised = sum(w[:1].isupper() for w in words)
    return 0 if capitalised >= 0.6 * len(words) else len(words)


class TruncatedParams(Params):
    field: FieldName = Field(None, description=FIELD_DOC)
    min_words: int = Field(15, ge=1, description="an unpunctuated final sentence this long, after a finished one "
                           "on the same line, counts as cut off")
    min_dangling_words: int = Field(4, ge=1, description="a dangling last word counts only in a sentence this long")
    dangling_words: list[str] = Field(default_factory=lambda: list(DANGLING),
                                      description="words a finished text never ends on (articles, conjunctions)")
    stranded_words: list[str] = Field(default_factory=lambda: list(STRANDED),
                                      description="words a sentence cut before its value ends on ('is equal to', "
                                      "'will be'); counted in a final sentence of min_stranded_words words")
    min_stranded_words: int = Field(6, ge=1, description="a stranded last word counts only in a sentence this long "
                                    "(shorter answers may fill a blank: 'None of the students were')")
    check_fences: bool = Field(True, description="flag an unclosed ``` code block")


@register
class Truncated(Check[TruncatedParams]):
    """Text ends inside an open code block, on a dangling word or a cut mark ("$", "1-", a comma or colon
    introducing nothing), or, in prose, mid-sentence without closing punctuation."""

    kind = "truncated"
    decision_params = frozenset({"min_words"})
    params_model = TruncatedParams
    score_names = ("open_fence", "dangling", "unterminated_words")
    cost = 1

    def __init__(self, name: str, params: TruncatedParams) -> None:
        super().__init__(name, params)
        # last word -> the fewest words its sentence needs for the word to count as dangling
        self._dangling = {w.lower(): params.min_stranded_words for w in params.stranded_words}
        self._dangling.update({w.lower(): params.min_dangling_words for w in params.dangling_words})
        self._stranded = {w.lower() for w in params.stranded_words} - {w.lower() for w in params.dangling_words}

    def _dangling_word(self, words: list[str], is_list: bool, line: str) -> str | None:
        last_item = line.rsplit(",", 1)[-1].split() if is_list else words
        if len(last_item) < 2 or not last_item[-1].islower():
            return None
        word = last_item[-1]
        if word in self._stranded and " ".join(words).count(",") >= 2:  # a list of titles: "..., Let it be"
            return None
        need = self._dangling.get(word)
        return word if need is not None and len(words) >= need else None

    def score(self, sample: Sample) -> Measurement:
        text = sample.view(self.params.field).rstrip().rstrip(_INVISIBLE).rstrip()
        fences = len(FENCE_LINE.findall(text))
        open_fence = float(fences % 2 == 1) if self.params.check_fences else 0.0
        evidence: dict[str, Any] = {"ending": text[-80:]}
        dangling = 0.0
        unterminated = 0.0
        final = _final_line(text) if text and not open_fence else None
        if final is not None and not final[1]:  # a line ending in hashtags is a finished tweet
            line = final[0]
            words, is_list = _final_segment(line)
            last = _cut_mark(text, line) or self._dangling_word(words, is_list, line)
            if last is not None:
                dangling = 1.0
                evidence["last"] = last
            if not is_list and not _ends_with_list(text):
                unterminated = float(_unterminated_words(text, line, words))
        return Measurement({"open_fence": open_fence, "dangling": dangling, "unterminated_words": unterminated},
                           evidence)

    def score_limits(self) -> dict[str, list[float]]:
        return {"unterminated_words": [float(self.params.min_words)]}

    def decide(self, m: Measurement) -> list[Finding]:
        v, place, ev = m.values, where(self.params.field), m.evidence
        ending = ev.get("ending", "")
        if (v["open_fence"] or 0) > 0:
            return [self.finding("unclosed_code_block", v["open_fence"], 0,
                                 f"{place} ends inside an unclosed ``` code block", ending=ending)]
        if (v["dangling"] or 0) > 0:
            return [self.finding("dangling_ending", v["dangling"], 0,
                                 f"{place} ends on {ev.get('last')!r}, as if cut off", ending=ending)]
        words = v["unterminated_words"] or 0.0
        if words >= self.params.min_words:
            return [self.finding("ends_mid_sentence", words, self.params.min_words,
                                 f"{place} ends mid-sentence: a final sentence of {int(words)} words with no "
                                 "closing punctuation", ending=ending)]
        return []
