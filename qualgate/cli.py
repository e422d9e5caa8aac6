"""Command line: ``qualgate filter``, ``qualgate rules``."""

from __future__ import annotations

import sys
import time
from typing import Any

import click

from qualgate import __version__
from qualgate.errors import ConfigError, InputError, QualgateError
from qualgate.untrusted import term

EXIT_PASS, EXIT_FAIL, EXIT_ERROR = 0, 1, 2
EXIT_INTERRUPTED = 130  # the shell's convention for a SIGINT stop
EXIT_BROKEN_PIPE = 141  # ... and for a SIGPIPE one


def _fail(exc: QualgateError) -> None:
    click.echo(f"qualgate: {term(exc)}", err=True)  # messages quote file names, ids and values from the data
    sys.exit(exc.exit_code)


class _Commands(click.Group):
    """Every command's way out: exit 1 means only "the gate failed", so anything unexpected exits 2 with one
    line (the traceback with QUALGATE_DEBUG=1), Ctrl-C exits 130, and a QualgateError that a command did not
    catch is reported as ``_fail`` does. click's own exits (usage errors: 2) and ``sys.exit`` pass through."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (click.exceptions.Exit, click.exceptions.Abort, click.ClickException):
            raise  # click.exceptions.Exit and Abort are RuntimeErrors: not internal errors
        except KeyboardInterrupt:
            click.echo("qualgate: interrupted", err=True)
            sys.exit(EXIT_INTERRUPTED)
        except BrokenPipeError:  # the reader went away (`qualgate rules | head`): the shell's SIGPIPE status, quietly
            import os

            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # the exit's own flush must not fail
            sys.exit(EXIT_BROKEN_PIPE)
        except QualgateError as exc:
            _fail(exc)
        except Exception as exc:
            import os

            if os.environ.get("QUALGATE_DEBUG", "") not in ("", "0"):
                import traceback

                traceback.print_exc()
            message = " ".join(str(exc).split())[:1000]
            click.echo(f"qualgate: internal error: {type(exc).__name__}: {term(message)} "
                       "(set QUALGATE_DEBUG=1 for the traceback)", err=True)
            sys.exit(EXIT_ERROR)


@click.group(cls=_Commands, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="qualgate")
def main() -> None:
    """Guard a training set against bad synthetic samples, with a recorded reason for every rejection."""


@main.command("filter")
@click.argument("inputs", nargs=-1, required=True)
@click.option("-c", "--config", "config", default="default", show_default=True,
              help="Shipped pack name (see `qualgate rules`) or a YAML file.")
@click.option("-o", "--output", "outdir", required=True, type=click.Path(file_okay=False),
              help="Folder for accepted.jsonl, rejected.jsonl, scores.parquet, report.json, report.md.")
@click.option("--text", default=None, help="Text view: 'auto', a field, or a template like '{instruction}\\n{output}'.")
@click.option("--id", "id_field", default=None, help="Field holding each record's id (default: content hash).")
@click.option("--field", "fields", multiple=True, metavar="ROLE=FIELD",
              help="Read a role the config names (instruction, input, output) from this record field, e.g. "
                   "--field output=response (repeatable; default: found in each file's first records).")
@click.option("--format", "fmt", type=click.Choice(["jsonl", "json", "csv", "tsv", "parquet"]), default=None,
              help="Input format (default: from the file extension; '-' reads JSONL from stdin).")
@click.option("--all-findings", is_flag=True, help="Run every check on every sample, even after one failed.")
@click.option("--strict", is_flag=True, help="Stop with exit 2 at the first malformed record.")
@click.option("-j", "--workers", default=0, show_default=True,
              help="Worker processes for per-sample checks (0 = all cores).")
@click.option("--batch-size", default=512, show_default=True, help="Samples per batch.")
@click.option("--baseline", multiple=True, help="Dataset the inputs would join (repeatable): duplicate checks "
              "compare with it; its records are never rejected or written.")
@click.option("--private", multiple=True, help="Private records no sample may copy or paraphrase (repeatable; "
              "used by private_leak). Only their ids are ever written.")
@click.option("--reference", multiple=True, help="Human reference data (repeatable): the diversity report and "
              "the outlier check measure the accepted set against it; perplexity trains on it.")
@click.option("--benchmark", "benchmarks", multiple=True, metavar="NAME=PATH",
              help="A benchmark no sample may contain (repeatable; used by contamination, -c decontam): a JSONL/JSON/"
              "CSV/Parquet file, an index from `qualgate bench-index build`, or NAME alone for a shipped index.")
@click.option("--benchmark-text", "benchmark_texts", multiple=True, metavar="NAME=TEMPLATE",
              help="Text view of a benchmark file's items, e.g. gsm8k='{question}\\n{answer}' (default: auto).")
@click.option("--cache-dir", type=click.Path(file_okay=False), default=None,
              help="Where embeddings and set indexes are cached (default: $QUALGATE_CACHE_DIR or ~/.cache/qualgate).")
@click.option("--no-cache", is_flag=True, help="Neither read nor write any cache.")
@click.option("--overrides", "overrides", type=click.Path(dir_okay=False), default=None,
              help="Reviewer decisions (YAML or JSONL: id, decision accept|reject, reviewer, note), applied last.")
@click.option("--engine", type=click.Choice(["local", "ray"]), default="local", show_default=True,
              help="local: this machine (-j processes); ray: -j Ray actors (extra `ray`), same decisions.")
@click.option("--ray-address", default=None, help="Ray cluster to join (default: a local Ray instance).")
@click.option("--checkpoint", "checkpoint", type=click.Path(file_okay=False), default=None,
              help="Keep each scored batch (and the Ray engine's shuffle results) in this folder: the same command "
              "run again after a crash or a kill resumes after the finished work.")
@click.option("--html/--no-html", default=True, show_default=True,
              help="Write report.html (charts via matplotlib: about a second).")
@click.option("-q", "--quiet", is_flag=True, help="No progress bar and no summary line.")
def filter_cmd(inputs: tuple[str, ...], config: str, outdir: str, text: str | None, id_field: str | None,
               fields: tuple[str, ...], fmt: str | None, all_findings: bool, strict: bool, workers: int,
               batch_size: int, baseline: tuple[str, ...], private: tuple[str, ...], reference: tuple[str, ...],
               benchmarks: tuple[str, ...], benchmark_texts: tuple[str, ...],
               cache_dir: str | None, no_cache: bool, overrides: str | None, engine: str, ray_address: str | None,
               checkpoint: str | None, html: bool, quiet: bool) -> None:
    """Filter INPUTS (JSONL, JSON, CSV, TSV, Parquet; '-' = stdin JSONL) into accepted and rejected records.

    Exit code 0 when the gate passes, 1 when it fails, 2 for usage, config or input errors.
    """
    try:
        _filter(inputs, config, outdir, text, id_field, fields, fmt, all_findings, strict, workers, batch_size,
                baseline, private, reference, cache_dir, no_cache, overrides, engine, ray_address, checkpoint, html,
                quiet, benchmarks, benchmark_texts)
    except KeyboardInterrupt:  # outside the run's own handler (loading models, indexing sets): a clean stop too
        click.echo("qualgate: interrupted", err=True)
        sys.exit(EXIT_INTERRUPTED)


def _filter(inputs: tuple[str, ...], config: str, outdir: str, text: str | None, id_field: str | None,
            fields: tuple[str, ...], fmt: str | None, all_findings: bool, strict: bool, workers: int, batch_size: int,
            baseline: tuple[str, ...], private: tuple[str, ...], reference: tuple[str, ...],
            cache_dir: str | None, no_cache: bool, overrides: str | None, engine: str, ray_address: str | None,
            checkpoint: str | None, html: bool, quiet: bool, benchmarks: tuple[str, ...] = (),
            benchmark_texts: tuple[str, ...] = ()) -> None:
    import os

    from qualgate.gate import Gate, default_cache_dir
    from qualgate.report import ReportBuilder
    from qualgate.runfolder import RunWriter

    try:
        cache = None if no_cache else (cache_dir or default_cache_dir())
        gate = Gate.from_config(config, text=text, id=id_field, fields=_role_fields(fields),
                                all_findings=all_findings, strict=strict,
                                workers=workers, batch_size=batch_size, cache_dir=cache, engine=engine,
                                ray_address=ray_address, checkpoint_dir=checkpoint)
        if overrides:
            gate.use_overrides(overrides)
        for role, paths in (("baseline", baseline), ("private", private), ("reference", reference)):
            if paths:
                gate.load_set(role, list(paths), fmt=fmt, cache_dir=cache)
        _load_benchmarks(gate, benchmarks, benchmark_texts, cache)
        if gate.needs_input_fit:
            names = ", ".join(c.name for c in gate.input_fit_checks())
            if "-" in inputs:
                raise ConfigError(f"{names} would fit on the input itself, which means reading it twice, and "
                                  "stdin can be read only once: pass --reference PATH or a file")
            if not quiet:
                click.echo(f"qualgate: no --reference: fitting {names} on the input itself (cross-fitted)", err=True)
            gate.load_set("input", list(inputs), fmt=fmt, cache_dir=cache)
    except QualgateError as exc:
        _fail(exc)
    start, builder, writer = time.perf_counter(), ReportBuilder(gate.config, gate.score_columns), None
    try:
        writer = RunWriter(outdir, gate.score_columns, html=html)  # in the try: a Ctrl-C here is clean too
        with _progress(quiet) as bar:
            if engine == "ray":  # read by Ray Data: local paths, s3://, gs://, ... and fsspec URLs
                from qualgate.engines.raydata import read

                records = read(list(inputs), fmt, ray_address, max_record_bytes=gate.config.input.max_record_bytes,
                               max_document_bytes=gate.config.input.max_document_bytes,
                               max_record_values=gate.config.input.max_record_values)
            else:
                records = gate.read(list(inputs), fmt)
            for batch in gate.batches(records):
                writer.write_all(batch)
                builder.add_all(batch)
                bar.update(len(batch))
        elapsed = time.perf_counter() - start
        report = gate.finish_report(builder, inputs=list(inputs), cwd=os.getcwd(), seconds=round(elapsed, 3),
                                    samples_per_second=round(builder.total / elapsed, 1) if elapsed else None)
        writer.close(report)
    except BaseException as exc:  # nothing under the final names, whatever stopped the run
        if writer is not None:
            writer.abort()
        if isinstance(exc, QualgateError):
            _fail(exc)
        if isinstance(exc, KeyboardInterrupt):  # Ctrl-C / SIGINT: a clean stop
            click.echo(f"qualgate: interrupted after {builder.total:,} records; no output written to {outdir}",
                       err=True)
            sys.exit(EXIT_INTERRUPTED)
        raise
    if not quiet:
        click.echo(report.summary_line(), err=True)
        from qualgate.sample import FieldMap

        for file, used in report["run"].get("fields", {}).items():  # roles read from other fields
            click.echo(f"  fields: {term(FieldMap.describe(used))} in {term(file)}", err=True)
        for n in report.data.get("notes", []):
            click.echo(f"  note: {term(n)}", err=True)
        for w in [*report["warnings"], *(gate.overrides.problems() if gate.overrides else [])]:
            click.echo(f"  warning: {term(w)}", err=True)
        for c in report["gate"]["conditions"]:
            if not c["passed"]:
                click.echo(f"  gate condition failed: {term(c['name'])} = {term(c['value'])} "
                           f"(limit {term(c['limit'])})", err=True)
                if c.get("message"):
                    click.echo(f"    {term(c['message'])}", err=True)
    sys.exit(EXIT_PASS if report.passed else EXIT_FAIL)


def _load_benchmarks(gate: Any, items: tuple[str, ...], texts: tuple[str, ...], cache: Any) -> None:
    """``--benchmark NAME=PATH`` (or a shipped NAME) with ``--benchmark-text NAME=TEMPLATE``, loaded into ``gate``."""
    for name, where, view in _benchmark_specs(items, texts):
        gate.load_benchmark(name, where, text=view, build=False)
    if items:
        gate.build_benchmark_checks(cache)


def _benchmark_specs(items: tuple[str, ...], texts: tuple[str, ...]) -> list[tuple[str, str | None, str | None]]:
    """(name, absolute path or None for a shipped index, text view) of each ``--benchmark``."""
    import os

    named: dict[str, str | None] = {}
    for item in items:
        name, sep, path = item.partition("=")
        if not name.strip() or (sep and not path.strip()):
            raise click.BadParameter(f"{item!r}: expected NAME=PATH, or NAME for a shipped index",
                                     param_hint="--benchmark")
        if name.strip() in named:
            raise click.BadParameter(f"benchmark {name.strip()!r} given twice", param_hint="--benchmark")
        named[name.strip()] = os.path.abspath(path.strip()) if sep else None  # before a check changes directory
    views: dict[str, str] = {}
    for item in texts:
        name, sep, template = item.partition("=")
        if not sep or name.strip() not in named:
            raise click.BadParameter(f"{item!r}: expected NAME=TEMPLATE for a NAME given with --benchmark",
                                     param_hint="--benchmark-text")
        views[name.strip()] = template
    return [(name, where, views.get(name)) for name, where in named.items()]


def _role_fields(items: tuple[str, ...]) -> dict[str, str] | None:
    """``--field ROLE=FIELD`` options as ``input.fields`` entries."""
    from qualgate.sample import ROLES

    out: dict[str, str] = {}
    for item in items:
        role, sep, name = item.partition("=")
        if not sep or role.strip() not in ROLES or not name.strip():
            raise click.BadParameter(f"{item!r}: expected ROLE=FIELD with ROLE one of {', '.join(ROLES)}",
                                     param_hint="--field")
        out[role.strip()] = name.strip()
    return out or None


class _NoProgress:
    """The progress bar nobody sees (``-q``, or stderr is no terminal): tqdm is not even imported (5 ms)."""

    def __enter__(self) -> _NoProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def update(self, n: int) -> None:
        return None


def _progress(quiet: bool) -> Any:
    if quiet or not sys.stderr.isatty():
        return _NoProgress()
    from tqdm import tqdm

    return tqdm(unit=" samples", file=sys.stderr, mininterval=0.5)


@main.command("report")
@click.argument("run_dir", type=click.Path(file_okay=False, exists=True))
@click.option("--format", "fmt", type=click.Choice(["markdown", "json", "junit", "html"]), default="markdown",
              show_default=True, help="markdown for PR comments, json for programs, junit for CI test dashboards.")
@click.option("-o", "--output", "output", type=click.Path(dir_okay=False), default=None,
              help="Write to this file instead of stdout.")
def report_cmd(run_dir: str, fmt: str, output: str | None) -> None:
    """Print (or re-render) the report of a finished run in RUN_DIR from its report.json.

    Exit 0 when the run's gate passed, 1 when it failed, 2 for errors.
    """
    import json
    from pathlib import Path

    from qualgate.report import Report
    from qualgate.runfolder import REPORT_JSON

    path = Path(run_dir) / REPORT_JSON
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        _fail(InputError(f"cannot read the run's report: {exc}", file=str(path)))
    report = Report(data)
    if fmt == "html":
        from qualgate.html import render_html

        text = render_html(data)
    else:
        text = {"markdown": report.to_markdown, "json": report.to_json, "junit": report.to_junit}[fmt]()
    if output:
        from qualgate.io import atomic_write

        with atomic_write(output) as fh:
            fh.write(text.encode("utf-8"))
    else:
        click.echo(text, nl=False)
    sys.exit(EXIT_PASS if report.passed else EXIT_FAIL)


@main.command("card")
@click.argument("run_dir", type=click.Path(file_okay=False, exists=True))
@click.option("--format", "fmt", type=click.Choice(["md", "json", "yaml"]), default="md", show_default=True,
              help="md: CARD.md (Hugging Face YAML front matter and a summary); json: card.json; yaml: card.json as "
                   "YAML.")
@click.option("-o", "--output", "output", type=click.Path(dir_okay=False), default=None,
              help="Write to this file instead of stdout.")
@click.option("--rebuild", is_flag=True, help="Build the card again from report.json, scores.parquet and "
              "rejected.jsonl (and hash the inputs again, where the run found them; a warning names any that is "
              "missing or changed since) instead of reading card.json.")
@click.option("--source-dataset", "source_datasets", multiple=True, metavar="NAME",
              help="Hugging Face source_datasets entry (repeatable; default: the input file names). Patches the card.")
@click.option("--task-category", "task_categories", multiple=True, metavar="NAME",
              help="Hugging Face task_categories entry, e.g. text-generation (repeatable). Patches the card.")
def card_cmd(run_dir: str, fmt: str, output: str | None, rebuild: bool, source_datasets: tuple[str, ...],
             task_categories: tuple[str, ...]) -> None:
    """Print the provenance card of the run in RUN_DIR: config and its sha256, inputs with sha256 and counts,
    models, per-check thresholds and counts, gate result, diversity and leak summaries.

    Reads card.json, or builds the card from the run's files when there is none (older runs). Exit 0, or 2 for
    errors.
    """
    from qualgate.card import load_card, render

    try:
        card = load_card(run_dir, rebuild=rebuild, source_datasets=list(source_datasets) or None,
                         task_categories=list(task_categories))
        text = render(card, fmt)
    except QualgateError as exc:
        _fail(exc)
    if output:
        from qualgate.io import atomic_write

        with atomic_write(output) as fh:
            fh.write(text.encode("utf-8"))
    else:
        click.echo(text, nl=False)


@main.command("tune")
@click.option("--run", "run_dir", required=True, type=click.Path(file_okay=False, exists=True),
              help="Output folder of a `qualgate filter` run.")
@click.option("--set", "settings", multiple=True, metavar="CHECK.PARAM=VALUE",
              help="A new parameter value (repeatable); VALUE is read as YAML (numbers, lists, null).")
@click.option("--overrides", type=click.Path(dir_okay=False, exists=True), default=None,
              help="Reviewer decisions to apply instead of the run's own.")
@click.option("--labels", "labels", multiple=True, type=click.Path(dir_okay=False, exists=True),
              help="Human labels (JSONL, CSV or YAML: id, label accept|reject; an overrides file works too; "
                   "repeatable): report precision/recall/F1 per check and the thresholds that match them best.")
@click.option("--objective", type=click.Choice(["gate", "check"]), default="gate", show_default=True,
              help="With --labels: choose each threshold by the whole gate's F1, or by the check's own.")
@click.option("--min-positives", type=click.IntRange(min=1), default=20, show_default=True,
              help="With --labels: warn about (and do not --apply) a threshold resting on fewer labelled rejects.")
@click.option("--apply", "apply_to", type=click.Path(dir_okay=False), default=None,
              help="With --labels: write the run's config with the best thresholds (those resting on enough "
                   "labelled rejects) to this YAML file.")
@click.option("-o", "--write", "outdir", type=click.Path(file_okay=False), default=None,
              help="Write the re-decided run (records, scores, reports) to this folder.")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True)
def tune_cmd(run_dir: str, settings: tuple[str, ...], overrides: str | None, labels: tuple[str, ...],
             objective: str, min_positives: int, apply_to: str | None, outdir: str | None, fmt: str) -> None:
    """Re-decide a finished run with new thresholds from its stored scores, without recomputing anything.

    Prints how many samples each check rejects before and after; with --labels, how the decisions agree
    with human labels and which threshold of each check agrees best. Exit 0 when the re-decided gate
    passes, 1 when it fails, 2 for errors.
    """
    import json

    from qualgate.overrides import load_overrides
    from qualgate.tune import render, tune, write

    if apply_to and not labels:
        _fail(ConfigError("--apply needs --labels", file="--apply"))
    report = combined = None
    try:
        ov = load_overrides(overrides) if overrides else None
        if labels:
            from qualgate import labels as lab

            found = lab.load_labels(list(labels))
            tuned = tune(run_dir, list(settings), overrides=ov, records=outdir is not None or lab.needs_records(found),
                         all_scores=True)
            report = lab.evaluate(tuned, found, objective=objective, min_positives=min_positives)
            if objective == "gate":
                combined = lab.combine(tuned, report, found, list(settings), overrides=ov,
                                       records=lab.needs_records(found))
        else:
            tuned = tune(run_dir, list(settings), overrides=ov, records=outdir is not None)
        passed = write(tuned, outdir).passed if outdir is not None else tuned.gate_passed()
        if apply_to and report is not None:
            from qualgate.io import atomic_write

            if combined is None:
                raise ConfigError("--apply needs --objective gate (changes are combined by the gate's F1)",
                                  file="--apply")
            with atomic_write(apply_to) as fh:
                fh.write(lab.apply_snippet(report, combined).encode("utf-8"))
    except QualgateError as exc:
        _fail(exc)
    if fmt == "json":
        click.echo(json.dumps({**tuned.to_dict(), "gate_passed": passed, "written_to": outdir,
                               **({"labels": {**report.to_dict(), "combined": combined.to_dict() if combined else None},
                                   "applied_to": apply_to} if report else {})},
                              indent=2, ensure_ascii=False, default=str))
    else:
        verdict = f"gate {'PASSED' if passed else 'FAILED'}" + (f"; written to {outdir}" if outdir else "")
        if report is None:
            click.echo(render(tuned) + verdict)
        else:  # without --set the counts table says nothing: only the labels report
            click.echo((render(tuned) + "\n" if settings else "") + lab.render(report, combined)
                       + (f"config written to {apply_to}\n" if apply_to else "") + verdict)
    sys.exit(EXIT_PASS if passed else EXIT_FAIL)


@main.command("rules")
@click.argument("name", required=False)
def rules_cmd(name: str | None) -> None:
    """List check kinds and shipped packs, or show one of them (NAME) with its parameters."""
    from qualgate.checks import REGISTRY
    from qualgate.config import load_config
    from qualgate.packs import pack_names, pack_path

    if name is None:
        click.echo("Checks (use as `check: KIND` in a config):")
        for kind in sorted(REGISTRY):
            cls = REGISTRY[kind]
            click.echo(f"  {kind:<20} {cls.doc()}")
            click.echo(f"  {'':<20} parameters: {', '.join(cls.params_model.model_fields)}")
        click.echo("\nPacks (use as `-c NAME` or `extends: NAME`):")
        for pack in pack_names():
            try:
                desc = load_config(pack).description
            except QualgateError as exc:
                desc = f"(broken: {exc})"
            click.echo(f"  {pack:<14} {term(desc)}")
        click.echo("\n`qualgate rules NAME` shows one check or pack in full.")
        return
    if name in REGISTRY:
        cls = REGISTRY[name]
        click.echo(f"{name}: {cls.doc()}\n\nscores: {', '.join(cls.score_names)}\nparameters:")
        for pname, f in cls.params_model.model_fields.items():
            default = "required" if f.is_required() else f"default {f.get_default(call_default_factory=True)!r}"
            click.echo(f"  {pname:<16} {f.description or ''} ({default})")
        return
    path = pack_path(name)
    if path is None:
        click.echo(f"qualgate: no check or pack named {name!r}; `qualgate rules` lists them", err=True)
        sys.exit(EXIT_ERROR)
    try:
        cfg = load_config(name)
    except QualgateError as exc:
        _fail(exc)
    click.echo(f"pack {name} ({path}): {term(cfg.description)}\n")
    click.echo(f"input: text={cfg.input.text!r} id={cfg.input.id!r}")
    for spec in cfg.checks:
        params = ", ".join(f"{k}={v!r}" for k, v in spec.params.model_dump(exclude_defaults=True).items())
        click.echo(f"  {spec.name:<16} {spec.kind:<12} {params}")
    cond = cfg.gate.model_dump(exclude_defaults=True)
    click.echo(f"gate: {cond or 'no conditions'}")


class _CheckCommand(click.Command):
    """Notes whether the file list came after ``--``, for ``--hook``."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        ctx.meta["qualgate.end_of_options"] = "--" in args
        return super().parse_args(ctx, args)


