"""Shared preambles: a long prefix most records repeat, dropped before deduplication.

Tool-use and chat sets put the same system prompt and tool descriptions (often hundreds of words) in
front of every record. Near-duplicate shingles and sentence embeddings then mostly compare the
preamble, and different tasks behind it ("weather in LA tomorrow", "weather in NYC today") are
merged; an embedding model that reads only the first 256 tokens sees nothing but the preamble. With
``drop_shared_prefix`` the dedup checks (``near_duplicate``, ``semantic_duplicate``) compare what
follows it. Records without the prefix are compared as they are, so a copy of the task without
the preamble still matches one with it.

How it is found, and why this way: from a fixed head of a set, never from batches, so decisions are
the same for every ``--batch-size``, ``-j`` and engine. The set is the baseline when one is loaded
(its first ``HEAD`` usable records; baseline and input are then stripped alike, and a cached
baseline index, keyed on the baseline's content, stays valid), else the input's first ``HEAD``
records, which ``Gate.stream`` reads ahead once (no second pass over the input) and puts back in
front. Worker processes and Ray actors build their checks from the config, so the gate hands them
the prefix it found as the check's ``shared_prefix`` parameter (``with_prefixes``). A per-record
rule (e.g. "drop the system turn") would need no head, but misses tool descriptions placed in the
user turn or a template, and would drop short, task-bearing system prompts too.

Conservative: a prefix is whole whitespace-separated words, at least ``MIN_WORDS`` of them, carried
by at least ``MIN_SHARE`` of the head and by at least ``MIN_RECORDS`` records, each with a
non-empty remainder. Because ``MIN_SHARE`` > 1/2, at most one word can extend the prefix at each
step, so growing it word by word finds the longest such prefix. Only a prefix is looked for: the
text view ends with the varying answer, so a long shared suffix is rare (none in Alpaca, Dolly,
Code Alpaca or GPTeacher).
"""

from __future__ import annotations

import itertools
import re
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from pydantic import Field

if TYPE_CHECKING:
    from qualgate.checks.base import SetCheck
    from qualgate.sample import Sample

#: Records of a set's head that detection looks at (independent of the batch size).
HEAD = 1000
#: Share of the head that must carry the prefix (with a non-empty remainder).
MIN_SHARE = 0.8
#: Fewest words a detected prefix has: shorter shared openings are left alone.
MIN_WORDS = 20
#: Fewest records that must carry it: a handful of records sharing an opening is not boilerplate.
MIN_RECORDS = 20
#: Longest prefix looked for, in words (bounds the work on huge texts).
MAX_WORDS = 8192

_WORD = re.compile(r"\S+")

DROP_DESCRIPTION = (f"compare what follows a long prefix (>= {MIN_WORDS} words) that >= {MIN_SHARE:.0%} of the "
                    f"first {HEAD} records share (a system prompt, tool descriptions), detected from the baseline "
                    "when one is loaded, else the input; records without it are compared whole")
GIVEN_DESCRIPTION = ("the prefix to drop, given instead of detected (whitespace-separated words; a record carries it "
                     "when it starts with these words and has more); the gate also passes what it detected to its "
                     "workers here")


def drop_field(default: bool = True) -> Any:
    """The ``drop_shared_prefix`` parameter of a dedup check."""
    return Field(default, description=DROP_DESCRIPTION)


def given_field() -> Any:
    """The ``shared_prefix`` parameter of a dedup check."""
    return Field(None, min_length=1, pattern=r"\S", description=GIVEN_DESCRIPTION)


