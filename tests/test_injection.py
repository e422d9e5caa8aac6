"""Hostile strings from data, configs and pull requests cannot reshape Markdown output or drive a terminal.

Ids, file names, messages, reviewer names and notes carry backticks, pipes, newlines, HTML comments, script
tags, links, mentions, ANSI/OSC escape sequences, carriage returns, backspaces, C1 controls and bidi
overrides. The PR summary of ``qualgate check``, report.md (and ``qualgate report``), report.junit.xml,
``qualgate explain`` and ``qualgate tune`` are built from real runs over such data and parsed back with a
CommonMark + GFM-table parser (markdown-it-py) or checked for raw control characters.
"""

from __future__ import annotations

import json
import re
import subprocess
import unicodedata
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner
from hypothesis import example, given, settings
from hypothesis import strategies as st
from markdown_it import MarkdownIt
from markdown_it.token import Token

from qualgate.check import summary_markdown
from qualgate.cli import main
from qualgate.gate import Gate
from qualgate.io import read_records
from qualgate.untrusted import md_code, md_text, term

HOSTILE = [
    "a|b`c\n<!-- x",
    "-->",
    "<script>alert(1)</script>",
    "[click](javascript:alert(1))",
    "@octocat #12",
    "\x1b[31mred\x1b[0m\x1b]8;;http://evil.example\x1b\\link\x1b]8;;\x1b\\",
    "over\rwrite\bback",
    "\x9b2J\x85nel",
    "\u202eevil\u2066iso\u2069",
    "``` fence ~~~",
    "back\\|slash",
    "- item\n# heading\n> quote\n    code",
    "1. one *em* _u_ $x$ &#x202e; &lt;",
    "<img src=x onerror=alert(2)>",
]
UNSAFE = frozenset({"Cc", "Cf", "Zl", "Zp", "Cs"})
BREAKS = re.compile(r"[\t\n\v\f\r\x1c-\x1e\x85\u2028\u2029]+")
MD = MarkdownIt("commonmark").enable("table")
# what data must never produce in our Markdown (we write none of these ourselves)
FORBIDDEN_TOKENS = {"html_inline", "html_block", "link_open", "image", "blockquote_open", "fence", "code_block",
                    "hr", "ordered_list_open", "em_open", "strong_open", "s_open"}
EMPHASIS = {"em_open", "strong_open"}  # our own, around counts, FAIL, *skipped* and condition names


