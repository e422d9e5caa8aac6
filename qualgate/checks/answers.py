"""Answer checks for instruction data: refusals, requests a text model cannot serve, echoed prompts."""

from __future__ import annotations

import re
import unicodedata
from functools import lru_cache
from typing import Any

from pydantic import Field, field_validator

from qualgate.checks.base import Check, Measurement, Params, register
from qualgate.checks.common import FIELD_DOC, WORD_RE, FieldName, where
from qualgate.checks.rules import (
    BoilerplateParams,
    PhraseCheck,
    PhraseMatch,
    _compile_all,
    phrase_regex,
)
from qualgate.findings import Finding
from qualgate.packs import is_shipped, list_param, read_list
from qualgate.regex import check_patterns, user_patterns
from qualgate.sample import FieldProblem, Sample


def _hit(match: re.Match[str] | PhraseMatch) -> dict[str, Any]:
    return {"match": match.group(0)[:200], "start": match.start(), "end": match.end()}


def _optional_view(sample: Sample, field: str | None) -> str:
    """A field that may be absent (Alpaca's ``input``): "" when unset or missing; a wrong type is still a problem."""
    if field is None:
        return ""
    try:
        return sample.view(field)
    except FieldProblem as exc:
        if exc.reason == "missing_field" and sample.record is not None:
            return ""
        raise


# -------------------------------------------------------------------------------------------- refusal
class RefusalParams(BoilerplateParams):
    field: FieldName = Field("output", description=FIELD_DOC)
    phrases_file: str = Field("refusal.txt", description="phrase list: a path, or a list shipped in rules/")
    extra_phrases: list[str] = Field(default_factory=list, description="more refusal phrases to match")
    window: int | None = Field(300, ge=1, description="only phrases starting in the first this many characters "
                               "count (refusals open the answer); unset = anywhere")
    max_matches: int = Field(0, ge=0, description="most refusal phrase matches allowed")


@register
class Refusal(PhraseCheck[RefusalParams]):
    """Answer refuses or deflects ("I'm sorry, but I can't", "I don't have access to", "as of my knowledge cutoff")."""

    kind = "refusal"
    decision_params = frozenset({"max_matches"})
    params_model = RefusalParams

    def __init__(self, name: str, params: RefusalParams) -> None:
        super().__init__(name, params)
        self.window = params.window

    def decide(self, m: Measurement) -> list[Finding]:
        n = m.values["matches"] or 0.0
        if n <= self.params.max_matches:
            return []
        hits = m.evidence.get("matches", [])
        first = hits[0] if hits else {}
        return [self.finding("refusal", n, self.params.max_matches,
                             f"{where(self.params.field)} refuses or deflects: {first.get('match')!r}",
                             phrase=first.get("match"), span=[first.get("start"), first.get("end")],
                             matches=hits)]


# --------------------------------------------------------------------------------------- unanswerable
_SECTIONS = ("request", "pretend", "reference", "link_task")
_WORDS = re.compile(r"[^\W\d_]+")


@lru_cache(maxsize=16)
def read_sections(name: str) -> dict[str, list[str]]:
    """A sectioned pattern list: ``[request]``, ``[pretend]``, ``[reference]`` and ``[link_task]`` header lines,
    one regex per line after each (a section may be left out)."""
    out: dict[str, list[str]] = {s: [] for s in _SECTIONS}
    section: str | None = None
    for line in read_list(list_param(name)):
        header = line[1:-1].strip().lower() if line.startswith("[") and line.endswith("]") else None
        if header in _SECTIONS:
            section = header
        elif section is None:
            raise ValueError(f"pattern list {name!r}: {line!r} comes before a section header such as [request]")
        else:
            out[section].append(line)
    for patterns in out.values():
        check_patterns(patterns, trusted=is_shipped(name))
    return out


