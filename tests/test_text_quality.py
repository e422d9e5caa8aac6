"""Text-quality checks: repetition, quality_heuristics, flagged_words, pii; positive and negative examples."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from qualgate import Gate
from qualgate.checks import REGISTRY
from qualgate.checks.text_quality import find_pii, iban_ok, luhn_ok
from qualgate.findings import Finding


def findings(check: dict[str, Any], text: str) -> list[Finding]:
    gate = Gate.from_config({"version": 1, "input": {"text": "text"}, "checks": [check]},
                            cache_dir=None, all_findings=True)
    return gate.run([{"text": text}]).decisions[0].findings


def reasons(check: dict[str, Any], text: str) -> list[str]:
    return [f.reason for f in findings(check, text)]


PROSE = (
    "Photosynthesis is the process by which green plants turn light into chemical energy. Inside the "
    "chloroplasts, chlorophyll absorbs sunlight and uses it to split water molecules, releasing oxygen as a "
    "by-product. The energy captured in this step is stored in ATP and NADPH, which the plant then spends in "
    "the Calvin cycle to fix carbon dioxide from the air into sugars. Those sugars feed the plant and, through "
    "food chains, almost every other living thing on Earth."
)


def test_prose_passes_every_check() -> None:
    for check in ({"check": "repetition"}, {"check": "quality_heuristics"}, {"check": "pii"},
                  {"check": "flagged_words", "words_file": "flagged_words.txt"}):
        assert reasons(check, PROSE) == [], check


@pytest.mark.parametrize("answer", ["Positive", "4", "Paris", "Yes.", ""])
def test_short_correct_answers_are_never_rejected(answer: str) -> None:
    assert reasons({"check": "repetition"}, answer) == []
    assert reasons({"check": "quality_heuristics"}, answer) == []


# ------------------------------------------------------------------------------------------ repetition
LOOP = "I am happy to help you with that. " * 10 + "Let me know if you need anything else."


def test_repetition_rejects_looping_text_with_ngram_evidence() -> None:
    f = {x.reason: x for x in findings({"check": "repetition", "min_words": 20}, LOOP)}
    assert set(f) == {"top_ngram", "duplicated_ngrams"}
    dup = f["duplicated_ngrams"]
    assert dup.threshold == 0.15 and dup.score is not None and dup.score > 0.85
    assert dup.evidence["ngram"] == "i am happy to help"
    assert [e["n"] for e in dup.evidence["exceeded"]] == [5, 6, 7, 8, 9, 10]
    assert "5-gram" in dup.message and "limit 0.15" in dup.message
    top = f["top_ngram"]
    assert top.evidence["exceeded"][0]["n"] in (2, 3, 4) and len(top.evidence["ngram"]) <= 80


def test_repetition_rejects_repeated_lines_with_the_line_as_evidence() -> None:
    text = "Here is the list:\n" + "Buy milk and eggs from the shop.\n" * 4 + "That's all."
    assert set(reasons({"check": "repetition", "min_words": 20}, text)) == {"duplicate_lines", "top_ngram",
                                                                           "duplicated_ngrams"}
    assert set(reasons({"check": "repetition"}, text)) == {"duplicate_lines"}  # n-grams: 100+ words only
    f = findings({"check": "repetition", "min_words": 1000}, text)
    assert [x.reason for x in f] == ["duplicate_lines"]
    assert f[0].evidence["line"] == "Buy milk and eggs from the shop."
    assert f[0].score == 0.5 and f[0].threshold == 0.3
    assert {e["measure"] for e in f[0].evidence["exceeded"]} == {"dup_line_frac", "dup_line_char_frac"}


def test_repetition_rejects_repeated_paragraphs_and_truncates_evidence() -> None:
    para = ("The quarterly report shows that revenue grew in every region, led by strong demand for the new "
            "subscription plans and lower churn among existing customers")
    text = "\n\n".join(["Summary of the results.", para, "Details follow below.", para, para])
    f = {x.reason: x for x in findings({"check": "repetition", "min_words": 1000}, text)}
    assert set(f) == {"duplicate_lines", "duplicate_paragraphs"}
    assert f["duplicate_paragraphs"].evidence["paragraph"] == para[:80]
    assert f["duplicate_paragraphs"].score == pytest.approx(0.4)


def test_repetition_ignores_short_texts_for_ngrams_and_symbol_only_lines() -> None:
    assert reasons({"check": "repetition"}, "yes yes yes yes yes yes") == []
    code = "def f(x):\n    if x:\n        return 1\n    }\n}\n}\n}\n---\n---\nreturn 2"
    assert reasons({"check": "repetition"}, code) == []
    assert "duplicate_lines" in reasons({"check": "repetition", "skip_symbol_lines": False}, code)


def test_repetition_scores_none_below_min_words_and_thresholds_are_configurable() -> None:
    gate = Gate.from_config({"version": 1, "input": {"text": "text"}, "checks": [{"check": "repetition"}]},
                            cache_dir=None)
    scores = gate.run([{"text": "Positive"}]).decisions[0].scores
    assert scores["repetition.top_2gram_frac"] is None and scores["repetition.dup_10gram_frac"] is None
    assert scores["repetition.dup_line_frac"] == 0.0
    relaxed = {"check": "repetition", "max_top_ngram_frac": {}, "max_dup_ngram_frac": {5: 1.0}}
    assert reasons(relaxed, LOOP) == []
    with pytest.raises(ValidationError):
        REGISTRY["repetition"].params_model.model_validate({"max_top_ngram_frac": {7: 0.1}})


# ---------------------------------------------------------------------------------- quality_heuristics
def test_quality_heuristics_rejects_symbol_heavy_text() -> None:
    text = " ".join(["#blessed #sunday #vibes ... the best day with my friends ..."] * 6)
    f = {x.reason: x for x in findings({"check": "quality_heuristics"}, text)}
    assert "symbol_ratio" in f
    sym = f["symbol_ratio"]
    assert sym.threshold == 0.1 and sym.evidence["hash_ratio"] == pytest.approx(3 / 11, abs=1e-6)
    assert sym.evidence["ellipsis_ratio"] == pytest.approx(2 / 11, abs=1e-6)
    assert "missing_stop_words" not in f


def test_quality_heuristics_rejects_number_soup_and_long_tokens() -> None:
    numbers = " ".join(str(i * 37 % 1000) for i in range(60))
    f = {x.reason: x for x in findings({"check": "quality_heuristics"}, numbers)}
    assert set(f) >= {"alphabetic_share", "missing_stop_words"}
    assert f["alphabetic_share"].evidence["alphabetic_share"] == 0.0
    assert f["missing_stop_words"].evidence["stop_words"] == 0.0

    blob = " ".join(["the", "of"] + ["aGVsbG8gd29ybGQgdGhpcyBpcyBiYXNlNjQ="] * 60)
    f = {x.reason: x for x in findings({"check": "quality_heuristics"}, blob)}
    assert list(f) == ["mean_word_length"]
    assert f["mean_word_length"].threshold == 10 and f["mean_word_length"].evidence["mean_word_length"] > 30

    tiny = " ".join(["a b c to of the"] * 10)
    assert reasons({"check": "quality_heuristics"}, tiny) == ["mean_word_length"]


def test_quality_heuristics_ignores_markdown_markers_and_code_blocks() -> None:
    md = ("## Steps\n" + "\n".join(f"- Step {i}: open the file and check that it has the right data."
                                   for i in range(8))
          + "\n```python\n" + "print('...')  # TODO ...\n" * 10 + "```\n")
    assert reasons({"check": "quality_heuristics"}, md) == []
    assert "symbol_ratio" in reasons({"check": "quality_heuristics", "skip_code_blocks": False}, md)


def test_quality_heuristics_min_words_is_a_threshold_on_a_stored_score() -> None:
    text = "#a #b #c #d #e #f #g #h #i #j"
    assert reasons({"check": "quality_heuristics"}, text) == []
    assert "symbol_ratio" in reasons({"check": "quality_heuristics", "min_words": 5}, text)


# -------------------------------------------------------------------------------------- flagged_words
def test_flagged_words_whole_words_any_case_with_positions() -> None:
    text = "Damn, this printer is crap. DAMN it. The damnation of Faust is an opera."
    f = findings({"check": "flagged_words", "words": ["damn", "crap"]}, text)
    assert [x.reason for x in f] == ["flagged_word"]
    assert f[0].score == 3 and f[0].threshold == 0
    assert f[0].evidence["words"] == ["damn", "crap"]
    assert [(m["start"], m["end"]) for m in f[0].evidence["matches"]] == [(0, 4), (22, 26), (28, 32)]
    assert reasons({"check": "flagged_words", "words": ["damn"]}, "Scrappy dogs fought for the dam.") == []


def test_flagged_words_shipped_list_share_limit_and_phrases() -> None:
    assert reasons({"check": "flagged_words", "words_file": "flagged_words.txt"}, "What a crappy day.") == \
        ["flagged_word"]
    share = {"check": "flagged_words", "words": ["crap"], "max_count": None, "max_share": 0.2}
    assert reasons(share, "The demo was crap but the food was great.") == []
    f = findings(share, "Crap. Total crap.")
    assert [x.reason for x in f] == ["flagged_word"] and f[0].score == pytest.approx(2 / 3)
    assert reasons({"check": "flagged_words", "words": ["bloody hell"]}, "Bloody  hell, it rained.") == \
        ["flagged_word"]


def test_flagged_words_needs_a_list(tmp_path: Path) -> None:
    model = REGISTRY["flagged_words"].params_model
    with pytest.raises(ValidationError):
        model.model_validate({})
    with pytest.raises(ValidationError):
        model.model_validate({"words_file": str(tmp_path / "missing.txt")})
    own = tmp_path / "mine.txt"
    own.write_text("# my list\nfoobar\n", encoding="utf-8")
    assert reasons({"check": "flagged_words", "words_file": str(own)}, "Say FooBar twice.") == ["flagged_word"]


# ------------------------------------------------------------------------------------------------ pii
def pii(text: str, **params: Any) -> list[Finding]:
    return findings({"check": "pii", **params}, text)


def spans(text: str) -> list[tuple[str, str]]:
    return [(kind, text[s:e]) for kind, s, e in find_pii(text)]


def assert_value_hidden(f: Finding, *values: str) -> None:
    dumped = f.message + json.dumps(f.to_dict())
    for v in values:
        assert v not in dumped
        assert v.replace(" ", "").replace("-", "") not in dumped


def test_pii_email_and_phone_report_spans_only() -> None:
    text = "Write to jane.doe@example.com or call +1 (415) 555-0132 after 5pm."
    f = pii(text)
    assert [x.reason for x in f] == ["pii"]
    assert f[0].score == 2 and f[0].threshold == 0
    assert f[0].evidence["matches"] == [{"kind": "email", "start": 9, "end": 29},
                                        {"kind": "phone", "start": 38, "end": 55}]
    assert f[0].message == "text contains 2 personal data items: email at 9-29, phone at 38-55"
    assert_value_hidden(f[0], "jane.doe@example.com", "+1 (415) 555-0132", "555-0132", "jane.doe")


def test_pii_credit_card_luhn_valid_vs_invalid() -> None:
    assert luhn_ok("4111111111111111") and not luhn_ok("4111111111111112")
    valid = "Charge it to 4111 1111 1111 1111, expiry 12/27."
    f = pii(valid)
    assert [m["kind"] for m in f[0].evidence["matches"]] == ["credit_card"]
    assert_value_hidden(f[0], "4111 1111 1111 1111", "1111")
    assert spans("Amex 3782-822463-10005 works.") == [("credit_card", "3782-822463-10005")]
    assert pii("Charge it to 4111 1111 1111 1112, expiry 12/27.") == []


def test_pii_iban_valid_vs_invalid() -> None:
    assert iban_ok("DE89370400440532013000") and not iban_ok("DE89370400440532013001")
    text = "Please pay into DE89 3704 0044 0532 0130 00 by Friday."
    f = pii(text)
    assert f[0].evidence["matches"] == [{"kind": "iban", "start": 16, "end": 43}]
    assert_value_hidden(f[0], "DE89 3704 0044 0532 0130 00", "DE89")
    assert spans("IBAN GB82 WEST 1234 5698 7654 32 THANKS") == [("iban", "GB82 WEST 1234 5698 7654 32")]
    assert pii("Please pay into DE89 3704 0044 0532 0130 01 by Friday.") == []


def test_pii_ssn_and_ip_addresses() -> None:
    text = "SSN 123-45-6789; server 203.0.113.7 and 2001:db8::8a2e:370:7334."
    assert spans(text) == [("ssn", "123-45-6789"), ("ipv4", "203.0.113.7"),
                           ("ipv6", "2001:db8::8a2e:370:7334")]
    f = pii(text)
    assert f[0].evidence["counts"] == {"ssn": 1, "ipv4": 1, "ipv6": 1}
    assert_value_hidden(f[0], "123-45-6789", "203.0.113.7", "2001:db8::8a2e:370:7334")
    assert spans("Area 000-12-3456, 666-12-3456 and 912-34-5678 are never issued.") == []
    assert spans("Octets 256.1.2.3 and 1.2.3 are invalid; v1.2.3.4 is a version.") == []
    assert spans("Run it on 127.0.0.1 or ::1, slice x[1::2], meet at 12:30:45.") == []


def test_pii_phone_formats() -> None:
    assert spans("Office: 020 7946 0958.") == [("phone", "020 7946 0958")]
    assert spans("Mobiel 06-12345678 of 01 23 45 67 89.") == [("phone", "06-12345678"), ("phone", "01 23 45 67 89")]
    assert spans("US line (212) 555-0187 or 212.555.0187.") == [("phone", "(212) 555-0187"),
                                                                 ("phone", "212.555.0187")]
    assert spans("Ring +49 30 12345678 today") == [("phone", "+49 30 12345678")]


@pytest.mark.parametrize("text", [
    "Founded in 2019, the company sold 12000 units.",
    "The laptop costs $1,299 or 1.299,00 EUR.",
    "The meeting is on 01.03.2021 14:30 in room 101.",
    "Dates 2019-05-12 and 05-12-2019; ISBN 978-0-306-40615-7; extension 555-0132.",
    "Pi is 3.14159265358979 and e is 2.718281828.",
    "Order #12345 shipped; tracking 1Z999AA10123456784.",
])
def test_pii_leaves_numbers_that_are_not_personal_data(text: str) -> None:
    assert pii(text) == []


def test_pii_kinds_and_max_matches() -> None:
    text = "Mail ops@example.org, servers 198.51.100.4 and 198.51.100.5."
    assert pii(text, kinds=["email"])[0].evidence["matches"] == [{"kind": "email", "start": 5, "end": 20}]
    assert pii(text, kinds=["phone", "iban"]) == []
    assert pii(text, max_matches=3) == []
    f = pii(text, max_matches=2)
    assert f[0].score == 3 and f[0].threshold == 2
    assert f[0].message.startswith("text contains 3 personal data items: email at 5-20, ipv4 at 30-42")
    with pytest.raises(ValidationError):
        REGISTRY["pii"].params_model.model_validate({"kinds": ["passport"]})


def test_pii_through_registry_on_a_field() -> None:
    from qualgate.sample import Sample

    check_cls = REGISTRY["pii"]
    check = check_cls("pii", check_cls.params_model.model_validate({"field": "output"}))
    sample = Sample(id="1", record={"output": "Contact: bob@example.net"}, text="ignored")
    m = check.score(sample)
    assert m.values["email"] == 1 and m.values["matches"] == 1
    (finding,) = check.decide(m)
    assert finding.message == "field 'output' contains 1 personal data item: email at 9-24"


# ------------------------------------------------------------------------------------------- fixture
def test_fixture_file_through_the_gate() -> None:
    path = Path(__file__).resolve().parent.parent / "fixtures" / "text_quality_sample.jsonl"
    records = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    checks = [{"check": "repetition", "min_words": 20}, {"check": "quality_heuristics"}, {"check": "pii"},
              {"check": "flagged_words", "words_file": "flagged_words.txt"}]
    gate = Gate.from_config({"version": 1, "input": {"text": "text", "id": "id"}, "checks": checks},
                            cache_dir=None, all_findings=True)
    got = {d.id: sorted({f.reason for f in d.findings}) for d in gate.run(records).decisions}
    assert got == {"ok-prose": [], "ok-short": [], "loop": ["duplicated_ngrams", "top_ngram"],
                   "hashtags": ["duplicated_ngrams", "symbol_ratio", "top_ngram"],
                   "pii": ["pii"], "swear": ["flagged_word"]}