@dataclass(frozen=True)
class SharedPrefix:
    """A prefix to drop: its words, and how it was found (for the report)."""

    words: tuple[str, ...]
    #: characters of the prefix as the first record carrying it wrote it
    chars: int
    #: distinct texts carrying it, of ``distinct`` among the ``looked_at`` head records (0s when given)
    carried: int
    distinct: int
    looked_at: int
    #: where it came from: "input", "baseline" or "config"
    source: str
    pattern: re.Pattern[str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        # each word is a whole token: at the start, separated by whitespace, and followed by more text
        body = r"\s+".join(re.escape(w) for w in self.words)
        object.__setattr__(self, "pattern", re.compile(rf"\s*{body}\s+(?=\S)"))

    @property
    def text(self) -> str:
        return " ".join(self.words)

    def strip(self, text: str) -> str | None:
        """What follows the prefix, or None when ``text`` does not carry it."""
        m = self.pattern.match(text)
        return text[m.end():] if m else None

    def section(self) -> dict[str, Any]:
        text = self.text
        excerpt = text if len(text) <= 160 else f"{text[:110]} … {text[-40:]}"
        out: dict[str, Any] = {"found": True, "words": len(self.words), "chars": self.chars, "excerpt": excerpt,
                               "detected_from": self.source}
        if self.looked_at:
            out.update(records_carrying=self.carried, distinct=self.distinct, head=self.looked_at,
                       share=round(self.carried / self.distinct, 4))
        return out


def detect(texts: Sequence[str], source: str) -> SharedPrefix | None:
    """The longest word prefix that the distinct texts among the first ``HEAD`` of ``texts`` share by the rules
    above, or None. Distinct: a set that is mostly copies of one text (a collapsed generator) has no preamble,
    and dropping "all but its last word" would let near copies of it (one word shorter) pass as new."""
    head = texts[:HEAD]
    distinct = list(dict.fromkeys(" ".join(t.split()) for t in head))
    need = max(MIN_RECORDS, -(-int(MIN_SHARE * 10_000) * len(distinct) // 10_000))  # ceil, free of float rounding
    if len(distinct) < need:
        return None
    tokens = [[m.group() for m in itertools.islice(_WORD.finditer(t), MAX_WORDS + 1)] for t in distinct]
    alive = [i for i, toks in enumerate(tokens) if len(toks) > 1]
    k = 0
    while k < MAX_WORDS and len(alive) >= need:
        # records that carry k + 1 words with something after them; the one word more than half share, if any
        counts = Counter(tokens[i][k] for i in alive if len(tokens[i]) > k + 1)
        word, n = counts.most_common(1)[0] if counts else ("", 0)
        if n < need:
            break
        alive = [i for i in alive if len(tokens[i]) > k + 1 and tokens[i][k] == word]
        k += 1
    if k < MIN_WORDS:
        return None
    found = SharedPrefix(tuple(tokens[alive[0]][:k]), 0, len(alive), len(distinct), len(head), source)
    first = next(t for t in head if found.strip(t) is not None)
    spans = [m.span() for m in itertools.islice(_WORD.finditer(first), k)]
    return replace(found, chars=spans[-1][1] - spans[0][0])


class Preamble:
    """One dedup check's shared-prefix state: off, given, to be detected, or detected (and from where)."""

    def __init__(self, drop: bool, given: str | None) -> None:
        self.drop = drop
        self.prefix: SharedPrefix | None = None
        if given is not None:
            words = tuple(given.split())
            self.prefix = SharedPrefix(words, len(given.strip()), 0, 0, 0, "config")
        #: True once nothing more is to be detected (off, given, or looked for in a set's head)
        self.decided = given is not None or not drop
        self.looked_at = 0  # head records looked at when none was found
        self.looked_in = ""

    def fit(self, texts: Sequence[str], source: str) -> None:
        """Look for the prefix in ``texts`` (a set's usable records, in order), unless already decided."""
        if self.decided or not texts:
            return
        self.prefix = detect(texts, source)
        self.decided, self.looked_at, self.looked_in = True, min(len(texts), HEAD), source

    def strip_all(self, texts: Sequence[str]) -> list[str]:
        """The texts with the prefix dropped where they carry it."""
        if self.prefix is None:
            return list(texts)
        strip = self.prefix.strip
        return [t if (rest := strip(t)) is None else rest for t in texts]

    def note(self, evidence: dict[str, Any], text: str) -> None:
        """Say in a duplicate's evidence that its text was compared without the prefix."""
        if self.prefix is not None and self.prefix.strip(text) is not None:
            evidence["shared_prefix_dropped"] = {"words": len(self.prefix.words), "chars": self.prefix.chars}

    @staticmethod
    def token() -> str:
        """The detection rule's constants, which a cached set index depends on besides the parameters."""
        return f"preamble:{HEAD}:{MIN_SHARE}:{MIN_WORDS}:{MIN_RECORDS}:{MAX_WORDS}"

    def state(self) -> dict[str, Any]:
        """For a set index's ``export_state``: plain numpy arrays."""
        import numpy as np

        p = self.prefix
        return {"preamble_words": np.asarray(p.text if p else ""),
                "preamble_info": np.asarray([int(self.decided), p is not None, p.chars if p else 0,
                                             p.carried if p else 0, p.distinct if p else 0,
                                             p.looked_at if p else self.looked_at], dtype=np.int64),
                "preamble_source": np.asarray(p.source if p else self.looked_in)}

    def load(self, arrays: Mapping[str, Any]) -> None:
        if "preamble_info" not in arrays:
            return
        decided, found, chars, carried, distinct, looked_at = (int(x) for x in arrays["preamble_info"].tolist())
        source = str(arrays["preamble_source"])
        self.decided = bool(decided)
        if found:
            self.prefix = SharedPrefix(tuple(str(arrays["preamble_words"]).split(" ")), chars, carried, distinct,
                                       looked_at, source)
        else:
            self.looked_at, self.looked_in = looked_at, source

    def section(self) -> dict[str, Any] | None:
        """The report's ``shared_prefix`` entry: what was dropped, or that none was found (None: off)."""
        if self.prefix is not None:
            return self.prefix.section()
        if self.drop and self.looked_at:
            return {"found": False, "head": self.looked_at, "detected_from": self.looked_in}
        return None


def summary(section: Mapping[str, Any]) -> str:
    """One line for report.md about a ``shared_prefix`` report entry that found one."""
    share = (f", carried by {section['records_carrying']} of the {section['distinct']} distinct texts among the first "
             f"{section['head']} {section['detected_from']} records ({section['share']:.0%}),") if "head" in section \
        else " given in the config"
    return (f"A {section['words']}-word ({section['chars']}-character) prefix{share} was dropped before comparing; "
            f"records without it were compared whole. Excerpt: {section['excerpt']}")


def preamble_of(check: Any) -> Preamble | None:
    found = getattr(check, "preamble", None)
    return found if isinstance(found, Preamble) else None


def fit_on_input(checks: Sequence[SetCheck[Any]], samples: Iterator[Sample]) -> Iterator[Sample]:
    """Detect the prefix of every check still to decide on the input's first ``HEAD`` samples; returns the
    samples with that head put back in front (the input is read once)."""
    from qualgate.checks.base import field_texts

    todo = [(c, p) for c in checks if (p := preamble_of(c)) is not None and not p.decided]
    if not todo:
        return samples
    head = list(itertools.islice(samples, HEAD))
    usable = [s for s in head if s.problem is None]
    for check, preamble in todo:
        texts, problems = field_texts(usable, getattr(check.params, "field", None))
        preamble.fit([t for t, bad in zip(texts, problems, strict=True) if bad is None], "input")
        preamble.decided = True  # an input without usable records: nothing to find, and nothing to look at again
    return itertools.chain(head, samples)


def with_prefixes(config: dict[str, Any], checks: Iterable[SetCheck[Any]]) -> dict[str, Any]:
    """``config`` (a ``GateConfig.to_dict()``) with each detected prefix as its check's ``shared_prefix``, for the
    checks worker processes and Ray actors build."""
    found = {c.name: p.prefix.text for c in checks
             if (p := preamble_of(c)) is not None and p.prefix is not None and p.prefix.source != "config"}
    if not found:
        return config
    return {**config, "checks": [{**c, "shared_prefix": found[c["name"]]} if c.get("name") in found else c
                                 for c in config["checks"]]}
