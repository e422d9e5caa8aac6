"""Structure checks: chat layout, JSON validity and schema, code syntax, and a small children's vocabulary.

All rule-based and per sample: nothing is executed (Python code is only parsed with ``ast``).
"""

from __future__ import annotations

import ast
import importlib
import json
import re
import textwrap
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import yaml
from pydantic import ConfigDict, Field, field_validator, model_validator

from qualgate.checks.base import Check, Measurement, Params, register
from qualgate.checks.common import where
from qualgate.errors import ConfigError
from qualgate.findings import Finding
from qualgate.packs import data_file, list_param, read_list
from qualgate.regex import compile_pattern, user_patterns
from qualgate.sample import CHAT_FIELDS, FieldProblem, Sample

FieldName = str | None
OUTPUT_DOC = "record field to read; null = the configured text view"


def _line_of(text: str, pos: int) -> int:
    return text.count("\n", 0, pos) + 1


# -------------------------------------------------------------------------------------- chat structure
DEFAULT_LEAKS = [
    r"(?m)^[ \t]*(?:#{1,4}[ \t]*)?(?:User|Assistant|Human|System)[ \t]*:",
    r"(?m)^[ \t]*#{2,4}[ \t]*(?:Instruction|Response)[ \t]*:",
    r"<\|im_start\|>|<\|im_end\|>|<\|(?:system|user|assistant|start_header_id|end_header_id|eot_id)\|>",
    r"\[/?INST\]|<</?SYS>>|<(?:start|end)_of_turn>",
]


class ChatStructureParams(Params):
    field: FieldName = Field(None, description="chat field: a list of {role, content} or ShareGPT {from, value}; "
                                               "unset = messages, else conversations or conversation")
    roles: list[str] = Field(default_factory=lambda: ["system", "user", "assistant"], min_length=1,
                             description="roles allowed (after aliases)")
    aliases: dict[str, str] = Field(default_factory=lambda: {"human": "user", "gpt": "assistant"},
                                    description="role names mapped before checking (ShareGPT's human and gpt)")
    system_role: str = Field("system", description="role allowed once, as the first turn only")
    first_role: str | None = Field("user", description="role of the first turn after the system message; null = any")
    final_role: str | None = Field("assistant", description="role of the last turn; null = any")
    min_turns: int = Field(2, ge=0, description="fewest turns, not counting the system message")
    leak_patterns: list[str] = Field(default_factory=lambda: list(DEFAULT_LEAKS),
                                     description="regexes for role labels or chat-template tokens inside content; "
                                                 "replaces the built-in list")
    extra_leak_patterns: list[str] = Field(default_factory=list, description="regexes added to the leak list")
    leak_roles: list[str] = Field(default_factory=lambda: ["user", "assistant"],
                                  description="roles whose content is searched for leaked role text")

    _v = field_validator("leak_patterns", "extra_leak_patterns")(user_patterns)


def _turn_list(items: list[dict[str, Any]]) -> dict[str, Any]:
    """Evidence for a list of problem turns: the first one's turn and role, and all of them (up to 20)."""
    first = items[0]
    return {"turn": first["turn"], "role": first["role"], "turns": items[:20]}


