"""Regular expressions from configs, compiled with RE2: matching time is linear in the text.

Patterns in rule packs and user configs are written by whoever wrote the config, and a gate that checks
pull requests runs configs written by strangers. Python's ``re`` backtracks, so ``(a+)+$`` against forty
``a`` and a ``b`` takes minutes; RE2 (google-re2) never backtracks, so no pattern can hang the gate. The
price: RE2 has no lookaround and no backreferences, and such a pattern is refused when the config is
loaded, with the reason. Patterns qualgate ships (``rules/``, reviewed with the code) may need lookaround:
those (``trusted``) fall back to ``re`` when RE2 refuses them; so do patterns qualgate builds itself from
escaped word lists.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

import re2

from qualgate.lm.text import utf8_safe

#: Memory RE2 may use per compiled pattern (its default, 8 MiB, made explicit): a huge pattern fails to compile
#: with a clear error instead of growing without bound.
MAX_MEM = 8 << 20


def _options(ignore_case: bool) -> Any:
    options = re2.Options()
    options.case_sensitive = not ignore_case
    options.log_errors = False  # the error comes back as an exception with the reason; no stderr noise
    options.max_mem = MAX_MEM
    return options


class Pattern:
    """An RE2 pattern with ``re``'s ``search``/``finditer``/``match``. RE2 takes UTF-8, which a lone surrogate
    (valid in a Python str, found in real JSON) cannot be: such a text is matched with each unencodable
    character read as "?", one character for one, so match positions still index the original text."""

    def __init__(self, compiled: Any) -> None:
        self._rx = compiled
        self.pattern: str = compiled.pattern

    def search(self, text: str) -> Any:
        return self._rx.search(utf8_safe(text, "?"))

    def match(self, text: str) -> Any:
        return self._rx.match(utf8_safe(text, "?"))

    def finditer(self, text: str) -> Any:
        return self._rx.finditer(utf8_safe(text, "?"))


def compile_pattern(pattern: str, ignore_case: bool = False, trusted: bool = False) -> Any:
    """A compiled RE2 ``Pattern`` (``search``, ``finditer``, ``match`` like ``re``); ValueError when RE2 refuses
    it, unless ``trusted`` (shipped with qualgate), which then compiles with ``re``."""
    try:
        return Pattern(re2.compile(pattern, _options(ignore_case)))
    except re2.error as exc:
        if trusted:
            return re.compile(pattern, re.IGNORECASE if ignore_case else 0)
        reason = exc.args[0].decode("utf-8", "replace") if exc.args and isinstance(exc.args[0], bytes) else str(exc)
        raise ValueError(f"invalid regular expression {pattern!r}: {reason} (qualgate uses RE2, which runs in "
                         "linear time and has no lookaround or backreferences)") from None


def user_patterns(patterns: list[str]) -> list[str]:
    """The pydantic validator for a config's pattern list: each must compile with RE2. One argument only:
    pydantic would pass its validation info as ``trusted`` to ``check_patterns``."""
    return check_patterns(patterns)


def check_patterns(patterns: Iterable[str], trusted: bool = False) -> list[str]:
    """Validate config patterns (a pydantic validator): each must compile with RE2 (or ``re`` when ``trusted``)."""
    patterns = list(patterns)
    for p in patterns:
        try:
            compile_pattern(p, trusted=trusted)
        except re.error as exc:
            raise ValueError(f"invalid regular expression {p!r}: {exc}") from None
    return patterns
