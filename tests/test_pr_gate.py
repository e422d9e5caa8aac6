"""`qualgate check` against a hostile pull request: every file the change brings is data, never configuration.

Each test is a bypass that let a change adding bad records pass (or read files it should not) before the fix.
"""

from __future__ import annotations

import gzip
import json
import os
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from qualgate import Gate
from qualgate.cli import main
from qualgate.config import load_config
from qualgate.errors import ConfigError
from qualgate.findings import Decision
from qualgate.overrides import OverrideEntry, Overrides, content_sha256
from qualgate.sample import Sample
from tests.conftest import FIXTURES
from tests.test_check import PARAS, git, write

BASE = [{"id": p["id"], "text": p["text"]} for p in PARAS[:40]]
REFUSAL = {"id": "bad", "text": "As an AI language model, I cannot write about gardening for you today."}
PERMISSIVE = "version: 1\nchecks: []\n"


@pytest.fixture
def repo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for var in ("PRE_COMMIT", "PRE_COMMIT_FROM_REF", "PRE_COMMIT_TO_REF", "PRE_COMMIT_SOURCE", "PRE_COMMIT_ORIGIN"):
        monkeypatch.delenv(var, raising=False)
    git(tmp_path, "init", "-q", "-b", "main")
    git(tmp_path, "config", "user.email", "t@example.org")
    git(tmp_path, "config", "user.name", "t")
    write(tmp_path / "data.jsonl", BASE)
    git(tmp_path, "add", "data.jsonl")
    git(tmp_path, "commit", "-q", "-m", "base")
    monkeypatch.chdir(tmp_path)
    return tmp_path


def run(*args: str, env: dict[str, str] | None = None) -> Any:
    return CliRunner().invoke(main, ["check", *args], env=env)


def rejected_reasons(res: Any) -> dict[str, str]:
    out = json.loads(res.output)
    return {r["id"]: r["findings"][0]["reason"] for r in out["rejected"]}


# ------------------------------------------------------------------------ 1, 2: shadowing shipped names
@pytest.mark.parametrize("name", ["default", "instruct"])
def test_a_file_named_like_a_pack_does_not_replace_it(repo: Path, name: str) -> None:
    (repo / name).write_text(PERMISSIVE)
    base = [{"id": r["id"], "instruction": "Describe this.", "input": "", "output": r["text"]} for r in BASE]
    write(repo / "data.jsonl", base)
    git(repo, "commit", "-q", "-am", "instruction records")
    write(repo / "data.jsonl", [*base, {"id": "bad", "instruction": "Write", "input": "", "output": REFUSAL["text"]}])
    res = run("data.jsonl", "--base", "HEAD", "--id", "id", "-c", name, "--format", "json")
    assert res.exit_code == 1, res.output
    assert json.loads(res.output)["config"]["label"] == f"pack {name}"
    assert load_config(name).label == f"pack {name}" and load_config(name).checks


def test_extends_by_bare_name_means_the_shipped_pack(repo: Path) -> None:
    (repo / "default").write_text(PERMISSIVE)
    (repo / "mine.yaml").write_text("version: 1\nextends: default\n")
    from qualgate.packs import pack_path

    shipped = load_config(str(pack_path("default")))
    assert shipped.checks
    assert [c.name for c in load_config(repo / "mine.yaml").checks] == [c.name for c in shipped.checks]


def test_a_bare_name_with_only_a_local_file_says_how_to_name_the_file(repo: Path) -> None:
    (repo / "strict").write_text(PERMISSIVE)
    with pytest.raises(ConfigError, match=r"write './strict'"):
        load_config("strict")


