"""A run killed at any point (SIGKILL) leaves no partial file under a final name, and a re-run, with or without
``--checkpoint``, writes exactly what an uninterrupted run writes."""

from __future__ import annotations

import contextlib
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from qualgate.io import AtomicFiles
from qualgate.runfolder import OUTPUT_NAMES
from tests.conftest import require_embed, write_mixed

RUN_FIELDS = ("seconds", "samples_per_second", "repair_seconds", "checkpoint")  # may differ between runs


def _cmd(data: Path, out: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "qualgate", "filter", str(data), "-c", "instruct", "-o", str(out), "-q",
            "--no-cache", "--no-html", "-j", "1", "--batch-size", "100", *extra]


def _outputs(folder: Path) -> dict[str, Any]:
    """Each final-named output of a run folder: bytes, and report.json without its timing and checkpoint."""
    found: dict[str, Any] = {}
    for name in OUTPUT_NAMES:
        path = folder / name
        if not path.exists():
            continue
        if name == "report.json":
            report = json.loads(path.read_text())
            for key in RUN_FIELDS:
                report["run"].pop(key, None)
            found[name] = report
        elif name in ("report.md", "report.junit.xml"):  # they print the run's time
            found[name] = "present"
        elif name == "card.json":  # the time it was written
            found[name] = {k: v for k, v in json.loads(path.read_text()).items() if k != "created"}
        else:
            found[name] = path.read_bytes()
    return found


def _run(cmd: list[str]) -> float:
    start = time.monotonic()
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert done.returncode in (0, 1), done.stderr
    return time.monotonic() - start


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_mixed(tmp_path_factory.mktemp("crash") / "data.jsonl", 3000, seed=4)


@pytest.fixture(scope="module")
def reference(data: Path) -> tuple[dict[str, Any], float]:
    """The uninterrupted run's outputs, and how long it took."""
    out = data.parent / "reference"
    seconds = _run(_cmd(data, out))
    return _outputs(out), seconds


