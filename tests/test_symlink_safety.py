"""A symlink planted in an output, cache or checkpoint folder is never written through: temp files are created
under fresh names with O_CREAT|O_EXCL|O_NOFOLLOW, and a final name is replaced by a rename, never opened for
writing. (An output folder that is itself a symlink is the user's choice and is followed.)"""

from __future__ import annotations

import json
import os
import sqlite3
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner, Result

from qualgate.cli import main
from qualgate.embed import EmbeddingCache
from qualgate.runfolder import OUTPUT_NAMES
from tests.conftest import FIXTURES

DATA = FIXTURES / "instruct_sample.jsonl"
OUTSIDE = b"outside the output folder: must stay as it is\n"


class Outside:
    """Files outside the folders a run writes, each a symlink target; ``untouched`` checks them all."""

    def __init__(self, root: Path) -> None:
        self.root = root / "outside"
        self.root.mkdir()

    def link(self, at: Path, name: str | None = None, content: bytes = OUTSIDE) -> Path:
        target = self.root / (name or at.name.strip("."))
        target.write_bytes(content)
        at.parent.mkdir(parents=True, exist_ok=True)
        at.symlink_to(target)
        return target

    def untouched(self, expected: dict[str, bytes] | None = None) -> None:
        found = {p.name: p.read_bytes() for p in self.root.iterdir()}
        assert found == (expected if expected is not None else dict.fromkeys(found, OUTSIDE))


def _filter(out: Path, *extra: str) -> Result:
    return CliRunner().invoke(main, ["filter", str(DATA), "-c", "default", "-o", str(out), "-q", "-j", "1",
                                     "--no-cache", *extra])


def _outputs(folder: Path) -> dict[str, Any]:
    """The run's final-named files (no symlink among them), report.json without the run's timing."""
    found: dict[str, Any] = {}
    for name in OUTPUT_NAMES:
        path = folder / name
        if path.exists() or path.is_symlink():
            assert not path.is_symlink(), name
            if name == "report.json":
                found[name] = {k: v for k, v in json.loads(path.read_text()).items() if k != "run"}
            else:
                found[name] = path.read_bytes() if name in ("accepted.jsonl", "rejected.jsonl") else "present"
    return found


def test_symlinks_at_every_temp_and_final_name_of_the_outputs_are_not_followed(tmp_path: Path) -> None:
    clean = _filter(tmp_path / "clean")
    assert clean.exit_code in (0, 1), clean.output
    out, outside = tmp_path / "out", Outside(tmp_path)
    pid = os.getpid()  # the CLI runs in this process: these were the exact temp names before
    for name in OUTPUT_NAMES:
        outside.link(out / f".{name}.{pid}.tmp", f"temp-{name}")
        outside.link(out / name, f"final-{name}")
    outside.link(out / ".report.json.999999999.tmp", "dead-writer")  # a dead writer's temp: the link is removed
    res = _filter(out)
    assert res.exit_code == clean.exit_code, res.output
    outside.untouched()
    assert _outputs(out) == _outputs(tmp_path / "clean")
    assert not (out / ".report.json.999999999.tmp").is_symlink()


def test_a_dangling_symlink_at_a_temp_name_creates_nothing(tmp_path: Path) -> None:
    out, pid = tmp_path / "out", os.getpid()
    out.mkdir()
    target = tmp_path / "nowhere" / "created.jsonl"
    (out / f".accepted.jsonl.{pid}.tmp").symlink_to(target)
    target.parent.mkdir()
    res = _filter(out)
    assert res.exit_code in (0, 1), res.output
    assert not target.exists() and (out / "report.json").is_file()


def test_an_output_folder_that_is_a_symlink_is_followed(tmp_path: Path) -> None:
    real = tmp_path / "real"
    real.mkdir()
    (tmp_path / "out").symlink_to(real, target_is_directory=True)
    res = _filter(tmp_path / "out")
    assert res.exit_code in (0, 1), res.output
    assert (real / "report.json").is_file() and (real / "accepted.jsonl").is_file()


