"""Escaping for strings that come from data, configs or a pull request, before they reach Markdown or a terminal.

Ids, file names, check names, messages, reviewer names and notes are written into the PR comment, the GitHub
step summary, report.md and terminal output. Unescaped, a ``|`` or a newline breaks a table, a backtick
leaves a code span, ``<!--`` hides the rest of a comment, ``@name`` notifies a stranger, and an ESC sequence,
a carriage return or a bidi override rewrites what a reader sees. Controls are not dropped but shown
(``\\x1b``, ``\\u202e``), so a reader sees that something was there.
"""

from __future__ import annotations

import re
import unicodedata

#: Unicode categories never written raw: controls (C0, DEL, C1), format characters (bidi overrides and
#: isolates, zero-width characters, soft hyphen, tags), line and paragraph separators, lone surrogates.
UNSAFE_CATEGORIES = frozenset({"Cc", "Cf", "Zl", "Zp", "Cs"})
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}
# characters that may be unsafe (printable ASCII and Latin-1 letters are not; the rest is looked up)
_SUSPECT = re.compile(r"[^\x20-\x7e\u00a0-\u00ac\u00ae-\u02ff]")
# what CommonMark, a terminal or Python's splitlines takes as a line break, and tabs: a space in Markdown
_BREAKS = re.compile(r"[\t\n\v\f\r\x1c-\x1e\x85\u2028\u2029]+")
_MD_ESCAPES = {
    "\\": "\\\\", "`": "\\`", "*": "\\*", "[": "\\[", "]": "\\]", "|": "\\|", "~": "\\~", "$": "\\$",
    "<": "&lt;", ">": "&gt;", "&": "&amp;",
    # GitHub links @name and #123 whatever a backslash says; a zero-width space after the sign stops it
    "@": "@&#8203;", "#": "#&#8203;",
}
_MD_SPECIAL = re.compile(r"[\\`*\[\]|~$<>&@#]|(?<![A-Za-z0-9])_|_(?![A-Za-z0-9])")
_LIST_START = re.compile(r"[-+]|\d{1,9}[.)]")


def _visible(ch: str) -> str:
    if ch in _NAMED:
        return _NAMED[ch]
    code = ord(ch)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"


def _show(m: re.Match[str]) -> str:
    ch = m.group()
    code = ord(ch)
    # noncharacters (U+FFFE, U+FDD0...) are not text either, and make XML invalid
    if unicodedata.category(ch) in UNSAFE_CATEGORIES or code & 0xFFFE == 0xFFFE or 0xFDD0 <= code <= 0xFDEF:
        return _visible(ch)
    return ch


def visible(s: str, keep: str = "") -> str:
    """``s`` with every control, format, separator, surrogate and noncharacter (but those in ``keep``) written as
    a printable escape."""
    if keep:
        return _SUSPECT.sub(lambda m: m.group() if m.group() in keep else _show(m), s)
    return _SUSPECT.sub(_show, s)


def _cut(s: str, max_len: int | None) -> str:
    return s if max_len is None or len(s) <= max_len else s[:max(max_len - 1, 0)] + "…"


def term(value: object, max_len: int | None = None) -> str:
    """Text safe to print on a terminal: no ESC/CSI/OSC sequence, carriage return, backspace, newline or bidi
    control survives; each shows as an escape such as ``\\x1b``."""
    return visible(_cut(str(value), max_len))


def md_text(value: object, max_len: int | None = 300) -> str:
    """Plain Markdown text, safe inside a table cell, a list item or a heading: Markdown and HTML specials
    are escaped (``|`` too), line breaks become spaces, controls show as escapes, mentions do not notify."""
    # no leading or trailing space: four would start a code block, two before a line end a hard break
    s = visible(_BREAKS.sub(" ", _cut(str(value), max_len))).strip()
    s = _MD_SPECIAL.sub(lambda m: _MD_ESCAPES.get(m.group(), "\\_"), s)
    # a leading "-", "+" or "1." would start a list (or a thematic break) where the text begins a line
    m = _LIST_START.match(s)
    return s[:m.end() - 1] + "\\" + s[m.end() - 1:] if m else s


def md_code(value: object, max_len: int | None = 200, *, cell: bool = False) -> str:
    """An inline code span showing ``value`` literally: the fence is one backtick longer than the longest run
    inside. ``cell``: it goes in a GFM table cell, where ``|`` must be written ``\\|`` even in code.

    Falls back to md_text (escaped text) where no code span can do: an HTML comment marker (``<!--``, ``-->``)
    stays out of the raw Markdown, where tools that find or hide a comment by its markers would see it, and a
    backslash before a pipe in a table cell is read differently by GitHub and by other parsers."""
    s = visible(_BREAKS.sub(" ", _cut(str(value), max_len)))
    if "<!--" in s or "-->" in s or (cell and "\\|" in s):
        return md_text(value, max_len)
    if cell:
        s = s.replace("|", "\\|")
    if not s:
        return "` `"
    fence = "`" * (max((len(r) for r in re.findall("`+", s)), default=0) + 1)
    if s[0] == "`" or s[-1] == "`" or (s[0] == " " and s[-1] == " " and s.strip(" ")):
        s = f" {s} "
    return f"{fence}{s}{fence}"