@main.command("check", cls=_CheckCommand)
@click.argument("files", nargs=-1, required=True)
@click.option("--base", default=None, help="Git revision to compare with (default: HEAD under pre-commit, else the "
              "merge base with the default branch).")
@click.option("-c", "--config", "config", default="default", show_default=True, help="Pack name or YAML file.")
@click.option("--text", default=None, help="Text view (overrides the config).")
@click.option("--id", "id_field", default=None, help="Field holding each record's id.")
@click.option("--field", "fields", multiple=True, metavar="ROLE=FIELD",
              help="Read a role (instruction, input, output) from this record field (repeatable).")
@click.option("--format", "out_format", type=click.Choice(["markdown", "json"]), default="markdown",
              show_default=True, help="Summary on stdout.")
@click.option("--input-format", "fmt", type=click.Choice(["jsonl", "json", "csv", "tsv", "parquet"]), default=None,
              help="Input format (default: from the file extension).")
@click.option("--max-listed", default=50, show_default=True, help="Rejected records listed in the Markdown summary.")
@click.option("--cache-dir", type=click.Path(file_okay=False), default=None,
              help="Where baseline indexes and embeddings are cached (default: $QUALGATE_CACHE_DIR or "
                   "~/.cache/qualgate).")
@click.option("--overrides", type=click.Path(dir_okay=False), default=None,
              help="Reviewer decisions (YAML or JSONL: id, sha256, decision, reviewer, note) applied after the checks; "
                   "read from the base revision (see --trust-worktree).")
