"""Each shipped pack on a few records of the shape it is for: the right samples rejected for the right reasons."""

from __future__ import annotations

from typing import Any

import pytest

from qualgate import Gate
from qualgate.config import load_config
from qualgate.packs import pack_names


def first_reasons(pack: str, records: list[dict[str, Any]], **config: Any) -> dict[str, str | None]:
    cfg: dict[str, Any] = {"version": 1, "extends": pack, "input": {"id": "id"}, **config}
    result = Gate.from_config(cfg, cache_dir=None).run(records)
    return {d.id: (d.findings[0].reason if d.findings else None) for d in result.decisions}


@pytest.mark.parametrize("pack", ["default", "instruct", "chat", "code", "tinystories", "json"])
def test_the_issue_packs_are_shipped_and_extendable(pack: str) -> None:
    assert pack in pack_names()
    assert load_config({"version": 1, "extends": pack}).checks


def test_chat_pack() -> None:
    ok = [{"role": "user", "content": "How do I boil an egg?"},
          {"role": "assistant", "content": "Put it in boiling water for nine minutes, then cool it in cold water."}]
    got = first_reasons("chat", [
        {"id": "ok", "messages": ok},
        {"id": "twice", "messages": [ok[0], ok[0], ok[1]]},
        {"id": "user-last", "messages": [*ok, {"role": "user", "content": "Thanks, and how long for a soft one?"}]},
        {"id": "leak", "messages": [ok[0], {"role": "assistant", "content": "Boil it.\nUser: and then?"}]},
        {"id": "refuses", "messages": [ok[0], {"role": "assistant", "content": "I'm sorry, but I can't help with "
                                                                                "cooking questions."}]},
    ])
    assert got == {"ok": None, "twice": "bad_alternation", "user-last": "wrong_final_role", "leak": "role_leak",
                   "refuses": "boilerplate_phrase"}  # default's boilerplate list runs first and knows this phrase


def test_code_pack() -> None:
    good = "```python\ndef add(a, b):\n    return a + b\n```"
    got = first_reasons("code", [
        {"id": "ok", "instruction": "Write a Python function that adds two numbers.", "input": "", "output": good},
        {"id": "syntax", "instruction": "Write a Python function that adds two numbers.", "input": "",
         "output": "```python\ndef add(a, b)\n    return a + b\n```"},
        {"id": "brace", "instruction": "Write a JavaScript function that adds two numbers.", "input": "",
         "output": "```javascript\nfunction add(a, b) {\n  return a + b;\n```"},
    ])
    assert got == {"ok": None, "syntax": "syntax_error", "brace": "unbalanced"}


def test_code_pack_reads_template_syntax_and_code_edits_as_code() -> None:
    """Code Alpaca false positives: Angular/Jinja ``{{var}}`` and Lorem ipsum filler are not placeholders in code,
    and a fix that keeps most lines of the given code is not an echo; a left-over <noinput> still is."""
    angular = ("import { Component } from '@angular/core';\n@Component({selector: 'book-list', template: `<ul>"
               "<li *ngFor=\"let book of books\">{{book.title}} by {{book.author}}</li></ul>`})\n"
               "export class BookListComponent { books = BOOKS; }")
    code = "arr = [2, 3, 7, 5, 10]\n\nfor i in range(len(arr)):\n    print(arr)"
    got = first_reasons("code", [
        {"id": "angular", "instruction": "Create an Angular component to display a list of books.", "input": "",
         "output": angular},
        {"id": "lorem", "instruction": "Write an HTML page that shows the given text in two columns.",
         "input": "<p>Lorem ipsum dolor sit amet.</p>",
         "output": "<html><body><div class=\"col\"><p>Lorem ipsum dolor sit amet.</p></div></body></html>"},
        {"id": "fix", "instruction": "Modify the following code to make it print each element separately.",
         "input": code, "output": code.replace("print(arr)", "print(arr[i])")},
        {"id": "noinput", "instruction": "Write a SQL query for the maximum salary.",
         "input": "Table: Salary\n<noinput>", "output": "SELECT MAX(Salary) FROM Salary"},
    ])
    assert got == {"angular": None, "lorem": None, "fix": None, "noinput": "placeholder"}


def test_tinystories_pack() -> None:
    simple = ("Tom had a big red ball. He liked to play with it in the park. One day the ball went up a tree. "
              "Tom was sad. His mom came and got the ball down. Tom was happy again and said thank you.")
    hard = ("The epistemological ramifications of quantum decoherence perplexed the distinguished professor, "
            "whose meticulous hypotheses nonetheless remained unverified by contemporaneous experimentation.")
    got = first_reasons("tinystories", [
        {"id": "ok", "text": simple, "words": ["ball", "happy", "tree"]},
        {"id": "hard", "text": hard, "words": []},
        {"id": "missing", "text": simple, "words": ["dog"]},
    ], checks=[{"name": "vocabulary", "required_field": "words"}])
    assert got == {"ok": None, "hard": "outside_vocabulary", "missing": "missing_required_word"}


def test_json_pack_with_a_schema() -> None:
    schema = {"type": "object", "required": ["name", "age"],
              "properties": {"name": {"type": "string"}, "age": {"type": "integer"}}}
    got = first_reasons("json", [
        {"id": "ok", "instruction": "Give the person as JSON.", "output": '{"name": "Ada", "age": 36}'},
        {"id": "fenced", "instruction": "Give the person as JSON.",
         "output": '```json\n{"name": "Ada", "age": 36}\n```'},
        {"id": "type", "instruction": "Give the person as JSON.", "output": '{"name": "Ada", "age": "36"}'},
        {"id": "broken", "instruction": "Give the person as JSON.", "output": '{"name": "Ada", "age": 36'},
    ], checks=[{"name": "json_valid", "schema": schema}])
    assert got == {"ok": None, "fenced": None, "type": "schema_violation", "broken": "invalid_json"}


def test_instruct_pack_keeps_short_correct_answers() -> None:
    got = first_reasons("instruct", [
        {"id": "sentiment", "instruction": "Classify the sentiment of this review.",
         "input": "The battery lasts all day and the screen is gorgeous.", "output": "Positive"},
        {"id": "sum", "instruction": "What is 2 + 2?", "input": "", "output": "4"},
        {"id": "city", "instruction": "Identify the capital city in the sentence.",
         "input": "Paris", "output": "Paris"},
        {"id": "echo", "instruction": "Give three tips for staying healthy.", "input": "",
         "output": "Give three tips for staying healthy."},
        {"id": "image", "instruction": "Draw a picture of a cat.", "input": "", "output": "Here is the image: [image]"},
    ])
    assert got == {"sentiment": None, "sum": None, "city": None, "echo": "prompt_echo",
                   "image": "impossible_request"}
