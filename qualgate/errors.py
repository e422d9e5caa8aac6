"""Errors that stop a run with exit code 2: they always say which file, line and key."""

from __future__ import annotations


class QualgateError(Exception):
    """Base of every error qualgate reports to users (CLI exit code 2)."""

    exit_code = 2
    label = "error"
    default_file = "<unknown>"

    def __init__(self, message: str, *, file: str | None = None, line: int | None = None,
                 key: str | None = None) -> None:
        self.file, self.line, self.key, self.detail = file, line, key, message
        where = file or self.default_file
        if line is not None:
            where += f":{line}"
        if key:
            where += f" at '{key}'"
        super().__init__(f"{self.label} in {where}: {message}")


class ConfigError(QualgateError):
    """A config file could not be read or validated."""

    label = "config error"
    default_file = "<config>"


class InputError(QualgateError):
    """An input could not be read (missing file, unknown format) or, with --strict, a malformed record."""

    label = "input error"
    default_file = "<input>"


class FieldsMissingError(InputError):
    """A field the text view, the id or a check needs is missing in nearly every one of a file's first records:
    a wrong config or dataset layout, stopped early instead of rejecting every record as malformed."""
