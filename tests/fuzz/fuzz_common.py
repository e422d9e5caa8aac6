"""What both fuzz targets do with a fuzzed file: write it, read it, and check that every record was decided.

Import it inside ``atheris.instrument_imports``, so the qualgate modules it brings in are instrumented.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Sequence
from typing import Any

from qualgate.errors import QualgateError
from qualgate.io import RawRecord, read_records

FORMATS = ("jsonl", "json", "csv", "tsv", "parquet")
_TMP = tempfile.mkdtemp(prefix="qualgate-fuzz-")


def read_fuzzed(fmt: str, body: bytes) -> list[RawRecord] | None:
    """The records of ``body`` as a ``fmt`` file; None when the file is broken as a whole (a JSON array or
    Parquet that does not parse: exit 2, the documented outcome)."""
    path = os.path.join(_TMP, f"input.{fmt}")
    with open(path, "wb") as fh:
        fh.write(body)
    try:
        return list(read_records([path], fmt))
    except QualgateError:
        return None


def assert_decided(raws: Sequence[RawRecord], decisions: Sequence[Any]) -> None:
    """Conservation: one decision per record, accepted exactly when it has no finding or an override."""
    assert len(decisions) == len(raws), "conservation: one decision per record"
    for d in decisions:
        assert d.accepted == (not d.findings or d.override is not None)
