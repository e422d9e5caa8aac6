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
    # short lines one after another are list items: only the line measures judge them
    assert set(reasons({"check": "repetition", "min_words": 20}, text)) == {"duplicate_lines"}
    assert set(reasons({"check": "repetition", "min_words": 20, "max_list_share": None}, text)) == {
        "duplicate_lines", "top_ngram", "duplicated_ngrams"}
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
    assert "duplicate_lines" in reasons({"check": "repetition", "skip_symbol_lines": False, "max_code_share": None},
                                        code)


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
    assert reasons({"check": "quality_heuristics"}, numbers) == []  # numbers only: an answer, not web junk
    f = {x.reason: x for x in findings({"check": "quality_heuristics", "max_numeric_share": None}, numbers)}
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
    assert "symbol_ratio" in reasons({"check": "quality_heuristics", "skip_code_blocks": False,
                                      "max_list_share": None, "max_code_share": None}, md)


def test_quality_heuristics_min_words_is_a_threshold_on_a_stored_score() -> None:
    text = "#a #b #c #d #e #f #g #h #i #j"
    assert reasons({"check": "quality_heuristics"}, text) == []
    assert "symbol_ratio" in reasons({"check": "quality_heuristics", "min_words": 5}, text)


# ------------------------------------------------------ issue 19: lists, numbers, code, prompts, tasks
def record_findings(check: dict[str, Any], record: dict[str, Any]) -> dict[str, Finding]:
    """Findings on an instruction record read through the default pack's ``auto`` view."""
    gate = Gate.from_config({"version": 1, "input": {"text": "auto"}, "checks": [check]}, cache_dir=None,
                            all_findings=True)
    return {f.reason: f for f in gate.run([record]).decisions[0].findings}


def evidence(check: dict[str, Any], record: dict[str, Any]) -> dict[str, Any]:
    gate = Gate.from_config({"version": 1, "input": {"text": "auto"}, "checks": [check]}, cache_dir=None)
    return gate.run([record]).decisions[0].evidence.get(check["check"], {})


BUDGET = {"instruction": "Create an example monthly budget for a family of four with an income of $6,000.",
          "input": "",
          "output": "A monthly budget for a family of four earning $6,000 could look like this:\n"
                    + "\n".join(f"{item}: ${amount:,} ({amount / 60:.0f}%)" for item, amount in
                                [("Housing", 1800), ("Utilities", 300), ("Food", 900), ("Transportation", 500),
                                 ("Insurance", 400), ("Health", 300), ("Childcare", 600), ("Savings", 600),
                                 ("Debt payments", 300), ("Entertainment", 150), ("Clothing", 100),
                                 ("Miscellaneous", 50)])
                    + "\nTotal: $6,000 (100%)"}
CODE = {"instruction": "Write a function in Python that returns the nth Fibonacci number.", "input": "",
        "output": "def fibonacci(n):\n    a = 0\n    b = 1\n    if n < 0:\n        print('Incorrect input')\n"
                  "    elif n == 0:\n        return a\n    elif n == 1:\n        return b\n    else:\n"
                  "        for i in range(2, n + 1):\n            c = a + b\n            a = b\n            b = c\n"
                  "        return b\n\nprint(fibonacci(9))  # 34\nprint(fibonacci(10))  # 55\n"
                  "print(fibonacci(1))  # 1\nprint(fibonacci(0))  # 0\nprint(fibonacci(2))  # 1"}
PARAGRAPH = ("Machine learning is a field of computer science that uses statistical techniques to give computer "
             "systems the ability to learn from data, progressively improving their performance on a specific "
             "task without being explicitly programmed. Machine learning algorithms build a mathematical model "
             "based on sample data, known as training data, in order to make predictions or decisions without "
             "being explicitly programmed to perform the task, and they are used in email filtering and vision.")
TRIM = {"instruction": "Rewrite the paragraph to make it more concise without changing the content.",
        "input": PARAGRAPH,
        "output": "Machine learning is a field of computer science that uses statistical techniques to give computer "
                  "systems the ability to learn from data, progressively improving their performance on a specific "
                  "task. Machine learning algorithms build a mathematical model based on sample data, known as "
                  "training data, to make predictions or decisions without being explicitly programmed."}