@pytest.mark.parametrize("listname", ["boilerplate.txt", "refusal.txt", "unanswerable.txt", "tinystories_words.txt"])
def test_a_phrase_list_in_the_working_directory_does_not_replace_the_shipped_one(repo: Path, listname: str) -> None:
    (repo / listname).write_text("# emptied by a pull request\nzzzz\n")
    shipped = {"version": 1, "input": {"text": "text", "id": "id"},
               "checks": [{"check": "boilerplate"}, {"check": "refusal", "field": "text"}]}
    gate = Gate.from_config(shipped, cache_dir=None)
    result = gate.run([REFUSAL])
    assert [f.reason for f in result.decisions[0].findings] == ["boilerplate_phrase"]
    from qualgate.packs import data_file, rules_dir

    assert data_file(listname).parent == rules_dir()
    assert data_file(f"./{listname}") == Path(f"./{listname}")  # a path is the user's own file


def test_the_summary_names_the_config_and_its_hash(repo: Path) -> None:
    write(repo / "data.jsonl", [*BASE, REFUSAL])
    res = run("data.jsonl", "--base", "HEAD")
    digest = load_config("default").digest()
    assert f"Judged by pack default (sha256 {digest[:12]}), from the base HEAD." in res.output
    out = json.loads(run("data.jsonl", "--base", "HEAD", "--format", "json").output)
    assert out["config"] == {"label": "pack default", "sha256": digest, "from": "base HEAD"}


# ------------------------------------------------------------------ 6: the base revision decides
def test_a_config_the_change_edits_is_read_from_the_base(repo: Path) -> None:
    (repo / "gate.yaml").write_text("version: 1\nextends: default\n")
    git(repo, "add", "gate.yaml")
    git(repo, "commit", "-q", "-m", "gate config")
    (repo / "gate.yaml").write_text(PERMISSIVE)  # the pull request relaxes its own gate
    write(repo / "data.jsonl", [*BASE, REFUSAL])
    res = run("data.jsonl", "--base", "HEAD", "--id", "id", "-c", "gate.yaml", "--format", "json")
    assert res.exit_code == 1 and rejected_reasons(res) == {"bad": "boilerplate_phrase"}
    trusted = run("data.jsonl", "--base", "HEAD", "-c", "gate.yaml", "--trust-worktree")
    assert trusted.exit_code == 0, trusted.output
    assert "from the working tree" in trusted.output


def test_a_config_the_change_adds_is_an_error(repo: Path) -> None:
    (repo / "lenient.yaml").write_text(PERMISSIVE)
    write(repo / "data.jsonl", [*BASE, REFUSAL])
    res = run("data.jsonl", "--base", "HEAD", "-c", "lenient.yaml")
    assert res.exit_code == 2
    assert "not in the base revision" in res.output and "lenient.yaml" in res.output


def test_files_a_base_config_names_come_from_the_base(repo: Path) -> None:
    """Phrase lists named by path, and extends by path, are read as the base has them."""
    (repo / "lists").mkdir()
    (repo / "lists" / "bad.txt").write_text("gardening for you\n")
    (repo / "parent.yaml").write_text("version: 1\nchecks: [{check: boilerplate, phrases_file: lists/bad.txt}]\n")
    (repo / "gate.yaml").write_text("version: 1\nextends: parent.yaml\n")
    git(repo, "add", "lists", "parent.yaml", "gate.yaml")
    git(repo, "commit", "-q", "-m", "configs")
    (repo / "lists" / "bad.txt").write_text("zzzz\n")
    (repo / "parent.yaml").write_text(PERMISSIVE)
    write(repo / "data.jsonl", [*BASE, REFUSAL])
    res = run("data.jsonl", "--base", "HEAD", "--id", "id", "-c", "gate.yaml", "--format", "json")
    assert res.exit_code == 1, res.output
    assert rejected_reasons(res) == {"bad": "boilerplate_phrase"}


def test_a_symlink_swapped_in_for_the_config_is_not_followed(repo: Path) -> None:
    (repo / "strict.yaml").write_text("version: 1\nextends: default\n")
    (repo / "lenient.yaml").write_text(PERMISSIVE)
    git(repo, "add", "strict.yaml", "lenient.yaml")
    git(repo, "commit", "-q", "-m", "configs")
    (repo / "strict.yaml").unlink()
    (repo / "strict.yaml").symlink_to("lenient.yaml")
    write(repo / "data.jsonl", [*BASE, REFUSAL])
    res = run("data.jsonl", "--base", "HEAD", "--id", "id", "-c", "strict.yaml", "--format", "json")
    assert res.exit_code == 1 and rejected_reasons(res) == {"bad": "boilerplate_phrase"}


