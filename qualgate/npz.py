"""Numpy ``.npz`` files qualgate writes itself (set-index caches, checkpoints): written atomically and owner-only,
so a killed writer leaves no partial file under the final name; plain arrays only, read back with
``allow_pickle=False``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from qualgate.io import atomic_write


def save_npz(path: Path, arrays: dict[str, Any]) -> None:
    """Write an .npz atomically (temp file, then rename), creating the folder."""
    import numpy as np

    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(path, mode=0o600) as fh:
        np.savez(fh, **arrays)
