"""``qualgate check``: gate only the records a change adds to dataset files, against what is already there.

A record is "added" when its content (the record's canonical JSON, whatever ``input.id`` says) is not in
the same file at the base revision; removed and reordered records are not findings, and a record whose
content appears more often than before counts its extra copies as added (the near-duplicate check then
names the copy it repeats). The base version of every file is the baseline of the duplicate checks,
so a new record that copies or paraphrases an existing one is caught, and its cached index makes a
second run fast.
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import xxhash

from qualgate.errors import InputError
from qualgate.findings import Decision
from qualgate.io import RawRecord, detect_format, read_records


@dataclass
class FileChange:
    """One dataset file: where it is, the base it was compared with, and how many records each side has."""

    path: str
    base: str
    base_records: int = 0
    records: int = 0
    added: list[RawRecord] = field(default_factory=list)
    base_file: str | None = None  # the base version, written to a temporary file (None: new file)


def _git(args: Sequence[str], cwd: str) -> subprocess.CompletedProcess[bytes]:
    try:
        return subprocess.run(["git", *args], cwd=cwd, capture_output=True, check=False)
    except FileNotFoundError:
        raise InputError("git is not installed: qualgate check compares files with a git revision") from None


def repo_root(path: str) -> str:
    proc = _git(["rev-parse", "--show-toplevel"], os.path.dirname(os.path.abspath(path)) or ".")
    if proc.returncode != 0:
        raise InputError("not inside a git repository", file=path)
    return proc.stdout.decode().strip()


def default_base(root: str) -> str:
    """The index's parent for a pre-commit run, else the merge base with the default branch, else HEAD."""
    if os.environ.get("PRE_COMMIT") == "1":
        return "HEAD"
    for branch in ("origin/HEAD", "origin/main", "origin/master", "main", "master"):
        proc = _git(["merge-base", "HEAD", branch], root)
        if proc.returncode == 0 and proc.stdout.strip():
            return proc.stdout.decode().strip()
    return "HEAD"


def content_key(record: Any) -> str:
    """Identity of a record's content: canonical JSON (sorted keys), hashed."""
    text = json.dumps(record, sort_keys=True, ensure_ascii=False, separators=(",", ":"), default=str)
    return xxhash.xxh3_128_hexdigest(text.encode("utf-8", "surrogatepass"))


def base_bytes(path: str, base: str) -> bytes | None:
    """The file's content at revision ``base`` (None when it did not exist there)."""
    root = repo_root(path)
    rel = os.path.relpath(os.path.abspath(path), root).replace(os.sep, "/")
    proc = _git(["show", f"{base}:{rel}"], root)
    if proc.returncode != 0:
        err = proc.stderr.decode(errors="replace")
        if "does not exist" in err or "exists on disk, but not in" in err:
            return None
        raise InputError(f"git cannot read it at {base!r}: {err.strip()[:200]}", file=path)
    return proc.stdout


def find_changes(paths: Sequence[str], base: str | None, fmt: str | None, workdir: Path,
                 read: Callable[[list[str], str | None], Iterable[RawRecord]] = read_records) -> list[FileChange]:
    """For each file, its records that are not in its base version; base versions are written to ``workdir``
    under a name made of their content (so a cache folder keeps them, and their indexes, between runs).
    ``read``: how files are read (``Gate.read``: under the config's input limits)."""
    changes = []
    for path in paths:
        if not os.path.isfile(path):
            raise InputError("file not found", file=path)
        root = repo_root(path)
        ref = base or default_base(root)
        change = FileChange(path, ref)
        old = base_bytes(path, ref)
        seen: Counter[str] = Counter()
        if old is not None:
            kind = fmt or detect_format(path)
            # a path that depends only on the content, so the baseline index cached for it is found next run
            digest = xxhash.xxh3_128_hexdigest(old)
            base_file = workdir / digest[:2] / f"{digest}.{kind}"
            if not base_file.is_file() or base_file.stat().st_size != len(old):
                base_file.parent.mkdir(parents=True, exist_ok=True)
                tmp = base_file.with_suffix(f".{os.getpid()}.tmp")
                tmp.write_bytes(old)
                os.replace(tmp, base_file)
            for raw in read([str(base_file)], kind):
                change.base_records += 1
                if raw.record is not None:
                    seen[content_key(raw.record)] += 1
            change.base_file = str(base_file)
        for raw in read([path], fmt):
            change.records += 1
            if raw.record is None:  # unparseable lines are new problems the gate reports as malformed
                change.added.append(raw)
                continue
            key = content_key(raw.record)
            if seen[key] > 0:
                seen[key] -= 1
            else:
                change.added.append(raw)
        changes.append(change)
    return changes


