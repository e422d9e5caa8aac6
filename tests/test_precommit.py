"""End to end with the real pre-commit tool: a `.pre-commit-config.yaml` names this repository's `qualgate` hook,
pre-commit installs it into its own virtual environment and runs it on a dataset repository's change."""

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


@pytest.fixture(scope="module")
def hook_config(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A pre-commit config naming this checkout, snapshot as one commit (the working tree's files, untracked ones
    included). `try-repo` would build the hook's environment anew on every call (~20 s each, its store is a
    temporary folder); `pre-commit run` with a fixed revision builds it once for the module in PRE_COMMIT_HOME,
    as a dataset repository's own config does."""
    snap = tmp_path_factory.mktemp("hook-repo")
    git(snap, "init", "-q")
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                            check=True, capture_output=True).stdout.split(b"\0")
    for name in filter(None, (x.decode() for x in listed)):
        src = ROOT / name
        if src.is_file() and not src.is_symlink():
            (snap / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, snap / name)
    git(snap, "add", "-A")
    git(snap, "-c", "user.email=t@example.org", "-c", "user.name=t", "commit", "-q", "-m", "snapshot")
    rev = subprocess.run(["git", "rev-parse", "HEAD"], cwd=snap, check=True, capture_output=True,
                         text=True).stdout.strip()
    config = snap.parent / "pre-commit-config.yaml"  # outside every repository: pre-commit never asks to stage it
    config.write_text(f"repos:\n- repo: {snap}\n  rev: {rev}\n  hooks:\n  - id: qualgate\n")
    return config


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


def run_hook(repo: Path, home: Path, config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """`pre-commit run qualgate ARGS`; with no ARGS, on the staged files as a commit runs it."""
    env = {**os.environ, "PRE_COMMIT_HOME": str(home)}
    return subprocess.run([PRE_COMMIT, "run", "qualgate", "--config", str(config), *args], cwd=repo,
                          env=env, capture_output=True, text=True, timeout=600)


def test_bad_change_fails_naming_the_records(tmp_path: Path, home: Path, hook_config: Path) -> None:
    base = [{"id": p["id"], "text": p["text"]} for p in PARAS[:30]]
    new = [*base, {"id": "copy", "text": PARAS[5]["text"]},
           {"id": "boiler", "text": "As an AI language model, I cannot describe gardening."},
           {"id": "fine", "text": PARAS[80]["text"]}]
    res = run_hook(staged_change(tmp_path, new), home, hook_config, "--files", "data.jsonl")
    assert res.returncode == 1, res.stdout + res.stderr
    assert "## qualgate: FAILED" in res.stdout
    assert "| `data.jsonl` | 31 |" in res.stdout and "| `data.jsonl` | 32 |" in res.stdout
    assert "| `data.jsonl` | 33 |" not in res.stdout


def test_good_change_passes(tmp_path: Path, home: Path, hook_config: Path) -> None:
    base = [{"id": p["id"], "text": p["text"]} for p in PARAS[:30]]
    repo = staged_change(tmp_path, [*base, {"id": "fine", "text": PARAS[80]["text"]}])
    res = run_hook(repo, home, hook_config, "--files", "data.jsonl")
    assert res.returncode == 0, res.stdout + res.stderr
    assert "Passed" in res.stdout


def test_reordering_passes(tmp_path: Path, home: Path, hook_config: Path) -> None:
    records = [{"id": p["id"], "text": p["text"]} for p in PARAS[:30]]
    random.Random(3).shuffle(records)
    res = run_hook(staged_change(tmp_path, records), home, hook_config, "--files", "data.jsonl")
    assert res.returncode == 0, res.stdout + res.stderr


def test_a_committed_file_named_like_an_option_stays_a_file(tmp_path: Path, home: Path, hook_config: Path) -> None:
    """pre-commit runs ENTRY ARGS FILES: without the hook's closing '--', `--config=lenient.json` (a file the
    change adds, matching the hook's `files` pattern) would have become the config that judges the change."""
    base = [{"id": p["id"], "text": p["text"]} for p in PARAS[:30]]
    repo = staged_change(tmp_path, [*base, {"id": "boiler", "text": "As an AI language model, I cannot help."}])
    (repo / "--config=lenient.json").write_text(json.dumps({"version": 1, "checks": []}))
    git(repo, "add", "--", "--config=lenient.json")
    res = run_hook(repo, home, hook_config)  # the staged files, as a commit runs it
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


def test_from_ref_to_ref_in_ci_checks_the_pull_requests_records(tmp_path: Path, home: Path,
                                                                 hook_config: Path) -> None:
    repo = _pushed_change(tmp_path)
    res = run_hook(repo, home, hook_config, "--from-ref", "main", "--to-ref", "HEAD")
    assert res.returncode == 1, res.stdout + res.stderr
    assert "| `data.jsonl` | 31 |" in res.stdout


def test_all_files_in_ci_fails_instead_of_passing_vacuously(tmp_path: Path, home: Path, hook_config: Path) -> None:
    repo = _pushed_change(tmp_path)
    res = run_hook(repo, home, hook_config, "--all-files")
    # pre-commit exits 1 when a hook fails; the hook itself exited 2
    assert res.returncode == 1 and "exit code: 2" in res.stdout, res.stdout + res.stderr
    assert "is the commit under test" in res.stdout