@click.option("--hook", is_flag=True, help="Run as a pre-commit hook: refuse to run unless the file names come after "
              "'--' (the shipped hooks' args end with it), so a committed file named like an option stays a file.")
@click.option("--trust-worktree", is_flag=True,
              help="Read the config and the overrides from the working tree instead of the base revision. Only where "
                   "the change itself is trusted: otherwise a pull request could bring the rules that judge it.")
@click.option("--benchmark", "benchmarks", multiple=True, metavar="NAME=PATH",
              help="A benchmark no added record may contain (repeatable; -c decontam): a data or index file (inside "
              "the repository: the base revision's, unless --trust-worktree), or NAME for a shipped index.")
@click.option("--benchmark-text", "benchmark_texts", multiple=True, metavar="NAME=TEMPLATE",
              help="Text view of a benchmark file's items (default: auto).")
def check_cmd(files: tuple[str, ...], base: str | None, config: str, text: str | None, id_field: str | None,
              fields: tuple[str, ...], out_format: str, fmt: str | None, max_listed: int, cache_dir: str | None,
              overrides: str | None, hook: bool, trust_worktree: bool, benchmarks: tuple[str, ...] = (),
              benchmark_texts: tuple[str, ...] = ()) -> None:
    """Check only the records a change adds to dataset FILES, against the records already there.

    The config and the overrides file come from the base revision (a shipped pack, or the base's version of the
    file), so a pull request cannot change the rules that judge it. Exit code 0 when every added record passes,
    1 when one is rejected or a gate condition fails, 2 for errors (including a base that equals the commit under
    test). The Markdown summary is also appended to $GITHUB_STEP_SUMMARY when that is set.
    """
    import json
    import os

    from qualgate.check import (
        TrustedFiles,
        added_records,
        default_base,
        find_changes,
        repo_root,
        summary_json,
        summary_markdown,
        temp_workdir,
        vacuous_base,
        working_dir,
    )
    from qualgate.gate import Gate, default_cache_dir
    from qualgate.report import ReportBuilder

    if hook and not click.get_current_context().meta.get("qualgate.end_of_options"):
        _fail(ConfigError("--hook: the hook's args must end with '--' (args: [-c, instruct, --]), or a committed file "
                          "named like an option (--config=x.json) would set that option"))
    bench_specs = _benchmark_specs(benchmarks, benchmark_texts)  # paths as the user's working directory names them
    try:
        with temp_workdir() as tmp:
            from pathlib import Path

            cache = os.path.abspath(cache_dir) if cache_dir else default_cache_dir()
            root = repo_root(files[0])
            ref = base or default_base(root)
            trusted = None if trust_worktree else TrustedFiles(root, ref, Path(tmp) / "base")
            config_ref = config if trusted is None else trusted.config(config)
            overrides_file = overrides if trusted is None or not overrides else trusted.overrides(overrides)
            with working_dir(None if trusted is None else trusted.cwd()):
                gate = Gate.from_config(config_ref, text=text, id=id_field, fields=_role_fields(fields), workers=1,
                                        cache_dir=cache)
                for name, where, view in bench_specs:  # from the command line; inside the repository, the base's
                    if trusted is not None and where is not None:
                        where = trusted.benchmark(where)
                    gate.load_benchmark(name, where, text=view, build=False)
                if bench_specs:
                    gate.build_benchmark_checks(cache)
                if overrides_file:
                    gate.use_overrides(overrides_file, require_hash=not trust_worktree)
            changes = find_changes(list(files), ref, fmt, Path(cache) / "check-base" if cache else Path(tmp),
                                   gate.config.input)
            if why := vacuous_base(changes):
                raise InputError(why, file=changes[0].path)
            base_files = [c.base_file for c in changes if c.base_file]
            with working_dir(None if trusted is None else trusted.cwd()):
                if base_files:
                    gate.load_set("baseline", base_files, fmt=fmt, cache_dir=cache)
                added = list(added_records(changes))
                if gate.needs_input_fit:
                    gate.fit_input(added)
                builder = ReportBuilder(gate.config, gate.score_columns)
                decisions = []
                for d in gate.stream(added):
                    builder.add(d)
                    decisions.append(d)
                report = gate.finish_report(builder, inputs=list(files))
    except QualgateError as exc:
        _fail(exc)
    failed = [f"{c['name']} = {c['value']} (limit {c['limit']})" for c in report["gate"]["conditions"]
              if not c["passed"]]
    passed = report.passed and all(d.accepted for d in decisions)
    origin = "working tree" if trusted is None else f"base {changes[0].base}"
    judged_by = f"{gate.config.identity()}, from the {origin}"
    benches = gate.benchmarks_read()
    if benches:
        judged_by += "; benchmarks " + ", ".join(f"{b['name']} ({b['file']} sha256 {b['sha256'][:12]})"
                                                  for b in benches)
    notes = ([] if trusted is None else trusted.notes) + (gate.overrides.problems() if gate.overrides else [])
    markdown = summary_markdown(changes, decisions, passed, failed, max_listed, judged_by, notes)
    if out_format == "json":
        out = summary_json(changes, decisions, passed, report.data)
        out["config"] = {"label": gate.config.label, "sha256": gate.config.digest(), "from": origin}
        out["notes"] = notes
        if benches:
            out["benchmarks"] = benches
        click.echo(json.dumps(out, indent=2, default=str))
    else:
        click.echo(markdown, nl=False)
    if os.environ.get("GITHUB_STEP_SUMMARY"):
        with open(os.environ["GITHUB_STEP_SUMMARY"], "a", encoding="utf-8") as fh:
            fh.write(markdown)
    sys.exit(EXIT_PASS if passed else EXIT_FAIL)


