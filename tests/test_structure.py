"""Structure checks (chat_structure, json_valid, code_valid, vocabulary): positive and negative examples."""

from __future__ import annotations

from typing import Any

import pytest

from qualgate import Gate
from qualgate.checks.code import bracket_error, looks_like_python, python_error
from qualgate.errors import ConfigError
from qualgate.findings import Finding


def findings(check: dict[str, Any], record: dict[str, Any], text: str = "auto") -> list[Finding]:
    gate = Gate.from_config({"version": 1, "input": {"text": text}, "checks": [check]}, cache_dir=None,
                            all_findings=True)
    return gate.run([record]).decisions[0].findings


def reasons(check: dict[str, Any], record: dict[str, Any], text: str = "auto") -> list[str]:
    return [f.reason for f in findings(check, record, text)]


def one(check: dict[str, Any], record: dict[str, Any], reason: str, text: str = "auto") -> Finding:
    found = [f for f in findings(check, record, text) if f.reason == reason]
    assert len(found) == 1, [f.reason for f in findings(check, record, text)]
    return found[0]


def chat(*turns: tuple[str, str]) -> dict[str, Any]:
    return {"messages": [{"role": r, "content": c} for r, c in turns]}


# ------------------------------------------------------------------------------------ chat_structure
CHAT = {"check": "chat_structure"}


def test_chat_well_formed_passes_with_and_without_system() -> None:
    assert reasons(CHAT, chat(("user", "How do I boil an egg?"), ("assistant", "Boil it for nine minutes."))) == []
    assert reasons(CHAT, chat(("system", "You are kind."), ("user", "Hi"), ("assistant", "Hello!"),
                              ("user", "Bye"), ("assistant", "Goodbye!"))) == []


def test_chat_sharegpt_conversations_are_accepted() -> None:
    rec = {"conversations": [{"from": "human", "value": "Hi"}, {"from": "gpt", "value": "Hello there."}]}
    assert reasons(CHAT, rec) == []
    bad = {"conversations": [{"from": "human", "value": "Hi"}, {"from": "robot", "value": "Beep."}]}
    f = one(CHAT, bad, "unknown_role")
    assert f.evidence["turn"] == 1 and f.evidence["role"] == "robot"


def test_chat_two_user_turns_in_a_row_is_bad_alternation() -> None:
    rec = chat(("user", "Hi"), ("user", "Are you there?"), ("assistant", "Yes."))
    f = one(CHAT, rec, "bad_alternation")
    assert f.evidence["turn"] == 1 and f.evidence["role"] == "user" and f.score == 1
    assert reasons(CHAT, rec) == ["bad_alternation"]


def test_chat_late_system_message_and_assistant_first_are_bad_alternation() -> None:
    rec = chat(("user", "Hi"), ("system", "Be brief."), ("assistant", "Hello."))
    assert one(CHAT, rec, "bad_alternation").evidence["turn"] == 1
    f = one(CHAT, chat(("assistant", "Hello."), ("user", "Hi"), ("assistant", "Yes?")), "bad_alternation")
    assert f.evidence["turn"] == 0 and f.evidence["role"] == "assistant"


def test_chat_last_turn_from_user_is_wrong_final_role() -> None:
    rec = chat(("user", "Hi"), ("assistant", "Hello."), ("user", "Tell me more."))
    f = one(CHAT, rec, "wrong_final_role")
    assert f.evidence == {"turn": 2, "role": "user", "expected": "assistant"}
    assert reasons({"check": "chat_structure", "final_role": None}, rec) == []


def test_chat_empty_turn_and_too_few_turns() -> None:
    f = one(CHAT, chat(("user", "Hi"), ("assistant", "  \n ")), "empty_turn")
    assert f.evidence["turn"] == 1 and f.evidence["role"] == "assistant"
    f = one(CHAT, chat(("system", "Be kind."), ("assistant", "Hello.")), "too_few_turns")
    assert f.score == 1 and f.threshold == 2


def test_chat_role_text_leaking_into_content() -> None:
    leaked = "Sure, here it is.\nUser: and what about tomorrow?\nAssistant: It will rain."
    f = one(CHAT, chat(("user", "Weather?"), ("assistant", leaked)), "role_leak")
    assert f.evidence["turn"] == 1 and f.evidence["role"] == "assistant" and f.evidence["line"] == 2
    assert f.evidence["match"] == "User:"
    tok = chat(("user", "Hi"), ("assistant", "Hello!<|im_end|>\n<|im_start|>user"))
    assert one(CHAT, tok, "role_leak").evidence["match"] == "<|im_end|>"
    fine = "A user can log in. The user: a person who uses the system."
    assert reasons(CHAT, chat(("user", "Define user."), ("assistant", fine))) == []