@register
class ChatStructure(Check[ChatStructureParams]):
    """Chat is malformed: unknown roles, broken user/assistant alternation, empty turns, leaked role labels."""

    kind = "chat_structure"
    decision_params = frozenset({"min_turns"})
    params_model = ChatStructureParams
    score_names = ("not_a_chat", "turns", "unknown_roles", "bad_alternation", "empty_turns", "wrong_final_role",
                   "role_leaks")
    cost = 1

    def __init__(self, name: str, params: ChatStructureParams) -> None:
        super().__init__(name, params)
        # config patterns run on RE2 (linear time, see qualgate.regex); the built-in ones below stay on re
        self._leaks = [compile_pattern(p) for p in list(params.leak_patterns) + list(params.extra_leak_patterns)]
        self._roles = set(params.roles)

    def _not_a_chat(self, key: str, why: str, turn: int | None = None) -> Measurement:
        values: dict[str, float | None] = dict.fromkeys(self.score_names)
        values["not_a_chat"] = 1.0
        return Measurement(values, {"field": key, "why": why, "turn": turn})

    def score(self, sample: Sample) -> Measurement:
        p = self.params
        record = sample.record or {}
        keys = [p.field] if p.field else list(CHAT_FIELDS)
        key = next((k for k in keys if k in record), keys[0])
        value = record.get(key)
        if not isinstance(value, list):
            why = "is missing" if key not in record else f"is a {type(value).__name__}, not a list of turns"
            return self._not_a_chat(key, f"field '{key}' {why}")
        turns: list[tuple[str, str]] = []
        for i, msg in enumerate(value):
            if not isinstance(msg, Mapping):
                return self._not_a_chat(key, f"turn {i} is a {type(msg).__name__}, not an object", i)
            role = msg.get("role", msg.get("from"))
            content = msg.get("content", msg.get("value"))
            if not isinstance(role, str) or not isinstance(content, str):
                return self._not_a_chat(key, f"turn {i} has no string role and content", i)
            turns.append((p.aliases.get(role, role), content))

        unknown, alternation, empty, leaks = [], [], [], []
        previous: str | None = None
        body = 0
        for i, (role, content) in enumerate(turns):
            if role not in self._roles:
                unknown.append({"turn": i, "role": role})
            if not content.strip():
                empty.append({"turn": i, "role": role})
            if role == p.system_role:
                if i > 0:
                    alternation.append({"turn": i, "role": role, "why": "system message after the first turn"})
                continue
            body += 1
            if previous is None and p.first_role is not None and role != p.first_role:
                alternation.append({"turn": i, "role": role, "why": f"first turn is not from {p.first_role}"})
            elif previous == role:
                alternation.append({"turn": i, "role": role, "why": f"two {role} turns in a row"})
            previous = role
            if role in p.leak_roles:
                for rx in self._leaks:
                    if m := rx.search(content):
                        leaks.append({"turn": i, "role": role, "match": m.group(0).strip()[:80],
                                      "line": _line_of(content, m.start())})
                        break
        wrong_final = 0.0
        evidence: dict[str, Any] = {"field": key, "unknown": unknown, "alternation": alternation, "empty": empty,
                                    "leaks": leaks}
        if turns and p.final_role is not None and turns[-1][0] != p.final_role:
            wrong_final = 1.0
            evidence["final"] = {"turn": len(turns) - 1, "role": turns[-1][0]}
        return Measurement({"not_a_chat": 0.0, "turns": float(body), "unknown_roles": float(len(unknown)),
                            "bad_alternation": float(len(alternation)), "empty_turns": float(len(empty)),
                            "wrong_final_role": wrong_final, "role_leaks": float(len(leaks))}, evidence)

    def decide(self, m: Measurement) -> list[Finding]:
        p, v, ev = self.params, m.values, m.evidence
        if v["not_a_chat"]:
            return [self.finding("not_a_chat", 1.0, 0, f"not a chat: {ev.get('why')}", **ev)]
        out: list[Finding] = []
        if v["unknown_roles"]:
            first = ev["unknown"][0]
            out.append(self.finding("unknown_role", v["unknown_roles"], 0,
                                    f"turn {first['turn']} has unknown role {first['role']!r} "
                                    f"(allowed: {', '.join(p.roles)})", **_turn_list(ev["unknown"])))
        if v["bad_alternation"]:
            first = ev["alternation"][0]
            out.append(self.finding("bad_alternation", v["bad_alternation"], 0,
                                    f"turn {first['turn']}: {first['why']}", **_turn_list(ev["alternation"])))
        if v["empty_turns"]:
            first = ev["empty"][0]
            out.append(self.finding("empty_turn", v["empty_turns"], 0,
                                    f"turn {first['turn']} ({first['role']}) is empty", **_turn_list(ev["empty"])))
        turns = v["turns"] or 0.0
        if turns < p.min_turns:
            out.append(self.finding("too_few_turns", turns, p.min_turns,
                                    f"chat has {int(turns)} turn(s), fewer than the minimum {p.min_turns}"))
        if v["wrong_final_role"]:
            final = ev["final"]
            out.append(self.finding("wrong_final_role", v["wrong_final_role"], 0,
                                    f"last turn ({final['turn']}) is from {final['role']!r}, not {p.final_role!r}",
                                    turn=final["turn"], role=final["role"], expected=p.final_role))
        if v["role_leaks"]:
            first = ev["leaks"][0]
            out.append(self.finding("role_leak", v["role_leaks"], 0,
                                    f"turn {first['turn']} ({first['role']}) contains role text {first['match']!r}",
                                    match=first["match"], line=first["line"], **_turn_list(ev["leaks"])))
        return out