class UnanswerableParams(Params):
    instruction_field: str = Field("instruction", description="field holding the request")
    input_field: str | None = Field("input", description="optional field read with the request (missing = empty; "
                                    "unset = none)")
    answer_field: FieldName = Field("output", description="field holding the answer; unset = the text view")
    patterns_file: str = Field("unanswerable.txt", description="regexes in [request] and [pretend] sections: a "
                               "path, or a list shipped in rules/")
    extra_request_patterns: list[str] = Field(default_factory=list,
                                              description="more regexes for impossible requests")
    extra_pretend_patterns: list[str] = Field(default_factory=list,
                                              description="more regexes for answers that pretend")
    decline_phrases_file: str = Field("refusal.txt", description="phrases that show the answer declined")
    extra_decline_phrases: list[str] = Field(default_factory=list, description="more decline phrases")
    reject_request_alone: bool = Field(True, description="reject every impossible request; false = only when the "
                                       "answer pretends or does not decline")
    link_only_field: str | None = Field("input", description="field judged on its own (missing = empty; unset = "
                                        "none): when it holds only links, attachment notes or media placeholders "
                                        "('Summarize this article' + a bare URL, '<image>', 'Attached photo'), the "
                                        "task needs content a text model cannot open, unless the instruction is "
                                        "about the link itself ([link_task] patterns: its domain, HTML, code)")
    max_label_words: int = Field(3, ge=0, description="words besides the links a link-only field may hold "
                                 "('Article link:', 'The link is')")

    _v = field_validator("extra_request_patterns", "extra_pretend_patterns")(user_patterns)

    @field_validator("patterns_file")
    @classmethod
    def _patterns(cls, v: str) -> str:
        read_sections(v)
        return v

    @field_validator("decline_phrases_file")
    @classmethod
    def _phrases(cls, v: str) -> str:
        return list_param(v)