def test_overrides_the_change_adds_are_not_applied(repo: Path) -> None:
    write(repo / "data.jsonl", [*BASE, REFUSAL])
    sha = json.loads(run("data.jsonl", "--base", "HEAD", "--id", "id", "--format", "json").output)[
        "rejected"][0]["sha256"]
    (repo / "ok.yaml").write_text(f"- {{id: bad, sha256: {sha}, decision: accept, reviewer: me}}\n")
    res = run("data.jsonl", "--base", "HEAD", "--id", "id", "--overrides", "ok.yaml")
    assert res.exit_code == 1
    assert "not in the base revision: none of its entries were applied" in res.output
    assert run("data.jsonl", "--base", "HEAD", "--id", "id", "--overrides", "ok.yaml",
               "--trust-worktree").exit_code == 0


def test_an_accept_without_the_content_hash_is_refused_by_check(repo: Path) -> None:
    (repo / "ok.yaml").write_text("- {id: bad, decision: accept, reviewer: me}\n")
    git(repo, "add", "ok.yaml")
    git(repo, "commit", "-q", "-m", "reviews")
    write(repo / "data.jsonl", [*BASE, REFUSAL])
    res = run("data.jsonl", "--base", "HEAD", "--id", "id", "--overrides", "ok.yaml", "--format", "json")
    assert res.exit_code == 1
    assert json.loads(res.output)["report"]["overrides"]["unbound"]["ids"] == ["bad"]
    summary = run("data.jsonl", "--base", "HEAD", "--id", "id", "--overrides", "ok.yaml").output
    assert "overrides unbound: bad (accept without sha256: not applied here" in summary


def _decision(record: dict[str, Any]) -> Decision:
    from qualgate.findings import Finding

    d = Decision(Sample(str(record["id"]), record, record["text"]))
    d.findings.append(Finding("boilerplate", "boilerplate_phrase", 1.0, 0.0, "x"))
    return d


def test_an_override_binds_to_the_reviewed_content_not_to_every_record_with_its_id() -> None:
    reviewed, twin = _decision(REFUSAL), _decision({**REFUSAL, "text": "As an AI language model, I refuse."})
    sha = content_sha256(reviewed.sample)
    entry = OverrideEntry(id="bad", sha256=sha[:16], decision="accept", reviewer="ana")
    ov = Overrides({"bad": (entry, "reviews.yaml:1")}, "reviews.yaml", require_hash=True)
    ov.apply_all([reviewed, twin])
    assert reviewed.accepted and not twin.accepted
    assert ov.info()["hash_mismatch"]["ids"] == ["bad"]


def test_an_unbound_accept_in_filter_is_applied_and_repeated_ids_are_reported() -> None:
    a, b = _decision(REFUSAL), _decision({**REFUSAL, "text": "As an AI language model, no."})
    entry = OverrideEntry(id="bad", decision="accept", reviewer="ana")
    ov = Overrides({"bad": (entry, "reviews.yaml:1")}, "reviews.yaml")
    ov.apply_all([a, b])
    assert a.accepted and b.accepted
    info = ov.info()
    assert info["unbound"]["ids"] == ["bad"] and info["duplicate_ids"]["ids"] == ["bad"]


def test_rejected_records_carry_the_hash_an_override_needs(tmp_path: Path) -> None:
    out = tmp_path / "out"
    res = CliRunner().invoke(main, ["filter", str(FIXTURES / "instruct_sample.jsonl"), "-c", "instruct", "-o",
                                    str(out), "-q", "-j", "1", "--no-cache", "--no-html"])
    assert res.exit_code in (0, 1), res.output
    rows = [json.loads(x) for x in (out / "rejected.jsonl").read_text().splitlines()]
    parsed = [r for r in rows if "raw" not in r["qualgate"]]
    for r in parsed:
        record = {k: v for k, v in r.items() if k != "qualgate"}
        assert r["qualgate"]["sha256"] == content_sha256(Sample(r["qualgate"]["id"], record))