# ------------------------------------------------------------------------------------------ json valid
def _jsonschema() -> Any:
    try:
        return importlib.import_module("jsonschema")
    except ImportError:
        raise ConfigError("json_valid needs the jsonschema library to validate a schema: pip install jsonschema",
                          key="schema") from None


def _load_schema(path: str) -> Any:
    try:
        file = data_file(path)
        text = file.read_text(encoding="utf-8")
        return yaml.safe_load(text) if file.suffix.lower() in (".yaml", ".yml") else json.loads(text)
    except FileNotFoundError:
        raise ValueError(f"schema_file {path!r} not found") from None
    except (OSError, UnicodeDecodeError, ValueError, yaml.YAMLError) as exc:
        raise ValueError(f"schema_file {path!r} could not be read: {exc}") from None


def _schema_validator(schema: Any) -> Any:
    """A jsonschema validator for ``schema``; raises ValueError when the schema itself is invalid."""
    js = _jsonschema()
    if not isinstance(schema, (dict, bool)):
        raise ValueError(f"a JSON Schema must be an object, got {type(schema).__name__}")
    cls = js.validators.validator_for(schema)
    try:
        cls.check_schema(schema)
    except js.exceptions.SchemaError as exc:
        raise ValueError(f"invalid JSON Schema: {exc.message} (at {exc.json_path})") from None
    return cls(schema)


_JSON_FENCE = re.compile(r"^[ \t]*(`{3,}|~{3,})[ \t]*(?:json5?|jsonc)?[ \t]*\n(.*?)^[ \t]*\1[ \t]*$",
                         re.MULTILINE | re.DOTALL | re.IGNORECASE)


class JsonValidParams(Params):
    model_config = ConfigDict(validate_by_name=True, validate_by_alias=True, serialize_by_alias=True)

    field: FieldName = Field("output", description=OUTPUT_DOC)
    allow_fence: bool = Field(True, description="accept JSON inside a ```json (or unlabelled) fenced block")
    json_schema: dict[str, Any] | None = Field(None, alias="schema", description="inline JSON Schema the value must "
                                               "satisfy (validated with the jsonschema library)")
    schema_file: str | None = Field(None, description="JSON Schema file (.json, .yaml): a path, or shipped in rules/")
    max_errors: int = Field(5, ge=1, description="most schema errors reported as evidence")

    @model_validator(mode="after")
    def _schema_ok(self) -> JsonValidParams:
        if self.json_schema is not None and self.schema_file is not None:
            raise ValueError("set schema or schema_file, not both")
        if self.json_schema is not None:
            _schema_validator(self.json_schema)
        elif self.schema_file is not None:
            _schema_validator(_load_schema(self.schema_file))
        return self