RESTATED = {"instruction": "Explain why science fiction is a genre of literature that is relevant today.",
            "input": "",
            "output": "Science fiction is a genre of literature that is relevant today because it explores "
                      "contemporary issues such as climate change, surveillance and inequality in imaginative "
                      "ways. Through its metaphors, science fiction allows readers to examine political, social "
                      "and ethical questions from a distance, which makes them easier to discuss. Science fiction "
                      "is a genre of literature that also inspires scientists and engineers, and many of the "
                      "devices we use every day were first imagined in its stories. Finally, it asks what it "
                      "means to be human, a question that grows more urgent as machines learn to think."}
REPEAT = {"instruction": "Repeat the sentence 5 times.", "input": "I will always try my best.",
          "output": "\n".join(["I will always try my best."] * 5)}
PLANETS = {"instruction": "Name the planets of the solar system with one fact about each.", "input": "",
           "output": "\n".join(f"{i}. {name} is the {nth} planet from the sun and it {fact}." for i, (name, nth, fact)
                               in enumerate([("Mercury", "first", "has no moons at all"),
                                             ("Venus", "second", "is the hottest of them all"),
                                             ("Earth", "third", "is the only one known to host life"),
                                             ("Mars", "fourth", "has the tallest volcano we know"),
                                             ("Jupiter", "fifth", "is the largest of them all"),
                                             ("Saturn", "sixth", "has the most visible rings"),
                                             ("Uranus", "seventh", "rotates on its side"),
                                             ("Neptune", "eighth", "has the strongest winds")], 1))}
SONG = {"instruction": "Compose a song about staying positive in difficult times.", "input": "",
        "output": "Verse 1:\nWhen the darkness shows its face\nAnd all you see is fear\nTake a breath and trust\n"
                  "That brighter days are near\n\nChorus:\nKeep your head high, you are strong\nFind the place "
                  "where you belong\nOne day at a time\nYou will be fine\n\nVerse 2:\nWhen the road is long and "
                  "steep\nAnd the night is cold and deep\nHold on to the light\nIt will be all right\n\nChorus:\n"
                  "Keep your head high, you are strong\nFind the place where you belong\nOne day at a time\n"
                  "You will be fine"}
LOOPING = {"instruction": "Describe the benefits of regular exercise.", "input": "",
           "output": "Regular exercise improves your health. " + "It is important to exercise every day because "
                     "exercise is good for your body and your mind. " * 8 + "In conclusion, exercise is good."}
SYMBOL_SOUP = {"instruction": "Write a short welcome message for new members of the club.", "input": "",
               "output": " ".join(["@@## $$%% &&** ~~^^ !!?? ==++ <<>> ||\\\\ welcome"] * 7)}


def test_numeric_list_answer_is_not_judged_by_quality_heuristics() -> None:
    assert record_findings({"check": "quality_heuristics"}, BUDGET) == {}
    assert evidence({"check": "quality_heuristics"}, BUDGET)["skipped"] == {"answer": "numeric"}
    # the skip is a parameter: unset, Gopher's alphabetic share rejects the budget as before
    assert "alphabetic_share" in record_findings({"check": "quality_heuristics", "max_numeric_share": None,
                                                  "max_list_share": None}, BUDGET)


def test_a_table_given_as_input_is_left_out_and_the_prose_answer_measured() -> None:
    rows = " ".join(f"{name} | {units} | ${price} | {year}" for name, units, price, year in
                    [("Shoes", 1000, 50, 2019), ("T-shirts", 500, 15, 2019), ("Jackets", 150, 80, 2020),
                     ("Hats", 90, 12, 2020), ("Socks", 1200, 5, 2021), ("Scarves", 60, 25, 2021)])
    record = {"instruction": "Evaluate the sales data provided in this table.",
              "input": "Product | Units Sold | Price | Year ------- | ------- | ------- | ------- " + rows,
              "output": "Socks and shoes sell the most units, while scarves and hats sell the fewest. Jackets "
                        "have the highest price, so they may still earn a good share of the revenue."}
    assert record_findings({"check": "quality_heuristics"}, record) == {}
    assert evidence({"check": "quality_heuristics"}, record)["skipped"] == {"input": "numeric"}
    # as one text it is a third numbers and table rules: not judged at all, or (skips unset) rejected
    assert record_findings({"check": "quality_heuristics", "prompt_fields": []}, record) == {}
    assert "alphabetic_share" in record_findings({"check": "quality_heuristics", "prompt_fields": [],
                                                  "max_numeric_share": None, "max_list_share": None}, record)