def test_sigkill_at_random_points_then_resume(data: Path, reference: tuple[dict[str, Any], float],
                                              tmp_path: Path) -> None:
    """Kill the run at 6 seeded random moments (start-up and reading, scoring, deciding, writing the reports,
    renaming), resuming from one checkpoint folder each time, in a folder holding an older run's outputs.
    After every kill each final-named file is the old run's or the new run's, whole, and a folder with
    report.json holds one run's complete set. The last run completes and writes the uninterrupted run's
    outputs; no temp file is left."""
    old, out, ck = tmp_path / "old", tmp_path / "out", tmp_path / "ck"
    expected = reference[0]
    _run(_cmd(data, old, "--all-findings"))  # a different earlier run in the same folder
    previous = _outputs(old)
    assert previous["rejected.jsonl"] != expected["rejected.jsonl"]
    old.rename(out)
    rng = random.Random(10)
    stored = lambda: len(list(ck.glob("score/*.npz")))  # noqa: E731
    reporting = lambda: bool(list(out.glob(".report.*.tmp")))  # noqa: E731
    # start-up and reading; three random points of scoring (after that many stored batches, plus up to 0.2 s);
    # after the last batch (deciding it, the scores file); writing the reports and renaming (31)
    for target in [0, *sorted(rng.sample(range(1, 30), 3)), 30, 31]:
        job = subprocess.Popen(_cmd(data, out, "--checkpoint", str(ck)), stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 120
        while target and (stored() < target if target <= 30 else not reporting()) and job.poll() is None \
                and time.monotonic() < deadline:
            time.sleep(0.005)
        time.sleep(rng.uniform(0.05, 1.5) if target == 0 else rng.uniform(0, 0.2) if target <= 30 else 0)
        job.send_signal(signal.SIGKILL)
        job.wait()
        now = _outputs(out)
        for name, content in now.items():
            assert content in (previous.get(name), expected.get(name)), f"{name} is partial or mixed"
        if "report.json" in now:  # the marker: one run's whole set
            run = expected if now["report.json"] == expected["report.json"] else previous
            assert now == run
    _run(_cmd(data, out, "--checkpoint", str(ck)))
    assert _outputs(out) == expected
    assert not [p.name for p in out.iterdir() if p.name.endswith(".tmp")]
    report = json.loads((out / "report.json").read_text())
    assert report["run"]["checkpoint"]["score"]["loaded"] + report["run"]["checkpoint"]["score"]["computed"] == 30


def test_sigkill_then_plain_rerun(data: Path, reference: tuple[dict[str, Any], float], tmp_path: Path) -> None:
    """Without a checkpoint a killed run simply runs again: same outputs, and its dead temp files are removed."""
    out = tmp_path / "out"
    expected, seconds = reference
    job = subprocess.Popen(_cmd(data, out), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + seconds
    while not list(out.glob(".*.tmp")) and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.3 * seconds)
    job.send_signal(signal.SIGKILL)
    job.wait()
    left = [p.name for p in out.glob(".*.tmp")]
    assert left and not [n for n in OUTPUT_NAMES if (out / n).exists()]
    _run(_cmd(data, out))
    assert _outputs(out) == expected
    assert not [p.name for p in out.glob(".*.tmp")]


def test_checkpointed_local_run_decides_as_a_plain_one(data: Path, reference: tuple[dict[str, Any], float],
                                                       tmp_path: Path) -> None:
    """--checkpoint on the local engine with worker processes stores every batch and changes no decision; the
    second run loads them all and computes none (one worker: the SIGKILL test above)."""
    out, ck = tmp_path / "out", tmp_path / "ck"
    for computed in (30, 0):
        cmd = _cmd(data, out, "--checkpoint", str(ck))
        cmd[cmd.index("-j") + 1] = "2"
        _run(cmd)
        report = json.loads((out / "report.json").read_text())
        assert report["run"]["checkpoint"]["score"] == {"loaded": 30 - computed, "computed": computed}
        mine = _outputs(out)
        mine["report.json"]["run"]["workers"] = 1
        assert mine == reference[0]


@pytest.mark.parametrize("crash_after", range(8))
def test_a_crash_between_renames_never_mixes_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                  crash_after: int) -> None:
    """AtomicFiles renames the marker (report.json) last and removes the old one first: wherever the renames
    stop, a folder with a marker holds one run's files, and each file is whole."""
    names = ["accepted.jsonl", "rejected.jsonl", "scores.parquet", "report.json", "report.md"]
    old = AtomicFiles(tmp_path, marker="report.json")
    for name in [*names, "overrides.jsonl"]:
        with old.open(name) as fh:
            fh.write(f"old {name}".encode())
    old.commit()
    new = AtomicFiles(tmp_path, marker="report.json")
    for name in names:
        with new.open(name) as fh:
            fh.write(f"new {name}".encode())
    real, calls = os.replace, []

    def crashing(src: Any, dst: Any) -> None:
        if len(calls) == crash_after:
            raise KeyboardInterrupt("killed between renames")
        calls.append(dst)
        real(src, dst)

    monkeypatch.setattr("qualgate.io.os.replace", crashing)
    with contextlib.suppress(KeyboardInterrupt):
        new.commit(stale=["overrides.jsonl"])
    monkeypatch.undo()
    seen = {p.name: p.read_text() for p in tmp_path.iterdir() if not p.name.startswith(".")}
    assert all(text in (f"old {n}", f"new {n}") for n, text in seen.items())
    if "report.json" in seen:
        assert seen == {n: f"new {n}" for n in names}


def test_a_checkpoint_is_not_reused_when_a_file_the_config_names_changes(data: Path, tmp_path: Path) -> None:
    """The config holds only the path of a phrase list: editing the list must score every batch again (and
    decide as a plain run with the edited list does)."""
    from qualgate import Gate
    from qualgate.io import read_records

    phrases = tmp_path / "phrases.txt"
    phrases.write_text("as an ai language model\n")
    config = {"version": 1, "checks": [{"check": "boilerplate", "phrases_file": str(phrases)}]}
    records = list(read_records([str(data)]))[:400]

    def run(checkpoint: Path | None) -> tuple[list[bool], dict[str, int] | None]:
        gate = Gate.from_config(config, cache_dir=None, workers=1, batch_size=64, checkpoint_dir=checkpoint)
        decisions = gate.run(records).decisions
        return [d.accepted for d in decisions], gate.checkpoint.info()["score"] if gate.checkpoint else None

    ck = tmp_path / "ck"
    assert run(ck)[1] == {"loaded": 0, "computed": 7}
    phrases.write_text("as an ai language model\nthe\n")  # now nearly every record has a boilerplate phrase
    edited, stats = run(ck)
    assert stats == {"loaded": 0, "computed": 7}
    assert edited == run(None)[0] and sum(edited) < 50