def test_chat_missing_or_malformed_messages_is_not_a_chat() -> None:
    f = one(CHAT, {"text": "just prose"}, "not_a_chat")
    assert f.evidence["field"] == "messages" and "missing" in f.evidence["why"]
    check = {"check": "chat_structure", "field": "dialog"}
    f = one(check, {"text": "x", "dialog": [{"role": "user", "content": "Hi"}, "oops"]}, "not_a_chat")
    assert f.evidence["turn"] == 1
    assert reasons(check, {"text": "x", "dialog": [{"role": "user"}]}) == ["not_a_chat"]


# --------------------------------------------------------------------------------------- json_valid
SCHEMA = {"type": "object", "required": ["name", "age"],
          "properties": {"name": {"type": "string"}, "age": {"type": "integer"}}}


def rec(output: str) -> dict[str, str]:
    return {"instruction": "Answer.", "output": output}


def test_json_valid_accepts_plain_and_fenced_json() -> None:
    check = {"check": "json_valid", "schema": SCHEMA}
    assert reasons(check, rec('{"name": "Ann", "age": 7}')) == []
    assert reasons(check, rec('Here you go:\n```json\n{"name": "Ann", "age": 7}\n```')) == []
    assert reasons({"check": "json_valid", "allow_fence": False}, rec('```json\n{"a": 1}\n```')) == ["invalid_json"]


def test_json_invalid_reports_line_and_column() -> None:
    f = one({"check": "json_valid"}, rec('{\n  "a": 1,\n  "b": }'), "invalid_json")
    assert f.evidence["line"] == 3 and f.evidence["column"] == 8 and f.evidence["error"] == "Expecting value"
    f = one({"check": "json_valid"}, rec('Result:\n```json\n{"a": [1, 2}\n```'), "invalid_json")
    assert f.evidence["line"] == 3 and f.evidence["fenced"] is True


def test_json_schema_violation_wrong_type() -> None:
    f = one({"check": "json_valid", "schema": SCHEMA}, rec('{"name": "Ann", "age": "seven"}'), "schema_violation")
    assert f.evidence["path"] == "$.age" and "'seven' is not of type 'integer'" in f.evidence["error"]
    assert f.score == 1 and len(f.evidence["errors"]) == 1
    f = one({"check": "json_valid", "schema": SCHEMA}, rec("[1, 2]"), "schema_violation")
    assert f.evidence["path"] == "$"


def test_json_schema_file_and_bad_schema_is_config_error(tmp_path: Any) -> None:
    path = tmp_path / "person.json"
    path.write_text('{"type": "object", "required": ["name"]}', encoding="utf-8")
    check = {"check": "json_valid", "schema_file": str(path)}
    assert reasons(check, rec('{"age": 3}')) == ["schema_violation"]
    assert reasons(check, rec('{"name": "Bo"}')) == []
    with pytest.raises(ConfigError, match="invalid JSON Schema"):
        findings({"check": "json_valid", "schema": {"type": "banana"}}, rec("{}"))
    with pytest.raises(ConfigError, match="not both"):
        findings({"check": "json_valid", "schema": SCHEMA, "schema_file": str(path)}, rec("{}"))


# --------------------------------------------------------------------------------------- code_valid
CODE = {"check": "code_valid"}


def test_code_valid_python_passes_and_syntax_error_fails() -> None:
    good = "Use this:\n```python\ndef add(a, b):\n    return a + b\n\nprint(add(1, 2))\n```\nDone."
    assert reasons(CODE, rec(good)) == []
    bad = "Use this:\n```python\ndef add(a, b)\n    return a + b\n```"
    f = one(CODE, rec(bad), "syntax_error")
    assert f.evidence["block"] == 0 and f.evidence["language"] == "python" and f.evidence["line"] == 1
    assert f.evidence["field_line"] == 3 and "expected ':'" in f.evidence["error"]


def test_code_valid_python_is_guessed_for_unlabelled_blocks_and_console_sessions() -> None:
    assert reasons(CODE, rec("```\nimport os\nfor x in range(3):\n    print(x\n```")) == ["syntax_error"]
    assert reasons(CODE, rec("```pycon\n>>> 1 + 1\n2\n>>> print('hi')\nhi\n```")) == []
    assert reasons(CODE, rec("```python\n!pip install requests\nimport requests\n```")) == []


