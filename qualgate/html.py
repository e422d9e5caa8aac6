"""report.html: one self-contained page for a run (no network: inline CSS, a few lines of inline script, and
charts drawn by matplotlib as inline SVG).

``render_html(data)`` takes exactly what ``report.json`` holds. Sample texts, ids, messages and notes are
untrusted: every one goes through ``_e`` (``html.escape``; controls and bidi characters shown as escapes);
charts only ever show check names, reasons and numbers.
The page reads fine with JavaScript off; the script only adds the search box over the example rejections
(it also reads ``?q=`` and ``?check=`` from the address, so a filtered view can be linked to).
matplotlib is imported here, lazily, so the CLI starts fast; the output is byte-for-byte deterministic.
"""

from __future__ import annotations

import html
import io
import math
import re
from collections.abc import Iterable, Sequence
from typing import Any

from qualgate.untrusted import visible

#: Score histograms drawn at most (the page also has up to 4 other charts); the rest get a line of numbers.
MAX_HISTOGRAMS = 54
#: Reasons shown in the "findings per reason" chart.
MAX_REASON_BARS = 25
MAX_CLUSTER_EXAMPLES = 10

_BLUE, _RED, _GREY, _ORANGE = "#3b6fb6", "#c8372d", "#9a9a9a", "#e08a1e"
_MPL_RC: dict[str, Any] = {
    "svg.fonttype": "none",  # text stays text: smaller, selectable, and the page's font
    "svg.image_inline": True,
    "path.simplify": True,
    "font.family": "sans-serif",
    "font.sans-serif": ["DejaVu Sans"],
    "font.size": 7,
    "axes.linewidth": 0.6,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.edgecolor": "#555555",
    "axes.labelcolor": "#333333",
    "xtick.color": "#555555",
    "ytick.color": "#555555",
    "xtick.major.size": 2.5,
    "ytick.major.size": 2.5,
    "xtick.major.width": 0.6,
    "ytick.major.width": 0.6,
    "xtick.minor.visible": False,
    "ytick.minor.visible": False,
    "text.parse_math": False,  # a "$" in a check name is a dollar sign, not TeX
    "text.usetex": False,
    "legend.frameon": False,
}
_SECTIONS = (("summary", "Summary"), ("checks", "Checks"), ("rejections", "Rejections"),
             ("diversity", "Diversity"), ("duplicates", "Duplicate clusters"), ("lm", "Language model"),
             ("overrides", "Reviewer overrides"), ("examples", "Example rejections"))
_LM_BACKENDS = ("ngram", "kenlm", "hf")


def render_html(data: dict[str, Any]) -> str:
    """The HTML page for one run's report data (what ``report.json`` holds)."""
    import matplotlib

    mpl: Any = matplotlib
    charts = _Charts(mpl)
    with mpl.rc_context():  # pyplot is never used: no backend switch, no global figures
        mpl.rcdefaults()  # the user's matplotlibrc or style must not change the report
        mpl.rcParams.update(_MPL_RC)
        sections: dict[str, str] = {
            "summary": _summary(data),
            "checks": _checks(data, charts),
            "rejections": _rejections(data, charts),
            "diversity": _diversity(data, charts),
            "duplicates": _duplicates(data),
            "lm": _language_model(data),
            "overrides": _overrides(data),
            "examples": _examples(data),
        }
    present = [(key, title) for key, title in _SECTIONS if sections[key]]
    toc = "".join(f'<li><a href="#{key}">{title}</a></li>' for key, title in present)
    passed = bool(data.get("gate", {}).get("passed"))
    status = "PASSED" if passed else "FAILED"
    body = "\n".join(sections[key] for key, _ in present)
    page = (
        "<!DOCTYPE html>\n"
        '<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>qualgate report: gate {status}</title>\n"
        f"<style>{_CSS}</style>\n</head>\n<body>\n"
        f'<header><h1>qualgate report <span class="badge {"pass" if passed else "fail"}">gate {status}</span></h1>\n'
        f'<nav aria-label="sections"><ul class="toc">{toc}</ul></nav></header>\n'
        f"<main>\n{body}\n</main>\n"
        f"<script>{_SCRIPT}</script>\n</body>\n</html>\n"
    )
    # a lone surrogate in a sample's text cannot be written as UTF-8: it shows as "?"
    return page.encode("utf-8", "replace").decode("utf-8")


# ------------------------------------------------------------------------------------------ helpers
def _e(value: Any) -> str:
    """Escaped text of any value (None shows as a dash); controls, bidi overrides and other invisible format
    characters show as escapes (``\\u202e``), so an id or a text cannot display as something else."""
    if value is None:
        return "&ndash;"
    return html.escape(visible(str(value), keep="\n\t"), quote=True)


def _num(value: Any) -> str:
    if value is None:
        return "&ndash;"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        if math.isnan(value) or math.isinf(value):
            return _e(value)
        if value == int(value) and abs(value) < 1e15:
            return f"{int(value):,}"
        return f"{value:.4g}"
    return _e(value)


def _pct(value: Any) -> str:
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return "&ndash;"
    return f"{value:.2%}" if 0 < abs(value) < 0.01 else f"{value:.1%}"


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_-]+", "-", name).strip("-") or "x"


def _table(head: Sequence[str], rows: Iterable[Sequence[str]], cls: str = "", num: Sequence[int] = ()) -> str:
    """A table from already escaped cells; columns in ``num`` are right-aligned."""
    def cell(tag: str, i: int, value: str) -> str:
        return f'<{tag} class="n">{value}</{tag}>' if i in num else f"<{tag}>{value}</{tag}>"

    th = "".join(cell("th", i, h) for i, h in enumerate(head))
    body = "\n".join("<tr>" + "".join(cell("td", i, v) for i, v in enumerate(r)) + "</tr>" for r in rows)
    return (f'<div class="scroll"><table{f" class={cls!r}" if cls else ""}><thead><tr>{th}</tr></thead>'
            f"<tbody>\n{body}\n</tbody></table></div>")