@register
class Unanswerable(Check[UnanswerableParams]):
    """Request needs images, audio, browsing, attachments or live data, or the answer pretends it delivered them.

    The request patterns read the instruction (and ``input_field``); an input field that holds only a link or
    an attachment note is judged on its own (``link_only_field``), so that data inputs such as lyrics saying
    "sing along" do not count as requests.
    """

    kind = "unanswerable"
    decision_params = frozenset({"reject_request_alone"})
    params_model = UnanswerableParams
    score_names = ("requests", "pretends", "declined", "link_only")
    cost = 3

    def __init__(self, name: str, params: UnanswerableParams) -> None:
        super().__init__(name, params)
        sections = read_sections(params.patterns_file)
        shipped = is_shipped(params.patterns_file)  # ours may use lookaround (re); a user's file runs on RE2
        self._request = _compile_all(sections["request"], ignore_case=True, trusted=shipped) + \
            _compile_all(list(params.extra_request_patterns), ignore_case=True)
        self._pretend = _compile_all(sections["pretend"], ignore_case=True, trusted=shipped) + \
            _compile_all(list(params.extra_pretend_patterns), ignore_case=True)
        self._decline = phrase_regex(read_list(params.decline_phrases_file) + list(params.extra_decline_phrases))
        self._reference = _compile_all(sections["reference"], ignore_case=True, trusted=shipped)
        self._link_task = _compile_all(sections["link_task"], ignore_case=True, trusted=shipped)

    def _link_only(self, text: str) -> dict[str, Any] | None:
        """The first link, attachment note or placeholder when ``text`` holds nothing else but label words."""
        spans = sorted(m.span() for rx in self._reference for m in rx.finditer(text) if m.end() > m.start())
        if not spans:
            return None
        rest, at = [], 0
        for start, end in spans:
            rest.append(text[at:max(at, start)])
            at = max(at, end)
        rest.append(text[at:])
        label = _WORDS.findall(" ".join(rest))
        if len(label) > self.params.max_label_words:
            return None
        return {"match": text[spans[0][0]:spans[0][1]][:200], "label": " ".join(label)}

    def score(self, sample: Sample) -> Measurement:
        p = self.params
        request = sample.view(p.instruction_field)
        extra = _optional_view(sample, p.input_field)
        if extra:
            request = f"{request}\n{extra}"
        answer = sample.view(p.answer_field)
        asks = [_hit(m) | {"pattern": rx.pattern} for rx in self._request if (m := rx.search(request))]
        pretends = [_hit(m) | {"pattern": rx.pattern} for rx in self._pretend if (m := rx.search(answer))]
        decline = self._decline.search(answer)
        evidence: dict[str, Any] = {"request_matches": asks, "pretend_matches": pretends}
        if decline:
            evidence["decline"] = _hit(decline)
        link_only = self._link_only(_optional_view(sample, p.link_only_field)) if p.link_only_field else None
        if link_only is not None:
            about = next((m for rx in self._link_task if (m := rx.search(sample.view(p.instruction_field)))), None)
            if about is not None:
                evidence["link_task"] = about.group(0)
                link_only = None
            else:
                evidence["link_only"] = link_only
        return Measurement({"requests": float(len(asks)), "pretends": float(len(pretends)),
                            "declined": 1.0 if decline else 0.0, "link_only": 1.0 if link_only else 0.0}, evidence)

    def decide(self, m: Measurement) -> list[Finding]:
        p, out, ev = self.params, [], m.evidence
        asks, pretends = m.values["requests"] or 0.0, m.values["pretends"] or 0.0
        declined = (m.values["declined"] or 0.0) > 0
        if asks > 0 and (p.reject_request_alone or pretends > 0 or not declined):
            first = ev.get("request_matches", [{}])[0]
            why = "" if p.reject_request_alone else (" and the answer pretends" if pretends > 0
                                                     else " and the answer does not decline")
            out.append(self.finding("impossible_request", asks, 0,
                                    f"field '{p.instruction_field}' asks for what a text model cannot do or see: "
                                    f"{first.get('match')!r}{why}",
                                    phrase=first.get("match"), span=[first.get("start"), first.get("end")],
                                    matches=ev.get("request_matches", []), declined=declined))
        elif asks == 0 and (m.values.get("link_only") or 0) > 0:  # else the request finding says it
            link = ev.get("link_only", {})
            out.append(self.finding("link_only_input", 1.0, 0,
                                    f"field '{p.link_only_field}' holds only {link.get('match')!r}"
                                    + (f" and {link.get('label')!r}" if link.get("label") else "")
                                    + ": the task needs content a text model cannot open",
                                    phrase=link.get("match"), label=link.get("label")))
        if pretends > 0:
            first = ev.get("pretend_matches", [{}])[0]
            out.append(self.finding("pretends_capability", pretends, 0,
                                    f"{where(p.answer_field)} pretends to deliver what a text model cannot: "
                                    f"{first.get('match')!r}",
                                    phrase=first.get("match"), span=[first.get("start"), first.get("end")],
                                    matches=ev.get("pretend_matches", [])))
        return out


# ---------------------------------------------------------------------------------------- prompt echo
REWRITE_VERBS = [
    "fix", "correct", "proofread", "paraphrase", "rephrase", "reword", "rewrite", "translate", "edit", "revise",
    "convert", "transform", "change", "improve", "polish", "simplify", "shorten", "format", "reformat",
    "capitalize", "capitalise", "punctuate", "normalize", "normalise", "grammar", "spelling", "typo",
    # edits measured on Alpaca, whose answers differ from the input only in a comma, a capital or an order
    "insert", "add", "remove", "delete", "restore", "replace", "sort", "arrange", "reorder", "punctuation",
    "comma", "capital", "capitalization", "capitalisation", "uppercase", "lowercase", "mistake", "mistakes", "error",
    "errors", "transcribe", "complete", "fill", "match", "divide", "split", "separate", "combine", "merge", "json",
    "emphasize", "emphasise", "highlight", "bold", "italicize", "underline", "cross", "strike", "rank",
    # code edits measured on Code Alpaca: the fixed code keeps nearly every line of the given code
    "modify", "modified", "modifies", "modification", "bug", "debug", "refactor",
]


#: tasks whose correct answer may be an exact copy of the input (found in a read of Alpaca rejections)
COPY_WORDS = ["transcribe", "transcription", "recite", "handwriting", "handwritten", "ocr", "machine-readable",
              "digitize", "digitise"]  # not "copy" or "repeat": "ad copy", "without repeating words"


