"""Each rule check, positive and negative, asserting reason names, scores and evidence."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from qualgate import Gate
from qualgate.findings import Finding


def findings(checks: list[dict[str, Any]], record: dict[str, Any], text: str = "auto") -> list[Finding]:
    gate = Gate.from_config({"version": 1, "input": {"text": text}, "checks": checks}, all_findings=True)
    return gate.run([record]).decisions[0].findings


def reasons(checks: list[dict[str, Any]], record: dict[str, Any], text: str = "auto") -> list[str]:
    return [f.reason for f in findings(checks, record, text)]


def rec(output: str, instruction: str = "Answer the question.", input: str = "") -> dict[str, str]:
    return {"instruction": instruction, "input": input, "output": output}


# ------------------------------------------------------------------------------------------ length
def test_length_bounds_in_words_and_chars() -> None:
    check = [{"check": "length", "field": "output", "min_words": 2, "max_chars": 20}]
    assert reasons(check, rec("Positive")) == ["too_few_words"]
    assert reasons(check, rec("Two words")) == []
    f = findings(check, rec("This answer is far too long for the limit"))
    assert [x.reason for x in f] == ["too_many_chars"]
    assert f[0].score == 41 and f[0].threshold == 20 and f[0].check == "length"


def test_length_allows_short_correct_answers_with_min_one_word() -> None:
    check = [{"check": "length", "field": "output", "min_words": 1}]
    assert reasons(check, rec("4", "What is 2 + 2?")) == []
    assert reasons(check, rec("   ")) == ["too_few_words"]


# ---------------------------------------------------------------------------------------- language
LANG = [{"check": "language", "field": "output", "allowed": ["en"]}]


def test_language_rejects_french_answer_with_evidence() -> None:
    text = ("La photosynthèse est le processus par lequel les plantes vertes utilisent la lumière du soleil "
            "pour fabriquer leur nourriture.")
    f = findings(LANG, rec(text))
    assert [x.reason for x in f] == ["wrong_language"]
    assert f[0].evidence["detected"] == "fr" and f[0].score is not None and f[0].score < 0.25


def test_language_accepts_english_and_other_allowed_languages() -> None:
    en = "Sunlight is scattered by molecules in the atmosphere, and blue light is scattered the most of all."
    assert reasons(LANG, rec(en)) == []
    fr = ("La photosynthèse est le processus par lequel les plantes vertes utilisent la lumière du soleil "
          "pour fabriquer leur nourriture.")
    assert reasons([{"check": "language", "field": "output", "allowed": ["en", "fr"]}], rec(fr)) == []


def test_language_does_not_judge_short_text() -> None:
    gate = Gate.from_config({"version": 1, "checks": LANG})
    d = gate.run([rec("Albert Einstein.")]).decisions[0]
    assert d.accepted and d.scores["language.prob"] is None


def test_language_is_deterministic() -> None:
    text = ("Ce texte est assez long pour que la détection de langue soit fiable, même avec peu d'essais, "
            "car il contient plusieurs phrases complètes en français.")
    a = findings(LANG, rec(text))
    b = findings(LANG, rec(text))
    assert a == b and a[0].score == b[0].score


# ----------------------------------------------------------------------------------------- pattern
def test_pattern_forbidden_and_required() -> None:
    check = [{"check": "pattern", "field": "output", "forbidden": [r"https?://\S+"], "required": [r"\d"]}]
    f = findings(check, rec("See http://example.com for details."))
    assert [x.reason for x in f] == ["forbidden_pattern", "missing_required_pattern"]
    assert f[0].evidence["matches"][0]["match"] == "http://example.com"
    assert reasons(check, rec("The answer is 42.")) == []


def test_pattern_ignore_case() -> None:
    check = [{"check": "pattern", "forbidden": ["lorem"], "ignore_case": True}]
    assert reasons(check, {"text": "LOREM text"}) == ["forbidden_pattern"]


# ------------------------------------------------------------------------------------- boilerplate
BOIL = [{"check": "boilerplate", "field": "output"}]


@pytest.mark.parametrize("text", [
    "As an AI language model, I do not have personal opinions.",
    "I’m sorry, but I cannot help with that request.",  # curly apostrophe
    "i am sorry, but   as an AI I can't browse.",
    "Sure. My knowledge cutoff is 2021, so I may be out of date.",
])
def test_boilerplate_catches_refusal_and_self_reference(text: str) -> None:
    f = findings(BOIL, rec(text))
    assert [x.reason for x in f] == ["boilerplate_phrase"]
    assert f[0].evidence["matches"][0]["start"] >= 0


@pytest.mark.parametrize("text", [
    "GPT-3 is a language model developed by OpenAI in 2020.",
    "If the model is used as an AI assistant, evaluate its instruction following.",
    "The model works as a language model over tokens.",
])
def test_boilerplate_ignores_talk_about_ai(text: str) -> None:
    assert reasons(BOIL, rec(text)) == []


def test_boilerplate_extra_phrases_and_threshold() -> None:
    check = [{"check": "boilerplate", "extra_phrases": ["hope this helps"], "max_matches": 1}]
    assert reasons(check, {"text": "I hope this helps!"}) == []
    assert reasons(check, {"text": "I hope this helps! As an AI language model I try."}) == ["boilerplate_phrase"]


# ------------------------------------------------------------------------------------- empty_field
def test_empty_field_names_the_field() -> None:
    check = [{"check": "empty_field", "fields": ["instruction", "output"]}]
    f = findings(check, rec("  \n "))
    assert [x.reason for x in f] == ["empty_field"] and f[0].evidence["fields"] == ["output"]
    assert reasons(check, rec("Fine.")) == []


def test_empty_field_missing_field_is_malformed() -> None:
    check = [{"check": "empty_field", "fields": ["output", "response"]}]
    f = findings(check, rec("Fine."))
    assert [(x.check, x.reason, x.evidence["key"]) for x in f] == [("malformed", "missing_field", "response")]


# ------------------------------------------------------------------------------------- placeholder
PH = [{"check": "placeholder"}]


@pytest.mark.parametrize("text,match", [
    ("Input: <noinput>", "<noinput>"),
    ("Dear {{ customer_name }}, thanks!", "{{ customer_name }}"),
    ("Sincerely,\n[Insert your name here]", "[Insert your name here]"),
    ("Answer:\nN/A", "N/A"),
    ("Lorem ipsum dolor sit amet.", "Lorem ipsum"),
])
def test_placeholder_found(text: str, match: str) -> None:
    f = findings(PH, {"text": text})
    assert [x.reason for x in f] == ["placeholder"] and f[0].evidence["matches"][0]["match"] == match


@pytest.mark.parametrize("text", [
    "Use a dict like {'a': 1} in Python.", "The list [1, 2, 3] has three items.",
    "Not applicable here: the N/A rate fell.", "x = {key: value}",
])
def test_placeholder_not_found(text: str) -> None:
    assert reasons(PH, {"text": text}) == []


# --------------------------------------------------------------------------------------- truncated
TR = [{"check": "truncated", "field": "output"}]


@pytest.mark.parametrize("text,reason", [
    ("The three primary colours of paint are red, yellow and", "dangling_ending"),
    ("Calcium is a chemical element with the symbol Ca and atomic number of", "dangling_ending"),
    ("Mercury, Venus, Earth, Mars, Jupiter, Saturn and the", "dangling_ending"),
    ("Here are the steps to follow, in order:", "dangling_ending"),
    ("```python\ndef f(x):\n    return x", "unclosed_code_block"),
    ("The committee met on Monday. After a long debate about the budget they decided that the new "
     "library would be built next to the old town hall where", "ends_mid_sentence"),
])
def test_truncated_positive(text: str, reason: str) -> None:
    assert reasons(TR, rec(text)) == [reason]


@pytest.mark.parametrize("text", [
    "Positive", "4", "SELECT COUNT(*) FROM orders;", "```python\ndef f(x):\n    return x\n```",
    "The Rise of the Smart Machines: The Potential and Perils of Artificial Intelligence Robots",
    "Crisp leaves drift and fall\nGolden light on quiet paths\nThe year exhales slow",
    "\"Be the change that you wish to see in the world.\" - Mahatma Gandhi",
    "Life is short, so be brave, be kind and be yourself every single day of the week! #Motivation #Monday",
    "edit, here, the, this, a",
    "A finished sentence.\u200b",
])
def test_truncated_negative(text: str) -> None:
    assert reasons(TR, rec(text)) == []


def test_truncated_scores_are_stored() -> None:
    gate = Gate.from_config({"version": 1, "checks": TR})
    d = gate.run([rec("It began well. It ends with the")]).decisions[0]
    assert d.scores == {"truncated.open_fence": 0.0, "truncated.dangling": 1.0, "truncated.unterminated_words": 4.0}


# ------------------------------------------------------------------------------------------- order
def test_cheapest_first_and_skip_unless_all_findings() -> None:
    cfg = {"version": 1, "checks": [
        {"check": "language"}, {"check": "boilerplate"}, {"check": "empty_field", "fields": ["output"]}]}
    gate = Gate.from_config(cfg)
    assert [c.name for c in gate.checks] == ["empty_field", "boilerplate", "language"]
    d = gate.run([rec("")]).decisions[0]
    assert [f.reason for f in d.findings] == ["empty_field"] and d.skipped == ["boilerplate", "language"]
    bad = rec("As an AI language model, I cannot answer.")
    d = Gate.from_config(cfg, all_findings=True).run([{**bad, "output": ""}]).decisions[0]
    assert [f.check for f in d.findings] == ["empty_field"] and not d.skipped
    assert "boilerplate.matches" in d.scores and "language.prob" in d.scores


def test_chat_messages_view() -> None:
    record = {"messages": [{"role": "user", "content": "Hi"},
                           {"role": "assistant", "content": "As an AI language model, hello."}]}
    gate = Gate.from_config({"version": 1, "input": {"text": "messages"}, "checks": [{"check": "boilerplate"}]})
    d = gate.run([record]).decisions[0]
    assert d.sample.messages is not None and len(d.sample.messages) == 2
    assert [f.reason for f in d.findings] == ["boilerplate_phrase"]


@pytest.mark.parametrize(("text", "reasons"), [
    ("Potential risks include:\n- Phishing attacks that steal passwords\n- Malware hidden in free downloads that "
     "quietly records every key you press", []),
    ("Pros of the policy:\n-Reduces waste in the environment\n-Could create a strain on the manufacturing and "
     "distribution of reusable alternatives for years", []),
    ("1. Aquatic - relating to water\n2. Benthic - found on the bottom of bodies of water and among the rocks "
     "there in the deep", []),
    ("Tips:\n1. Sleep well every night\n2. Exercise regularly with a friend and", ["dangling_ending"]),
    ("A paragraph opens well. Then it simply stops without any closing punctuation after a long run of words like "
     "this one here", ["ends_mid_sentence"]),
])
def test_truncated_lets_list_items_end_without_a_period(text: str, reasons: list[str]) -> None:
    # false positives found by reading random Alpaca rejections (bench/RESULTS.md)
    from qualgate import Gate

    gate = Gate.from_config({"version": 1, "input": {"text": "text"}, "checks": [{"check": "truncated"}]},
                            cache_dir=None)
    assert [f.reason for f in gate.run([{"text": text}]).decisions[0].findings] == reasons


@pytest.mark.parametrize("text", [
    "As an AI language model, I cannot.",
    "xAs an AI language model",  # inside a word: no match
    "AS  AN\nAI   LANGUAGE MODEL, and as an ai language modelling course",
    "I'm sorry, but I can't. I’m sorry, but I can't.",
    "A\u017f an AI language model",  # long s, read as "s" when case is ignored
    "_As an AI language model_ 9as an AI language model",
    "\u0130\u2019m \u017forry, but I can\u2019t. As an AI \u212aNOWLEDGE \u00c9 caf\u00e9: i\u0307 \u0131 as an ai",
])
def test_phrase_regex_fast_path_finds_what_re_finds(text: str) -> None:
    """PhraseRegex lower-cases an ASCII text and searches it without the lookbehind; the matches (text, start,
    end) must be the ones the case-insensitive lookbehind pattern finds."""
    from qualgate.checks.rules import phrase_regex
    from qualgate.packs import read_list

    for phrases in (read_list("boilerplate.txt"), read_list("refusal.txt"), ["as an ai language model", "i'm sorry"]):
        rx = phrase_regex(phrases)
        expected = [(m.group(0), m.start(), m.end()) for m in rx.pattern.finditer(text)]
        assert [(m.group(0), m.start(), m.end()) for m in rx.finditer(text)] == expected
        first = rx.search(text)
        assert (first.group(0) if first else None) == (expected[0][0] if expected else None)


_PHRASE_WORDS = ["as", "an", "ai", "language", "model", "i'm", "i’m", "sorry", "but", "i", "cannot", "AS", "AI",
                 "\u017forry", "A\u017f", "a\u0130", "\u0131'm", "\u0130", "\u0131", "\u212a", "\u00e9", "x", "_", "9",
                 ","]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(_PHRASE_WORDS), st.sampled_from([" ", "", "\n", "  ", "\u00a0", "-"])),
                max_size=14).map(lambda pairs: "".join(w + sep for w, sep in pairs)))
def test_phrase_regex_fast_path_finds_what_re_finds_beyond_ascii(text: str) -> None:
    """A text beyond ASCII is folded (``_FOLD``), not searched with the case-blind pattern, and the phrases are
    one trie (``_trie``), where the longest-first alternation tried them one by one: same matches."""
    from qualgate.checks.rules import phrase_regex

    rx = phrase_regex(["as an ai language model", "as an ai", "i'm sorry, but", "i'm sorry", "i cannot", "i can",
                       "ai", "sorry", "model"])
    expected = [(m.group(0), m.start(), m.end()) for m in rx.pattern.finditer(text)]
    assert [(m.group(0), m.start(), m.end()) for m in rx.finditer(text)] == expected


def test_the_fold_covers_every_character_re_matches_with_an_ascii_letter() -> None:
    """``_FOLD`` maps each non-ASCII character that ``re.IGNORECASE`` equates with an ASCII one to that letter
    (a newer Unicode could add one)."""
    import re
    import string
    import sys

    from qualgate.checks.rules import _FOLD

    ascii_class = re.compile("[" + re.escape("".join(map(chr, range(128)))) + "]", re.IGNORECASE)
    found = {}
    for cp in range(128, sys.maxunicode + 1):
        if ascii_class.fullmatch(c := chr(cp)):
            found[cp] = next(a for a in string.ascii_lowercase if re.fullmatch(a, c, re.IGNORECASE))
    assert found == {cp: chr(to) for cp, to in _FOLD.items() if cp >= 128}