def _kv(pairs: Iterable[tuple[str, str]]) -> str:
    """A definition list of (label, escaped value)."""
    return '<dl class="kv">' + "".join(f"<dt>{k}</dt><dd>{v}</dd>" for k, v in pairs) + "</dl>"


def _section(key: str, title: str, inner: str) -> str:
    return f'<section id="{key}">\n<h2>{title}</h2>\n{inner}\n</section>'


# ------------------------------------------------------------------------------------------- charts
class _Charts:
    """Makes matplotlib figures (no pyplot: nothing global to close) and turns them into inline SVG."""

    def __init__(self, mpl: Any) -> None:
        from matplotlib.figure import Figure

        self._mpl = mpl
        self._figure = Figure
        self.count = 0

    def figure(self, width: float, height: float) -> Any:
        return self._figure(figsize=(width, height), dpi=100)

    def svg(self, fig: Any, label: str) -> str:
        self.count += 1
        buf = io.StringIO()
        # a salt per chart: ids (clip paths, markers) stay unique across the page and equal run to run
        with self._mpl.rc_context({"svg.hashsalt": f"qualgate-{self.count}"}):
            fig.savefig(buf, format="svg", dpi=100,
                        metadata={"Date": None, "Creator": None, "Format": None, "Type": None})
        fig.clear()
        return _inline_svg(buf.getvalue(), label)


def _inline_svg(svg: str, label: str) -> str:
    """matplotlib's SVG file as an element to put in HTML: no prolog, doctype, metadata, namespace URLs or
    the global ``*{...}`` style (the page's CSS carries it, scoped to charts)."""
    svg = svg[svg.index("<svg"):]
    svg = re.sub(r"<metadata>.*?</metadata>\s*", "", svg, flags=re.S)
    svg = re.sub(r'<style type="text/css">.*?</style>', "", svg, flags=re.S)
    svg = re.sub(r'\s+xmlns(?::\w+)?="[^"]*"', "", svg)
    svg = re.sub(r'\s+version="1\.1"', "", svg)
    # matplotlib names every group (figure_1, axes_1, patch_2 ...): the same names in every chart would repeat
    # ids across the page. Keep only the ids something points to (clip paths, markers: salted per chart).
    used = set(re.findall(r'(?:href="#|url\(#)([^")]+)', svg))
    svg = re.sub(r'\s+id="([^"]*)"', lambda m: m.group(0) if m.group(1) in used else "", svg)
    svg = svg.replace("<svg", f'<svg class="chart" role="img" aria-label="{_e(label)}"', 1)
    return svg.strip()


def _short_ticks(ax: Any, xbins: int | None = 4, ybins: int | None = 3, integer_x: bool = False) -> None:
    """Few ticks (smaller SVG, less clutter); ``None`` leaves that axis's ticks alone (fixed labels)."""
    from matplotlib.ticker import FuncFormatter, MaxNLocator, NullFormatter

    if xbins and ax.get_xscale() == "linear":
        ax.xaxis.set_major_locator(MaxNLocator(nbins=xbins, integer=integer_x))
    if ybins and ax.get_yscale() == "linear":
        ax.yaxis.set_major_locator(MaxNLocator(nbins=ybins, integer=True))
    for axis, scale in ((ax.xaxis, ax.get_xscale()), (ax.yaxis, ax.get_yscale())):
        if scale in ("log", "symlog"):  # plain "100", not TeX markup (math text parsing is off)
            axis.set_major_formatter(FuncFormatter(lambda v, _pos: f"{v:g}"))
            axis.set_minor_formatter(NullFormatter())
    ax.tick_params(labelsize=6.5, pad=1.5)


def _histogram_svg(charts: _Charts, column: str, h: dict[str, Any]) -> str:
    fig = charts.figure(2.55, 1.45)
    fig.subplots_adjust(left=0.15, right=0.97, bottom=0.17, top=0.95)
    ax = fig.add_subplot()
    counts = [int(c) for c in h.get("counts", [])]
    kind = h.get("kind")
    if kind == "discrete":
        values = [float(v) for v in h.get("values", [])]
        ax.bar(values, counts, width=0.7, color=_BLUE, linewidth=0)
    else:
        ax.stairs(counts, [float(e) for e in h.get("edges", [])], fill=True, color=_BLUE, linewidth=0)
        if kind == "log":
            ax.set_xscale("log")
    positive = [c for c in counts if c > 0]
    if positive and max(positive) >= 50 * min(positive):  # a spike would hide the tail that matters
        ax.set_yscale("symlog", linthresh=1)
    if kind == "discrete":
        lo, hi = min(values) - 0.5, max(values) + 0.5
    else:
        edges = h.get("edges") or [0.0, 1.0]
        lo, hi = float(edges[0]), float(edges[-1])
    far: list[tuple[float, str]] = []
    for i, t in enumerate(h.get("thresholds") or []):
        if not isinstance(t, (int, float)) or not math.isfinite(t) or (kind == "log" and t <= 0):
            continue
        # a limit far outside the data would squash the histogram: name it at the edge instead
        side = _outside(float(t), lo, hi, kind == "log")
        if side:
            far.append((float(t), side))
        else:
            ax.axvline(float(t), color=_RED, linewidth=1.1, linestyle="-" if i == 0 else "--", zorder=3)
    for j, (t, side) in enumerate(far[:2]):
        ax.text(1.0 if side == "right" else 0.0, 0.98 - 0.11 * j,
                f"limit {t:g} \u2192" if side == "right" else f"\u2190 limit {t:g}", color=_RED, fontsize=6,
                transform=ax.transAxes, ha="right" if side == "right" else "left", va="top")
    _short_ticks(ax, xbins=4 if kind != "discrete" else 5, integer_x=kind == "discrete")
    return charts.svg(fig, f"histogram of {column}")


