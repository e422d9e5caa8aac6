"""Code that does not parse: Python blocks via ``ast`` (never executed), other languages by a bracket and quote
scan that skips each language's comments and strings. Rule-based and per sample.
"""

from __future__ import annotations

import ast
import re
import textwrap
import warnings
from dataclasses import dataclass
from typing import Any

from pydantic import Field

from qualgate.checks.base import Check, Measurement, Params, register
from qualgate.checks.common import OUTPUT_DOC, FieldName, line_of, where
from qualgate.findings import Finding
from qualgate.sample import Sample


@dataclass(frozen=True)
class _Syntax:
    """What a bracket scan skips: comments and string literals."""

    line_comments: tuple[str, ...] = ("//",)
    block_comments: tuple[tuple[str, str], ...] = (("/*", "*/"),)
    quotes: str = "\"'"
    multiline_quotes: str = ""  # quotes whose strings may span lines (JS template literals, Go raw strings)
    lifetimes: bool = False  # 'a is a lifetime or label, not a string (Rust)
    apostrophes: bool = False  # a ' with no closing ' on its line is an apostrophe, not an open string


_C_LIKE = _Syntax()
_JS_LIKE = _Syntax(multiline_quotes="`", quotes="\"'`")
_RUST = _Syntax(lifetimes=True)
_HASH = _Syntax(line_comments=("#",), block_comments=())
_HASH_DQ = _Syntax(line_comments=("#",), block_comments=(), quotes="\"")
_SQL = _Syntax(line_comments=("--",))
_LUA = _Syntax(line_comments=("--",), block_comments=(("--[[", "]]"),))
_HASKELL = _Syntax(line_comments=("--",), block_comments=(("{-", "-}"),), quotes="\"")
_CSS = _Syntax(line_comments=())
_PHP = _Syntax(line_comments=("//", "#"))
_LISP = _Syntax(line_comments=(";",), block_comments=(), quotes="\"")
_MATLAB = _Syntax(line_comments=("%",), block_comments=(), quotes="\"")
_UNKNOWN = _Syntax(apostrophes=True)

_SYNTAX: dict[str, _Syntax] = {}
for _names, _syn in (
    ("c h cpp c++ cc cxx hpp java csharp cs c# kotlin kt scala swift dart objc objective-c groovy json jsonc", _C_LIKE),
    ("javascript js jsx mjs cjs typescript ts tsx go golang", _JS_LIKE),
    ("rust rs", _RUST),
    ("ruby rb perl pl r toml elixir ex exs nim makefile make cmake dockerfile tcl coffeescript", _HASH),
    ("julia jl", _HASH_DQ),
    ("sql mysql postgresql plsql sqlite", _SQL),
    ("lua", _LUA),
    ("haskell hs", _HASKELL),
    ("css scss less sass", _CSS),
    ("php", _PHP),
    ("lisp clojure clj scheme racket elisp emacs-lisp", _LISP),
    ("matlab octave", _MATLAB),
):
    _SYNTAX.update(dict.fromkeys(_names.split(), _syn))

PYTHON_NAMES = ("python", "py", "python3", "py3", "pycon", "ipython", "sage")
SKIP_LANGUAGES = [
    "text", "txt", "plaintext", "plain", "output", "out", "console", "terminal", "shell-session", "sh-session", "log",
    "markdown", "md", "csv", "tsv", "diff", "patch", "bash", "sh", "shell", "zsh", "fish", "powershell", "ps1",
    "bat", "cmd", "batch", "yaml", "yml", "html", "xml", "svg", "xhtml", "vue", "svelte", "latex", "tex", "ini",
    "cfg", "conf", "properties", "env", "http", "regex", "mermaid", "asm", "nasm", "assembly",
]
_PAIRS = {")": "(", "]": "[", "}": "{"}
_CODE_FENCE = re.compile(r"^([ \t]*)(`{3,}|~{3,})[ \t]*([^\s`{}]*)[^\n]*\n(.*?)(?:^[ \t]*\2[ \t]*$|\Z)",
                         re.MULTILINE | re.DOTALL)