@register
class JsonValid(Check[JsonValidParams]):
    """A field is not valid JSON (a ```json fence is accepted), or does not match a JSON Schema."""

    kind = "json_valid"
    params_model = JsonValidParams
    score_names = ("invalid_json", "schema_errors")
    cost = 2

    def __init__(self, name: str, params: JsonValidParams) -> None:
        super().__init__(name, params)
        schema = params.json_schema if params.schema_file is None else _load_schema(params.schema_file)
        self._validator = None if schema is None else _schema_validator(schema)

    def _parse(self, text: str) -> tuple[Any, dict[str, Any] | None, bool]:
        """(document, parse error evidence or None, whether it came from a fenced block)."""
        try:
            return json.loads(text), None, False
        except (ValueError, RecursionError) as exc:  # ValueError: also integers over Python's digit limit
            error = _json_error(exc, 0)
        if self.params.allow_fence and (fence := _JSON_FENCE.search(text)):
            offset = _line_of(text, fence.start(2)) - 1
            try:
                return json.loads(fence.group(2)), None, True
            except (ValueError, RecursionError) as exc:
                return None, {**_json_error(exc, offset), "fenced": True}, True
        return None, error, False

    def score(self, sample: Sample) -> Measurement:
        doc, error, fenced = self._parse(sample.view(self.params.field))
        if error is not None:
            return Measurement({"invalid_json": 1.0, "schema_errors": None}, error)
        evidence: dict[str, Any] = {"fenced": fenced}
        if self._validator is None:
            return Measurement({"invalid_json": 0.0, "schema_errors": None}, evidence)
        try:
            errors = sorted(self._validator.iter_errors(doc), key=lambda e: (str(e.json_path), e.message))
        except RecursionError:  # a recursive schema on deeply nested data: one error, not a crash
            evidence["errors"] = [{"path": "$", "error": "nested too deeply to validate against the schema"}]
            return Measurement({"invalid_json": 0.0, "schema_errors": 1.0}, evidence)
        evidence["errors"] = [{"path": e.json_path, "error": e.message[:300]}
                              for e in errors[: self.params.max_errors]]
        return Measurement({"invalid_json": 0.0, "schema_errors": float(len(errors))}, evidence)

    def decide(self, m: Measurement) -> list[Finding]:
        place, ev = where(self.params.field), m.evidence
        if m.values["invalid_json"]:
            return [self.finding("invalid_json", 1.0, 0,
                                 f"{place} is not valid JSON: {ev.get('error')} "
                                 f"(line {ev.get('line')}, column {ev.get('column')})", **ev)]
        n = m.values["schema_errors"] or 0.0
        if n <= 0:
            return []
        first = ev["errors"][0]
        return [self.finding("schema_violation", n, 0,
                             f"{place} does not match the schema at {first['path']}: {first['error']}",
                             path=first["path"], error=first["error"], errors=ev["errors"])]


def _json_error(exc: Exception, line_offset: int) -> dict[str, Any]:
    if isinstance(exc, json.JSONDecodeError):
        return {"line": exc.lineno + line_offset, "column": exc.colno, "error": exc.msg}
    if isinstance(exc, RecursionError):
        return {"line": None, "column": None, "error": "nested too deeply"}
    return {"line": None, "column": None, "error": str(exc)[:200]}


# ------------------------------------------------------------------------------------------ code valid
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
                out.append((m.group(3).lower().lstrip(".") or None, code, _line_of(text, m.start(4))))
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