def test_code_valid_javascript_missing_brace_is_unbalanced() -> None:
    js = "```javascript\nfunction greet(name) {\n  if (name) {\n    console.log(`Hi ${name}`);\n}\n```"
    f = one(CODE, rec(js), "unbalanced")
    assert f.evidence["bracket"] == "{" and f.evidence["line"] == 1 and f.evidence["language"] == "javascript"
    ok = "```js\nfunction greet(name) {\n  // a } in a comment\n  return \"}\" + '{';\n}\n```"
    assert reasons(CODE, rec(ok)) == []


def test_code_valid_quotes_comments_and_skipped_languages() -> None:
    assert reasons(CODE, rec('```c\nprintf("hello);\n```')) == ["unbalanced"]
    assert reasons(CODE, rec("```rust\nfn f<'a>(x: &'a str) -> &'a str { x }\n```")) == []
    assert reasons(CODE, rec("```text\nthis ( is not code\n```")) == []
    assert reasons(CODE, rec("```sql\nSELECT * FROM t -- (unclosed in a comment\nWHERE a = 'it''s';\n```")) == []


def test_code_valid_raw_and_require_code() -> None:
    assert reasons({"check": "code_valid", "require_code": True}, rec("No code here.")) == ["no_code"]
    assert reasons({"check": "code_valid"}, rec("No code here.")) == []
    raw = {"check": "code_valid", "raw": True, "language": "python"}
    assert reasons(raw, rec("x = [1, 2\n")) == ["syntax_error"]
    assert reasons(raw, rec("x = [1, 2]\n")) == []


def test_code_helpers() -> None:
    assert looks_like_python("def f(x):\n    return x\n")
    assert not looks_like_python("int main() {\n  return 0;\n}\n")
    assert python_error("x = (") is not None and python_error("x = ()") is None
    err = bracket_error("a(b]")
    assert err is not None and err["bracket"] == "("
    assert bracket_error("f(a[1], {b: 2})") is None


# --------------------------------------------------------------------------------------- vocabulary
VOCAB = {"check": "vocabulary", "field": "text"}
STORY = ("Once upon a time, there was a little girl named Lily. She loved to play with her red ball in the park. "
         "One sunny day, Lily saw a big dog. The dog was friendly and wanted to play too. They ran and jumped "
         "together all day. Lily's mom smiled. \"You are my best friend!\" Lily said, and she hugged the happy dog.")
HARD = ("The archaeologist meticulously catalogued the ephemeral phenomena, notwithstanding the bureaucratic "
        "impediments that jeopardised the expedition's infrastructure.")


def test_vocabulary_simple_story_passes() -> None:
    assert reasons(VOCAB, {"text": STORY}) == []


def test_vocabulary_hard_words_fail_with_evidence() -> None:
    f = one(VOCAB, {"text": HARD}, "outside_vocabulary")
    assert "archaeologist" in f.evidence["unknown"] and "meticulously" in f.evidence["unknown"]
    assert "the" not in f.evidence["unknown"] and f.threshold == 0.05
    assert f.evidence["share"] == f.score and f.score is not None and f.score > 0.5
    assert reasons({**VOCAB, "max_outside_share": 1.0}, {"text": HARD}) == []
    assert reasons({**VOCAB, "extra_words": ["archaeologist"]}, {"text": "The archaeologist was happy."}) == []


def test_vocabulary_required_words_with_inflections() -> None:
    check = {**VOCAB, "required_field": "words"}
    assert reasons(check, {"text": STORY, "words": ["jump", "happy", "ball"]}) == []
    assert reasons(check, {"text": STORY, "words": "play, friend, smile"}) == []
    f = one(check, {"text": STORY, "words": ["jump", "happy", "cake"]}, "missing_required_word")
    assert f.evidence["missing"] == ["cake"] and f.score == 1
    assert reasons(check, {"text": STORY, "words": ["run", "see"]}) == []  # irregular: ran, saw


def test_vocabulary_required_field_missing_is_malformed() -> None:
    f = findings({**VOCAB, "required_field": "words"}, {"text": STORY})
    assert [x.reason for x in f] == ["missing_field"] and f[0].check == "malformed"


def test_vocabulary_bad_words_file_is_config_error() -> None:
    with pytest.raises(ConfigError):
        findings({**VOCAB, "words_file": "no_such_list.txt"}, {"text": STORY})