# ------------------------------------------------------------- 4: a base equal to the commit under test
def test_pre_commit_from_and_to_refs_are_the_base(repo: Path) -> None:
    git(repo, "checkout", "-q", "-b", "pr")
    write(repo / "data.jsonl", [*BASE, REFUSAL])
    git(repo, "commit", "-q", "-am", "add records")
    env = {"PRE_COMMIT": "1", "PRE_COMMIT_FROM_REF": "main", "PRE_COMMIT_TO_REF": "HEAD"}
    res = run("data.jsonl", "--id", "id", "--format", "json", env=env)
    assert res.exit_code == 1, res.output
    assert rejected_reasons(res) == {"bad": "boilerplate_phrase"}
    old = {"PRE_COMMIT": "1", "PRE_COMMIT_SOURCE": "main", "PRE_COMMIT_ORIGIN": "HEAD"}  # pre-commit < 2
    assert run("data.jsonl", "--id", "id", env=old).exit_code == 1


@pytest.mark.parametrize("env", [{"PRE_COMMIT": "1"}, {"PRE_COMMIT": "1", "PRE_COMMIT_FROM_REF": "HEAD",
                                                       "PRE_COMMIT_TO_REF": "HEAD"}, {}])
def test_a_base_equal_to_the_commit_under_test_fails_instead_of_passing(repo: Path, env: dict[str, str]) -> None:
    """`pre-commit run --all-files` on a pushed commit, or CI without a base: nothing could count as added."""
    git(repo, "checkout", "-q", "-b", "pr")
    write(repo / "data.jsonl", [*BASE, REFUSAL])
    git(repo, "commit", "-q", "-am", "add records")
    args = ["data.jsonl"] if env else ["data.jsonl", "--base", "HEAD"]
    res = run(*args, env=env)
    assert res.exit_code == 2, res.output
    assert "is the commit under test" in res.output and "--from-ref" in res.output


def test_a_staged_change_under_pre_commit_is_still_checked_against_head(repo: Path) -> None:
    write(repo / "data.jsonl", [*BASE, REFUSAL])
    git(repo, "add", "data.jsonl")
    assert run("data.jsonl", "--id", "id", env={"PRE_COMMIT": "1"}).exit_code == 1


# ------------------------------------------------------------------ 5: file names are never options
def test_a_file_named_like_an_option_is_a_file_after_the_separator(repo: Path) -> None:
    (repo / "lenient.json").write_text(json.dumps({"version": 1, "checks": []}))
    git(repo, "add", "lenient.json")
    git(repo, "commit", "-q", "-m", "a config-looking file")
    evil = repo / "--config=lenient.json"
    evil.write_text(json.dumps({"id": "x", "text": PARAS[60]["text"]}) + "\n")
    write(repo / "data.jsonl", [*BASE, REFUSAL])
    res = run("--base", "HEAD", "--id", "id", "--format", "json", "--", "--config=lenient.json", "data.jsonl")
    assert res.exit_code == 1, res.output
    out = json.loads(res.output)
    assert out["config"]["label"] == "pack default"
    assert [f["path"] for f in out["files"]] == ["--config=lenient.json", "data.jsonl"]


def test_a_base_named_like_an_option_is_not_one_for_git(repo: Path, tmp_path_factory: Any) -> None:
    victim = tmp_path_factory.mktemp("victim") / "out"
    write(repo / "data.jsonl", [*BASE, REFUSAL])
    res = run("data.jsonl", "--base", f"--output={victim}")
    assert res.exit_code == 2
    assert not list(victim.parent.iterdir())  # git show --output=PATH:data.jsonl would have written there


# ---------------------------------------------------------------- 10: symlinks and planted temp files
def test_a_symlink_to_a_file_outside_the_repository_is_not_read(repo: Path, tmp_path_factory: Any) -> None:
    secret = tmp_path_factory.mktemp("outside") / "secret.jsonl"
    secret.write_text(json.dumps({"id": "s", "text": "private key material"}) + "\n")
    (repo / "leak.jsonl").symlink_to(secret)
    res = run("leak.jsonl", "--base", "HEAD")
    assert res.exit_code == 2
    assert "outside the repository" in res.output and "private key" not in res.output