@main.command("explain")
@click.argument("sample_id")
@click.option("--run", "run_dir", required=True, type=click.Path(file_okay=False, exists=True),
              help="Output folder of a `qualgate filter` run.")
@click.option("--format", "out_format", type=click.Choice(["text", "json"]), default="text", show_default=True)
def explain_cmd(sample_id: str, run_dir: str, out_format: str) -> None:
    """Every finding and score a run recorded for SAMPLE_ID, with the kept sample beside a duplicate."""
    import json

    from qualgate.explain import explain, render

    try:
        info = explain(run_dir, sample_id)
    except QualgateError as exc:
        _fail(exc)
    click.echo(json.dumps(info, indent=2, default=str) if out_format == "json" else render(info), nl=False)


@main.command("schema")
@click.option("-o", "--output", type=click.Path(dir_okay=False), default=None,
              help="Write to a file (default: stdout).")
def schema_cmd(output: str | None) -> None:
    """Print the JSON Schema of config files (for editors: yaml-language-server, VS Code, PyCharm)."""
    import json

    from qualgate.config import config_json_schema

    text = json.dumps(config_json_schema(), indent=2) + "\n"
    if output:
        from qualgate.io import atomic_write

        with atomic_write(output) as fh:
            fh.write(text.encode("utf-8"))
    else:
        click.echo(text, nl=False)


