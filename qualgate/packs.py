"""Where shipped rule packs and word lists live: ``qualgate/_rules`` in a wheel, ``rules/`` in a checkout."""

from __future__ import annotations

from pathlib import Path

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


def data_file(name: str) -> Path:
    """A word list: an existing path as given, else a file shipped in rules/."""
    path = Path(name)
    if path.is_file():
        return path
    shipped = rules_dir() / name
    if shipped.is_file():
        return shipped
    raise FileNotFoundError(f"word list {name!r} not found (neither a file nor shipped in {rules_dir()})")


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
