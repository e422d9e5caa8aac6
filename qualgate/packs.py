"""Where shipped rule packs and word lists live: ``qualgate/_rules`` in a wheel, ``rules/`` in a checkout."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from qualgate.sample import CHAT_FIELDS, REQUEST_ANSWER

_HERE = Path(__file__).resolve().parent


def rules_dir() -> Path:
    for candidate in (_HERE / "_rules", _HERE.parent / "rules"):
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError("qualgate's rules/ folder is missing from this installation")


def pack_names() -> list[str]:
    return sorted(p.stem for p in rules_dir().glob("*.yaml"))


def pack_path(name: str) -> Path | None:
    """The shipped pack called ``name``, or None."""
    path = rules_dir() / f"{name}.yaml"
    return path if path.is_file() else None


def is_bare_name(ref: str) -> bool:
    """A bare name (no folder part) always means what qualgate ships, never a file of the same name in the
    working directory: a pull request could otherwise replace a pack or a phrase list by adding that file."""
    return "/" not in ref and "\\" not in ref and ref not in (".", "..")


def data_file(name: str) -> Path:
    """A word list or schema: a bare name is a file shipped in rules/; a path (with a '/') is the user's file."""
    if is_bare_name(name):
        shipped = rules_dir() / name
        if shipped.is_file():
            return shipped
        hint = f"; to use your own file, write it as a path: './{name}'" if Path(name).is_file() else ""
        raise FileNotFoundError(f"{name!r} not found: a bare name means a file shipped in {rules_dir()}{hint}")
    path = Path(name).expanduser()
    if path.is_file():
        return path
    raise FileNotFoundError(f"file {name!r} not found")


def is_shipped(name: str) -> bool:
    """True when ``name`` resolves to a file qualgate ships (in rules/): reviewed with the code, so trusted."""
    try:
        return data_file(name).resolve().is_relative_to(rules_dir().resolve())
    except FileNotFoundError:
        return False


def read_list(name: str) -> list[str]:
    """Non-empty, non-comment lines of a word list."""
    lines = data_file(name).read_text(encoding="utf-8").splitlines()
    return [s for line in lines if (s := line.strip()) and not s.startswith("#")]


def list_param(name: str) -> str:
    """Validator for a word-list parameter: the list must exist. A ValueError, so the config error names the key."""
    try:
        read_list(name)
    except FileNotFoundError as exc:
        raise ValueError(str(exc)) from None
    return name


#: the pack made for each kind of record the ``auto`` text view recognises (sample.CHAT_FIELDS, REQUEST_ANSWER)
_PACK_FOR = {"chat": "chats (a messages list): the chat pack also checks roles, turn order and empty turns",
             "instruct": "request/answer records (instruction/input/output, prompt/completion ...): the instruct "
                         "pack judges the answer by itself (refusals, prompt echo, repetition of the answer alone)"}


def suggested_pack(record: Mapping[str, Any]) -> str | None:
    """The shipped pack that reads ``record`` better than ``default``'s generic text view: ``chat`` for a
    messages list, ``instruct`` for a request with its answer; None for plain text."""
    if any(isinstance(record.get(k), list) for k in CHAT_FIELDS):
        return "chat"
    if any(request in record and any(a in record for a in answers) for request, _, answers in REQUEST_ANSWER):
        return "instruct"
    return None


def pack_notes(counts: Mapping[str, int], total: int) -> list[str]:
    """A one-line suggestion when most records (counted by ``suggested_pack``) fit another pack."""
    if not counts or not total:
        return []
    pack, n = max(counts.items(), key=lambda kv: (kv[1], kv[0]))
    if n * 2 < total:
        return []
    return [f"{n:,} of {total:,} records are {_PACK_FOR[pack]}; the default pack reads them as one text: "
            f"try -c {pack}"]
