"""report.html: one self-contained page per run. Fast tests read the HTML; the browser tests load it in headless
Chromium (no network) and check the rendered DOM, that nothing logs to the console, that the page makes no network
request, and that the search box filters the example rejections. The detectors are proven on deliberately broken
pages, so these tests can fail."""

from __future__ import annotations

import copy
import json
import os
import re
import shutil
import subprocess
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from qualgate.cli import main
from qualgate.html import MAX_HISTOGRAMS, render_html
from tests.conftest import FIXTURES

PAYLOAD = "<script>alert(1)</script></textarea>"
HOSTILE = {"instruction": "Greet the user. <script>alert(1)</script>",
           "input": "</textarea><img src=x onerror=alert(2)>",
           "output": f"As an AI language model, I cannot greet anyone. {PAYLOAD}"}
RULES_SECTIONS = ("summary", "checks", "rejections", "duplicates", "overrides", "examples")
CHROMIUM = os.environ.get("QUALGATE_CHROMIUM", "/usr/bin/chromium")


def _filter(tmp: Path, *args: str) -> Path:
    out = tmp / "out"
    res = CliRunner().invoke(main, ["filter", *args, "-o", str(out), "-q", "-j", "1"], catch_exceptions=False)
    assert res.exit_code in (0, 1), res.output
    return out