def words(text: str) -> list[str]:
    """Normalised words: NFKC, case-folded, punctuation dropped, curly apostrophes straightened."""
    return [w.replace("’", "'") for w in WORD_RE.findall(unicodedata.normalize("NFKC", text).casefold())]


def ngrams(tokens: list[str], n: int) -> set[tuple[str, ...]]:
    return {tuple(tokens[i:i + n]) for i in range(len(tokens) - n + 1)}


def verb_regex(verbs: list[str]) -> re.Pattern[str] | None:
    """Whole words with their inflections: fix/fixes/fixed/fixing, rewrite/rewrites/rewriting/rewritten."""
    stems = sorted({v.lower()[:-1] if v.lower().endswith("e") else v.lower() for v in verbs if v.strip()},
                   key=len, reverse=True)
    if not stems:
        return None
    return re.compile(r"\b(?:" + "|".join(map(re.escape, stems)) + r")(?:e|es|ed|en|ing|s|d)?\b", re.IGNORECASE)


def _same_text(text: str) -> str:
    """Text as compared for an identical copy: spaces within a line ignored; case, punctuation and line
    breaks kept (answers to "fix the capitals", "insert a period", "split into two paragraphs" change
    only those, and are not copies)."""
    return "\n".join(" ".join(line.split()) for line in text.strip().splitlines())


class PromptEchoParams(Params):
    instruction_field: str = Field("instruction", description="field holding the instruction")
    input_field: str | None = Field("input", description="optional field with the task's input (missing = empty; "
                                    "unset = none)")
    answer_field: FieldName = Field("output", description="field holding the answer; unset = the text view")
    max_overlap: float = Field(0.9, gt=0, le=1, description="an echo when this share of the answer's word n-grams "
                               "come from the instruction (or input) and cover this share of it")
    ngram: int = Field(3, ge=1, le=10, description="n of the word n-grams compared")
    min_words: int = Field(5, ge=1, description="the overlap rule applies only to answers with this many words")
    min_prefix_words: int = Field(5, ge=1, description="an answer starting with the whole instruction is an echo "
                                  "when the instruction has this many words")
    min_prefix_share: float = Field(0.5, gt=0, le=1, description="... when the restated instruction is at least "
                                    "this share of the answer (restating the task, then answering it, is fine)")
    min_identical_words: int = Field(3, ge=1, description="an answer identical to the instruction or input is an "
                                     "echo when it has this many words (short answers such as 'Positive' or 'Paris' "
                                     "may legitimately equal the input)")
    transform_tasks: bool = Field(True, description="an answer that copies, reorders or repeats the input is no "
                                  "echo when the instruction asks to transform it (sort, delete the extra spaces, "
                                  "repeat 5 times: checks.tasks); copying the instruction still is")
    copy_words: list[str] = Field(default_factory=lambda: list(COPY_WORDS),
                                  description="words marking tasks whose right answer can be the input itself "
                                  "(transcribe, handwriting, OCR): there not even an identical copy counts")
    rewrite_verbs: list[str] = Field(default_factory=lambda: list(REWRITE_VERBS),
                                     description="words marking tasks whose answer is close to the input "
                                     "(fix, paraphrase, translate, ...): for those only an identical copy counts")