def _outside(t: float, lo: float, hi: float, log: bool) -> str:
    """"left"/"right" when a limit lies more than half the data's range beyond it (on the axis's scale)."""
    if log:
        if lo <= 0:
            return ""
        t, lo, hi = math.log10(t), math.log10(lo), math.log10(hi)
    margin = 0.5 * max(hi - lo, 1e-12)
    return "right" if t > hi + margin else "left" if t < lo - margin else ""


def _barh_svg(charts: _Charts, labels: list[str], values: list[int], label: str, colors: list[str] | None = None,
              width: float = 5.2) -> str:
    n = len(labels)
    height = 0.35 + 0.19 * n
    fig = charts.figure(width, height)
    longest = max((len(s) for s in labels), default=4)
    left = min(0.6, (0.1 + 0.058 * longest) / width)
    fig.subplots_adjust(left=left, right=0.9, bottom=0.27 / height, top=1 - 0.08 / height)
    ax = fig.add_subplot()
    ys = list(range(n))
    bars = ax.barh(ys, values, height=0.7, color=colors or _RED, linewidth=0)
    ax.set_yticks(ys, labels)
    ax.invert_yaxis()
    ax.bar_label(bars, labels=[f"{v:,}" for v in values], padding=2, fontsize=6.5)
    ax.set_xlim(0, max([*values, 1]) * 1.15)
    ax.spines["left"].set_visible(False)
    ax.tick_params(axis="y", length=0)
    _short_ticks(ax, xbins=5, ybins=None, integer_x=True)
    return charts.svg(fig, label)


# ------------------------------------------------------------------------------------------ summary
def _summary(data: dict[str, Any]) -> str:
    parts: list[str] = []
    tune = data.get("tune")
    if tune:
        changes = tune.get("changes") or {}
        listed = ", ".join(f"<code>{_e(k)}</code> = {_e(v)}" for k, v in changes.items()) or "no changes"
        caveats = []
        if tune.get("needs_scores"):
            caveats.append(f"{_num(tune['needs_scores'])} sample(s) would now reach checks the original run skipped "
                           "for them and keep their recorded decision")
        if tune.get("order_dependent"):
            caveats.append(f"{_num(tune['order_dependent'])} keep-first duplicate decision(s) depend on samples "
                           "whose decision changed")
        exact = ("" if tune.get("exact", True) and not caveats else
                 "<br>Not exact" + (": " + "; ".join(caveats) if caveats else "") + ". Every other decision equals a "
                 "full re-run; run the gate with <code>--all-findings</code> to store every score.")
        parts.append(f'<div class="banner tune"><strong>Re-decided by <code>qualgate tune</code></strong> from the '
                     f"stored scores of <code>{_e(tune.get('from_run'))}</code> (nothing was recomputed), "
                     f"with: {listed}.{exact}</div>")
    total, accepted, rejected = data.get("total", 0), data.get("accepted", 0), data.get("rejected", 0)
    passed = bool(data.get("gate", {}).get("passed"))
    cards = [("records", _num(total), ""), ("accepted", _num(accepted), "ok"),
             ("rejected", _num(rejected), "bad" if rejected else ""),
             ("reject rate", _pct(data.get("reject_rate")), ""),
             ("gate", "PASSED" if passed else "FAILED", "ok" if passed else "bad")]
    parts.append('<div class="cards">' + "".join(
        f'<div class="card {cls}"><div class="v">{v}</div><div class="k">{k}</div></div>' for k, v, cls in cards)
        + "</div>")
    conditions = data.get("gate", {}).get("conditions") or []
    if conditions:
        rows = [(f'<code class="nowrap">{_e(c.get("name"))}</code>', _num(c.get("value")), _num(c.get("limit")),
                 '<span class="ok">pass</span>' if c.get("passed") else '<span class="bad">FAIL</span>',
                 f'<span class="msg">{_e(c["message"])}</span>' if c.get("message") else "")
                for c in conditions]
        parts.append("<h3>Gate conditions</h3>" + _table(("condition", "value", "limit", "result", "message"),
                                                           rows, "gate", num=(1, 2)))
    else:
        parts.append("<p>No gate conditions are configured: the gate passes.</p>")
    config = data.get("config") or {}
    run = data.get("run") or {}
    info: list[tuple[str, str]] = [("config", f"<code>{_e(config.get('source'))}</code>")]
    if config.get("description"):
        info.append(("description", _e(config["description"])))
    if run.get("inputs"):
        info.append(("inputs", ", ".join(f"<code>{_e(i)}</code>" for i in run["inputs"])))
    if "seconds" in run:
        info.append(("time", f"{_num(run.get('seconds'))} s"
                     + (f" ({_num(run['samples_per_second'])} samples/s)" if run.get("samples_per_second") else "")))
    for key, label in (("workers", "workers"), ("batch_size", "batch size"), ("all_findings", "all findings"),
                       ("strict", "strict")):
        if key in run:
            info.append((label, _num(run[key])))
    if run.get("check_order"):
        info.append(("check order", ", ".join(_e(c) for c in run["check_order"])))
    for key in ("baseline", "reference", "private"):
        sec = data.get(key)
        if isinstance(sec, dict):
            files = ", ".join(f"<code>{_e(f)}</code>" for f in sec.get("files") or [])
            count = sec.get("records")
            info.append((key, f"{_num(count)} records from {files or '&ndash;'}"
                         + (f"; {_num(sec['skipped'])} malformed skipped" if sec.get("skipped") else "")))
    parts.append("<h3>Run</h3>" + _kv(info))
    warnings = [str(w) for w in data.get("warnings") or []]
    div = data.get("diversity")
    if isinstance(div, dict) and div.get("note"):
        warnings.append(f"diversity not measured: {div['note']}")
    if warnings:
        parts.append('<h3>Warnings</h3><ul class="warnings">' + "".join(f"<li>{_e(w)}</li>" for w in warnings)
                     + "</ul>")
    return _section("summary", "Summary", "\n".join(parts))