def added_records(changes: Sequence[FileChange]) -> Iterator[RawRecord]:
    for change in changes:
        yield from change.added


def summary_markdown(changes: Sequence[FileChange], decisions: Sequence[Decision], passed: bool,
                     failed_conditions: Sequence[str], max_listed: int = 50) -> str:
    """A PR-comment-sized summary: verdict, counts per file and per check, each rejected record (capped)."""
    rejected = [d for d in decisions if not d.accepted]
    lines = [f"## qualgate: {'passed' if passed else 'FAILED'}", ""]
    lines += ["| file | base | records added | accepted | rejected |", "|---|---|---:|---:|---:|"]
    by_file: Counter[str] = Counter(d.sample.source.file for d in rejected if d.sample.source)
    for c in changes:
        lines.append(f"| `{c.path}` | `{c.base[:12]}` | {len(c.added)} | {len(c.added) - by_file[c.path]} | "
                     f"{by_file[c.path]} |")
    reasons: Counter[str] = Counter(f"{d.findings[0].check}: {d.findings[0].reason}" for d in rejected)
    if reasons:
        lines += ["", "| check: reason | rejected |", "|---|---:|"]
        lines += [f"| {k} | {v} |" for k, v in reasons.most_common()]
    for cond in failed_conditions:
        lines.append(f"\nGate condition failed: {cond}")
    if rejected:
        lines += ["", "### Rejected records", "", "| file | line | id | why |", "|---|---:|---|---|"]
        for d in rejected[:max_listed]:
            src = d.sample.source
            why = "; ".join(f.message for f in d.findings).replace("|", "\\|").replace("\n", " ")
            lines.append(f"| `{src.file if src else '-'}` | {src.line if src else '-'} | `{d.id}` | {why[:300]} |")
        if len(rejected) > max_listed:
            lines.append(f"\n... and {len(rejected) - max_listed} more rejected records (see `--format json`).")
    overruled = [d for d in decisions if d.accepted and d.override is not None]
    if overruled:
        lines += ["", "### Accepted by a reviewer despite findings", "", "| id | reviewer | note | findings |",
                  "|---|---|---|---|"]
        for d in overruled[:max_listed]:
            ov = d.override
            assert ov is not None
            why = ", ".join(f"{f.check}/{f.reason}" for f in d.findings)
            lines.append(f"| `{d.id}` | {ov.reviewer} | {ov.note.replace('|', '/')[:200]} | {why} |")
    if not any(c.added for c in changes):
        lines.append("\nNo records added: nothing to check.")
    return "\n".join(lines) + "\n"


def _findings(d: Decision, bases: dict[str, str]) -> list[dict[str, Any]]:
    """Findings as dicts, a baseline duplicate's source named ``file@base`` rather than the cached copy's path."""
    out = []
    for f in d.findings:
        item = f.to_dict()
        src = item.get("evidence", {}).get("duplicate_source")
        if isinstance(src, dict) and src.get("file") in bases:
            item["evidence"] = {**item["evidence"], "duplicate_source": {**src, "file": bases[src["file"]]}}
        out.append(item)
    return out


def summary_json(changes: Sequence[FileChange], decisions: Sequence[Decision], passed: bool,
                 report: dict[str, Any]) -> dict[str, Any]:
    bases = {c.base_file: f"{c.path}@{c.base}" for c in changes if c.base_file}
    return {
        "passed": passed,
        "files": [{"path": c.path, "base": c.base, "base_records": c.base_records, "records": c.records,
                   "added": len(c.added)} for c in changes],
        "added": sum(len(c.added) for c in changes),
        "rejected": [{"id": d.id, **(d.sample.source.to_dict() if d.sample.source else {}),
                      "findings": _findings(d, bases),
                      **({"override": d.override.to_dict()} if d.override else {})}
                     for d in decisions if not d.accepted],
        "overruled": [{"id": d.id, **(d.sample.source.to_dict() if d.sample.source else {}),
                       "override": d.override.to_dict(), "findings": _findings(d, bases)}
                      for d in decisions if d.accepted and d.override is not None],
        "report": report,
    }


def temp_workdir() -> tempfile.TemporaryDirectory[str]:
    return tempfile.TemporaryDirectory(prefix="qualgate-check-")
