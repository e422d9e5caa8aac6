"""Reviewer overrides: a human's accept/reject for named samples, applied after every check.

The file is YAML (a list of entries, or ``overrides:`` holding one) or JSONL (one entry per line); each
entry has ``id``, ``sha256`` (the record's content hash, as in rejected.jsonl's ``qualgate.sha256``; at least
its first 16 hex digits), ``decision`` (accept or reject), ``reviewer`` and an optional ``note``. An override
wins over the gate's findings, which stay recorded next to it (``scores.parquet``, ``overrides.jsonl``, the
report), so an overruled sample keeps its history. An id that matches no sample is reported, not an error:
review files outlive the runs they were written for.

Why the hash: ids are only handles. They can repeat, and a record can be edited after review, so an entry
binds to the content the reviewer saw; an entry whose hash does not match is not applied and is reported.
An ``accept`` without a hash is applied by ``filter`` (reported as unbound) and refused by ``check``.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from qualgate.errors import ConfigError
from qualgate.findings import OVERRIDE, Decision, Finding, Override
from qualgate.sample import Sample, canonical_json


class OverrideEntry(BaseModel):
    """One reviewed decision."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    id: str = Field(min_length=1, description="the sample's id, as in scores.parquet / rejected.jsonl")
    sha256: str | None = Field(None, pattern=r"^[0-9a-f]{16,64}$",
                               description="the record's content hash (rejected.jsonl qualgate.sha256), or a prefix "
                                           "of at least 16 hex digits: the override applies to that content only")
    decision: Literal["accept", "reject"]
    reviewer: str = Field(min_length=1, description="who decided (a name or handle)")
    note: str = Field("", description="why")

    def __init__(self, **data: Any) -> None:
        if isinstance(data.get("id"), int) and not isinstance(data.get("id"), bool):
            data["id"] = str(data["id"])  # ids read from a record field may be numbers
        super().__init__(**data)


class Overrides:
    """The entries of one overrides file, by id; ``apply`` sets a decision's override."""

    def __init__(self, entries: dict[str, tuple[OverrideEntry, str]], source: str, *,
                 require_hash: bool = False) -> None:
        """``require_hash``: refuse ``accept`` entries without a ``sha256`` (``qualgate check``)."""
        self.entries = entries
        self.source = source
        self.require_hash = require_hash
        self.matched: set[str] = set()
        self.refused: set[str] = set()
        self.applied: Counter[str] = Counter()
        self.mismatched: set[str] = set()
        self.unbound: set[str] = set()

    def __len__(self) -> int:
        return len(self.entries)

    def reset(self) -> None:
        """Forget which ids an earlier run matched or refused."""
        for seen in (self.matched, self.refused, self.applied, self.mismatched, self.unbound):
            seen.clear()

    def apply(self, d: Decision) -> None:
        hit = self.entries.get(d.id)
        if hit is None:
            return
        entry, where = hit
        self.matched.add(d.id)
        if entry.sha256 is not None and not content_sha256(d.sample).startswith(entry.sha256):
            self.mismatched.add(d.id)  # another record with this id, or the record changed since review
            return
        if entry.decision == "accept" and d.sample.record is None:
            self.refused.add(d.id)  # an unparseable line cannot go into accepted.jsonl, whoever says so
            return
        if entry.decision == "accept" and entry.sha256 is None:
            self.unbound.add(d.id)
            if self.require_hash:
                return
        self.applied[d.id] += 1
        overrule(d, Override(entry.decision, entry.reviewer, entry.note, where))

    def apply_all(self, decisions: Iterable[Decision]) -> None:
        for d in decisions:
            self.apply(d)

    def info(self) -> dict[str, Any]:
        unmatched = sorted(set(self.entries) - self.matched)
        info: dict[str, Any] = {"file": self.source, "entries": len(self.entries), "unmatched": unmatched}
        if self.refused:
            info["refused"] = {"ids": sorted(self.refused),
                               "why": "accept overrides of records that could not be parsed are not applied"}
        if self.mismatched:
            info["hash_mismatch"] = {"ids": sorted(self.mismatched),
                                     "why": "a record with this id has other content than the reviewed one (sha256): "
                                            "not applied to it"}
        if self.unbound:
            info["unbound"] = {"ids": sorted(self.unbound),
                               "why": ("accept without sha256: not applied here (add the record's sha256)"
                                       if self.require_hash else
                                       "accept without sha256: applied to every record with this id; add the "
                                       "record's sha256 to bind it to the reviewed content")}
        if dup := sorted(i for i, n in self.applied.items() if n > 1):
            info["duplicate_ids"] = {"ids": dup, "why": "one entry was applied to several records sharing its id"}
        return info

    def problems(self) -> list[str]:
        """One line per kind of entry that was not applied as written (for summaries and warnings)."""
        info = self.info()
        return [f"overrides {key.replace('_', ' ')}: {', '.join(info[key]['ids'][:10])} ({info[key]['why']})"
                for key in ("refused", "hash_mismatch", "unbound", "duplicate_ids") if key in info]