# ------------------------------------------------------------------------------------------- checks
def _check_of(column: str, names: Sequence[str]) -> str | None:
    """The check a score column belongs to (``<check name>.<score name>``; the longest name wins)."""
    best = None
    for name in names:
        if column.startswith(name + ".") and (best is None or len(name) > len(best)):
            best = name
    return best


def _constant(h: dict[str, Any]) -> bool:
    if h.get("kind") == "discrete":
        return len(h.get("values") or []) <= 1
    edges = h.get("edges") or []
    return bool(edges) and edges[0] == edges[-1]


def _checks(data: dict[str, Any], charts: _Charts) -> str:
    by_check: dict[str, dict[str, Any]] = data.get("by_check") or {}
    total = data.get("total") or 0
    histograms: dict[str, dict[str, Any]] = data.get("histograms") or {}
    summaries: dict[str, dict[str, Any]] = data.get("scores") or {}
    names = list(by_check)
    columns: dict[str, list[str]] = {n: [] for n in names}
    for col in histograms:
        owner = _check_of(col, names)
        if owner is not None:
            columns[owner].append(col)
    drawable = [(n, c) for n in names for c in columns[n]
                if histograms[c].get("count") and histograms[c].get("kind") != "empty" and not _constant(histograms[c])]
    # which histograms get a chart: those of checks that rejected, then those with a limit, in check order
    ranked = sorted(range(len(drawable)), key=lambda i: (
        0 if by_check[drawable[i][0]].get("rejected") else 1,
        0 if histograms[drawable[i][1]].get("thresholds") else 1, i))
    drawn = {drawable[i][1] for i in ranked[:MAX_HISTOGRAMS]}

    has_overruled = any(c.get("overruled") for c in by_check.values())
    overview = []
    for name, c in by_check.items():
        if name == "malformed" and not c.get("rejected"):
            continue
        reasons = ", ".join(f"{_e(r)}&nbsp;({_num(k)})" for r, k in (c.get("reasons") or {}).items()) or "&ndash;"
        rate = c.get("reject_rate") or 0.0
        width = min(100.0, rate * 100 / max(_max_rate(by_check), 1e-9))
        bar = f'<span class="bar" style="width:{width:.1f}%"></span><span class="t">{_pct(rate)}</span>'
        row = [f'<a href="#check-{_slug(name)}">{_e(name)}</a>', _e(c.get("kind")), _num(c.get("scored")),
               _num(c.get("rejected")), f'<span class="rate">{bar}</span>', _num(c.get("skipped"))]
        if has_overruled:
            row.append(_num(c.get("overruled", 0)))
        overview.append([*row, reasons])
    head = ["check", "kind", "scored", "rejected", "rate", "skipped"] + (["overruled"] if has_overruled else [])
    parts = ["<p>Checks run cheapest first. Unless the run used <code>--all-findings</code>, a sample that already "
             "failed skips the later checks (<em>skipped</em>). Histograms show each score over the samples the check "
             'scored; <span class="limit">red lines</span> are its limits (the configured ones, then any other limit '
             "rejected samples crossed); a count axis marked 1, 10, 100 is logarithmic.</p>",
             _table([*head, "reasons"], overview, "checks", num=(2, 3, 4, 5, 6) if has_overruled else (2, 3, 4, 5))]
    blocks: list[str] = []
    for name, c in by_check.items():
        cols = columns[name]
        if name == "malformed" and not c.get("rejected"):
            continue
        line = (f"scored {_num(c.get('scored'))} &middot; rejected <strong>{_num(c.get('rejected'))}</strong> "
                f"({_pct(c.get('reject_rate'))}) &middot; skipped {_num(c.get('skipped'))}")
        if c.get("overruled"):
            line += f" &middot; overruled by a reviewer {_num(c['overruled'])}"
        by_reason: dict[str, Any] = c.get("reasons") or {}
        if by_reason:
            line += "<br>reasons: " + ", ".join(f"<code>{_e(r)}</code> {_num(k)}" for r, k in by_reason.items())
        figs, notes = [], []
        for col in cols:
            h = histograms[col]
            score = col[len(name) + 1:]
            if col in drawn:
                limits = ", ".join(_num(t) for t in h.get("thresholds") or [])
                cap = (f"<b>{_e(score)}</b><br><span>n={_num(h.get('count'))}"
                       + (f" &middot; limit {limits}" if limits else "")
                       + f" &middot; check rejected {_pct(c.get('reject_rate'))}"
                       + (" &middot; log x" if h.get("kind") == "log" else "") + "</span>")
                figs.append(f"<figure>{_histogram_svg(charts, col, h)}<figcaption>{cap}</figcaption></figure>")
            elif h.get("count"):
                notes.append(_score_note(score, h, summaries.get(col) or {}))
        no_scores = [col[len(name) + 1:] for col, s in summaries.items()
                     if _check_of(col, names) == name and col not in histograms]
        inner = f'<p class="counts">{line}</p>'
        if figs:
            inner += f'<div class="grid" style="--n:{min(3, len(figs))}">' + "".join(figs) + "</div>"
        if notes:
            inner += '<ul class="notes">' + "".join(f"<li>{n}</li>" for n in notes) + "</ul>"
        if no_scores:
            inner += (f'<p class="muted">No values (nothing reached this test): '
                      f'{", ".join(_e(s) for s in no_scores)}.</p>')
        blocks.append(f'<div class="check" id="check-{_slug(name)}"><h3>{_e(name)} '
                     f'<span class="kind">{_e(c.get("kind"))}</span></h3>{inner}</div>')
    parts.append('<div class="checkgrid">' + "\n".join(blocks) + "</div>")
    if total == 0:
        parts.insert(0, "<p>The run had no records.</p>")
    return _section("checks", "Checks", "\n".join(parts))