def shown(s: str, lines: bool = True) -> str:
    """What a reader should see of ``s`` (the spec, written out): line breaks as one space (``lines``), every
    control, format, separator, surrogate or noncharacter as a printable escape."""
    out = []
    for ch in BREAKS.sub(" ", s) if lines else s:
        code = ord(ch)
        if unicodedata.category(ch) in UNSAFE or code & 0xFFFE == 0xFFFE or 0xFDD0 <= code <= 0xFDEF:
            out.append({"\n": "\\n", "\r": "\\r", "\t": "\\t"}.get(ch) or (
                f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"))
        else:
            out.append(ch)
    return "".join(out)


def raw_controls(text: str, allow: str = "\n") -> list[str]:
    return [f"U+{ord(c):04X}" for c in text if c not in allow and unicodedata.category(c) in UNSAFE]


def walk(tokens: list[Token]) -> list[Token]:
    out = []
    for t in tokens:
        out.append(t)
        out += walk(t.children or [])
    return out


def cells(line: str, gfm: bool) -> int:
    """Cells in a table row: as cmark-gfm (GitHub) splits it (``gfm``: a backslash escapes any punctuation,
    ``\\\\|`` is an escaped backslash and then a separator), or as markdown-it does (a pipe after a backslash
    is escaped)."""
    pipes, i = 0, 0
    while i < len(line):
        ch = line[i]
        if ch == "\\" and i + 1 < len(line) and (line[i + 1] in "|" or (gfm and line[i + 1] in
                                                                            "!\"#$%&'()*+,-./:;<=>?@[\\]^_`{}~")):
            i += 2
            continue
        pipes += ch == "|"
        i += 1
    return pipes - 1  # a leading and a trailing pipe on every row we write


def assert_safe_markdown(text: str, headings: tuple[str, ...], code: list[str] = (),
                         emphasised: tuple[str, ...] = ()) -> list[Token]:
    """Every table keeps its column count on every row (as GitHub and markdown-it split rows), no HTML,
    link, quote, code block, rule, emphasis or heading comes from data, no raw control character or
    ``<!--`` survives, mentions do not link, and each value in ``code`` shows whole in one span or cell."""
    assert "<!--" not in text and "-->" not in text
    assert not raw_controls(text), raw_controls(text)
    lines = text.split("\n")
    for i, line in enumerate(lines[:-1]):
        if line.startswith("|") and re.fullmatch(r"\|(\s*:?-+:?\s*\|)+", lines[i + 1]):
            n = cells(line, True)
            j = i + 1
            while j < len(lines) and lines[j].strip():
                row = lines[j]
                assert row.startswith("| ") or row.startswith("|-"), row
                assert row.endswith(" |") or row.endswith("-|") or row.endswith(":|"), row
                assert cells(row, True) == n and cells(row, False) == n, row
                j += 1
    tokens = walk(MD.parse(text))
    bad = [t.type for t in tokens if t.type in FORBIDDEN_TOKENS - EMPHASIS]
    assert not bad, bad
    # what we emphasise: a count, FAIL, a column name, a condition name (``emphasised``: one from the data)
    for i, t in enumerate(tokens):
        if t.type in EMPHASIS:
            inner, close = tokens[i + 1], tokens[i + 2]
            assert inner.type == "text" and close.type == t.type.replace("_open", "_close"), (inner, close)
            assert re.fullmatch(r"[\w.]+", inner.content) or inner.content in {shown(e) for e in emphasised}
    assert not [t for t in tokens if t.type == "bullet_list_open" and t.level > 0]  # no nested lists
    titles = [tokens[i + 1].content for i, t in enumerate(tokens) if t.type == "heading_open"]
    assert all(title.startswith(headings) for title in titles), titles
    spans = {t.content for t in tokens if t.type == "code_inline"}
    inlines = ["".join(c.content for c in t.children or [] if c.type == "text").replace("\u200b", "")
               for t in tokens if t.type == "inline"]
    for value in code:  # one code span, or (HTML comment markers: md_code falls back to text) within one cell
        assert shown(value) in spans or any(shown(value) in s for s in inlines), (value, spans)
    for t in tokens:
        if t.type == "text":
            assert not re.search(r"@\w|#\d", t.content), t.content
    return tokens


# ------------------------------------------------------------------------------------ property tests
#: any text, weighted towards what Markdown, HTML, GitHub and terminals give a meaning to
FRAGMENTS = ["<b>", "</b>", "<!--", "-->", "<script>", "[a](b)", "![i](x)", "`", "``", "@ab", "#12", "**", "__", "~~",
             "$", "&amp;", "&#64;", "\\", "|", "\n", "\r\n", "- ", "1. ", "> ", "    ", "<http://a.b>", "www.a.b",
             "\x1b[31m", "\x1b]8;;x\x1b\\", "\x9b", "\b", "\u202e", "\u2028", "\ufffe", " "]
TEXTS = st.lists(st.one_of(st.sampled_from(FRAGMENTS), st.characters(), st.characters(codec="ascii"))).map("".join)


@settings(max_examples=300, deadline=None)
@given(TEXTS)
@example("**strong** __b__ *em* [link](javascript:x) ![i](x) <b>x</b> ~~s~~ $x$")
def test_md_text_in_a_table_cell_is_one_plain_cell_showing_the_text(s: str) -> None:
    doc = f"| a | b |\n|---|---|\n| {md_text(s, None)} | end |\n"
    tokens = walk(MD.parse(doc))
    assert [t.type for t in tokens if t.type in FORBIDDEN_TOKENS or t.type == "code_inline"] == []
    rows = [i for i, t in enumerate(tokens) if t.type == "tr_open"]
    assert len(rows) == 2
    body = tokens[rows[1]:]
    tds = [i for i, t in enumerate(body) if t.type == "td_open"]
    assert len(tds) == 2 and body[tds[1] + 1].content == "end"
    text = "".join(c.content for c in body[tds[0] + 1].children or [] if c.type == "text")
    assert text.replace("\u200b", "") == shown(s).strip()
    assert not re.search(r"@\w|#\d", text)  # no mention, no issue link
    assert cells(f"| {md_text(s, None)} | end |", True) == 2


@settings(max_examples=300, deadline=None)
@given(TEXTS)
def test_md_text_starting_a_line_or_list_item_stays_one_paragraph(s: str) -> None:
    for doc in (f"before\n\n{md_text(s, None)}\n", f"- {md_text(s, None)}\n"):
        tokens = walk(MD.parse(doc))
        types = [t.type for t in tokens if t.type.endswith("_open")]
        assert set(types) <= {"paragraph_open", "bullet_list_open", "list_item_open"}, (doc, types)
        assert types.count("bullet_list_open") == doc.startswith("- ")
        if shown(s).strip():
            text = "".join(t.content for t in tokens if t.type == "text")
            assert text.replace("\u200b", "").endswith(shown(s).strip())


@settings(max_examples=300, deadline=None)
@given(TEXTS.filter(bool))
def test_md_code_is_one_code_span_that_reveals_the_value(s: str) -> None:
    comment = "<!--" in shown(s) or "-->" in shown(s)  # these fall back to escaped text (md_text)
    inline = MD.parse(f"x {md_code(s, None)} y\n")[1].children or []
    if comment:
        assert {t.type for t in inline} == {"text"} and "<!--" not in md_code(s) and "-->" not in md_code(s)
    else:
        assert [t.type for t in inline] == ["text", "code_inline", "text"]
        assert inline[1].content == shown(s) and inline[0].content == "x " and inline[2].content == " y"
    doc = f"| a | b |\n|---|---|\n| {md_code(s, None, cell=True)} | end |\n"
    tokens = walk(MD.parse(doc))
    tds = [i for i, t in enumerate(tokens) if t.type == "td_open"]
    assert len(tds) == 2 and tokens[tds[1] + 1].content == "end"
    spans = [c for c in tokens[tds[0] + 1].children or [] if c.type == "code_inline"]
    if "\\|" in shown(s) or comment:  # no code span shows a backslash before a pipe in a GitHub table
        assert not spans
    else:
        assert [c.content for c in spans] == [shown(s)]
    assert cells(f"| {md_code(s, None, cell=True)} | end |", True) == 2


@settings(max_examples=300, deadline=None)
@given(TEXTS)
def test_term_leaves_no_control_format_or_separator_character(s: str) -> None:
    out = term(s)
    assert out == shown(s, lines=False) and not raw_controls(out, allow="")


def test_the_escapes_stay_visible_and_truncate() -> None:
    assert term("a\x1b[31mb\u202ec\r\n\x9b") == "a\\x1b[31mb\\u202ec\\r\\n\\x9b"
    assert md_text("x" * 400).endswith("…") and len(md_text("x" * 400)) == 300
    assert md_text("@octocat #12 - ok") == "@&#8203;octocat #&#8203;12 - ok"
    assert md_text("exact_duplicate") == "exact_duplicate" and md_text("_a_") == "\\_a\\_"
    assert md_code("a``b") == "```a``b```" and md_code("`x`") == "`` `x` ``"


# ----------------------------------------------------------------------------------------- real runs
def _records() -> list[dict[str, Any]]:
    """Per hostile string: a record the pattern check rejects (its message quotes the data), one the gate
    accepts (tune rejects it later), and an exact copy of the first accepted one (a duplicate cluster)."""
    out: list[dict[str, Any]] = []
    for i, h in enumerate(HOSTILE):
        out.append({"id": f"r{i} {h}", "text": f"EVIL {h} rest of the line"})
        out.append({"id": f"a{i} {h}", "text": f"plain words number {i} here for the gate"})
    out.append({"id": f"dup {HOSTILE[0]}", "text": "plain words number 0 here for the gate"})
    return out


CONFIG = ("version: 1\ninput: {text: text, id: id}\nchecks:\n"
          "  - {check: pattern, name: evil, forbidden: ['EVIL.*']}\n"
          "  - {check: length, min_words: 1}\n"
          "  - {check: near_duplicate}\n"
          "gate: {max_rejected: 0}\n")


def _overrides(path: Path) -> Path:
    path.write_text(yaml.safe_dump([
        {"id": f"r1 {HOSTILE[1]}", "decision": "accept", "reviewer": HOSTILE[5], "note": HOSTILE[0]},
        {"id": f"a2 {HOSTILE[2]}", "decision": "reject", "reviewer": HOSTILE[4], "note": HOSTILE[8]},
        {"id": f"nobody {HOSTILE[3]}", "decision": "reject", "reviewer": HOSTILE[7]},
    ]))
    return path


@pytest.fixture(scope="module")
def hostile_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Any]:
    tmp = tmp_path_factory.mktemp("hostile")
    data = tmp / "in|`<!--x\x1b[31m\u202e@octocat.jsonl"  # a file name from a pull request
    data.write_text("".join(json.dumps(r) + "\n" for r in _records()) + "{not json\n")
    (tmp / "c.yaml").write_text(CONFIG)
    res = CliRunner().invoke(main, ["filter", str(data), "-c", str(tmp / "c.yaml"), "-o", str(tmp / "run"),
                                    "-j", "1", "--no-cache", "--overrides", str(_overrides(tmp / "o.yaml"))])
    assert res.exit_code == 1, res.output
    return tmp / "run", data, res


REPORT_HEADINGS = ("qualgate report", "Gate conditions", "Checks", "Score distributions",
                   "Largest duplicate clusters", "Reviewer overrides", "Example rejections", "evil",
                   "near_duplicate", "malformed", "length", "override")


def test_report_markdown_keeps_its_structure(hostile_run: tuple[Path, Path, Any]) -> None:
    run, data, _ = hostile_run
    md = (run / "report.md").read_text(encoding="utf-8")
    ids = [f"r{i} {h}" for i, h in enumerate(HOSTILE)]
    tokens = assert_safe_markdown(md, REPORT_HEADINGS, code=[*ids[:3], f"nobody {HOSTILE[3]}"])
    assert "## Reviewer overrides" in md and "## Largest duplicate clusters" in md
    # the reviewers and notes are there, escaped, in the one overrides table row each
    text = "".join(t.content for t in tokens if t.type == "text").replace("\u200b", "")
    assert shown(HOSTILE[5]) in text and shown(HOSTILE[0]) in text and shown(HOSTILE[8]) in text
    assert shown(data.name) in text  # the malformed line's source
    res = CliRunner().invoke(main, ["report", str(run), "--format", "markdown"])
    assert res.output == md and not raw_controls(res.output)


def test_a_foreign_report_json_renders_safely_in_every_format(hostile_run: tuple[Path, Path, Any],
                                                               tmp_path: Path) -> None:
    """``qualgate report`` re-renders whatever report.json a run folder holds: hostile condition and check
    names, values, messages and reasons stay escaped in Markdown, valid in JUnit XML, visible in HTML."""
    run, _, _ = hostile_run
    copy = tmp_path / "run"
    copy.mkdir()
    data = json.loads((run / "report.json").read_text(encoding="utf-8"))
    data["gate"]["conditions"].append({"name": HOSTILE[0], "value": HOSTILE[5], "limit": HOSTILE[6],
                                       "passed": False, "message": HOSTILE[7] + HOSTILE[8]})
    data["by_check"][HOSTILE[9]] = {**data["by_check"]["evil"], "kind": HOSTILE[4],
                                    "reasons": {HOSTILE[12]: 1, HOSTILE[11]: 2}}
    (copy / "report.json").write_text(json.dumps(data), encoding="utf-8")
    res = CliRunner().invoke(main, ["report", str(copy), "--format", "markdown"])
    assert_safe_markdown(res.output, REPORT_HEADINGS, emphasised=(HOSTILE[0],))
    res = CliRunner().invoke(main, ["report", str(copy), "--format", "junit"])
    root = ET.fromstring(res.output.encode("utf-8"))  # raises on a raw control character
    assert any(term(HOSTILE[0]) == case.get("name") for case in root.iter("testcase"))
    res = CliRunner().invoke(main, ["report", str(copy), "--format", "html"])
    assert not raw_controls(res.output, allow="\n\t") and "\\u202eevil" in res.output
    assert "&lt;!-- x" in res.output and "<!-- x" not in res.output


def test_filter_explain_and_tune_print_no_control_characters(hostile_run: tuple[Path, Path, Any],
                                                             tmp_path: Path) -> None:
    run, _, filtered = hostile_run
    assert not raw_controls(filtered.output)
    for i in (0, 5, 6, 7, 8):
        res = CliRunner().invoke(main, ["explain", f"r{i} {HOSTILE[i]}", "--run", str(run)])
        assert res.exit_code == 0, res.output
        assert not raw_controls(res.output) and term(f"r{i} {HOSTILE[i]}") in res.output
    res = CliRunner().invoke(main, ["explain", "r1 " + HOSTILE[1], "--run", str(run)])
    assert "overridden: accept by " + term(HOSTILE[5]) in res.output
    res = CliRunner().invoke(main, ["tune", "--run", str(run), "--set", "length.min_words=50", "--overrides",
                                    str(run.parent / "o.yaml")])
    assert res.exit_code == 1, res.output
    assert "newly rejected" in res.output and term(f"a0 {HOSTILE[0]}") in res.output
    assert term(f"nobody {HOSTILE[3]}") in res.output and not raw_controls(res.output)
    # an error quoting a hostile file name
    res = CliRunner().invoke(main, ["filter", str(tmp_path / "gone\x1b]8;;x\x07\u202e.jsonl"), "-o",
                                    str(tmp_path / "o")])
    assert res.exit_code == 2 and "\\x1b]8;;x\\x07\\u202e" in res.output and not raw_controls(res.output)


def _git(repo: Path, *args: str) -> None:
    subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True)