_PY_HINTS = re.compile(r"^[ \t]*(?:def \w+[ \t]*\([^\n]*:[ \t]*$|class \w+[^\n]*:|from [\w.]+ import \w|"
                       r"import [\w.]+(?:\s+as \w+)?[ \t]*$|if __name__ ==|print\(|elif .*:|"
                       r"for \w+(?:,\s*\w+)* in .*:|with .*:|@\w+)", re.MULTILINE)
_C_HINTS = re.compile(r"[;{][ \t]*$|^[ \t]*}", re.MULTILINE)
_LIFETIME = re.compile(r"'[A-Za-z_]\w*(?!')")
_PROMPT = re.compile(r"^(?:>>>|\.\.\.)(?: |$)")
_MAGIC = re.compile(r"^([ \t]*)[!%].*$")


def looks_like_python(code: str) -> bool:
    py = len(_PY_HINTS.findall(code))
    return py > 0 and py >= len(_C_HINTS.findall(code))


def _prepare_python(code: str) -> str:
    """Doctest/console prompts stripped (output lines blanked); notebook !shell and %magic lines become pass."""
    lines = code.split("\n")
    if any(line.startswith(">>> ") for line in lines):
        lines = [line[4:] if _PROMPT.match(line) else "" for line in lines]
    return "\n".join(_MAGIC.sub(r"\1pass", line) for line in lines)


def python_error(code: str) -> dict[str, Any] | None:
    """Line, column and message of the first syntax error (``ast.parse``, never executed), or None."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ast.parse(_prepare_python(code))
    except SyntaxError as exc:
        return {"line": exc.lineno or 0, "column": exc.offset or 0, "error": exc.msg}
    except (ValueError, RecursionError, MemoryError) as exc:
        return {"line": 0, "column": 0, "error": str(exc) or type(exc).__name__}
    return None


def _string_end(code: str, i: int, quote: str, multiline: bool) -> int:
    """Index of the quote closing the string opened at ``i`` (backslash escapes), or -1."""
    j, n = i + len(quote), len(code)
    while j < n:
        if code[j] == "\\":
            j += 2
            continue
        if code.startswith(quote, j):
            return j
        if code[j] == "\n" and not multiline:
            return -1
        j += 1
    return -1


def bracket_error(code: str, syn: _Syntax = _C_LIKE) -> dict[str, Any] | None:
    """The first unbalanced (), [], {} or quote outside strings and comments: bracket, line, message; or None."""
    stack: list[tuple[str, int]] = []
    i, n, line = 0, len(code), 1
    no_closer_until = -1  # after an apostrophe found no closing quote: the end of that line
    while i < n:
        c = code[i]
        if c == "\n":
            line, i = line + 1, i + 1
            continue
        if any(code.startswith(tok, i) for tok in syn.line_comments):
            j = code.find("\n", i)
            i = n if j < 0 else j
            continue
        block = next((b for b in syn.block_comments if code.startswith(b[0], i)), None)
        if block is not None:
            j = code.find(block[1], i + len(block[0]))
            if j < 0:
                return {"bracket": block[0], "line": line, "error": f"comment {block[0]} is never closed"}
            line += code.count("\n", i, j)
            i = j + len(block[1])
            continue
        if c in syn.quotes:
            quote = '"""' if code.startswith('"""', i) else c
            if c == "'" and syn.lifetimes and _LIFETIME.match(code, i):
                i += 1
                continue
            multiline = quote == '"""' or c in syn.multiline_quotes
            if c == "'" and syn.apostrophes and i < no_closer_until:  # known: none closes on this line
                i += 1
                continue
            j = _string_end(code, i, quote, multiline)
            if j < 0:
                if c == "'" and syn.apostrophes:
                    end_of_line = code.find("\n", i)
                    no_closer_until = n if end_of_line < 0 else end_of_line  # no rescan per apostrophe
                    i += 1
                    continue
                return {"bracket": quote, "line": line, "error": f"string opened with {quote} is never closed"}
            line += code.count("\n", i, j)
            i = j + len(quote)
            continue
        if c in "([{":
            stack.append((c, line))
        elif c in _PAIRS:
            if not stack:
                return {"bracket": c, "line": line, "error": f"'{c}' has no opening '{_PAIRS[c]}'"}
            opened, at = stack.pop()
            if opened != _PAIRS[c]:
                return {"bracket": opened, "line": at,
                        "error": f"'{opened}' opened on line {at} is closed by '{c}' on line {line}"}
        i += 1
    if stack:
        opened, at = stack[-1]
        return {"bracket": opened, "line": at, "error": f"'{opened}' opened on line {at} is never closed"}
    return None


