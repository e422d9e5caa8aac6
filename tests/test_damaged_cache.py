"""Damaged caches cost a recomputation, never a crash or a wrong result: stored embeddings (SQLite), cached set
indexes (.npz) and checkpointed embeddings that are not what the model gives (NaN, inf, wrong norm, size,
dtype or type, a cut file) are recomputed with a warning. And whatever else goes wrong inside a command exits
2 with one line, never 1, which means "the gate failed"."""

from __future__ import annotations

import json
import re
import shutil
import sqlite3
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner

from qualgate.cli import main
from tests.conftest import FIXTURES, require_embed

F32 = np.float32
#: How each stored vector is damaged (the value written in its place).
DAMAGE: dict[str, Callable[[Any], Any]] = {
    "nan": lambda v: np.full_like(v, np.nan).tobytes(),
    "inf": lambda v: np.concatenate([[F32(np.inf)], v[1:]]).astype(F32).tobytes(),
    "norm": lambda v: (v * 2).tobytes(),
    "zero": lambda v: np.zeros_like(v).tobytes(),
    "short": lambda v: v[:-1].tobytes(),  # a dimension less
    "float64": lambda v: v.astype(np.float64).tobytes(),
    "float16": lambda v: v.astype(np.float16).tobytes(),
    "text": lambda v: "not a vector",  # SQLite stores any type in any column
}
#: (input, config, exit code): one run whose gate passes and one whose diversity gate fails.
SCENARIOS = {"pass": ("semantic_sample.jsonl", "embed", 0), "fail": ("collapsed_sample.jsonl", "div.yaml", 1)}


@pytest.fixture(scope="module")
def embed() -> None:
    require_embed()


def _args(scenario: str, root: Path, out: Path, cache: Path, *extra: str) -> list[str]:
    data, config, _ = SCENARIOS[scenario]
    if config.endswith(".yaml"):
        (root / config).write_text("version: 1\ninput: {text: text, id: id}\ndiversity: {clusters: 8}\n"
                                   "gate: {min_reference_coverage: 0.6}\n")
        config = str(root / config)
    return ["filter", str(FIXTURES / data), "-c", config, "--id", "id", "-o", str(out), "--reference",
            str(FIXTURES / "reference_sample.jsonl"), "--cache-dir", str(cache), "-q", "-j", "1", *extra]


def _outputs(out: Path) -> dict[str, Any]:
    """What must not depend on the cache: the decisions, the diversity report, the gate."""
    report = json.loads((out / "report.json").read_text())
    return {"accepted": (out / "accepted.jsonl").read_bytes(), "rejected": (out / "rejected.jsonl").read_bytes(),
            "diversity": report["diversity"], "gate": report["gate"], "counts": report["by_check"]}


def _same(a: dict[str, Any], b: dict[str, Any]) -> None:
    assert a.keys() == b.keys()
    for key in a:
        if key == "diversity":  # recomputed in other batches: equal up to float noise
            assert json.dumps(a[key], sort_keys=True) == json.dumps(b[key], sort_keys=True) or \
                _approx(a[key], b[key]), key
        else:
            assert a[key] == b[key], key