# ------------------------------------------------------------------------------------------ vocabulary
_WORD = re.compile(r"[A-Za-z]+(?:['’][A-Za-z]+)*")
_SENTENCE_END = set(".!?:;\"“”'‘’«»—–-([")
_NOT = {"ca": "can", "wo": "will", "sha": "shall", "ai": "be"}
_CLITICS = {"s", "re", "ll", "ve", "d", "m"}
IRREGULAR = {
    "went": "go", "gone": "go", "ran": "run", "saw": "see", "seen": "see", "ate": "eat", "eaten": "eat",
    "came": "come", "took": "take", "taken": "take", "gave": "give", "given": "give", "found": "find",
    "made": "make", "said": "say", "had": "have", "has": "have", "got": "get", "felt": "feel", "fell": "fall",
    "fallen": "fall", "flew": "fly", "flown": "fly", "drew": "draw", "sang": "sing", "sung": "sing",
    "swam": "swim", "sat": "sit", "stood": "stand", "told": "tell", "thought": "think", "bought": "buy",
    "brought": "bring", "caught": "catch", "taught": "teach", "knew": "know", "known": "know", "grew": "grow",
    "grown": "grow", "threw": "throw", "thrown": "throw", "wore": "wear", "won": "win", "lost": "lose",
    "left": "leave", "kept": "keep", "slept": "sleep", "woke": "wake", "rode": "ride", "wrote": "write",
    "written": "write", "drove": "drive", "broke": "break", "broken": "break", "began": "begin", "hid": "hide",
    "held": "hold", "heard": "hear", "met": "meet", "built": "build", "sent": "send", "spent": "spend",
    "fed": "feed", "led": "lead", "dug": "dig", "hung": "hang", "blew": "blow", "shook": "shake", "spoke": "speak",
    "stuck": "stick", "swung": "swing", "did": "do", "done": "do", "was": "be", "were": "be", "been": "be",
    "is": "be", "am": "be", "are": "be", "children": "child", "mice": "mouse", "feet": "foot", "teeth": "tooth",
    "men": "man", "women": "woman", "geese": "goose", "people": "person", "better": "good", "best": "good",
    "worse": "bad", "worst": "bad",
}


def _stems(word: str) -> list[str]:
    """Bases a word may be an inflection of (plural, -ed, -ing, -er, -est, -ly), one step."""
    out: list[str] = []
    w = word

    def add(s: str) -> None:
        if len(s) >= 2:
            out.append(s)

    if w in IRREGULAR:
        add(IRREGULAR[w])
    if w.endswith("ies") or w.endswith("ied") or w.endswith("ier"):
        add(w[:-3] + "y")
    if w.endswith("iest"):
        add(w[:-4] + "y")
    if w.endswith("ily"):
        add(w[:-3] + "y")
    if w.endswith("ying"):
        add(w[:-4] + "ie")
    if w.endswith("es"):
        add(w[:-2])
    if w.endswith("s") and not w.endswith("ss"):
        add(w[:-1])
    if w.endswith("ly"):
        add(w[:-2])
        add(w[:-1] + "e")
    for suffix in ("ed", "ing", "er", "est"):
        if w.endswith(suffix) and len(w) > len(suffix) + 1:
            s = w[: -len(suffix)]
            add(s)
            add(s + "e")
            if len(s) >= 3 and s[-1] == s[-2]:
                add(s[:-1])
    return out


def _plain(token: str) -> str:
    """Lowercase, without a contraction or possessive ending: "Lily's" -> "lily", "can't" -> "can"."""
    w = token.lower().replace("’", "'")
    if w.endswith("n't"):
        return _NOT.get(w[:-3], w[:-3])
    head, _, tail = w.rpartition("'")
    return head if head and tail in _CLITICS else w


def _forms(token: str) -> list[str]:
    """The token (lowercase), without its contraction, and what it may be an inflection of, two steps deep."""
    w = token.lower().replace("’", "'")
    out = [w]
    if (plain := _plain(w)) != w:
        out.append(plain)
    for base in list(out):
        for s in _stems(base):
            out.append(s)
            out.extend(_stems(s))
    return out


@lru_cache(maxsize=8)
def _word_set(words_file: str) -> frozenset[str]:
    return frozenset(w.lower().replace("’", "'") for w in read_list(words_file))


def _required(record: Mapping[str, Any], key: str) -> list[str]:
    if key not in record:
        raise FieldProblem("missing_field", key, f"field '{key}' is missing")
    value = record[key]
    if isinstance(value, str):
        items = value.split(",")
    elif isinstance(value, list) and all(isinstance(x, str) for x in value):
        items = value
    else:
        raise FieldProblem("wrong_type", key, f"field '{key}' should be a list of words or a comma-separated string")
    return [s for x in items if (s := " ".join(x.lower().split()))]