CHECK_HEADINGS = ("qualgate: ", "Rejected records", "Accepted by a reviewer despite findings")


def test_check_summary_keeps_its_structure(tmp_path: Path) -> None:
    """``qualgate check`` on a pull request that adds hostile records to a hostile file name."""
    _git(tmp_path, "init", "-q", "-b", "main")
    _git(tmp_path, "config", "user.email", "t@example.org")
    _git(tmp_path, "config", "user.name", "t")
    data = tmp_path / "d|a`t<!--a\x1b[2J\u202e.jsonl"
    data.write_text(json.dumps({"id": "base", "text": "the base record of this file"}) + "\n")
    _git(tmp_path, "add", "-A")
    _git(tmp_path, "commit", "-q", "-m", "base")
    with data.open("a") as fh:
        fh.write("".join(json.dumps(r) + "\n" for r in _records()) + "{not json\n")
    cfg = tmp_path / "c.yaml"
    cfg.write_text(CONFIG)
    summary = tmp_path / "summary.md"
    res = CliRunner().invoke(main, ["check", str(data), "--base", "HEAD", "-c", str(cfg), "--cache-dir",
                                    str(tmp_path / "cache"), "--trust-worktree"],
                             env={"GITHUB_STEP_SUMMARY": str(summary)})
    if res.exit_code == 2 and "no such option" in res.output:  # before --trust-worktree
        res = CliRunner().invoke(main, ["check", str(data), "--base", "HEAD", "-c", str(cfg), "--cache-dir",
                                        str(tmp_path / "cache")], env={"GITHUB_STEP_SUMMARY": str(summary)})
    assert res.exit_code == 1, res.output
    md = summary.read_text(encoding="utf-8")
    assert md in res.output and not raw_controls(res.output)
    assert_safe_markdown(md, CHECK_HEADINGS, code=[str(data)] + [f"r{i} {h}" for i, h in enumerate(HOSTILE)
                                                                  if "\\|" not in h])
    assert "### Rejected records" in md


def test_check_summary_with_hostile_overrides(tmp_path: Path) -> None:
    """The summary's reviewer table, from a real gate run with an overrides file (library API)."""
    data = tmp_path / "in.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in _records()))
    gate = Gate.from_config(yaml.safe_load(CONFIG), cache_dir=None)
    gate.use_overrides(_overrides(tmp_path / "o.yaml"))
    result = gate.run(list(read_records([str(data)])))
    assert any(d.accepted and d.override is not None for d in result.decisions)
    failed = [f"{HOSTILE[0]} = 1 (limit 0)"]
    md = summary_markdown([], result.decisions, False, failed, 50)
    tokens = assert_safe_markdown(md, CHECK_HEADINGS, code=[f"r1 {HOSTILE[1]}", f"a2 {HOSTILE[2]}"])
    assert "### Accepted by a reviewer despite findings" in md
    text = "".join(t.content for t in tokens if t.type == "text").replace("\u200b", "")
    assert shown(HOSTILE[5]) in text and shown(HOSTILE[0]) in text