def test_a_symlink_planted_at_a_base_copy_name_is_replaced_not_written_through(
        repo: Path, tmp_path_factory: Any) -> None:
    import hashlib

    cache = tmp_path_factory.mktemp("cache")
    target = tmp_path_factory.mktemp("victim") / "victim.txt"
    target.write_text("untouched")
    digest = hashlib.blake2b((repo / "data.jsonl").read_bytes(), digest_size=16).hexdigest()
    planted = cache / "check-base" / digest[:2] / f"{digest}.jsonl"
    planted.parent.mkdir(parents=True)
    planted.symlink_to(target)
    for pid in (os.getpid(),):
        (planted.parent / f"{digest}.{pid}.tmp").symlink_to(target)  # the old fixed temp name
    write(repo / "data.jsonl", [*BASE, REFUSAL])
    res = run("data.jsonl", "--base", "HEAD", "--cache-dir", str(cache))
    assert res.exit_code == 1, res.output
    assert target.read_text() == "untouched"
    assert not planted.is_symlink() and planted.read_bytes().count(b"\n") == len(BASE)


# --------------------------------------------------------------------------- 11: compressed datasets
def test_a_gzipped_dataset_counts_only_its_added_records(repo: Path) -> None:
    def gz(records: list[dict[str, Any]]) -> bytes:
        return gzip.compress("".join(json.dumps(r) + "\n" for r in records).encode(), mtime=0)

    (repo / "data.jsonl.gz").write_bytes(gz(BASE))
    git(repo, "add", "data.jsonl.gz")
    git(repo, "commit", "-q", "-m", "gz")
    (repo / "data.jsonl.gz").write_bytes(gz([*BASE, REFUSAL]))
    res = run("data.jsonl.gz", "--base", "HEAD", "--id", "id", "--format", "json")
    out = json.loads(res.output)
    assert out["files"][0]["base_records"] == len(BASE) and out["added"] == 1
    assert rejected_reasons(res) == {"bad": "boilerplate_phrase"}


def test_hook_mode_refuses_a_file_list_without_the_separator(repo: Path) -> None:
    write(repo / "data.jsonl", [*BASE, REFUSAL])
    res = run("--hook", "--base", "HEAD", "data.jsonl")
    assert res.exit_code == 2 and "must end with '--'" in res.output
    assert run("--hook", "--base", "HEAD", "--", "data.jsonl").exit_code == 1


def test_a_config_outside_the_repository_is_used_as_it_is(repo: Path, tmp_path_factory: Any) -> None:
    """A config kept outside the repository is not part of any change: used from where it is, even by a
    relative path (the gate is built in the base mirror)."""
    outside = tmp_path_factory.mktemp("configs") / "lenient.yaml"
    outside.write_text(PERMISSIVE)
    write(repo / "data.jsonl", [*BASE, REFUSAL])
    res = run("data.jsonl", "--base", "HEAD", "-c", os.path.relpath(outside, repo), "--format", "json")
    assert res.exit_code == 0, res.output
    assert json.loads(res.output)["config"]["from"] == "base HEAD"


def test_filter_warns_about_an_unbound_accept(tmp_path: Path) -> None:
    data = tmp_path / "in.jsonl"
    write(data, [{"id": "a", "text": PARAS[1]["text"]}, REFUSAL])
    reviews = tmp_path / "reviews.yaml"
    reviews.write_text("- {id: bad, decision: accept, reviewer: ana}\n")
    res = CliRunner().invoke(main, ["filter", str(data), "--id", "id", "-o", str(tmp_path / "out"), "--no-cache",
                                    "--no-html", "-j", "1", "--overrides", str(reviews)])
    assert res.exit_code == 0, res.output
    assert "warning: overrides unbound: bad (accept without sha256: applied to every record" in res.output