def test_code_answer_is_not_judged_by_either_gopher_check() -> None:
    assert record_findings({"check": "quality_heuristics"}, CODE) == {}
    assert record_findings({"check": "repetition"}, CODE) == {}
    assert evidence({"check": "repetition"}, CODE)["skipped"]["answer"] == "code"
    assert "alphabetic_share" in record_findings({"check": "quality_heuristics", "max_code_share": None,
                                                  "max_numeric_share": None}, CODE)


def test_edit_task_and_restated_question_are_measured_part_by_part() -> None:
    # the composed view (instruction + input + answer) repeats the input's 5-grams; each part alone does not
    for record in (TRIM, RESTATED):
        assert record_findings({"check": "repetition"}, record) == {}, record["instruction"]
        assert "duplicated_ngrams" in record_findings({"check": "repetition", "prompt_fields": []}, record)
    assert evidence({"check": "repetition"}, TRIM)["parts"] == ["instruction", "input", "answer"]


def test_repeat_five_times_task_is_not_judged_for_repetition() -> None:
    assert record_findings({"check": "repetition"}, REPEAT) == {}
    ev = evidence({"check": "repetition"}, REPEAT)
    assert ev["skipped"] == {"text": "transformation_task"} and "5 times" in ev["task"]
    assert "duplicate_lines" in record_findings({"check": "repetition", "instruction_field": None}, REPEAT)
    no_task = {"text": REPEAT["instruction"] + "\n" + REPEAT["output"]}  # no instruction field: no task
    assert "duplicate_lines" in record_findings({"check": "repetition"}, no_task)
    # the instruction role is read from the field a file names it by (prompt/completion here)
    prompt = {"prompt": REPEAT["instruction"], "completion": REPEAT["output"]}
    assert record_findings({"check": "repetition", "prompt_fields": []}, prompt) == {}
    assert evidence({"check": "repetition"}, prompt)["skipped"] == {"text": "transformation_task"}


def test_parallel_list_items_and_a_chorus_are_not_repetition() -> None:
    assert record_findings({"check": "repetition", "min_words": 50}, PLANETS) == {}
    assert evidence({"check": "repetition", "min_words": 50}, PLANETS)["skipped"]["answer"] == "list"
    assert record_findings({"check": "repetition"}, SONG) == {}
    assert evidence({"check": "repetition"}, SONG)["skipped"]["answer"] == "lyrics"
    assert "duplicate_paragraphs" in record_findings({"check": "repetition", "skip_lyrics": False}, SONG)


def test_degenerate_loop_and_symbol_soup_are_still_rejected() -> None:
    loop = record_findings({"check": "repetition"}, LOOPING)
    assert {"duplicated_ngrams", "top_ngram"} <= set(loop)
    assert loop["duplicated_ngrams"].score is not None and loop["duplicated_ngrams"].score > 0.8
    soup = record_findings({"check": "quality_heuristics"}, SYMBOL_SOUP)
    assert {"alphabetic_share", "symbol_ratio"} <= set(soup)


def test_layout_shares_on_real_like_snippets() -> None:
    from qualgate.checks.text_quality import layout_shares
    assert layout_shares(PROSE) == {"list": 0.0, "numeric": 0.0, "code": 0.0}
    assert layout_shares(CODE["output"])["code"] > 0.9
    assert layout_shares(BUDGET["output"])["numeric"] > 0.3
    assert layout_shares(PLANETS["output"])["list"] == 1.0
    assert layout_shares("baby, shower, joy, love, family, bundle, party, rattle")["list"] == 1.0
    assert layout_shares("Country | Capital\nCanada | Ottawa\nMexico | Mexico City")["list"] == 1.0
    assert layout_shares("<no input>")["code"] == 0.0  # an Alpaca placeholder, not an HTML tag