@register
class PromptEcho(Check[PromptEchoParams]):
    """Answer repeats the instruction or the input (identical, starts with the instruction, or mostly copied).

    A transformation task's answer may equal the input ("sort these items" when they are already in order,
    "delete the extra spaces"), so there only copying the instruction counts.
    """

    kind = "prompt_echo"
    decision_params = frozenset({"max_overlap", "min_prefix_share", "min_words", "transform_tasks"})
    params_model = PromptEchoParams
    score_names = ("identical", "prefix", "overlap", "words", "rewrite_task", "copy_task", "transform_task")
    cost = 2

    def __init__(self, name: str, params: PromptEchoParams) -> None:
        super().__init__(name, params)
        self._rewrite = verb_regex(params.rewrite_verbs)
        self._copy = verb_regex(params.copy_words)

    def score(self, sample: Sample) -> Measurement:
        p = self.params
        instruction_text = sample.view(p.instruction_field)
        ins = words(instruction_text)
        inp = words(_optional_view(sample, p.input_field))
        answer_text = sample.view(p.answer_field)
        ans = words(answer_text)
        evidence: dict[str, Any] = {}
        identical = 0.0
        if len(ans) >= p.min_identical_words:  # case and punctuation count: "fix the capitals" changes only those
            exact = _same_text(answer_text)
            for name, src_text in (("instruction", instruction_text), ("input", _optional_view(sample, p.input_field))):
                if exact == _same_text(src_text):
                    identical, evidence["field"] = 1.0, name
                    break
        prefix = 0.0  # the restated instruction's share of the answer, when the answer opens with all of it
        if len(ins) >= p.min_prefix_words and len(ans) >= len(ins) and ans[:len(ins)] == ins:
            prefix = round(len(ins) / len(ans), 6)
            evidence.setdefault("field", "instruction")
        overlap: float | None = None
        grams = ngrams(ans, p.ngram)
        if grams:  # both ways: the answer is made of the source AND reproduces most of it (an extracted
            # option or quoted phrase is made of the input but covers little of it)
            best, best_name = 0.0, "instruction"
            for name, src in (("instruction", ngrams(ins, p.ngram)), ("input", ngrams(inp, p.ngram))):
                if src:
                    shared = len(grams & src)
                    both = min(shared / len(grams), shared / len(src))
                    if both > best:
                        best, best_name = both, name
            overlap = round(best, 6)
            evidence.setdefault("field", best_name)
        rewrite = self._rewrite.search(instruction_text) if self._rewrite else None
        if rewrite:
            evidence["rewrite_verb"] = rewrite.group(0)
        copy = self._copy.search(instruction_text) if self._copy else None
        from qualgate.checks.tasks import transformation_task  # 28 patterns (9 ms): not for a refusal-only run

        transform = transformation_task(instruction_text)
        if transform:
            evidence["transform_task"] = transform
        return Measurement({"identical": identical, "prefix": prefix, "overlap": overlap, "words": float(len(ans)),
                            "rewrite_task": 1.0 if rewrite else 0.0, "copy_task": 1.0 if copy else 0.0,
                            "transform_task": 1.0 if transform else 0.0}, evidence)

    def decide(self, m: Measurement) -> list[Finding]:
        p, v = self.params, m.values
        field = m.evidence.get("field", "instruction")
        overlap = v["overlap"]
        common = {"field": field, "overlap": overlap, "rewrite_task": (v["rewrite_task"] or 0) > 0}
        if m.evidence.get("transform_task"):
            common["transform_task"] = m.evidence["transform_task"]
        place = where(p.answer_field)
        if (v["copy_task"] or 0) > 0:  # "transcribe this": the input itself may be the right answer
            return []
        if p.transform_tasks and (v.get("transform_task") or 0) > 0 and field == "input":
            return []  # "sort these items": the input, already in order, may be the right answer
        if (v["identical"] or 0) > 0:
            return [self.finding("prompt_echo", 1.0, p.max_overlap, f"{place} is a copy of field '{field}'",
                                 rule="identical", **common)]
        if (v["prefix"] or 0) >= p.min_prefix_share:
            return [self.finding("prompt_echo", 1.0, p.max_overlap,
                                 f"{place} starts by repeating the whole instruction, which makes up "
                                 f"{v['prefix']:.0%} of it", rule="prefix", **common)]
        if (v["rewrite_task"] or 0) > 0 or overlap is None or (v["words"] or 0) < p.min_words:
            return []
        if overlap >= p.max_overlap:
            return [self.finding("prompt_echo", overlap, p.max_overlap,
                                 f"{place} repeats field '{field}': {overlap:.0%} of its word {p.ngram}-grams are "
                                 f"copied from it and cover it (max {p.max_overlap:.0%})", rule="overlap", **common)]
        return []