def _max_rate(by_check: dict[str, dict[str, Any]]) -> float:
    return max((float(c.get("reject_rate") or 0.0) for c in by_check.values()), default=0.0)


def _score_note(score: str, h: dict[str, Any], s: dict[str, Any]) -> str:
    """One line for a score column without a chart."""
    if _constant(h):
        value = (h.get("values") or h.get("edges") or [None])[0]
        return f"<code>{_e(score)}</code>: all {_num(h.get('count'))} values are {_num(value)}"
    quant = ", ".join(f"{k} {_num(s[k])}" for k in ("min", "p5", "p50", "p95", "max") if k in s)
    return f"<code>{_e(score)}</code> (not drawn, chart limit): n={_num(h.get('count'))}; {quant}"


# --------------------------------------------------------------------------------------- rejections
def _rejections(data: dict[str, Any], charts: _Charts) -> str:
    by_check: dict[str, dict[str, Any]] = data.get("by_check") or {}
    rows = sorted(((n, int(c.get("rejected") or 0)) for n, c in by_check.items() if c.get("rejected")),
                  key=lambda x: (-x[1], x[0]))
    if not rows:
        return _section("rejections", "Rejections", "<p>No sample was rejected.</p>")
    parts = [f"<p>{_num(data.get('rejected'))} of {_num(data.get('total'))} samples rejected. A sample rejected "
             "by several checks (with <code>--all-findings</code>) counts once for each.</p>",
             '<div class="pair"><figure>'
             + _barh_svg(charts, [n for n, _ in rows], [k for _, k in rows], "rejected samples per check")
             + "<figcaption>rejected samples per check</figcaption></figure>"]
    reasons = sorted(((f"{n} / {r}", int(k)) for n, c in by_check.items() for r, k in (c.get("reasons") or {}).items()
                      if k), key=lambda x: (-x[1], x[0]))
    if reasons:
        more = len(reasons) - MAX_REASON_BARS
        reasons = reasons[:MAX_REASON_BARS]
        parts.append("<figure>" + _barh_svg(charts, [r for r, _ in reasons], [k for _, k in reasons],
                                            "findings per check and reason", colors=[_ORANGE] * len(reasons))
                     + "<figcaption>findings per check / reason (overruled ones included)"
                     + (f"; {more} smaller reasons not shown" if more > 0 else "") + "</figcaption></figure>")
    parts.append("</div>")
    return _section("rejections", "Rejections", "\n".join(parts))


# ---------------------------------------------------------------------------------------- diversity
def _diversity(data: dict[str, Any], charts: _Charts) -> str:
    div = data.get("diversity")
    if not isinstance(div, dict) or "note" in div or div.get("reference_coverage") is None:
        return ""
    against = div.get("against", "reference")
    files = ", ".join(f"<code>{_e(f)}</code>" for f in div.get("reference_files") or [])
    sampled = div.get("sampled") or {}
    parts = [f"<p>The accepted set measured against the {_e(against)}"
             + (f" ({files})" if files else "")
             + f" with <code>{_e(div.get('model'))}</code> embeddings: {_num(div.get('reference_size'))} "
             f"{_e(against)} and {_num(div.get('accepted_size'))} accepted samples"
             + (f" (sampled {_num(sampled.get('reference'))} and {_num(sampled.get('accepted'))})" if sampled else "")
             + ". Collapse shows as lost reference clusters, a lower Vendi score and accepted samples closer to "
             "each other than the reference's are.</p>"]
    if div.get("tuned"):
        parts.append(f'<p class="banner">These diversity numbers were {_e(div["tuned"])}.</p>')
    cards = [("reference coverage", _pct(div.get("reference_coverage")), f"of {_num(div.get('clusters'))} clusters"),
             ("tail coverage", _pct(div.get("tail_coverage")), "of the smallest clusters"),
             ("Vendi ratio", _num(div.get("ratio")), "accepted / reference"),
             ("NN distance ratio", _num(div.get("nn_ratio")), "accepted / reference")]
    parts.append('<div class="cards">' + "".join(
        f'<div class="card"><div class="v">{v}</div><div class="k">{k}</div><div class="s">{s}</div></div>'
        for k, v, s in cards) + "</div>")
    nn, vendi, entropy = div.get("nn_distance") or {}, div.get("vendi") or {}, div.get("entropy") or {}
    metric_rows = []
    if nn:
        metric_rows.append((f"nearest-neighbour cosine distance, mean (at n={_num(nn.get('compared_at'))})",
                            _num((nn.get("accepted") or {}).get("mean")),
                            _num((nn.get("reference") or {}).get("mean"))))
    if vendi:
        metric_rows.append((f"Vendi score (at n={_num(vendi.get('compared_at'))})", _num(vendi.get("accepted")),
                            _num(vendi.get("reference"))))
    if entropy:
        metric_rows.append((f"cluster entropy ({_num(div.get('clusters'))} {_e(against)} clusters)",
                            _num(entropy.get("accepted")), _num(entropy.get("reference"))))
    parts.append(_table(("metric", "accepted", _e(against)), metric_rows, num=(1, 2)))
    figures = []
    if nn.get("accepted") and nn.get("reference"):
        figures.append("<figure>" + _nn_svg(charts, nn, against) + "<figcaption>nearest-neighbour cosine distance "
                       "within each set (box p25&ndash;p75, whiskers p5&ndash;p95, line median, dot mean); lower "
                       "for accepted means its samples crowd together</figcaption></figure>")
    m = div.get("map")
    if isinstance(m, dict) and (m.get("reference") or m.get("accepted")):
        figures.append("<figure>" + _map_svg(charts, m, against) + f"<figcaption>{_e(m.get('method'))} "
                       f"({_pct(m.get('explained_variance'))} of the variance in these two axes); at most a few "
                       "thousand points per set</figcaption></figure>")
    if figures:
        parts.append('<div class="pair">' + "".join(figures) + "</div>")
    missing = div.get("missing_clusters") or []
    if missing:
        texts = div.get("examples_are") != "ids"
        rows = []
        for mc in missing:
            ex = mc.get("examples") or []
            shown = ("".join(f'<span class="snip">{_e(x)}</span>' for x in ex) if texts
                     else ", ".join(f"<code>{_e(x)}</code>" for x in ex)) or "&ndash;"
            rows.append((_num(mc.get("cluster")), _pct(mc.get("reference_share")), _pct(mc.get("accepted_share")),
                         shown))
        parts.append(f"<h3>Missing clusters ({len(missing)})</h3><p>{_e(against).capitalize()} clusters the "
                     "accepted set does not cover, largest first, with the " + ("texts" if texts else "ids")
                     + f" of the {_e(against)} samples nearest their centres.</p>"
                     + _table(("cluster", f"{_e(against)} share", "accepted share",
                               "examples" if texts else "example ids"), rows, num=(0, 1, 2)))
    else:
        parts.append("<p>Every reference cluster is covered by the accepted set.</p>")
    return _section("diversity", "Diversity", "\n".join(parts))


