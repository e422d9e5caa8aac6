"""Untrusted configs and data cannot execute code or reach the network (issue 10, first part)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from qualgate import Gate
from qualgate.cli import main
from qualgate.errors import ConfigError
from tests.conftest import FIXTURES

#: Loaded at interpreter start-up (``sitecustomize``): any TCP/UDP connection or DNS lookup raises.
NO_NETWORK = '''
import socket

_connect = socket.socket.connect


def _guarded(self, address, *args):
    if self.family in (socket.AF_INET, socket.AF_INET6):
        raise ConnectionRefusedError(f"network disabled by qualgate's test: connect to {address!r}")
    return _connect(self, address, *args)


def _no_dns(*args, **kwargs):
    raise socket.gaierror(f"network disabled by qualgate's test: getaddrinfo{args!r}")


socket.socket.connect = _guarded
socket.socket.connect_ex = _guarded
socket.getaddrinfo = _no_dns
'''


def _offline(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    guard = tmp_path / "guard"
    guard.mkdir(exist_ok=True)
    (guard / "sitecustomize.py").write_text(NO_NETWORK)
    env = {**os.environ, "PYTHONPATH": str(guard)}
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, env=env, timeout=300)


def test_the_guard_really_blocks_the_network(tmp_path: Path) -> None:
    """The control: under the guard, a download fails (so the passing runs below prove something)."""
    res = _offline(tmp_path, "-c", "import urllib.request; urllib.request.urlopen('http://example.com', timeout=5)")
    assert res.returncode != 0 and "network disabled by qualgate's test" in res.stderr


@pytest.mark.parametrize("pack", ["instruct", "embed", "perplexity"])
def test_the_full_pipeline_runs_with_the_network_disabled(tmp_path: Path, pack: str) -> None:
    """Rules, MinHash, embeddings (the packaged model), the diversity report and perplexity: all offline."""
    if pack == "embed":
        from tests.conftest import require_embed

        require_embed()
    out = tmp_path / "out"
    res = _offline(tmp_path, "-m", "qualgate", "filter", str(FIXTURES / "instruct_sample.jsonl"), "-c", pack,
                   "--reference", str(FIXTURES / "reference_sample.jsonl"), "-o", str(out), "-q", "-j", "2",
                   "--cache-dir", str(tmp_path / "cache"))
    assert res.returncode in (0, 1), res.stderr
    assert (out / "accepted.jsonl").exists() and (out / "report.html").stat().st_size > 0


@pytest.mark.parametrize("tag", ['!!python/object/apply:os.system ["touch {marker}"]', "!!python/name:os.system",
                                 '!!python/object/new:subprocess.Popen [["touch", "{marker}"]]'])
def test_a_config_cannot_construct_python_objects(tmp_path: Path, tag: str) -> None:
    marker = tmp_path / "pwned"
    config = tmp_path / "evil.yaml"
    config.write_text(f"version: 1\nchecks:\n  - check: length\n    min_words: {tag.format(marker=marker)}\n")
    res = CliRunner().invoke(main, ["filter", str(FIXTURES / "instruct_sample.jsonl"), "-c", str(config),
                                    "-o", str(tmp_path / "out"), "-q"])
    assert res.exit_code == 2 and str(config) in res.output
    assert not marker.exists()


@pytest.mark.parametrize("template", ["{instruction.__class__}", "{instruction.__init__.__globals__}",
                                      "{instruction[0]}", "{0}", "{instruction!r}", "{instruction:>99999999}"])
def test_text_templates_cannot_reach_attributes(template: str) -> None:
    with pytest.raises(ConfigError, match=r"input\.text"):
        Gate.from_config("default", text=template)


class _Pwn:
    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (Path.touch, (Path(self.marker),))


def test_a_planted_pickle_in_the_cache_is_never_unpickled(tmp_path: Path) -> None:
    """Set indexes are cached as npz and loaded with allow_pickle=False: a cache file replaced by one holding
    a pickled object is rebuilt, not executed."""
    cache, base = tmp_path / "cache", tmp_path / "base.jsonl"
    base.write_text((FIXTURES / "instruct_sample.jsonl").read_text())
    gate = Gate.from_config("instruct", cache_dir=cache)
    first = gate.load_baseline([str(base)], cache_dir=cache)["cache"]["near_duplicate"]
    assert first["status"] == "miss"
    marker = tmp_path / "pwned"
    with open(first["path"], "wb") as fh:
        np.savez(fh, shingles=np.asarray([_Pwn(str(marker))], dtype=object))
    again = Gate.from_config("instruct", cache_dir=cache).load_baseline([str(base)], cache_dir=cache)
    assert again["cache"]["near_duplicate"]["status"] == "miss" and not marker.exists()


CATASTROPHIC = r"(a+)+$"  # nested quantifiers: exponential backtracking on "aaaa...b" in a backtracking engine


def test_python_re_does_hang_on_the_catastrophic_pattern() -> None:
    """The control: a backtracking engine takes ~4x longer for every 2 more characters (0.3-1 s at 22 here),
    so the 100,000-character record below would never finish with it."""
    import re
    import time

    start = time.perf_counter()
    re.search(CATASTROPHIC, "a" * 22 + "b")
    assert time.perf_counter() - start > 0.05


def test_a_catastrophic_pattern_in_a_config_cannot_hang_the_gate() -> None:
    import time

    config = {"version": 1, "checks": [{"check": "pattern", "forbidden": [CATASTROPHIC], "field": "text"}],
              "input": {"text": "{text}"}}
    gate = Gate.from_config(config, cache_dir=None)
    start = time.perf_counter()
    result = gate.run([{"text": "a" * 100_000 + "b"}, {"text": "a" * 100_000}])
    assert time.perf_counter() - start < 5
    assert [d.accepted for d in result.decisions] == [True, False]


@pytest.mark.parametrize("pattern", [r"(?<!not )allowed", r"(\w+) \1", r"foo(?=bar)"])
def test_patterns_re2_cannot_run_are_refused_with_the_reason(tmp_path: Path, pattern: str) -> None:
    """Lookaround and backreferences need backtracking: a user's config with them is refused when loaded,
    naming the key, for every place a config takes regexes (a pattern check, a user's pattern file)."""
    with pytest.raises(ConfigError, match="RE2") as info:
        Gate.from_config({"version": 1, "checks": [{"check": "pattern", "forbidden": [pattern]}]})
    assert "forbidden" in str(info.value)
    own = tmp_path / "mine.txt"
    own.write_text(f"[request]\n{pattern}\n[pretend]\nsaw it\n")
    with pytest.raises(ConfigError, match="RE2"):
        Gate.from_config({"version": 1, "checks": [{"check": "unanswerable", "patterns_file": str(own)}]})