@main.group("bench-index")
def bench_index_group() -> None:
    """Hashed n-gram indexes of benchmarks (hashes and item ids, no text) for the contamination check."""


@bench_index_group.command("build")
@click.argument("name")
@click.argument("files", nargs=-1, required=True)
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False), help="Index file to write (.npz).")
@click.option("-n", "n", default=13, show_default=True, type=click.IntRange(5, 50), help="Word n-gram size.")
@click.option("--text", default=None, help="Text view of the items: 'auto', a field, or a template like "
              "'{question}\\n{answer}' (default: auto).")
@click.option("--id", "id_field", default=None, help="Field holding each item's id (default: id, task_id, ... "
              "else the row number).")
@click.option("--format", "fmt", type=click.Choice(["jsonl", "json", "csv", "tsv", "parquet"]), default=None)
@click.option("--licence", default=None, help="The benchmark's licence and origin, recorded in the index.")
def bench_index_build(name: str, files: tuple[str, ...], output: str, n: int, text: str | None, id_field: str | None,
                      fmt: str | None, licence: str | None) -> None:
    """Build the hashed index of benchmark NAME from FILES you have (nothing is downloaded).

    The index holds 64-bit n-gram hashes, item ids, counts and each file's sha256: no benchmark text.
    Use it with `qualgate filter -c decontam --benchmark NAME=OUTPUT`.
    """
    import os

    from qualgate.decontam import BenchmarkIndex, open_benchmark

    try:
        if not output.endswith(".npz"):
            raise ConfigError("the index file name must end in .npz", key="--output")
        parts = []
        for path in files:
            bench = open_benchmark(name, path, text=text, id=id_field, fmt=fmt)
            if bench.is_index:
                raise ConfigError("FILES are the benchmark's data files, not an index", file=path)
            texts, ids = bench.items()
            if len(files) > 1:
                ids = [f"{os.path.basename(path)}:{i}" for i in ids]
            parts.append(BenchmarkIndex.build(name, texts, ids, n,
                                              {**bench.provenance(), **({"licence": licence} if licence else {})}))
        index = BenchmarkIndex.merge_files(name, parts)
        index.save(output)
    except QualgateError as exc:
        _fail(exc)
    _show_index(index.describe(), output)