def test_letter_and_number_counts_match_the_per_character_rules() -> None:
    """The token counts skip every token with an ASCII letter before testing characters one by one; the counts
    must be those of the per-character rules, non-ASCII letters, digits and math signs included."""
    from qualgate.checks.text_quality import _MATH, layout_shares, letterless_tokens

    text = ("x\u00b2 \u00b2 \u00bd 42 $2.50 (33%) + = -- \u2014 \u65e5\u672c \u00e9t\u00e9 caf\u00e9, \u216b [1] a1 "
            "\u2161")
    tokens = text.split()
    assert letterless_tokens(text) == sum(not any(c.isalpha() for c in t) for t in tokens)
    numeric = sum(1 for t in tokens if not any(c.isalpha() for c in t)
                  and (any(c.isdigit() for c in t) or t.strip("()[]") in _MATH))
    assert layout_shares(text)["numeric"] == numeric / len(tokens)
    shares = layout_shares(text)  # a copy: changing it does not change what the next call gets
    shares["numeric"] = -1.0
    assert layout_shares(text)["numeric"] == numeric / len(tokens)


@pytest.mark.parametrize(("line", "code"), [
    ("total = a + b;", True), ("    return x", True), ("}", True), ("for (i = 0; i < n; i++) {", True),
    ("print(x)", True), ("SET x TO 5", True), ("    // loop over the rows", True), ("import sys", True),
    ("SELECT name, age ", True), ("from bs4 import BeautifulSoup", True), ("    for num in numbers:", True),
    ("if (x > 0) {", True), ("<div class=\"row\">", True),
    ("Plain prose, nothing more.", False), ("<no input>", False), ("Return the list sorted by price.", False),
    ("long term", False), ("private", False), ("class the teacher stops", False),  # Alpaca inputs, not C or Java
])
def test_code_line_is_one_rule_for_language_and_layout(line: str, code: bool) -> None:
    """One code-line rule (checks.common.code_line) for the language check and the layout shares: what either
    used to call code (comments and Python loops; bare SQL clauses and imports) is code for both."""
    from qualgate.checks.common import code_line

    assert code_line(line) is code


def test_default_pack_suggests_the_pack_that_fits_instruction_and_chat_records(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from qualgate.cli import main
    from qualgate.packs import suggested_pack

    assert suggested_pack({"instruction": "Name a color.", "input": "", "output": "Blue."}) == "instruct"
    assert suggested_pack({"prompt": "Name a color.", "completion": "Blue."}) == "instruct"
    assert suggested_pack({"messages": [{"role": "user", "content": "Hi"}]}) == "chat"
    assert suggested_pack({"text": "Blue is a color."}) is None
    instruct = tmp_path / "alpaca.jsonl"
    instruct.write_text("".join(json.dumps({"instruction": f"Name a color that starts with {c}.", "input": "",
                                            "output": f"{c}: a color I like."}) + "\n" for c in "ABCDE"))
    chats = tmp_path / "chats.jsonl"
    chats.write_text("".join(json.dumps({"messages": [{"role": "user", "content": f"What is {i} plus {i}?"},
                                                      {"role": "assistant", "content": f"It is {2 * i}."}]}) + "\n"
                             for i in range(4)))
    for src, pack in ((instruct, "instruct"), (chats, "chat")):
        out = tmp_path / f"out_{pack}"
        result = CliRunner().invoke(main, ["filter", str(src), "-c", "default", "-o", str(out), "--no-html",
                                           "--no-cache", "-j", "1"], catch_exceptions=False)
        notes = [line for line in result.output.splitlines() if line.startswith("  note:")]
        assert len(notes) == 1 and f"try -c {pack}" in notes[0], result.output
        report = json.loads((out / "report.json").read_text())
        assert len(report["notes"]) == 1 and f"-c {pack}" in report["notes"][0]
        assert "## Notes" in (out / "report.md").read_text()
    # the pack it suggests says nothing more
    result = CliRunner().invoke(main, ["filter", str(instruct), "-c", "instruct", "-o", str(tmp_path / "i"),
                                       "--no-html", "--no-cache", "-j", "1"], catch_exceptions=False)
    assert "note:" not in result.output
    assert json.loads((tmp_path / "i" / "report.json").read_text())["notes"] == []


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
