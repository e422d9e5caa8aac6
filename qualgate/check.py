"""``qualgate check``: gate only the records a change adds to dataset files, against what is already there.

A record is "added" when its content (the record's canonical JSON, whatever ``input.id`` says) is not in
the same file at the base revision; removed and reordered records are not findings, and a record whose
content appears more often than before counts its extra copies as added (the near-duplicate check then
names the copy it repeats). The base version of every file is the baseline of the duplicate checks,
so a new record that copies or paraphrases an existing one is caught, and its cached index makes a
second run fast. A JSON Lines file is compared by the hashes of its raw lines first, so only lines the base
does not have are parsed; the base's hashes are cached too.
"""

from __future__ import annotations

import hashlib
import itertools
import os
import subprocess
import tempfile
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from qualgate import __version__
from qualgate.errors import InputError
from qualgate.findings import Decision
from qualgate.io import (
    MAX_DOCUMENT_BYTES,
    MAX_RECORD_BYTES,
    MAX_RECORD_VALUES,
    Oversized,
    RawRecord,
    atomic_write,
    bounded_lines,
    check_encoding,
    detect_format,
    jsonl_lines,
    open_binary,
    parse_line,
    read_records,
)
from qualgate.sample import Source, canonical_json


@dataclass
class FileChange:
    """One dataset file: where it is, the base it was compared with, and how many records each side has."""

    path: str
    base: str
    base_records: int = 0
    records: int = 0
    added: list[RawRecord] = field(default_factory=list)
    base_file: str | None = None  # the base version, written to a temporary file (None: new file)
    changed: bool = True  # the file's bytes differ from the base version (or it is new)
    parsed: int = 0  # records parsed: a JSONL line with the bytes of a base line that is left is not
    base_parsed: int = 0  # base records parsed (0 when the cache folder had their keys)