def _nn_svg(charts: _Charts, nn: dict[str, Any], against: str) -> str:
    fig = charts.figure(3.6, 1.35)
    fig.subplots_adjust(left=0.2, right=0.97, bottom=0.22, top=0.95)
    ax = fig.add_subplot()
    stats = []
    for label in ("reference", "accepted"):
        q = nn[label]
        stats.append({"label": "accepted" if label == "accepted" else against, "whislo": q.get("p5", q.get("p25")),
                      "q1": q.get("p25"), "med": q.get("p50"), "q3": q.get("p75"),
                      "whishi": q.get("p95", q.get("p75")), "mean": q.get("mean"), "fliers": []})
    boxes = ax.bxp(stats, orientation="horizontal", showmeans=True, patch_artist=True, widths=0.55,
                   meanprops={"marker": "o", "markersize": 3, "markerfacecolor": "#222222", "markeredgewidth": 0},
                   medianprops={"color": "#222222", "linewidth": 1})
    for patch, color in zip(boxes["boxes"], (_GREY, _BLUE), strict=True):
        patch.set_facecolor(color)
        patch.set_alpha(0.75)
        patch.set_linewidth(0)
    ax.set_xlabel("cosine distance to nearest neighbour", fontsize=6.5)
    _short_ticks(ax, xbins=5, ybins=None)
    return charts.svg(fig, "nearest-neighbour distances, accepted vs reference")


def _map_svg(charts: _Charts, m: dict[str, Any], against: str) -> str:
    fig = charts.figure(4.6, 3.5)
    fig.subplots_adjust(left=0.08, right=0.98, bottom=0.08, top=0.98)
    ax = fig.add_subplot()
    for key, color, label in (("reference", _GREY, against), ("rejected", _RED, "rejected"),
                              ("accepted", _BLUE, "accepted")):
        pts = m.get(key) or []
        if pts:
            xs, ys = [p[0] for p in pts], [p[1] for p in pts]
            many = len(pts) > 400
            ax.scatter(xs, ys, s=5 if many else 14, c=color, alpha=0.35 if many else 0.7, linewidths=0,
                       label=f"{label} ({len(pts):,})",
                       rasterized=many)  # thousands of markers as vectors would weigh ~100 kB a set
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_xlabel("PC 1", fontsize=6.5)
    ax.set_ylabel("PC 2", fontsize=6.5)
    ax.legend(loc="best", fontsize=6.5, markerscale=2.5, handletextpad=0.2, borderaxespad=0.3)
    return charts.svg(fig, "2-D map of reference, accepted and rejected samples")


# ------------------------------------------------------------------------------- duplicates, LM, overrides
def _duplicates(data: dict[str, Any]) -> str:
    sets: dict[str, dict[str, Any]] = data.get("sets") or {}
    example_ids = {str(e.get("id")) for ex in (data.get("examples") or {}).values() for e in ex}
    parts = []
    for name, sec in sets.items():
        clusters = sec.get("largest_clusters") if isinstance(sec, dict) else None
        if not clusters:
            continue

        def ref(i: Any) -> str:
            code = f"<code>{_e(i)}</code>"
            return f'<a href="#ex-{_slug(str(i))}">{code}</a>' if str(i) in example_ids else code

        rows = [(ref(c.get("kept")), "yes" if c.get("in_baseline") else "no", _num(c.get("duplicates")),
                 ", ".join(ref(e) for e in (c.get("examples") or [])[:MAX_CLUSTER_EXAMPLES])
                 + (" &hellip;" if len(c.get("examples") or []) > MAX_CLUSTER_EXAMPLES else ""))
                for c in clusters]
        facts = [f"{_num(sec[k])} {label}" for k, label in (("kept", "kept in the index"),
                                                              ("baseline", "baseline samples")) if k in sec]
        parts.append(f"<h3>{_e(name)}</h3>" + (f"<p>{'; '.join(facts)}.</p>" if facts else "")
                     + _table(("kept sample", "in baseline", "duplicates", "rejected duplicates (ids)"), rows,
                              num=(2,)))
    if not parts:
        return ""
    return _section("duplicates", "Largest duplicate clusters",
                    "<p>The samples that the most others duplicated: the first occurrence is kept (or the baseline's), "
                    "the rest are rejected and name it. Ids link to their example row when it is listed below.</p>\n"
                    + "\n".join(parts))


