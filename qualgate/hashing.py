"""Content hashes of files, read in chunks: one place for what a card, a benchmark index and a cache key record."""

from __future__ import annotations

import hashlib
from pathlib import Path

CHUNK = 1 << 22  # 4 MiB: a bounded read whatever the file's size


def sha256_and_size(path: str | Path) -> tuple[str, int]:
    """The sha256 (hex) and byte size of the file at ``path``, from one pass over it. OSError as ``open`` raises."""
    digest = hashlib.sha256()
    size = 0
    with open(path, "rb") as fh:
        while chunk := fh.read(CHUNK):
            digest.update(chunk)
            size += len(chunk)
    return digest.hexdigest(), size


def sha256_file(path: str | Path) -> str:
    """The sha256 (hex) of the file at ``path``."""
    return sha256_and_size(path)[0]