class CodeValidParams(Params):
    field: FieldName = Field("output", description=OUTPUT_DOC)
    raw: bool = Field(False, description="the whole field is code (instead of its ``` fenced blocks)")
    language: str | None = Field(None, description="language of unlabelled blocks and of raw code; unset = Python "
                                                   "when it looks like Python, else a generic bracket check")
    require_code: bool = Field(False, description="flag a text with no code block to check")
    skip_languages: list[str] = Field(default_factory=lambda: list(SKIP_LANGUAGES),
                                      description="fence languages not checked (prose, console output, shell, "
                                                  "markup, YAML)")


@register
class CodeValid(Check[CodeValidParams]):
    """Code blocks do not parse (Python via ast, never run) or have unbalanced brackets or quotes."""

    kind = "code_valid"
    decision_params = frozenset({"require_code"})
    params_model = CodeValidParams
    score_names = ("blocks", "syntax_errors", "unbalanced")
    cost = 3

    def __init__(self, name: str, params: CodeValidParams) -> None:
        super().__init__(name, params)
        self._skip = {s.lower() for s in params.skip_languages}

    def _blocks(self, text: str) -> list[tuple[str | None, str, int]]:
        """(language or None, code, first line in the field) of each non-empty block."""
        if self.params.raw:
            return [(None, text, 1)] if text.strip() else []
        out: list[tuple[str | None, str, int]] = []
        for m in _CODE_FENCE.finditer(text):
            code = textwrap.dedent(m.group(4))
            if code.strip():
                out.append((m.group(3).lower().lstrip(".") or None, code, line_of(text, m.start(4))))
        return out

    def score(self, sample: Sample) -> Measurement:
        syntax, unbalanced, checked = [], [], 0
        for index, (label, code, first_line) in enumerate(self._blocks(sample.view(self.params.field))):
            lang = label or (self.params.language.lower() if self.params.language else None)
            if lang in self._skip:
                continue
            checked += 1
            if lang in PYTHON_NAMES or (lang is None and looks_like_python(code)):
                if (err := python_error(code)) is not None:
                    syntax.append({"block": index, "language": "python", **err,
                                   "field_line": first_line + max(err["line"], 1) - 1})
                continue
            if (err := bracket_error(code, _SYNTAX.get(lang or "", _UNKNOWN))) is not None:
                unbalanced.append({"block": index, "language": lang, **err,
                                   "field_line": first_line + err["line"] - 1})
        return Measurement({"blocks": float(checked), "syntax_errors": float(len(syntax)),
                            "unbalanced": float(len(unbalanced))},
                           {"syntax": syntax[:10], "unbalanced": unbalanced[:10]})

    def decide(self, m: Measurement) -> list[Finding]:
        v, ev, place, out = m.values, m.evidence, where(self.params.field), []
        if v["syntax_errors"]:
            e = ev["syntax"][0]
            out.append(self.finding("syntax_error", v["syntax_errors"], 0,
                                    f"{place}: {e['language']} block {e['block']} does not parse: {e['error']} "
                                    f"(line {e['line']})", **e, errors=ev["syntax"]))
        if v["unbalanced"]:
            e = ev["unbalanced"][0]
            out.append(self.finding("unbalanced", v["unbalanced"], 0,
                                    f"{place}: {e['language'] or 'code'} block {e['block']}: {e['error']}",
                                    **e, errors=ev["unbalanced"]))
        if self.params.require_code and not v["blocks"]:
            out.append(self.finding("no_code", 0.0, 1, f"{place} contains no code block to check"))
        return out