def _language_model(data: dict[str, Any]) -> str:
    parts = []
    for name, sec in (data.get("sets") or {}).items():
        if not isinstance(sec, dict) or not ("set_perplexity" in sec or sec.get("backend") in _LM_BACKENDS):
            continue
        what = sec.get("model") or f"order-{sec.get('order')} Kneser-Ney n-gram"
        unit = sec.get("unit")
        facts = [("backend", f"<code>{_e(sec.get('backend'))}</code> ({_e(what)})")]
        if sec.get("trained_on"):
            facts.append(("trained on", _e(sec["trained_on"])))
        facts += [("perplexity per", f"{_e(unit)}, first {_num(sec.get('max_tokens'))} {_e(unit)}s"),
                  ("per-sample cache", "on" if sec.get("cache") else "off"),
                  (f"{_e(sec.get('set') or 'reference')} records", _num(sec.get("set_records", 0)))]
        rows = [(f"<code>{w}</code>", _num((sec.get(w) or {}).get("value")), _e((sec.get(w) or {}).get("from")))
                for w in ("max", "min", "max_context_ratio") if w in sec]
        inner = f"<h3>{_e(name)}</h3>" + _kv(facts)
        if rows:
            inner += _table(("threshold", "value", "from"), rows, num=(1,))
        quant = [(key[4:].replace("_", " "), sec[key]) for key in ("set_perplexity", "set_context_ratio")
                 if isinstance(sec.get(key), dict)]
        if quant:
            keys = list(dict.fromkeys(k for _, q in quant for k in q))
            inner += (f"<p>Distribution over the {_e(sec.get('set') or 'reference')} set:</p>"
                      + _table(["", *[_e(k) for k in keys]], [[_e(label), *[_num(q.get(k)) for k in keys]]
                                                               for label, q in quant],
                               num=tuple(range(1, len(keys) + 1))))
        parts.append(inner)
    if not parts:
        return ""
    return _section("lm", "Language model", "\n".join(parts))


def _overrides(data: dict[str, Any]) -> str:
    ov = data.get("overrides")
    if not isinstance(ov, dict):
        return ""
    parts = [f"<p>{_num(ov.get('applied', 0))} reviewer decision(s) applied from <code>{_e(ov.get('file'))}</code>"
             + (f" ({_num(ov['entries'])} entries)" if ov.get("entries") is not None else "")
             + f": {_num(ov.get('accepted', 0))} accepted, {_num(ov.get('rejected', 0))} rejected by a reviewer. "
             "The overruled findings stay recorded.</p>"]
    unmatched = ov.get("unmatched") or []
    if unmatched:
        parts.append(f'<p class="bad-text">{len(unmatched)} override id(s) matched no sample: '
                     + ", ".join(f"<code>{_e(i)}</code>" for i in unmatched[:50])
                     + (" &hellip;" if len(unmatched) > 50 else "") + "</p>")
    items = ov.get("items") or []
    if items:
        rows = [(f"<code>{_e(o.get('id'))}</code>", _e(o.get("source")),
                 f'<span class="{"ok" if o.get("decision") == "accept" else "bad"}">{_e(o.get("decision"))}</span>',
                 _e(o.get("reviewer")),
                 ", ".join(f"<code>{_e(f)}</code>" for f in o.get("findings") or []) or "&ndash;",
                 _e(o.get("note")), _e(o.get("from")))
                for o in items]
        parts.append(_table(("sample", "source", "decision", "reviewer", "overruled findings", "note", "from"), rows))
    return _section("overrides", "Reviewer overrides", "\n".join(parts))


# ----------------------------------------------------------------------------------------- examples
def _examples(data: dict[str, Any]) -> str:
    examples: dict[str, list[dict[str, Any]]] = data.get("examples") or {}
    rows, seen = [], set()
    for check, items in examples.items():
        for e in items:
            sid = str(e.get("id"))
            anchor = "" if sid in seen else f' id="ex-{_slug(sid)}"'
            seen.add(sid)
            text = (f'<div class="snip">{_e(e["text"])}</div>' if e.get("text")
                    else '<span class="muted">(not shown)</span>')
            rows.append(f'<tr{anchor} data-check="{_e(check)}"><td>{_e(check)}</td><td><code class="nowrap">'
                        f'{_e(e.get("reason"))}</code></td><td><code class="nowrap">{_e(sid)}</code></td>'
                        f'<td class="src">{_e(e.get("source"))}</td>'
                        f'<td>{_e(e.get("message"))}</td><td>{text}</td></tr>')
    if not rows:
        return ""
    options = "".join(f'<option value="{_e(c)}">{_e(c)} ({len(v)})</option>' for c, v in examples.items() if v)
    return _section("examples", "Example rejections", (
        f"<p>The first rejections of each check ({len(rows)} rows), with the start of each sample's text.</p>"
        '<div id="example-filter" class="filter" hidden><label>Search <input type="search" id="example-search" '
        'placeholder="words in any column" autocomplete="off"></label> <label>check <select id="example-check">'
        f'<option value="">all</option>{options}</select></label> <span id="example-count"></span></div>'
        '<div class="scroll"><table id="example-table" class="examples"><thead><tr><th>check</th><th>reason</th>'
        "<th>id</th><th>source</th><th>message</th><th>text</th></tr></thead><tbody>\n"
        + "\n".join(rows) + "\n</tbody></table></div>"))


_SCRIPT = """
(function () {
  "use strict";
  var table = document.getElementById("example-table");
  if (!table) { return; }
  var box = document.getElementById("example-search");
  var pick = document.getElementById("example-check");
  var count = document.getElementById("example-count");
  var rows = Array.prototype.slice.call(table.tBodies[0].rows);
  var texts = rows.map(function (r) { return r.textContent.toLowerCase(); });
  function update() {
    var words = box.value.toLowerCase().split(/\\s+/).filter(Boolean);
    var check = pick.value;
    var shown = 0;
    rows.forEach(function (row, i) {
      var ok = (!check || row.getAttribute("data-check") === check) &&
        words.every(function (w) { return texts[i].indexOf(w) !== -1; });
      row.hidden = !ok;
      if (ok) { shown += 1; }
    });
    count.textContent = shown + " of " + rows.length + " shown";
  }
  var params = new URLSearchParams(window.location.search);
  box.value = params.get("q") || "";
  var wanted = params.get("check");
  if (wanted && Array.prototype.some.call(pick.options, function (o) { return o.value === wanted; })) {
    pick.value = wanted;
  }
  box.addEventListener("input", update);
  pick.addEventListener("change", update);
  document.getElementById("example-filter").hidden = false;
  update();
}());
"""

