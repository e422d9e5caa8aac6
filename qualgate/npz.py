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


def load_npz(path: str | Path) -> dict[str, Any]:
    """Every array of an .npz file, read with ``allow_pickle=False`` (an object array is refused, never unpickled).
    Raises what ``np.load`` raises on a damaged file (OSError, ValueError, EOFError, zipfile.BadZipFile, ...):
    whether that is a rebuild or an error is the caller's to say."""
    import numpy as np

    with np.load(path, allow_pickle=False) as z:
        return {k: z[k] for k in z.files}