@pytest.mark.parametrize("command", ["schema", "report", "lm train"])
def test_a_symlink_at_a_named_output_file_is_replaced_not_written_through(tmp_path: Path, command: str) -> None:
    outside = Outside(tmp_path)
    dest = tmp_path / "dest" / "file.out"
    outside.link(dest)
    if command == "schema":
        args = ["schema", "-o", str(dest)]
    elif command == "report":
        assert _filter(tmp_path / "run").exit_code in (0, 1)
        args = ["report", str(tmp_path / "run"), "-o", str(dest)]
    else:
        args = ["lm", "train", str(FIXTURES / "human_prose.jsonl"), "-o", str(dest)]
    res = CliRunner().invoke(main, args)
    assert res.exit_code in (0, 1), res.output
    outside.untouched()
    assert dest.is_file() and not dest.is_symlink()
    text = dest.read_text()
    assert {"schema": '"$schema"', "report": "qualgate", "lm train": "\\data\\"}[command] in text
    assert not [p.name for p in dest.parent.iterdir() if p.name.endswith(".tmp")]


def test_a_symlink_at_a_cached_set_index_is_replaced_not_written_through(tmp_path: Path) -> None:
    cache, outside = tmp_path / "cache", Outside(tmp_path)
    args = ["--baseline", str(FIXTURES / "human_prose.jsonl"), "--cache-dir", str(cache)]
    first = CliRunner().invoke(main, ["filter", str(DATA), "-o", str(tmp_path / "a"), "-q", "-j", "1", *args])
    assert first.exit_code in (0, 1), first.output
    (index,) = cache.glob("*.npz")
    index.unlink()
    outside.link(index)
    with pytest.warns(UserWarning, match="not usable"):
        again = CliRunner().invoke(main, ["filter", str(DATA), "-o", str(tmp_path / "b"), "-q", "-j", "1", *args])
    assert again.exit_code == first.exit_code, again.output
    outside.untouched()
    assert not index.is_symlink() and set(np.load(index, allow_pickle=False).files) > {"_qualgate_counts"}
    assert _outputs(tmp_path / "a") == _outputs(tmp_path / "b")


def test_a_symlink_at_a_checkpoint_file_is_replaced_not_written_through(tmp_path: Path) -> None:
    ck, outside = tmp_path / "ck", Outside(tmp_path)
    first = _filter(tmp_path / "a", "--checkpoint", str(ck))
    assert first.exit_code in (0, 1), first.output
    stored = sorted(ck.rglob("*.npz"))
    assert stored
    for path in stored:
        path.unlink()
        outside.link(path, f"ck-{path.name}")
    again = _filter(tmp_path / "b", "--checkpoint", str(ck))
    assert again.exit_code == first.exit_code, again.output
    outside.untouched()
    assert all(p.is_file() and not p.is_symlink() for p in stored)
    assert _outputs(tmp_path / "a") == _outputs(tmp_path / "b")


@pytest.mark.parametrize("at", ["", "-wal", "-shm", "-journal"])
def test_the_embedding_cache_is_not_opened_through_a_symlink(tmp_path: Path, at: str) -> None:
    """SQLite opens its files by name: a link at the database (or a sidecar's) name turns the cache off."""
    other = tmp_path / "outside" / "other.sqlite"
    other.parent.mkdir()
    with sqlite3.connect(other) as db:
        db.execute("CREATE TABLE mine (x)")
    db.close()
    before = other.read_bytes()
    path = tmp_path / "cache" / "embeddings.sqlite"
    path.parent.mkdir()
    Path(f"{path}{at}").symlink_to(other)
    with pytest.warns(UserWarning, match="symbolic link"):
        cache = EmbeddingCache(path, dim=4)
    assert not cache.enabled
    cache.put([(b"k" * 16, np.full(4, 0.5, dtype=np.float32))])
    assert cache.get([b"k" * 16]) == {}
    assert other.read_bytes() == before and not path.with_name("other.sqlite-wal").exists()
