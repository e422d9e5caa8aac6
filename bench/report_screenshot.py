"""Screenshot of report.html for a real run: ``qualgate filter`` on Stanford Alpaca with the ``instruct`` pack and
the diversity panel against human-written Dolly, then a full-page capture by headless Chromium.

    python bench/report_screenshot.py                  # writes bench/report_alpaca.png
    python bench/report_screenshot.py --records 0 --no-diversity   # all 52,002 records, rules only

By default only the first 10,000 Alpaca records are filtered: the diversity panel embeds every accepted sample and
the 2,996 Dolly reference records with all-MiniLM-L6-v2, which on 2 CPU cores runs at ~55 texts/s (about four
minutes for 10,000 + 3,000; the whole of Alpaca would take ~16). The data stay where they are
(``../shared/data``, see its README); the subset, the run's outputs and the embedding cache go to a temporary
folder (``--work`` keeps them, and a re-run then reuses the cached embeddings).

The page is long (up to 50 example rejections per check): the whole page is captured (up to ``--max-height``
pixels), and when the PNG is over ``--max-bytes`` its colours are reduced to a 256-colour palette (Pillow,
which matplotlib depends on; the largest colour error stays ~10/255). Needs the ``embed`` extra for the diversity
panel and Chromium (``--chromium``, default /usr/bin/chromium).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT.parent / "shared" / "data"
CHROMIUM_FLAGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run", "--hide-scrollbars",
                  "--disable-background-networking", "--proxy-server=127.0.0.1:9", "--proxy-bypass-list=<-loopback>",
                  "--host-resolver-rules=MAP * ~NOTFOUND"]


def write_subset(src: Path, dest: Path, records: int) -> int:
    rows = json.loads(src.read_text(encoding="utf-8"))
    if records:
        rows = rows[:records]
    with dest.open("w", encoding="utf-8") as fh:
        for r in rows:
            fh.write(json.dumps(r, ensure_ascii=False) + "\n")
    return len(rows)


def page_height(chromium: str, report: Path, work: Path, width: int) -> int:
    """The rendered page's height: a wrapper page loads the report in an iframe and writes its scrollHeight into
    its own DOM, which ``--dump-dom`` prints (the report itself is not changed)."""
    wrapper = work / "measure.html"
    wrapper.write_text(
        f'<!DOCTYPE html><html><body style="margin:0"><iframe id="f" src="{report.as_uri()}" '
        f'style="width:{width}px;height:800px;border:0"></iframe><script>'
        'document.getElementById("f").addEventListener("load", function () {'
        'document.body.setAttribute("data-height", this.contentDocument.documentElement.scrollHeight);});'
        "</script></body></html>")
    out = subprocess.run([chromium, *CHROMIUM_FLAGS, f"--user-data-dir={work / 'chromium-measure'}",
                          "--allow-file-access-from-files", f"--window-size={width},800", "--virtual-time-budget=5000",
                          "--dump-dom", wrapper.as_uri()], capture_output=True, text=True, timeout=300, check=True)
    marker = 'data-height="'
    start = out.stdout.find(marker)
    if start < 0:
        raise SystemExit("could not measure the page height:\n" + out.stderr[-2000:])
    return int(out.stdout[start + len(marker):out.stdout.index('"', start + len(marker))])


def shrink_png(path: Path) -> None:
    """256 colours chosen to cover the image (MAXCOVERAGE keeps the few reds and blues of the charts exact
    where median-cut merged them away), no dithering: text stays crisp."""
    from PIL import Image

    with Image.open(path) as im:
        q = im.convert("RGB").quantize(colors=256, method=Image.Quantize.MAXCOVERAGE, dither=Image.Dither.NONE)
    q.save(path, optimize=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, default=DATA, help="folder holding alpaca_data.json and dolly_3k.json")
    ap.add_argument("--records", type=int, default=10_000, help="first N Alpaca records (0 = all)")
    ap.add_argument("--no-diversity", action="store_true", help="rules only (no embeddings)")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "report_alpaca.png")
    ap.add_argument("--work", type=Path, help="keep the subset, outputs and caches here (default: a temp folder)")
    ap.add_argument("--chromium", default="/usr/bin/chromium")
    ap.add_argument("--width", type=int, default=1400)
    ap.add_argument("--max-height", type=int, default=30_000, help="capture at most this many pixels")
    ap.add_argument("--max-bytes", type=int, default=2_000_000, help="palette-reduce a larger PNG")
    args = ap.parse_args()

    with tempfile.TemporaryDirectory(prefix="qualgate-shot-") as tmp:
        work = args.work or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        data = work / "alpaca.jsonl"
        n = write_subset(args.data / "alpaca_data.json", data, args.records)
        config = "instruct"
        cmd = [sys.executable, "-m", "qualgate.cli", "filter", str(data), "-o", str(work / "out"), "-q",
               "--cache-dir", str(work / "cache")]
        if not args.no_diversity:
            cfg = work / "instruct_diversity.yaml"
            cfg.write_text("version: 1\ndescription: instruct + the diversity report against Dolly (bench)\n"
                           "extends: instruct\ndiversity: {}\n")
            config = str(cfg)
            cmd += ["--reference", str(args.data / "dolly_3k.json")]
        cmd += ["-c", config]
        start = time.perf_counter()
        proc = subprocess.run(cmd, check=False)
        elapsed = time.perf_counter() - start
        if proc.returncode not in (0, 1):
            raise SystemExit(f"qualgate filter exited {proc.returncode}")
        report = work / "out" / "report.html"
        summary = json.loads((work / "out" / "report.json").read_text(encoding="utf-8"))
        print(f"{n:,} records in {elapsed:.1f} s (run: {summary['run'].get('seconds')} s): "
              f"{summary['accepted']:,} accepted, {summary['rejected']:,} rejected; "
              f"report.html {report.stat().st_size / 1e6:.2f} MB", file=sys.stderr)

        height = page_height(args.chromium, report, work, args.width)
        shot = min(height, args.max_height)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run([args.chromium, *CHROMIUM_FLAGS, f"--user-data-dir={work / 'chromium-shot'}",
                        f"--window-size={args.width},{shot}", "--virtual-time-budget=5000",
                        f"--screenshot={args.out.resolve()}", report.as_uri()],
                       capture_output=True, text=True, timeout=300, check=True)
        size = args.out.stat().st_size
        if size > args.max_bytes:
            shrink_png(args.out)
        print(f"page {height} px tall, captured {shot} px: {args.out} ({size / 1e6:.2f} MB from Chromium, "
              f"{args.out.stat().st_size / 1e6:.2f} MB written)", file=sys.stderr)


if __name__ == "__main__":
    main()
