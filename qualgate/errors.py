"""Errors that stop a run with exit code 2: they always say which file, line and key."""

from __future__ import annotations


class QualgateError(Exception):
    """Base of every error qualgate reports to users (CLI exit code 2)."""

    exit_code = 2


class ConfigError(QualgateError):
    """A config file could not be read or validated."""

    def __init__(self, message: str, *, file: str | None = None, key: str | None = None,
                 line: int | None = None) -> None:
        self.file, self.key, self.line, self.detail = file, key, line, message
        where = file or "<config>"
        if line is not None:
            where += f":{line}"
        if key:
            where += f" at '{key}'"
        super().__init__(f"config error in {where}: {message}")


class InputError(QualgateError):
    """An input could not be read (missing file, unknown format) or, with --strict, a malformed record."""

    def __init__(self, message: str, *, file: str | None = None, line: int | None = None,
                 key: str | None = None) -> None:
        self.file, self.line, self.key, self.detail = file, line, key, message
        where = file or "<input>"
        if line is not None:
            where += f":{line}"
        if key:
            where += f" at '{key}'"
        super().__init__(f"input error in {where}: {message}")