@pytest.fixture(scope="module")
def rules_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The instruct pack on the instruct fixture plus one hostile record, with a (hostile) reviewer override."""
    tmp = tmp_path_factory.mktemp("rules-run")
    data = tmp / "data.jsonl"
    data.write_text((FIXTURES / "instruct_sample.jsonl").read_text() + json.dumps(HOSTILE) + "\n")
    overrides = tmp / "overrides.jsonl"
    overrides.write_text(
        json.dumps({"id": "00e6e3adb15f9eba", "decision": "accept", "reviewer": "ana <b>bold</b>",
                    "note": f"fine {PAYLOAD}"}) + "\n"
        + json.dumps({"id": "no-such-id", "decision": "reject", "reviewer": "bob", "note": "gone"}) + "\n")
    return _filter(tmp, str(data), "-c", "instruct", "--all-findings", "--overrides", str(overrides))


@pytest.fixture(scope="module")
def rules_html(rules_run: Path) -> str:
    return (rules_run / "report.html").read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def rules_data(rules_run: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((rules_run / "report.json").read_text(encoding="utf-8"))
    return data


def _section_ids(page: str) -> list[str]:
    return re.findall(r'<section id="([^"]+)"', page)


# ------------------------------------------------------------------------------------------ fast tests
def test_rules_run_writes_a_page_with_its_sections(rules_html: str, rules_data: dict[str, Any]) -> None:
    assert rules_html.startswith("<!DOCTYPE html>")
    assert _section_ids(rules_html) == list(RULES_SECTIONS)  # no diversity or language model on a rules run
    for key in RULES_SECTIONS:  # the table of contents links each one
        assert f'href="#{key}"' in rules_html
    assert "gate PASSED" in rules_html and "max_reject_rate" in rules_html
    # a section per check, with a histogram per drawn score column and its limit
    for name in ("truncated", "near_duplicate", "refusal", "language"):
        assert f'id="check-{name}"' in rules_html
    assert 'aria-label="histogram of near_duplicate.jaccard"' in rules_html
    assert "limit 0.8" in rules_html
    assert 'aria-label="rejected samples per check"' in rules_html
    # overrides: the applied one, the unmatched id, and the overruled check's count
    assert "no-such-id" in rules_html and "truncated/dangling_ending" in rules_html
    assert "overruled by a reviewer 1" in rules_html
    # every example rejection is a row of the searchable table
    rows = re.findall(r"<tr[^>]* data-check=", rules_html)
    assert len(rows) == sum(len(v) for v in rules_data["examples"].values()) > 10
    assert 'id="example-search"' in rules_html


def test_untrusted_text_is_escaped(rules_html: str, rules_data: dict[str, Any]) -> None:
    # the hostile record was rejected and its text is shown, escaped
    boiler = [e for e in rules_data["examples"]["boilerplate"] if "alert(1)" in e["text"]]
    assert boiler, "the hostile record should be an example rejection"
    assert "&lt;script&gt;alert(1)&lt;/script&gt;&lt;/textarea&gt;" in rules_html
    assert "&lt;img src=x onerror=alert(2)&gt;" in rules_html
    assert "ana &lt;b&gt;bold&lt;/b&gt;" in rules_html  # the reviewer's name
    assert "alert(1)</script>" not in rules_html and "</textarea>" not in rules_html
    assert "<img" not in rules_html and "<b>bold" not in rules_html
    assert rules_html.count("<script") == 1  # the page's own


def test_every_string_of_the_data_is_escaped(rules_data: dict[str, Any]) -> None:
    """Put markup into every string of a report (and into a check's name) and render it: none may survive."""
    bad = '<script>alert("x")</script><img src=x onerror=alert(3)>'

    def poison(v: Any) -> Any:
        if isinstance(v, str):
            return v + bad
        if isinstance(v, list):
            return [poison(x) for x in v]
        if isinstance(v, dict):
            return {k: poison(x) for k, x in v.items()}
        return v

    data = poison(copy.deepcopy(rules_data))
    for h in data["histograms"].values():  # keep the chart kinds meaningful
        h["kind"] = h["kind"][: -len(bad)]
    evil = "refusal" + bad
    data["by_check"] = {(evil if k == "refusal" else k): v for k, v in data["by_check"].items()}
    data["histograms"] = {(c.replace("refusal.", evil + ".", 1)): h for c, h in data["histograms"].items()}
    data["tune"] = {"from_run": "/runs/a" + bad, "changes": {"refusal.max_matches" + bad: 2}}
    page = render_html(data)
    assert "<img" not in page and 'alert("x")</script>' not in page and "onerror=alert(3)>" not in page
    assert page.count("<script") == 1
    assert "&lt;img src=x onerror=alert(3)&gt;" in page


def test_lone_surrogates_do_not_break_the_page(rules_data: dict[str, Any]) -> None:
    data = copy.deepcopy(rules_data)
    data["examples"]["boilerplate"][0]["text"] = "bad \ud800 text"
    page = render_html(data)
    page.encode("utf-8")  # writable as UTF-8
    assert "bad \\ud800 text" in page  # shown as an escape (qualgate.untrusted.visible)


def test_no_network_references(rules_html: str) -> None:
    page = rules_html
    assert not re.search(r"""(?:src|href|action|srcset)\s*=\s*["']?\s*(?:https?:)?//""", page, re.I)
    assert "@import" not in page and not re.search(r"url\(\s*['\"]?\s*(?:https?:)?//", page, re.I)
    assert not re.search(r"<(?:link|iframe|object|embed|img|audio|video)\b", page, re.I)
    # the fixtures hold no URLs, so here not even a namespace URL may remain (matplotlib's are stripped)
    assert "http://" not in page and "https://" not in page
    assert "<?xml" not in page and "<!DOCTYPE svg" not in page and "<metadata" not in page


def test_same_data_gives_the_same_page_with_unique_ids(rules_data: dict[str, Any]) -> None:
    first, second = render_html(rules_data), render_html(copy.deepcopy(rules_data))
    assert first == second
    ids = Counter(re.findall(r'\sid="([^"]+)"', first))
    assert ids and not [i for i, n in ids.items() if n > 1]
    # every in-page reference (TOC, clip paths, markers, example links) points at an id on the page
    refs = set(re.findall(r'(?:href="#|url\(#)([^")]+)', first))
    assert refs and refs <= set(ids)


def test_diversity_note_is_a_warning_not_a_panel(rules_data: dict[str, Any]) -> None:
    data = {**rules_data, "diversity": {"against": "input", "note": "too few samples to measure diversity"}}
    page = render_html(data)
    assert 'id="diversity"' not in page and "too few samples to measure diversity" in page


def test_tune_banner(rules_data: dict[str, Any]) -> None:
    tune = {"from_run": "runs/alpaca", "changes": {"near_duplicate.threshold": 0.7}}
    page = render_html({**rules_data, "tune": tune})
    banner = page[page.index('class="banner tune"'):]
    assert "runs/alpaca" in banner[:600] and "near_duplicate.threshold" in banner[:600]
    assert 'class="banner tune"' not in render_html(rules_data)


def test_many_checks_stay_within_the_chart_budget(rules_data: dict[str, Any]) -> None:
    """15 checks x 5 scores: at most MAX_HISTOGRAMS histograms, fast, and a page of modest size."""
    data = copy.deepcopy(rules_data)
    hist = data["histograms"]["length.chars"]
    data["by_check"] = {f"check_{i}": {"kind": "length", "scored": 30, "rejected": i, "skipped": 0,
                                       "reject_rate": i / 30, "reasons": {"too_long": i} if i else {}}
                        for i in range(15)}
    data["histograms"] = {f"check_{i}.score_{j}": {**hist, "thresholds": [100.0] if j == 0 else []}
                          for i in range(15) for j in range(5)}
    data["scores"] = {c: data["scores"]["length.chars"] for c in data["histograms"]}
    start = time.perf_counter()
    page = render_html(data)
    elapsed = time.perf_counter() - start
    drawn = re.findall(r'aria-label="histogram of ([^"]+)"', page)
    assert len(drawn) == MAX_HISTOGRAMS
    # the checks that rejected come first, and within them the columns with a limit
    assert all(f"check_{i}.score_0" in drawn for i in range(1, 15)) and "check_0.score_0" not in drawn
    assert page.count("(not drawn, chart limit)") == 75 - MAX_HISTOGRAMS
    assert page.count("<svg") <= 60
    assert len(page) < 1_500_000, len(page)
    assert elapsed < 20, elapsed


def test_language_model_section(tmp_path: Path) -> None:
    out = _filter(tmp_path, str(FIXTURES / "text_quality_sample.jsonl"), "-c", "perplexity",
                  "--reference", str(FIXTURES / "human_prose.jsonl"), "--all-findings")
    page = (out / "report.html").read_text(encoding="utf-8")
    data = json.loads((out / "report.json").read_text(encoding="utf-8"))
    assert "lm" in _section_ids(page) and "diversity" not in _section_ids(page)
    lm = page[page.index('<section id="lm">'):]
    lm = lm[: lm.index("</section>")]
    sec = data["sets"]["perplexity"]
    assert "ngram" in lm and "max_context_ratio" in lm and "the reference set" in lm
    assert f"{sec['set_perplexity']['p50']:.4g}" in lm
    assert "mathdefault" not in page  # log axes are labelled in plain numbers


def test_diversity_panel_when_embeddings_ran(tmp_path: Path) -> None:
    from tests.conftest import require_embed

    require_embed()
    cfg = tmp_path / "div.yaml"
    cfg.write_text("version: 1\nextends: default\ninput: {text: text, id: id}\ndiversity: {clusters: 8}\n"
                   "gate: {min_reference_coverage: 0.6}\n")
    out = _filter(tmp_path, str(FIXTURES / "collapsed_sample.jsonl"), "-c", str(cfg),
                  "--reference", str(FIXTURES / "reference_sample.jsonl"), "--cache-dir", str(tmp_path / "cache"))
    page = (out / "report.html").read_text(encoding="utf-8")
    data = json.loads((out / "report.json").read_text(encoding="utf-8"))
    assert "diversity" in _section_ids(page) and "gate FAILED" in page
    div = page[page.index('<section id="diversity">'):]
    div = div[: div.index("</section>")]
    assert "reference coverage" in div and "tail coverage" in div and "Vendi ratio" in div
    assert 'aria-label="2-D map of reference, accepted and rejected samples"' in div
    assert 'aria-label="nearest-neighbour distances, accepted vs reference"' in div
    missing = data["diversity"]["missing_clusters"]
    assert missing and f"Missing clusters ({len(missing)})" in div
    assert render_html(data) == page  # deterministic with the diversity charts too


# -------------------------------------------------------------------------------------------- browser
def _chromium() -> str:
    if shutil.which(CHROMIUM) or Path(CHROMIUM).is_file():
        return CHROMIUM
    if os.environ.get("QUALGATE_REQUIRE_CHROMIUM") == "1":
        pytest.fail(f"QUALGATE_REQUIRE_CHROMIUM=1 but no Chromium at {CHROMIUM} (set QUALGATE_CHROMIUM)")
    pytest.skip(f"headless Chromium not found at {CHROMIUM}: browser checks of report.html skipped "
                "(set QUALGATE_CHROMIUM, or QUALGATE_REQUIRE_CHROMIUM=1 to fail instead)")


def _load(url: str, tmp: Path) -> tuple[str, list[str], list[str]]:
    """Load a page in headless Chromium with no network. Returns the DOM after scripts ran, the console
    messages (Chromium logs each as a ``CONSOLE`` line on stderr, whatever its level) and the URLs of the
    network requests the page itself made (from Chromium's net log)."""
    tmp.mkdir(parents=True, exist_ok=True)
    netlog = tmp / "net.json"
    cmd = [_chromium(), "--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run",
           "--no-default-browser-check", "--disable-extensions", "--disable-background-networking",
           f"--user-data-dir={tmp / 'profile'}", "--enable-logging=stderr", "--v=0",
           "--proxy-server=127.0.0.1:9", "--proxy-bypass-list=<-loopback>", "--host-resolver-rules=MAP * ~NOTFOUND",
           f"--log-net-log={netlog}", "--virtual-time-budget=3000", "--dump-dom", url]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    console = [line for line in proc.stderr.splitlines() if ":CONSOLE" in line]
    log = json.loads(netlog.read_text())
    start_job = log["constants"]["logEventTypes"]["URL_REQUEST_START_JOB"]
    # requests of the page (a file:// document) carry its network isolation key; Chromium's own don't
    requests = [e["params"]["url"] for e in log["events"]
                if e["type"] == start_job and "file://" in str(e["params"].get("network_isolation_key", ""))
                and not str(e["params"].get("url", "")).startswith("file:")]
    return proc.stdout, console, requests


def test_browser_detectors_catch_console_errors_and_network_requests(tmp_path: Path) -> None:
    """The checks below can fail: a page that logs an error and throws, and one that loads a remote image."""
    broken = tmp_path / "broken.html"
    broken.write_text('<!DOCTYPE html><html><body><p id="ok">hi</p><script>console.error("deliberate failure");'
                      "notAFunction();</script></body></html>")
    dom, console, requests = _load(broken.as_uri(), tmp_path / "b1")
    assert 'id="ok"' in dom and not requests
    assert any("deliberate failure" in line for line in console), console
    assert any("Uncaught ReferenceError" in line for line in console), console
    remote = tmp_path / "remote.html"
    remote.write_text('<!DOCTYPE html><html><head><link rel="stylesheet" href="https://cdn.example.com/x.css">'
                      '</head><body><img src="http://example.com/a.png"></body></html>')
    _, console, requests = _load(remote.as_uri(), tmp_path / "b2")
    assert set(requests) == {"https://cdn.example.com/x.css", "http://example.com/a.png"}, requests


def test_report_renders_in_chromium_without_errors(rules_run: Path, rules_data: dict[str, Any],
                                                    tmp_path: Path) -> None:
    page = rules_run / "report.html"
    dom, console, requests = _load(page.as_uri(), tmp_path / "plain")
    assert console == [] and requests == []
    for key in RULES_SECTIONS:
        assert f'<section id="{key}">' in dom, key
    assert dom.count("<svg") >= 10
    # the hostile text stayed text: no script element or image came out of it
    assert dom.count("<script") == 1 and "<img" not in dom
    assert "&lt;script&gt;alert(1)&lt;/script&gt;&lt;/textarea&gt;" in dom
    # the script ran: the search box is shown with every row
    total = sum(len(v) for v in rules_data["examples"].values())
    assert '<div id="example-filter" class="filter">' in dom
    assert f"{total} of {total} shown" in dom and " hidden=" not in _example_rows(dom)


def _example_rows(dom: str) -> str:
    body = dom[dom.index('id="example-table"'):]
    return body[: body.index("</tbody>")]


def test_search_box_filters_rows_in_chromium(rules_run: Path, rules_data: dict[str, Any], tmp_path: Path) -> None:
    """The page reads ?q= and ?check= into its filter, so a loaded address shows what typing would."""
    page = rules_run / "report.html"
    total = sum(len(v) for v in rules_data["examples"].values())
    dom, console, _ = _load(page.as_uri() + "?q=hospital_name", tmp_path / "q")
    assert console == []
    rows = re.findall(r"<tr[^>]*data-check=[^>]*>", _example_rows(dom))
    shown = [r for r in rows if "hidden" not in r]
    assert len(rows) == total and len(shown) == 1 and 'data-check="placeholder"' in shown[0]
    assert f"1 of {total} shown" in dom and 'value="hospital_name"' not in dom  # typed value, not markup
    refusals = len(rules_data["examples"]["refusal"])
    dom, console, _ = _load(page.as_uri() + "?check=refusal", tmp_path / "c")
    shown = [r for r in re.findall(r"<tr[^>]*data-check=[^>]*>", _example_rows(dom)) if "hidden" not in r]
    assert console == [] and len(shown) == refusals and all('data-check="refusal"' in r for r in shown)