def _show_index(info: dict[str, Any], path: str) -> None:
    """The text of ``bench-index show``: every value from the index's meta (a file anyone can craft) escaped."""
    def count(value: Any) -> str:
        return f"{value:,}" if isinstance(value, int) else term(repr(value), 40)

    click.echo(f"{term(path)}: {info['items']:,} items, {info['ngrams']:,} {info['n']}-gram hashes "
               f"(index version {info['version']})")
    for b in info["benchmarks"]:
        click.echo(f"  {term(b['name'])}: {b['items']:,} items, {b['ngrams']:,} n-grams, {b['short_lines']:,} "
                   f"lines and items shorter than {info['n']} words ({count(b.get('short_items', 0))} items), "
                   f"{count(b.get('empty_items', 0))} empty; text view {term(repr(b.get('text')), 200)}, id field "
                   f"{term(b.get('id') or 'auto', 80)}")
        sources = b.get("sources")
        for src in sources if isinstance(sources, list) else []:
            if isinstance(src, dict):
                click.echo(f"    from {term(src.get('file'), 200)} sha256 {term(src.get('sha256'), 80)}")
        if b.get("licence"):
            click.echo(f"    licence: {term(b['licence'])}")


@bench_index_group.command("show")
@click.argument("path", type=click.Path(dir_okay=False, exists=True))
@click.option("--format", "out_format", type=click.Choice(["text", "json"]), default="text", show_default=True)
def bench_index_show(path: str, out_format: str) -> None:
    """Counts and provenance of a benchmark index file (it holds no text to show)."""
    import json

    from qualgate.decontam import BenchmarkIndex

    try:
        info = BenchmarkIndex.load(path).describe()
    except QualgateError as exc:
        _fail(exc)
    if out_format == "json":
        click.echo(json.dumps(info, indent=2))
    else:
        _show_index(info, path)


