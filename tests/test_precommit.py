"""End to end with the real pre-commit tool: `pre-commit try-repo` installs this repository's `qualgate` hook into
its own virtual environment and runs it on a dataset repository's staged change."""

from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import FIXTURES, ROOT

PARAS = [json.loads(x) for x in (FIXTURES / "human_prose.jsonl").read_text().splitlines() if x]
PRE_COMMIT = shutil.which("pre-commit") or str(Path(sys.executable).parent / "pre-commit")

pytestmark = pytest.mark.skipif(not Path(PRE_COMMIT).exists() or not (ROOT / ".git").exists(),
                                reason="needs pre-commit (dev extra) and a git checkout of qualgate")


def git(repo: Path, *args: str) -> None:
    subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True)


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("pre-commit-home")  # the hook's environment, built once for the module


def staged_change(tmp_path: Path, new: list[dict[str, str]]) -> Path:
    git(tmp_path, "init", "-q", "-b", "main")
    git(tmp_path, "config", "user.email", "t@example.org")
    git(tmp_path, "config", "user.name", "t")
    data = tmp_path / "data.jsonl"
    data.write_text("".join(json.dumps({"id": p["id"], "text": p["text"]}) + "\n" for p in PARAS[:30]))
    git(tmp_path, "add", "data.jsonl")
    git(tmp_path, "commit", "-q", "-m", "base")
    data.write_text("".join(json.dumps(r) + "\n" for r in new))
    git(tmp_path, "add", "data.jsonl")
    return tmp_path


def run_hook(repo: Path, home: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PRE_COMMIT_HOME": str(home)}
    return subprocess.run([PRE_COMMIT, "try-repo", str(ROOT), "qualgate", "--files", "data.jsonl"], cwd=repo,
                          env=env, capture_output=True, text=True, timeout=600)


def test_bad_change_fails_naming_the_records(tmp_path: Path, home: Path) -> None:
    base = [{"id": p["id"], "text": p["text"]} for p in PARAS[:30]]
    new = [*base, {"id": "copy", "text": PARAS[5]["text"]},
           {"id": "boiler", "text": "As an AI language model, I cannot describe gardening."},
           {"id": "fine", "text": PARAS[80]["text"]}]
    res = run_hook(staged_change(tmp_path, new), home)
    assert res.returncode == 1, res.stdout + res.stderr
    assert "## qualgate: FAILED" in res.stdout
    assert "| `data.jsonl` | 31 |" in res.stdout and "| `data.jsonl` | 32 |" in res.stdout
    assert "| `data.jsonl` | 33 |" not in res.stdout


def test_good_change_passes(tmp_path: Path, home: Path) -> None:
    base = [{"id": p["id"], "text": p["text"]} for p in PARAS[:30]]
    res = run_hook(staged_change(tmp_path, [*base, {"id": "fine", "text": PARAS[80]["text"]}]), home)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "Passed" in res.stdout


def test_reordering_passes(tmp_path: Path, home: Path) -> None:
    records = [{"id": p["id"], "text": p["text"]} for p in PARAS[:30]]
    random.Random(3).shuffle(records)
    res = run_hook(staged_change(tmp_path, records), home)
    assert res.returncode == 0, res.stdout + res.stderr


def test_a_committed_file_named_like_an_option_stays_a_file(tmp_path: Path, home: Path) -> None:
    """pre-commit runs ENTRY ARGS FILES: without the hook's closing '--', `--config=lenient.json` (a file the
    change adds, matching the hook's `files` pattern) would have become the config that judges the change."""
    base = [{"id": p["id"], "text": p["text"]} for p in PARAS[:30]]
    repo = staged_change(tmp_path, [*base, {"id": "boiler", "text": "As an AI language model, I cannot help."}])
    (repo / "--config=lenient.json").write_text(json.dumps({"version": 1, "checks": []}))
    git(repo, "add", "--", "--config=lenient.json")
    env = {**os.environ, "PRE_COMMIT_HOME": str(home)}
    res = subprocess.run([PRE_COMMIT, "try-repo", str(ROOT), "qualgate"],  # the staged files, as a commit runs it
                         cwd=repo, env=env, capture_output=True, text=True, timeout=600)
    assert res.returncode == 1, res.stdout + res.stderr
    assert "Judged by pack default" in res.stdout and "| `data.jsonl` | 31 |" in res.stdout


def _pushed_change(tmp_path: Path) -> Path:
    """A branch whose last commit adds a bad record, checked out clean: what CI sees."""
    base = [{"id": p["id"], "text": p["text"]} for p in PARAS[:30]]
    repo = staged_change(tmp_path, base)
    git(repo, "checkout", "-q", "-b", "pr")
    (repo / "data.jsonl").write_text("".join(json.dumps(r) + "\n" for r in [
        *base, {"id": "boiler", "text": "As an AI language model, I cannot describe gardening."}]))
    git(repo, "commit", "-q", "-am", "add a record")
    return repo


def test_from_ref_to_ref_in_ci_checks_the_pull_requests_records(tmp_path: Path, home: Path) -> None:
    repo = _pushed_change(tmp_path)
    env = {**os.environ, "PRE_COMMIT_HOME": str(home)}
    res = subprocess.run([PRE_COMMIT, "try-repo", str(ROOT), "qualgate", "--from-ref", "main", "--to-ref", "HEAD"],
                         cwd=repo, env=env, capture_output=True, text=True, timeout=600)
    assert res.returncode == 1, res.stdout + res.stderr
    assert "| `data.jsonl` | 31 |" in res.stdout


def test_all_files_in_ci_fails_instead_of_passing_vacuously(tmp_path: Path, home: Path) -> None:
    repo = _pushed_change(tmp_path)
    env = {**os.environ, "PRE_COMMIT_HOME": str(home)}
    res = subprocess.run([PRE_COMMIT, "try-repo", str(ROOT), "qualgate", "--all-files"], cwd=repo, env=env,
                         capture_output=True, text=True, timeout=600)
    # pre-commit exits 1 when a hook fails; the hook itself exited 2
    assert res.returncode == 1 and "exit code: 2" in res.stdout, res.stdout + res.stderr
    assert "is the commit under test" in res.stdout