def content_sha256(sample: Sample) -> str:
    """SHA-256 of a record's canonical JSON (of its raw bytes when it could not be parsed): what an override
    binds to. Cryptographic, unlike the ids' xxh3: a change must not be able to forge a reviewed record's hash."""
    if sample.record is None:
        return hashlib.sha256(sample.raw or b"").hexdigest()
    try:
        return hashlib.sha256(canonical_json(sample.record)).hexdigest()
    except (TypeError, ValueError, RecursionError):
        return hashlib.sha256(f"unserialisable:{sample.source}".encode()).hexdigest()


def overrule(d: Decision, override: Override) -> None:
    """Set a reviewer's decision on ``d``; a rejection of a sample the gate accepted gets its own finding."""
    d.override = override
    if override.decision == "reject" and not d.findings:
        note = f": {override.note}" if override.note else ""
        d.findings.append(Finding(OVERRIDE, "reviewer_rejected", None, None,
                                  f"rejected by reviewer {override.reviewer}{note}",
                                  {"reviewer": override.reviewer, "note": override.note, "from": override.source}))


def load_overrides(path: str | Path, *, require_hash: bool = False) -> Overrides:
    """Read and validate an overrides file; a bad entry is a ConfigError naming file, line and key."""
    name = str(path)
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read the overrides file: {exc.strerror}", file=name) from None
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"overrides file is not valid UTF-8 (offset {exc.start})", file=name) from None
    jsonl = name.lower().endswith((".jsonl", ".ndjson"))
    items = list(jsonl_items(text, name)) if jsonl else yaml_items(text, name)
    entries: dict[str, tuple[OverrideEntry, str]] = {}
    for line, item in items:
        if not isinstance(item, dict):
            raise ConfigError(f"an override must be a mapping with id, decision, reviewer, got "
                              f"{type(item).__name__}", file=name, line=line)
        try:
            entry = OverrideEntry(**item)
        except ValidationError as exc:
            err = exc.errors()[0]
            key = ".".join(str(p) for p in err["loc"]) or None
            raise ConfigError(err["msg"], file=name, line=line, key=key) from None
        if entry.id in entries:
            raise ConfigError(f"id {entry.id!r} is overridden twice (first at {entries[entry.id][1]})",
                              file=name, line=line, key="id")
        entries[entry.id] = (entry, f"{name}:{line}")
    return Overrides(entries, name, require_hash=require_hash)


def jsonl_items(text: str, name: str) -> Iterable[tuple[int, Any]]:
    for n, raw in enumerate(text.splitlines(), start=1):
        if not raw.strip():
            continue
        try:
            yield n, json.loads(raw)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"invalid JSON: {exc.msg} (column {exc.colno})", file=name, line=n) from None


def yaml_items(text: str, name: str) -> list[tuple[int, Any]]:
    """Entries with the line each starts on (from the YAML node marks)."""
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        raise ConfigError(f"invalid YAML: {getattr(exc, 'problem', exc)}", file=name,
                          line=mark.line + 1 if mark else None) from None
    if root is None:
        return []
    if isinstance(root, yaml.MappingNode):
        keys = {k.value: v for k, v in root.value}
        if set(keys) != {"overrides"}:
            raise ConfigError("expected a list of overrides, or a mapping with only the key 'overrides'",
                              file=name, line=root.start_mark.line + 1)
        root = keys["overrides"]
    if not isinstance(root, yaml.SequenceNode):
        raise ConfigError("expected a list of overrides (id, decision, reviewer, note)", file=name,
                          line=root.start_mark.line + 1, key="overrides")
    loader = yaml.SafeLoader("")
    try:
        return [(node.start_mark.line + 1, loader.construct_object(node, deep=True)) for node in root.value]
    finally:
        loader.dispose()