def _approx(a: Any, b: Any) -> bool:
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(_approx(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return isinstance(b, list) and len(a) == len(b) and all(_approx(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, float) and isinstance(b, float):
        return a == pytest.approx(b, abs=1e-4)
    return bool(a == b)


def _vectors(cache: Path) -> dict[bytes, Any]:
    with sqlite3.connect(cache / "embeddings.sqlite") as db:
        rows = db.execute("SELECT key, vec FROM vectors").fetchall()
    db.close()
    return {bytes(k): v for k, v in rows}


@pytest.fixture(scope="module")
def clean(embed: None, tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, dict[str, Any]]]:
    """Per scenario: a cache filled by a clean run, and its outputs."""
    runs = {}
    for scenario, (_, _, code) in SCENARIOS.items():
        root = tmp_path_factory.mktemp(f"clean-{scenario}")
        res = CliRunner().invoke(main, _args(scenario, root, root / "out", root / "cache",
                                             "--checkpoint", str(root / "ck")))
        assert res.exit_code == code, res.output
        with sqlite3.connect(root / "cache" / "embeddings.sqlite") as db:  # all in the file (the run's is open)
            db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        db.close()
        assert _vectors(root / "cache")
        runs[scenario] = (root, _outputs(root / "out"))
    return runs


@contextmanager
def _warns(pattern: str) -> Iterator[None]:
    """Like pytest.warns, checked after the block's own assertions (which say more when they fail)."""
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        yield
    assert any(re.search(pattern, str(w.message)) for w in seen), [str(w.message) for w in seen]


def _damaged_run(clean: dict[str, tuple[Path, dict[str, Any]]], scenario: str, tmp_path: Path,
                 damage: Callable[[Path], None], warning: str) -> Path:
    """Copy the clean run's cache, damage it, run again: same exit code and outputs, a warning."""
    root, expected = clean[scenario]
    cache = tmp_path / "cache"
    shutil.copytree(root / "cache", cache)
    damage(cache)
    with _warns(warning):
        res = CliRunner().invoke(main, _args(scenario, tmp_path, tmp_path / "out", cache))
        assert res.exit_code == SCENARIOS[scenario][2], res.output
        assert "Traceback" not in res.output
        _same(_outputs(tmp_path / "out"), expected)
    return cache


def _damage_rows(kinds: list[str], every: int = 1) -> Callable[[Path], None]:
    """Damage every ``every``-th stored vector, by each of ``kinds`` in turn."""
    def damage(cache: Path) -> None:
        with sqlite3.connect(cache / "embeddings.sqlite") as db:
            for n, (key, vec) in enumerate(_vectors(cache).items()):
                if n % every == 0:
                    value = DAMAGE[kinds[n // every % len(kinds)]](np.frombuffer(vec, dtype=F32))
                    db.execute("UPDATE vectors SET vec = ? WHERE key = ?", (value, key))
        db.close()

    return damage


@pytest.mark.parametrize("kinds", [["nan"], ["norm"], list(DAMAGE)], ids=["nan", "norm", "each-kind"])
def test_damaged_stored_embeddings_are_recomputed(clean: dict[str, tuple[Path, dict[str, Any]]], tmp_path: Path,
                                                  kinds: list[str]) -> None:
    cache = _damaged_run(clean, "pass", tmp_path, _damage_rows(kinds), "damaged vectors")
    good = _vectors(clean["pass"][0] / "cache")
    now = _vectors(cache)
    assert now.keys() == good.keys()
    for key, vec in now.items():  # stored again, as the model gives them
        assert isinstance(vec, bytes) and len(vec) == len(good[key])
        assert np.allclose(np.frombuffer(vec, dtype=F32), np.frombuffer(good[key], dtype=F32), atol=1e-5)


def test_some_damaged_embeddings_in_a_failing_run_still_fail_the_gate_the_same_way(
        clean: dict[str, tuple[Path, dict[str, Any]]], tmp_path: Path) -> None:
    _damaged_run(clean, "fail", tmp_path, _damage_rows(["nan", "zero"], every=3), "damaged vectors")


def test_a_cut_embedding_database_is_not_a_crash(clean: dict[str, tuple[Path, dict[str, Any]]],
                                                 tmp_path: Path) -> None:
    def cut(cache: Path) -> None:
        db = cache / "embeddings.sqlite"
        db.write_bytes(db.read_bytes()[: db.stat().st_size // 2])

    _damaged_run(clean, "fail", tmp_path, cut, "embedding cache")


def _damage_npz(cache: Path, pattern: str, change: Callable[[dict[str, Any]], None]) -> None:
    (path,) = cache.glob(pattern)
    with np.load(path, allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    change(arrays)
    with open(path, "wb") as fh:  # the test damages the file in place
        np.savez(fh, **arrays)


NPZ_DAMAGE: dict[str, Callable[[dict[str, Any]], None]] = {
    "nan": lambda a: a["vec_vectors"].fill(np.nan),
    "norm": lambda a: a.update(vec_vectors=a["vec_vectors"] * 3),
    "dimension": lambda a: a.update(vec_vectors=a["vec_vectors"][:, :-1]),
    "dtype": lambda a: a.update(vec_vectors=a["vec_vectors"].astype(np.float64)),
    "ids": lambda a: a.update(id_offsets=a["id_offsets"][:-1]),
}


def _leak_run(root: Path, out: Path, cache: Path) -> list[str]:
    cfg = root / "leak.yaml"
    cfg.write_text("version: 1\ninput: {text: text, id: id}\nchecks:\n  - check: private_leak\n")
    res = CliRunner().invoke(main, ["filter", str(FIXTURES / "leak_sample.jsonl"), "-c", str(cfg), "-o", str(out),
                                    "--private", str(FIXTURES / "private_records.jsonl"), "--cache-dir", str(cache),
                                    "-q", "-j", "1"])
    assert res.exit_code == 0, res.output
    return [json.loads(line)["id"] for line in (out / "rejected.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def private_cache(embed: None, tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("private")
    assert _leak_run(root, root / "out", root / "cache") == ["gen-001"]
    return root / "cache"


@pytest.mark.parametrize("kind", [*NPZ_DAMAGE, "cut"])
def test_a_damaged_private_index_is_rebuilt_and_the_leak_still_caught(private_cache: Path, tmp_path: Path,
                                                                      kind: str) -> None:
    """NaN vectors in the cached private index would compare with nothing: a leak would pass unseen."""
    cache = tmp_path / "cache"
    shutil.copytree(private_cache, cache)
    if kind == "cut":
        (path,) = cache.glob("private_leak-*.npz")
        path.write_bytes(path.read_bytes()[:200])
    else:
        _damage_npz(cache, "private_leak-*.npz", NPZ_DAMAGE[kind])
    with _warns("cached private index .* is not usable"):
        assert _leak_run(tmp_path, tmp_path / "out", cache) == ["gen-001"]
    (path,) = cache.glob("private_leak-*.npz")
    with np.load(path, allow_pickle=False) as z:
        assert np.isfinite(z["vec_vectors"]).all() and z["vec_vectors"].dtype == F32


def test_damaged_checkpointed_embeddings_are_scored_again(clean: dict[str, tuple[Path, dict[str, Any]]],
                                                          tmp_path: Path) -> None:
    root, expected = clean["pass"]
    ck = tmp_path / "ck"
    shutil.copytree(root / "ck", ck)
    damaged = 0
    for path in ck.glob("score/*.npz"):
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
        for key in [k for k in arrays if k.endswith(".vecs")]:
            arrays[key] = np.full_like(arrays[key], np.nan)
            damaged += 1
        with open(path, "wb") as fh:
            np.savez(fh, **arrays)
    assert damaged
    res = CliRunner().invoke(main, _args("pass", tmp_path, tmp_path / "out", root / "cache", "--checkpoint", str(ck)))
    assert res.exit_code == 0, res.output
    _same(_outputs(tmp_path / "out"), expected)
    assert json.loads((tmp_path / "out" / "report.json").read_text())["run"]["checkpoint"]["score"]["computed"] > 0


# ------------------------------------------------------------------------------------ exit codes
def _one_line(output: str) -> str:
    lines = output.strip().splitlines()
    assert len(lines) == 1, output
    return lines[0]


def test_an_unexpected_error_exits_2_with_one_line(tmp_path: Path) -> None:
    """A report.json that is JSON but not a report: a real error no command expects."""
    (tmp_path / "report.json").write_text("[]")
    res = CliRunner().invoke(main, ["report", str(tmp_path)])
    assert res.exit_code == 2
    line = _one_line(res.output)
    assert line.startswith("qualgate: internal error: TypeError: ") and "QUALGATE_DEBUG=1" in line


def test_any_exception_in_a_command_exits_2(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert CliRunner().invoke(main, ["filter", str(FIXTURES / "instruct_sample.jsonl"), "-o", str(tmp_path / "run"),
                                     "-q", "-j", "1", "--no-cache"]).exit_code in (0, 1)

    def boom(self: Any) -> str:
        raise RuntimeError("boom\non two lines")

    monkeypatch.setattr("qualgate.report.Report.to_markdown", boom)
    res = CliRunner().invoke(main, ["report", str(tmp_path / "run")])
    assert res.exit_code == 2
    assert _one_line(res.output) == ("qualgate: internal error: RuntimeError: boom on two lines "
                                     "(set QUALGATE_DEBUG=1 for the traceback)")
    monkeypatch.setenv("QUALGATE_DEBUG", "1")
    res = CliRunner().invoke(main, ["report", str(tmp_path / "run")])
    assert res.exit_code == 2 and "Traceback" in res.output and "in boom" in res.output

    def interrupted(self: Any) -> str:
        raise KeyboardInterrupt

    monkeypatch.setattr("qualgate.report.Report.to_markdown", interrupted)
    res = CliRunner().invoke(main, ["report", str(tmp_path / "run")])
    assert res.exit_code == 130 and _one_line(res.output) == "qualgate: interrupted"


def test_usage_errors_and_a_commands_own_exit_codes_pass_through(tmp_path: Path) -> None:
    res = CliRunner().invoke(main, ["filter"])
    assert res.exit_code == 2 and "Missing argument" in res.output and "internal error" not in res.output
    res = CliRunner().invoke(main, ["filter", str(tmp_path / "missing.jsonl"), "-o", str(tmp_path / "out")])
    assert res.exit_code == 2 and "input error" in res.output and "internal error" not in res.output
    assert CliRunner().invoke(main, ["--version"]).exit_code == 0