@main.group("lm")
def lm_group() -> None:
    """Language models for the perplexity check: train an n-gram model, score texts."""


@lm_group.command("train")
@click.argument("inputs", nargs=-1, required=True)
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False), help="ARPA file to write.")
@click.option("--order", default=3, show_default=True, type=click.IntRange(2, 6),
              help="n-gram order (KenLM reads orders 2 and up).")
@click.option("-c", "--config", "config", default="default", show_default=True,
              help="Pack or YAML whose input.text view is the text to train on.")
@click.option("--text", default=None, help="Text view: 'auto', a field, or a template (overrides the config).")
@click.option("--field", default=None, help="Train on this record field instead of the text view.")
@click.option("--format", "fmt", type=click.Choice(["jsonl", "json", "csv", "tsv", "parquet"]), default=None)
def lm_train(inputs: tuple[str, ...], output: str, order: int, config: str, text: str | None, field: str | None,
             fmt: str | None) -> None:
    """Train an interpolated modified Kneser-Ney model on human text INPUTS and save it as ARPA.

    Use it with `backend: ngram` and `model: PATH` (or with KenLM, which reads the same file).
    """
    from qualgate.config import load_config
    from qualgate.io import read_records
    from qualgate.lm.ngram import NgramModel
    from qualgate.lm.text import tokenizer
    from qualgate.sample import FieldProblem, TextSpec, make_sample

    try:
        cfg = load_config(config).with_input(text=text)
        spec = TextSpec(cfg.input.text)
        tok = tokenizer("v1")
        seqs: list[list[str]] = []
        skipped = 0
        for item in read_records(list(inputs), fmt, cfg.input.max_record_bytes, cfg.input.max_document_bytes,
                                 cfg.input.max_record_values):
            if item.record is None:
                skipped += 1
                continue
            sample = make_sample(item.record, spec, None, item.source)
            if sample.problem is not None and field is None:  # the gate would not train on it either
                skipped += 1
                continue
            try:
                seqs.append(tok(sample.view(field)))
            except FieldProblem:
                skipped += 1
        if not seqs:
            raise ConfigError("no usable text in the inputs", file=inputs[0])
        start = time.perf_counter()
        model = NgramModel.train(seqs, order, "v1")
        model.meta = {"trained_on": ",".join(inputs).replace(" ", "_")[:200], "texts": str(len(seqs))}
        model.write_arpa(output)
    except QualgateError as exc:
        _fail(exc)
    words = sum(len(s) for s in seqs)
    click.echo(f"trained order-{order} model on {len(seqs)} texts ({words} words, {skipped} skipped) in "
               f"{time.perf_counter() - start:.2f} s: n-grams {model.counts()} -> {output}", err=True)


if __name__ == "__main__":
    main()