_CSS = """
:root { --fg: #1d2327; --muted: #5f6b76; --line: #dde2e7; --bg: #ffffff; --soft: #f5f7f9;
  --ok: #1f7a3a; --bad: #b3261e; --blue: #3b6fb6; }
* { box-sizing: border-box; }
[hidden] { display: none !important; }
body { margin: 0; color: var(--fg); background: var(--bg); font: 14px/1.45 system-ui, -apple-system, "Segoe UI",
  Roboto, "Helvetica Neue", Arial, sans-serif; }
header { padding: 14px 28px 6px; border-bottom: 1px solid var(--line); background: var(--soft); }
h1 { font-size: 22px; margin: 0 0 6px; }
h2 { font-size: 18px; margin: 26px 0 8px; padding-bottom: 4px; border-bottom: 2px solid var(--line); }
h3 { font-size: 15px; margin: 18px 0 6px; }
main { padding: 0 28px 40px; max-width: 1500px; }
code { font: 12.5px/1.3 ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; background: var(--soft);
  padding: 0 3px; border-radius: 3px; overflow-wrap: anywhere; }
a { color: var(--blue); }
.toc { list-style: none; padding: 0; margin: 4px 0; display: flex; flex-wrap: wrap; gap: 4px 16px; }
.badge { font-size: 14px; padding: 3px 10px; border-radius: 12px; color: #fff; vertical-align: middle; }
.badge.pass { background: var(--ok); } .badge.fail { background: var(--bad); }
.ok { color: var(--ok); font-weight: 600; } .bad, .bad-text { color: var(--bad); font-weight: 600; }
.banner { margin: 12px 0; padding: 10px 14px; border-radius: 6px; border: 1px solid #e7c76a; background: #fff8e0; }
.cards { display: flex; flex-wrap: wrap; gap: 10px; margin: 10px 0; }
.card { min-width: 130px; padding: 8px 14px; border: 1px solid var(--line); border-radius: 8px;
  background: var(--soft); }
.card .v { font-size: 20px; font-weight: 650; } .card .k { color: var(--muted); font-size: 12px; }
.card .s { color: var(--muted); font-size: 11px; }
.card.ok .v { color: var(--ok); } .card.bad .v { color: var(--bad); }
.scroll { overflow-x: auto; }
table { border-collapse: collapse; margin: 6px 0 10px; font-size: 13px; }
th, td { border-bottom: 1px solid var(--line); padding: 4px 9px; text-align: left; vertical-align: top; }
th { background: var(--soft); font-weight: 600; white-space: nowrap; }
th.n, td.n { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
.msg { color: var(--muted); font-size: 12px; }
dl.kv { display: grid; grid-template-columns: max-content 1fr; gap: 2px 14px; margin: 6px 0; font-size: 13px; }
dl.kv dt { color: var(--muted); } dl.kv dd { margin: 0; overflow-wrap: anywhere; }
ul.warnings li { color: #8a5a00; }
.rate { display: inline-block; position: relative; width: 88px; text-align: right; }
.rate .bar { position: absolute; left: 0; top: 15%; height: 70%; background: #f3c5c1; border-radius: 2px; }
.rate .t { position: relative; }
.checkgrid { display: flex; flex-wrap: wrap; gap: 12px 16px; align-items: flex-start; margin-top: 12px; }
.check { border: 1px solid var(--line); border-radius: 8px; padding: 2px 12px 8px; flex: 0 1 auto;
  max-width: 830px; }
.check h3 { margin: 8px 0 2px; }
code.nowrap { white-space: nowrap; overflow-wrap: normal; }
.kind { color: var(--muted); font-weight: 400; font-size: 12px; }
.counts { margin: 2px 0 6px; font-size: 13px; }
.grid { display: grid; grid-template-columns: repeat(var(--n, 3), minmax(0, 250px)); gap: 6px 14px; }
figure { margin: 0; }
figcaption { font-size: 12px; color: var(--muted); line-height: 1.3; }
figcaption b { color: var(--fg); font-weight: 600; }
svg.chart { max-width: 100%; height: auto; display: block; }
svg.chart * { stroke-linejoin: round; stroke-linecap: butt; }
svg.chart text { font-family: system-ui, -apple-system, "Segoe UI", Roboto, Arial, sans-serif !important; }
.pair { display: flex; flex-wrap: wrap; gap: 16px 40px; align-items: flex-start; }
.pair > figure { flex: 0 1 auto; max-width: 100%; }
.pair > figure > figcaption { max-width: 460px; }
.notes { font-size: 12px; color: var(--muted); margin: 4px 0; }
.muted { color: var(--muted); font-size: 12px; }
.limit { color: #c8372d; font-weight: 600; }
.filter { margin: 8px 0; font-size: 13px; }
.filter input { width: 320px; max-width: 70vw; padding: 4px 8px; font: inherit; }
.filter select { padding: 3px; font: inherit; }
#example-count { color: var(--muted); margin-left: 8px; }
table.examples td { font-size: 12.5px; }
table.examples td.src { white-space: nowrap; color: var(--muted); }
.snip { white-space: pre-wrap; overflow-wrap: anywhere; max-height: 9.5em; overflow-y: auto; min-width: 260px;
  max-width: 560px; font-size: 12px; }
span.snip { display: block; max-height: none; margin-bottom: 3px; }
tr:target td { background: #fff3c4; }
@media print { .filter { display: none; } .snip { max-height: none; } }
"""