def _git(args: Sequence[str], cwd: str, stdin: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    try:
        return subprocess.run(["git", *args], cwd=cwd, input=stdin, capture_output=True, check=False)
    except FileNotFoundError:
        raise InputError("git is not installed: qualgate check compares files with a git revision") from None


def repo_root(path: str) -> str:
    proc = _git(["rev-parse", "--show-toplevel"], os.path.dirname(os.path.abspath(path)) or ".")
    if proc.returncode != 0:
        raise InputError("not inside a git repository", file=path)
    return proc.stdout.decode().strip()


def _merge_base(root: str, a: str, b: str) -> str | None:
    proc = _git(["merge-base", "--end-of-options", a, b], root)
    return proc.stdout.decode().strip() if proc.returncode == 0 and proc.stdout.strip() else None


def default_base(root: str) -> str:
    """The base a change is judged against.

    ``pre-commit run --from-ref A --to-ref B`` (CI, hosted pre-commit services) sets PRE_COMMIT_FROM_REF and
    PRE_COMMIT_TO_REF (PRE_COMMIT_SOURCE/ORIGIN before pre-commit 2): the base is their merge base, as
    pre-commit's own ``A...B`` file list. A plain pre-commit hook compares the staged files with HEAD. Else:
    the merge base with the default branch, else HEAD. :func:`vacuous_base` refuses a base that equals the
    commit under test, where nothing could count as added.
    """
    env = os.environ
    frm = env.get("PRE_COMMIT_FROM_REF") or env.get("PRE_COMMIT_SOURCE")
    to = env.get("PRE_COMMIT_TO_REF") or env.get("PRE_COMMIT_ORIGIN")
    if frm:
        return (_merge_base(root, frm, to) if to else None) or frm
    if env.get("PRE_COMMIT") == "1":
        return "HEAD"
    for branch in ("origin/HEAD", "origin/main", "origin/master", "main", "master"):
        if found := _merge_base(root, "HEAD", branch):
            return found
    return "HEAD"


def commit_of(root: str, rev: str) -> str:
    """The commit ``rev`` names (an InputError naming it when git does not know it)."""
    proc = _git(["rev-parse", "--verify", "--quiet", "--end-of-options", f"{rev}^{{commit}}"], root)
    if proc.returncode != 0:
        raise InputError(f"git knows no commit {rev!r} (fetch it, e.g. git fetch origin, or pass --base)")
    return proc.stdout.decode().strip()


def vacuous_base(changes: Sequence[FileChange]) -> str | None:
    """Why the comparison cannot catch anything, or None: the base is the commit under test (HEAD) and no
    file differs from it. That is what ``pre-commit run --all-files`` (or a CI job that forgot the base)
    gives, and passing there would let any pull request through."""
    if not changes or any(c.changed for c in changes):
        return None
    root = repo_root(changes[0].path)
    head = _git(["rev-parse", "--verify", "--quiet", "HEAD^{commit}"], root).stdout.decode().strip()
    if any(commit_of(root, c.base) != head for c in changes):
        return None
    return (f"the base revision {changes[0].base!r} is the commit under test (HEAD {head[:12]}) and no file "
            "differs from it, so no record could count as added. In CI pass the pull request's base: "
            "`pre-commit run --from-ref origin/main --to-ref HEAD`, or `qualgate check --base origin/main FILES`")


def _digest(data: bytes) -> bytes:
    """BLAKE2b-128. Line and content identities decide which records of a change count as already in the base
    and go unjudged, so a pull request must not be able to craft a collision: xxh3 (not collision-resistant
    against a chosen input) was used here before; BLAKE2b costs ~40 ms more per 50k lines."""
    return hashlib.blake2b(data, digest_size=16).digest()


def repo_path(path: str, root: str) -> str:
    """``path`` relative to the repository root, '/'-separated. A path whose real location is outside the
    repository (a symlink a pull request added, pointing at ~/.ssh or /etc, or ``..``) is an InputError:
    ``check`` reads only the repository's own files."""
    real_root = os.path.realpath(root)
    real = os.path.realpath(path)
    if os.path.commonpath([real, real_root]) != real_root:
        what = "a symlink to" if os.path.islink(path) else "a path to"
        raise InputError(f"{what} {real}, outside the repository {real_root}: not read", file=path)
    return os.path.relpath(os.path.abspath(path), root).replace(os.sep, "/")


def show(root: str, rev: str, rel: str, name: str | None = None) -> bytes | None:
    """The blob at ``rev:rel`` (None when there is none; a symlink's blob is its target, never followed)."""
    proc = _git(["show", "--end-of-options", f"{rev}:{rel}"], root)
    if proc.returncode != 0:
        err = proc.stderr.decode(errors="replace")
        if "does not exist" in err or "exists on disk, but not in" in err:
            return None
        raise InputError(f"git cannot read it at {rev!r}: {err.strip()[:200]}", file=name or rel)
    return proc.stdout


def write_new(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through ``io.atomic_write`` (an O_EXCL|O_NOFOLLOW temp file, renamed): a symlink
    planted at the name or at a temp name is replaced, never written through. Creates the folder."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(path) as fh:
        fh.write(data)


_COMPRESSED = (".gz",)


def stored_suffix(path: str, kind: str) -> str:
    """The suffix a base copy is stored under: the format, plus the compression a reader recognises by name."""
    return f".{kind}" + next((c for c in _COMPRESSED if path.lower().endswith(c)), "")


def find_changes(paths: Sequence[str], base: str | None, fmt: str | None, workdir: Path,
                 limits: InputLimits | None = None) -> list[FileChange]:
    """For each file, its records that are not in its base version; base versions are written to ``workdir``
    under a name made of their content (so a cache folder keeps them, and their indexes, between runs).
    ``limits``: the config's input limits (``input.max_record_bytes`` ...; None: the defaults), as ``Gate.read``
    applies them.

    A JSON Lines file is compared line by line first: a line with the bytes of a base line holds that line's
    record, so only the other lines are parsed. The base's line and content hashes are kept in ``workdir``
    under the base blob's id, so a second run neither reads the base from git nor parses it (:func:`base_keys`).
    """
    max_bytes = limits.max_record_bytes if limits else MAX_RECORD_BYTES
    max_doc = limits.max_document_bytes if limits else MAX_DOCUMENT_BYTES
    max_values = limits.max_record_values if limits else MAX_RECORD_VALUES
    changes = []
    for path in paths:
        if not os.path.isfile(path):
            raise InputError("file not found", file=path)
        root = repo_root(path)
        rel = repo_path(path, root)  # before anything reads it: a symlink out of the repository is an error
        ref = base or default_base(root)
        change = FileChange(path, ref)
        kind = fmt or detect_format(path)
        known: dict[bytes, bytes] = {}  # a base line's hash -> its record's content hash (JSONL)
        seen: Counter[bytes] = Counter()  # content hashes of the base's records, with their copies
        suffix = stored_suffix(path, kind)
        blob = _blob(root, ref, rel) if kind == "jsonl" else None
        keys = _keys_file(workdir, blob[0], suffix, max_bytes, max_values) if blob else None
        cached = _cached_keys(keys, workdir, suffix, blob[1]) if keys and blob else None
        old: bytes | None = None
        if cached is not None:
            base_file, change.base_records, known, seen = cached
        elif (old := show(root, ref, rel, path)) is not None:
            # a path that depends only on the content, so the baseline index cached for it is found next run
            digest = _digest(old).hex()
            base_file = workdir / digest[:2] / f"{digest}{suffix}"
            if base_file.is_symlink() or not base_file.is_file() or base_file.stat().st_size != len(old):
                write_new(base_file, old)
            if kind == "jsonl":
                change.base_records, known, seen = base_keys(base_file, max_bytes, max_values, keys)
                change.base_parsed = change.base_records
            else:
                for raw in read_records([str(base_file)], kind, max_bytes, max_doc, max_values):
                    change.base_records += 1
                    change.base_parsed += 1
                    if raw.record is not None:
                        seen[_content_digest(raw.record)] += 1
        else:
            base_file = None
        if base_file is not None:
            change.base_file = str(base_file)
            change.changed = os.path.getsize(path) != base_file.stat().st_size \
                or Path(path).read_bytes() != (base_file.read_bytes() if old is None else old)
        if kind == "jsonl":
            for n, line in _numbered_lines(path, max_bytes):
                change.records += 1
                key = None if isinstance(line, Oversized) else known.get(_digest(line))
                if key is not None and seen[key] > 0:  # the bytes of a base line: its record, left unparsed
                    seen[key] -= 1
                    continue
                change.parsed += 1
                _take(change, _parse(path, n, line, max_values), seen)
        else:
            for raw in read_records([path], kind, max_bytes, max_doc, max_values):
                change.records += 1
                change.parsed += 1
                _take(change, raw, seen)
        changes.append(change)
    return changes


class InputLimits(Protocol):
    """What ``find_changes`` reads of a config's ``input`` section."""

    max_record_bytes: int
    max_document_bytes: int
    max_record_values: int


_KEYS_FORMAT = b"qualgate check keys 2\n"  # 2: BLAKE2b-128 (1 was xxh3-128)


def _content_digest(record: Any) -> bytes:
    return _digest(canonical_json(record))


def _numbered_lines(path: str, max_bytes: int) -> Iterator[tuple[int, bytes | Oversized]]:
    """The numbered lines ``read_jsonl`` parses (BOM and line end removed, blank lines skipped, an over-long
    line as its summary), unparsed; a UTF-16/32 file is the same InputError."""
    fh = open_binary(path)
    try:
        lines = bounded_lines(fh, max_bytes)
        first = next(lines, None)
        if first is None:
            return
        check_encoding(first.preview if isinstance(first, Oversized) else first, path)
        yield from jsonl_lines(itertools.chain([first], lines))
    finally:
        fh.close()


def _parse(path: str, n: int, line: bytes | Oversized, max_values: int) -> RawRecord:
    """Line ``n`` of ``path`` as ``read_jsonl`` gives it."""
    src = Source(path, n)
    return line.record(src) if isinstance(line, Oversized) else parse_line(line, src, max_values)


def _take(change: FileChange, raw: RawRecord, seen: Counter[bytes]) -> None:
    """Count ``raw`` as added unless a base copy of its content is left (then that copy is used up). An
    unparseable line is always added: a new problem the gate reports as malformed."""
    if raw.record is not None:
        key = _content_digest(raw.record)
        if seen[key] > 0:
            seen[key] -= 1
            return
    change.added.append(raw)


def _blob(root: str, rev: str, rel: str) -> tuple[str, int] | None:
    """The id and size of the blob at ``rev:rel``, without reading it; None when git names no blob there
    (``show`` then says why, or that there is no such file)."""
    spec = os.fsencode(f"{rev}:{rel}")
    if b"\n" in spec:  # one request per line
        return None
    proc = _git(["cat-file", "--batch-check=%(objectname) %(objecttype) %(objectsize)"], root, spec + b"\n")
    parts = proc.stdout.split()
    if proc.returncode != 0 or len(parts) != 3 or parts[1] != b"blob" or not parts[2].isdigit():
        return None
    return parts[0].decode("ascii"), int(parts[2])


def _keys_file(workdir: Path, oid: str, suffix: str, max_bytes: int, max_values: int) -> Path:
    """Where the keys of the base blob ``oid`` are kept: its id, the suffix its copy is read by, the input limits
    and qualgate's version name it (each changes what the lines parse to)."""
    return workdir / oid[:2] / f"{oid}{suffix}.keys-{max_bytes}-{max_values}-{__version__}"


_KEYS_HEAD = len(_KEYS_FORMAT) + 32 + 16  # the format line, the copy's content hash (hex), records, pairs


def _cached_keys(keys: Path, workdir: Path, suffix: str, size: int
                 ) -> tuple[Path, int, dict[bytes, bytes], Counter[bytes]] | None:
    """The base copy (``size`` bytes) and its keys from an earlier run (None when either is missing or does not
    fit: the caller reads the base from git again)."""
    if not keys.is_file() or keys.is_symlink():
        return None
    data = keys.read_bytes()
    parsed = _read_keys(data)
    if parsed is None:
        return None
    digest = data[len(_KEYS_FORMAT):len(_KEYS_FORMAT) + 32].decode("ascii", "replace")
    copy = workdir / digest[:2] / f"{digest}{suffix}"
    if copy.is_symlink() or not copy.is_file() or copy.stat().st_size != size:
        return None
    return (copy, *parsed)


def _read_keys(data: bytes) -> tuple[int, dict[bytes, bytes], Counter[bytes]] | None:
    head = _KEYS_HEAD
    if not data.startswith(_KEYS_FORMAT) or len(data) < head \
            or int.from_bytes(data[head - 8:head], "little") * 32 != len(data) - head:
        return None
    records = int.from_bytes(data[head - 16:head - 8], "little")
    lines = [data[at:at + 16] for at in range(head, len(data), 32)]
    keys = [data[at:at + 16] for at in range(head + 16, len(data), 32)]
    return records, dict(zip(lines, keys, strict=True)), Counter(keys)


def base_keys(base_file: Path, max_bytes: int, max_values: int, keys: Path | None = None
              ) -> tuple[int, dict[bytes, bytes], Counter[bytes]]:
    """A JSONL base copy's records: how many, each parsed line's hash -> its record's content hash, and the
    content hashes with their copies. Written to ``keys`` (atomically; in the cache folder, which the change
    under test never writes) for the next run."""
    records, pairs = 0, bytearray()
    for n, line in _numbered_lines(str(base_file), max_bytes):
        records += 1
        raw = _parse(str(base_file), n, line, max_values)
        if raw.record is not None and isinstance(line, bytes):
            pairs += _digest(line) + _content_digest(raw.record)
    digest = base_file.name.split(".")[0].encode("ascii")
    data = b"".join([_KEYS_FORMAT, digest, records.to_bytes(8, "little"), (len(pairs) // 32).to_bytes(8, "little"),
                     bytes(pairs)])
    if keys is not None and len(digest) == 32:
        write_new(keys, data)
    parsed = _read_keys(data)
    assert parsed is not None
    return parsed


def added_records(changes: Sequence[FileChange]) -> Iterator[RawRecord]:
    for change in changes:
        yield from change.added


def summary_markdown(changes: Sequence[FileChange], decisions: Sequence[Decision], passed: bool,
                     failed_conditions: Sequence[str], max_listed: int = 50, judged_by: str | None = None,
                     notes: Sequence[str] = ()) -> str:
    """A PR-comment-sized summary: verdict, counts per file and per check, each rejected record (capped).
    File names, ids, messages, names and notes come from the pull request: md_text / md_code escape them."""
    from qualgate.untrusted import md_code, md_text

    rejected = [d for d in decisions if not d.accepted]
    lines = [f"## qualgate: {'passed' if passed else 'FAILED'}", ""]
    if judged_by:
        lines += [f"Judged by {md_text(judged_by)}.", ""]
    if notes:
        lines += [*(f"- {md_text(n, 600)}" for n in notes), ""]
    lines += ["| file | base | records added | accepted | rejected |", "|---|---|---:|---:|---:|"]
    by_file: Counter[str] = Counter(d.sample.source.file for d in rejected if d.sample.source)
    for c in changes:
        lines.append(f"| {md_code(c.path, cell=True)} | {md_code(c.base[:12], cell=True)} | {len(c.added)} | "
                     f"{len(c.added) - by_file[c.path]} | {by_file[c.path]} |")
    reasons: Counter[str] = Counter(f"{md_text(d.findings[0].check)}: {md_text(d.findings[0].reason)}"
                                    for d in rejected)
    if reasons:
        lines += ["", "| check: reason | rejected |", "|---|---:|"]
        lines += [f"| {k} | {v} |" for k, v in reasons.most_common()]
    for cond in failed_conditions:
        lines.append(f"\nGate condition failed: {md_text(cond)}")
    if rejected:
        lines += ["", "### Rejected records", "", "| file | line | id | why |", "|---|---:|---|---|"]
        for d in rejected[:max_listed]:
            src = d.sample.source
            why = md_text("; ".join(f.message for f in d.findings), 300)
            lines.append(f"| {md_code(src.file, cell=True) if src else '-'} | {md_text(src.line if src else '-')} | "
                         f"{md_code(d.id, cell=True)} | {why} |")
        if len(rejected) > max_listed:
            lines.append(f"\n... and {len(rejected) - max_listed} more rejected records (see `--format json`).")
    overruled = [d for d in decisions if d.accepted and d.override is not None]
    if overruled:
        lines += ["", "### Accepted by a reviewer despite findings", "", "| id | reviewer | note | findings |",
                  "|---|---|---|---|"]
        for d in overruled[:max_listed]:
            ov = d.override
            assert ov is not None
            why = ", ".join(md_text(f"{f.check}/{f.reason}") for f in d.findings)
            lines.append(f"| {md_code(d.id, cell=True)} | {md_text(ov.reviewer, 100)} | {md_text(ov.note, 200)} | "
                         f"{why} |")
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
    from qualgate.overrides import content_sha256

    bases = {c.base_file: f"{c.path}@{c.base}" for c in changes if c.base_file}
    return {
        "passed": passed,
        "files": [{"path": c.path, "base": c.base, "base_records": c.base_records, "records": c.records,
                   "added": len(c.added), "parsed": c.parsed, "base_parsed": c.base_parsed} for c in changes],
        "added": sum(len(c.added) for c in changes),
        "rejected": [{"id": d.id, "sha256": content_sha256(d.sample),
                      **(d.sample.source.to_dict() if d.sample.source else {}), "findings": _findings(d, bases),
                      **({"override": d.override.to_dict()} if d.override else {})}
                     for d in decisions if not d.accepted],
        "overruled": [{"id": d.id, **(d.sample.source.to_dict() if d.sample.source else {}),
                       "override": d.override.to_dict(), "findings": _findings(d, bases)}
                      for d in decisions if d.accepted and d.override is not None],
        "report": report,
    }


def temp_workdir() -> tempfile.TemporaryDirectory[str]:
    return tempfile.TemporaryDirectory(prefix="qualgate-check-")


@contextmanager
def working_dir(path: str | Path | None) -> Iterator[None]:
    """Run with ``path`` as the current directory (None: stay): relative paths in a base-revision config then
    resolve in its mirror, never in the working tree the change controls."""
    if path is None:
        yield
        return
    old = os.getcwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(old)


# --------------------------------------------------------------------------------- trusted configuration
@dataclass
class TrustedFiles:
    """The files that decide a ``check`` run, as the base revision has them, mirrored under ``root``.

    A pull request must not judge itself: a config or overrides file it adds or edits would let it accept its
    own records. So the config file, what it ``extends``, the phrase lists, schemas and model folders it
    names, and the overrides file are read from the base revision into a mirror of the repository, and the
    gate is built with the mirror as its working directory. Shipped packs (a bare name) and files outside
    the repository are not part of any change and are used as they are.
    """

    repo: str
    rev: str
    root: Path
    notes: list[str] = field(default_factory=list)

    def cwd(self) -> Path:
        """The mirror of the current directory (relative paths in configs resolve against it)."""
        rel = self.inside(".")
        here = self.root if rel is None else self.root / rel
        here.mkdir(parents=True, exist_ok=True)
        return here

    def inside(self, path: str | Path) -> str | None:
        """``path`` relative to the repository root, or None when it is outside. Lexical, never following a
        symlink of the working tree: a pull request could add one to point a trusted name at another file."""
        base = os.path.realpath(os.getcwd())  # the user's directory, not something the change controls
        full = os.path.normpath(os.path.join(base, os.path.expanduser(str(path))))
        root = os.path.realpath(self.repo)
        if os.path.commonpath([full, root]) != root:
            return None
        rel = os.path.relpath(full, root).replace(os.sep, "/")
        return rel

    def fetch(self, rel: str, *, name: str) -> Path | None:
        """The base version of the repository path ``rel`` (a file, or a folder such as a model) in the mirror;
        None when the base has no such path."""
        dest = self.root / rel
        if dest.exists():
            return dest
        kind = _git(["cat-file", "-t", "--end-of-options", f"{self.rev}:{rel}"], self.repo).stdout.strip()
        if kind == b"tree":
            proc = _git(["archive", "--format=tar", "--end-of-options", self.rev, "--", rel], self.repo)
            if proc.returncode != 0:
                raise InputError(f"git archive failed at {self.rev!r}: {proc.stderr.decode(errors='replace')[:200]}",
                                 file=name)
            import io
            import tarfile

            with tarfile.open(fileobj=io.BytesIO(proc.stdout)) as tar:
                tar.extractall(self.root, filter="data")  # 'data': no links out of the mirror, no absolute paths
            return dest
        data = show(self.repo, self.rev, rel, name) if kind == b"blob" else None
        if data is None:
            return None
        write_new(dest, data)
        return dest

    def config(self, ref: str) -> str:
        """The config reference to load in the mirror: a shipped pack name as it is, a file outside the
        repository as it is, else the base version of the file and of every file it names (``extends``
        recursively, ``*_file`` lists and schemas, ``model`` folders)."""
        import yaml

        from qualgate.config import named_paths
        from qualgate.packs import is_bare_name

        def shipped(value: str, key: str) -> bool:
            return is_bare_name(value) and (key != "extends" or not value.endswith((".yaml", ".yml")))

        if shipped(ref, "extends"):
            return ref
        rel = self.inside(ref)
        if rel is None:  # not part of any change; absolute, as the gate is built in the mirror
            return os.path.abspath(os.path.expanduser(ref))
        first = self.fetch(rel, name=ref)
        if first is None:
            raise InputError(f"not in the base revision {self.rev!r}: the config that judges a change comes from "
                             "its base, so a pull request cannot bring its own; merge it first, or pass "
                             "--trust-worktree where the working tree is trusted", file=ref)
        todo, seen = [(first, rel)], set()
        while todo:
            local, here = todo.pop()
            if here in seen:
                continue
            seen.add(here)
            try:
                raw = yaml.safe_load(local.read_text(encoding="utf-8"))
            except (yaml.YAMLError, UnicodeDecodeError, OSError):
                continue  # load_config reports it, naming the file and line
            for key, value in named_paths(raw):
                if shipped(value, key):
                    continue
                if key == "extends":  # relative to the config's folder first, then the current directory
                    folder = os.path.dirname(os.path.join(os.path.realpath(self.repo), here))
                    for cand in (os.path.join(folder, value), value):
                        if (r := self.inside(cand)) is not None and (got := self.fetch(r, name=value)) is not None:
                            todo.append((got, r))
                            break
                elif (r := self.inside(value)) is not None:
                    self.fetch(r, name=value)  # a missing one is load_config's error, naming the key
                elif not os.path.isabs(os.path.expanduser(value)):
                    raise InputError(f"{key}: {value!r} is a relative path outside the repository; write it as an "
                                     "absolute path", file=ref)
        return os.path.relpath(first, self.cwd())

    def benchmark(self, path: str) -> str:
        """The base version of a ``--benchmark`` file inside the repository (a change could otherwise edit or empty
        the benchmark that judges it); a file outside the repository as given."""
        rel = self.inside(path)
        if rel is None:
            return path
        local = self.fetch(rel, name=path)
        if local is None or not local.is_file():
            raise InputError(f"benchmark file not in the base revision {self.rev!r}: the benchmark that judges a "
                             "change comes from its base, so a pull request cannot bring or edit its own; merge it "
                             "first, keep it outside the repository, or pass --trust-worktree where the working "
                             "tree is trusted", file=path)
        if Path(path).is_file() and Path(path).read_bytes() != local.read_bytes():
            self.notes.append(f"benchmark file {path} differs from the base revision: the base's version was used, "
                              "not the change's edits")
        return str(local)

    def overrides(self, path: str) -> str | None:
        """The base version of an overrides file (None, with a note, when the base has none)."""
        rel = self.inside(path)
        if rel is None:
            return path
        local = self.fetch(rel, name=path)
        if local is None:
            self.notes.append(f"overrides file {path} is not in the base revision: none of its entries were "
                              "applied (they apply once merged: a change cannot accept its own records)")
            return None
        if Path(path).is_file() and Path(path).read_bytes() != local.read_bytes():
            self.notes.append(f"overrides file {path} differs from the base revision: the base's entries were "
                              "applied, not the change's edits")
        return str(local)