class VocabularyParams(Params):
    field: FieldName = Field(None, description="record field to read; unset = the configured text view")
    words_file: str = Field("tinystories_words.txt", description="allowed words: a path, or a list shipped in rules/")
    extra_words: list[str] = Field(default_factory=list, description="more allowed words")
    max_outside_share: float = Field(0.05, ge=0, le=1, description="largest share of words outside the list "
                                     "(inflections -s, -es, -ed, -ing, -er, -est, -ly and 's count as known)")
    allow_names: bool = Field(True, description="words not in the list that are capitalised mid-sentence, or "
                                                "every time they occur (names such as Lily or Tom), count as known")
    required_field: str | None = Field(None, description="record field with words the text must each contain "
                                                         "(a list, or a comma-separated string); unset = none")

    @field_validator("words_file")
    @classmethod
    def _exists(cls, v: str) -> str:
        return list_param(v)


@register
class Vocabulary(Check[VocabularyParams]):
    """Text uses words outside a simple word list (TinyStories-style), or misses a required word."""

    kind = "vocabulary"
    decision_params = frozenset({"max_outside_share"})
    params_model = VocabularyParams
    score_names = ("words", "outside_share", "missing_required")
    cost = 2

    def __init__(self, name: str, params: VocabularyParams) -> None:
        super().__init__(name, params)
        self._words = _word_set(params.words_file) | {w.lower() for w in params.extra_words}

    def _known(self, forms: list[str]) -> bool:
        return any(f in self._words for f in forms)

    def score(self, sample: Sample) -> Measurement:
        text = sample.view(self.params.field)
        tokens = list(_WORD.finditer(text))
        names: set[str] = set()  # capitalised words seen mid-sentence: names, when not in the list
        if self.params.allow_names:
            lower = {_plain(m.group(0)) for m in tokens if not m.group(0)[0].isupper()}
            for m in tokens:
                before = text[max(0, m.start() - 20): m.start()].rstrip()
                word = _plain(m.group(0))
                # a name: capitalised mid-sentence, or capitalised every time it occurs ("Tom was sad.")
                if m.group(0)[0].isupper() and ((before and before[-1] not in _SENTENCE_END) or word not in lower):
                    names.add(word)
        seen: set[str] = set()
        present: set[str] = set()
        unknown: list[str] = []
        outside = 0
        for m in tokens:
            forms = _forms(m.group(0))
            present.update(forms)
            if self._known(forms) or (m.group(0)[0].isupper() and _plain(m.group(0)) in names):
                continue
            outside += 1
            if forms[0] not in seen:
                seen.add(forms[0])
                unknown.append(forms[0])
        share = round(outside / len(tokens), 6) if tokens else None
        evidence: dict[str, Any] = {"unknown": unknown[:20], "share": share, "outside": outside}
        missing_n: float | None = None
        if self.params.required_field is not None:
            required = _required(sample.record or {}, self.params.required_field)
            lowered = " ".join(text.lower().split())
            missing = [r for r in required if (r not in present if " " not in r
                                                 else not re.search(rf"\b{re.escape(r)}\b", lowered))]
            evidence.update(required=required, missing=missing)
            missing_n = float(len(missing))
        return Measurement({"words": float(len(tokens)), "outside_share": share, "missing_required": missing_n},
                           evidence)

    def decide(self, m: Measurement) -> list[Finding]:
        out, place, ev = [], where(self.params.field), m.evidence
        share = m.values["outside_share"]
        if share is not None and share > self.params.max_outside_share:
            out.append(self.finding("outside_vocabulary", share, self.params.max_outside_share,
                                    f"{place}: {share:.0%} of words are outside the word list "
                                    f"(most allowed {self.params.max_outside_share:.0%}), e.g. "
                                    f"{', '.join(ev['unknown'][:5])}",
                                    unknown=ev["unknown"], share=share, outside=ev["outside"]))
        if m.values["missing_required"]:
            missing = ev["missing"]
            out.append(self.finding("missing_required_word", m.values["missing_required"], 0,
                                    f"{place} does not use required word(s): {', '.join(missing)}",
                                    missing=missing, required=ev["required"]))
        return out