def _close(a: Any, b: Any, tol: float = 1e-5) -> bool:
    """Equal, floats within ``tol`` (JSON text inside strings parsed and compared the same way)."""
    if isinstance(a, str) and isinstance(b, str) and a != b and a[:1] in "{[" and b[:1] in "{[":
        with contextlib.suppress(ValueError):
            return _close(json.loads(a), json.loads(b), tol)
    if isinstance(a, float) and isinstance(b, float):
        return abs(a - b) <= tol
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_close(a[k], b[k], tol) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_close(x, y, tol) for x, y in zip(a, b, strict=True))
    return bool(a == b)


def _readable(found: dict[str, Any], folder: Path) -> dict[str, Any]:
    """A run's outputs as values: JSONL lines parsed, scores.parquet as rows."""
    import pyarrow.parquet as pq

    out = dict(found)
    for name in ("accepted.jsonl", "rejected.jsonl"):
        if isinstance(out.get(name), bytes):
            out[name] = [json.loads(x) for x in out[name].splitlines()]
    if "scores.parquet" in out:
        out["scores.parquet"] = pq.read_table(folder / "scores.parquet").to_pylist()
    return out


@pytest.mark.slow  # three embed runs, ~45 s; the map's sign is also held by test_vectors' unit test
def test_the_embed_packs_outputs_do_not_depend_on_the_checkpoint(data: Path, tmp_path: Path) -> None:
    """With embeddings and the diversity report, a checkpointed run, and the run that loads every batch,
    write what a plain run writes, report.json included (its PCA map once flipped sign with float noise).
    A plain run embeds by windows of samples sorted by token count, a checkpointed run batch by batch: torch's
    vectors then differ by float noise (~1e-7), and stored cosines in their 6th decimal; decisions may not."""
    require_embed()
    subset = tmp_path / "subset.jsonl"
    subset.write_text("".join(data.read_text().splitlines(keepends=True)[:400]))
    outs = []
    for name, extra in (("plain", ()), ("first", ("--checkpoint", str(tmp_path / "ck"))),
                        ("again", ("--checkpoint", str(tmp_path / "ck")))):
        cmd = _cmd(subset, tmp_path / name, *extra)
        cmd[cmd.index("instruct")] = "embed"
        cmd[cmd.index("--batch-size") + 1] = "64"
        _run(cmd)
        found = _outputs(tmp_path / name)
        for section in found["report.json"]["sets"].values():  # how often its memo was hit: work, not result
            for key in ("memo_hits", "cache_hits", "embedded"):
                section.get("embedder", {}).pop(key, None)
        outs.append(_readable(found, tmp_path / name))
    for out in outs[1:]:
        tol = {"report.json": 2e-4}  # the diversity map is rounded to 4 decimals: noise can move the last one
        assert out.keys() == outs[0].keys() and all(_close(out[k], outs[0][k], tol.get(k, 1e-5)) for k in out), \
            [k for k in out if not _close(out[k], outs[0][k], tol.get(k, 1e-5))]


def test_temp_files_of_killed_checkpoint_writers_are_removed(tmp_path: Path) -> None:
    from qualgate import Gate
    from qualgate.engines.checkpoint import Checkpoint

    score = tmp_path / "score"
    score.mkdir()
    dead = score / ".abc.npz.999999999.x1y2.tmp"  # no such pid
    mine = score / f".def.npz.{os.getpid()}.x1y2.tmp"
    dead.write_bytes(b"partial")
    mine.write_bytes(b"being written")
    Checkpoint(tmp_path, Gate.from_config("instruct", cache_dir=None))
    assert not dead.exists() and mine.exists()
