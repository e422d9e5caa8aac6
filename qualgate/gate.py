"""Gate: the ordered checks of one config, run over samples in batches, cheapest first.

The gate holds a config's checks, makes samples of records, loads the sets its set-aware checks compare with,
and applies overrides and the diversity report; an engine (``engines.local``, ``engines.ray``) runs the
batches. Every input record yields exactly one Decision.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from qualgate.checks import Check, SetCheck
from qualgate.checks.base import RunContext
from qualgate.config import GateConfig, load_config
from qualgate.engines import local as local_engine
from qualgate.engines.base import Unparsed, frozen_gc, input_sample, sample_of
from qualgate.errors import InputError
from qualgate.findings import MALFORMED, Decision
from qualgate.io import RawRecord, dumps_record, read_records
from qualgate.preamble import HEAD as PREAMBLE_HEAD
from qualgate.preamble import fit_on_input, with_prefixes
from qualgate.repair import Repairer
from qualgate.report import Report, ReportBuilder
from qualgate.runfolder import rejected_record
from qualgate.sample import (
    ROLES,
    FieldMap,
    FieldWatch,
    Sample,
    SetUsage,
    Source,
    TextSpec,
    unparseable_sample,
)
from qualgate.sets import (
    SET_ROLES,
    LoadedSets,
    built_state,
    cache_path,
    load_cached,
    refuse_unusable,
    require_sets,
    warn_unusable,
)

if TYPE_CHECKING:
    from qualgate.diversity import DiversityTracker
    from qualgate.engines.checkpoint import Checkpoint
    from qualgate.overrides import Overrides


def default_workers() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


# ----------------------------------------------------------------------------------------- gate
@dataclass
class Result:
    """What ``Gate.run`` returns: every decision, in input order, and the report."""

    decisions: list[Decision]
    report: Report

    @property
    def accepted(self) -> list[Mapping[str, Any]]:
        return [d.sample.record for d in self.decisions if d.accepted and d.sample.record is not None]

    @property
    def rejected(self) -> list[dict[str, Any]]:
        return [rejected_record(d) for d in self.decisions if not d.accepted]


class InputRecords(Iterator[RawRecord]):
    """The records of local input files (``Gate.read``), parsed as they are read. ``Gate.stream`` may take the
    JSONL lines unparsed instead (``lines``), for its worker processes to parse."""

    def __init__(self, read: Callable[[bool], Iterator[RawRecord]]) -> None:
        self._read = read
        self._records: Iterator[RawRecord] | None = None

    def __next__(self) -> RawRecord:
        if self._records is None:
            self._records = self._read(False)
        return next(self._records)

    def lines(self) -> Iterator[RawRecord] | None:
        """The records with JSONL lines unparsed (``RawRecord.deferred``); None once reading has begun."""
        return self._read(True) if self._records is None else None


class Gate:
    """Runs one config's checks over records. Stateless between runs; safe to reuse."""

    def __init__(self, config: GateConfig, *, all_findings: bool = False, strict: bool = False,
                 workers: int = 1, batch_size: int = 512, cache_dir: str | Path | None = "auto",
                 engine: str = "local", ray_address: str | None = None,
                 checkpoint_dir: str | Path | None = None) -> None:
        """``cache_dir``: where embeddings and set indexes are cached; "auto" = ``default_cache_dir()``,
        None = no disk cache. ``engine``: "local" (this process, or ``workers`` processes) or "ray" (``workers``
        Ray actors on the cluster at ``ray_address``; None = the one this process joined, else a local one).
        ``checkpoint_dir``: keep each scored batch (and the Ray engine's shuffle results) there, so a killed run,
        started again, resumes after the work it finished (``engines.checkpoint``)."""
        from qualgate.engines import check_engine

        self.engine, self.ray_address = check_engine(engine), ray_address
        self.checkpoint_dir = Path(checkpoint_dir) if checkpoint_dir is not None else None
        #: this run's checkpoint (``checkpoint_dir``): what it loaded and stored
        self.checkpoint: Checkpoint | None = None
        #: what the engine measured in the last run (the Ray engine: seconds per stage, candidate pairs)
        self.engine_info: dict[str, Any] = {}
        if batch_size < 1:
            raise ValueError("batch_size must be >= 1")
        self.config = config
        self.cache_dir = default_cache_dir() if cache_dir == "auto" else (Path(cache_dir) if cache_dir else None)
        self.context = RunContext(self.cache_dir)
        self.all_findings = all_findings
        self.strict = strict
        self.workers = default_workers() if workers <= 0 else workers
        self.batch_size = batch_size
        self.spec = TextSpec(config.input.text)
        self.field_map = FieldMap(config.input.fields, named_fields(config))
        #: per input file of the last run: the record field read for each role named otherwise (``FieldMap``)
        self.fields_used: dict[str, dict[str, str]] = {}
        #: fixes made to each record before the checks read it (``config.repair``); None = none
        self.repairer = Repairer(config.repair, config.input.id) if config.repair and config.repair.active else None
        self._specs = {spec.name: spec for spec in config.checks}
        built = [spec.build() for spec in config.checks]
        for check in built:
            check.bind(self.context)
        self.checks = sorted(built, key=lambda c: c.cost)  # stable: config order within a cost
        lead = list(itertools.takewhile(lambda c: c.per_sample, self.checks))
        #: the leading per-sample checks, which an engine may run anywhere (worker processes, Ray actors) ...
        self.pooled_checks: list[Check[Any]] = lead
        #: the sets loaded for the set-aware checks (``load_set``, ``fit_input``): each check's index of its set
        self.sets = LoadedSets()
        #: reviewer overrides applied to every decision after all checks (``use_overrides``)
        self.overrides: Overrides | None = None
        self._auto_fit = False  # the input fit came from run(), so the next run() refits on its own records
        self.diversity: DiversityTracker | None = None
        if config.diversity is not None or config.gate.needs_diversity:
            self.diversity = self._new_diversity()

    def _new_diversity(self) -> DiversityTracker:
        from qualgate.diversity import DiversityConfig, DiversityTracker
        from qualgate.embed import check_model

        config = self.config.diversity or DiversityConfig()
        check_model(config.model, "the diversity report")  # wordllama needs no sentence-transformers
        return DiversityTracker(config, self.cache_dir)

    @property
    def local_checks(self) -> list[Check[Any]]:
        """The checks after ``pooled_checks`` (set-aware and model checks): they decide in this process, in input
        order; derived, so a check instance swapped in for a loaded set is always the one used."""
        return self.checks[len(self.pooled_checks):]

    @property
    def sets_info(self) -> dict[str, dict[str, Any]]:
        """Per role loaded: its files, records, cache use and unusable records (``LoadedSets.info``)."""
        return self.sets.info

    @property
    def baseline_info(self) -> dict[str, Any] | None:
        return self.sets_info.get("baseline")

    @classmethod
    def from_config(cls, source: str | Path | dict[str, Any] | GateConfig = "default", *,
                    text: str | None = None, id: str | None = None, fields: dict[str, str] | None = None,
                    **options: Any) -> Gate:
        """Build from a pack name, a YAML path, a dict or a GateConfig; ``text``/``id``/``fields`` override
        ``input`` (``fields``: role -> record field, role by role)."""
        return cls(load_config(source).with_input(text=text, id=id, fields=fields), **options)

    def use_overrides(self, overrides: str | Path | Overrides | None, *,
                      require_hash: bool = False) -> Overrides | None:
        """Apply a reviewer's decisions (a file path, or loaded Overrides; None removes them) to later runs.
        ``require_hash``: accept entries apply only with the record's ``sha256`` (``qualgate check``)."""
        from qualgate.overrides import Overrides, load_overrides

        self.overrides = overrides if isinstance(overrides, Overrides) or overrides is None else \
            load_overrides(overrides, require_hash=require_hash)
        return self.overrides

    @property
    def score_columns(self) -> list[str]:
        return [f"{c.name}.{k}" for c in self.checks for k in c.score_names]

    # ------------------------------------------------------------------------------------ samples
    def sample(self, item: Any, n: int, *, id_fallback: bool = False, fields: Mapping[str, str] | None = None,
               ) -> Sample:
        """Turn one input item (a dict, or a RawRecord from a reader) into a Sample. ``id_fallback``: a record
        without a usable id takes its content hash (``make_sample``), as records of compared-with sets do.
        ``fields``: role -> record field for the item's file (``samples`` finds them)."""
        if isinstance(item, RawRecord):
            return input_sample(item.parsed(self.config.input.max_record_values), self.spec, self.config.input.id,
                                self.repairer, id_fallback, fields)
        src = Source("<records>", n, "item")
        if isinstance(item, Mapping):
            return self._sample_of(item, src, None, id_fallback, fields)
        return unparseable_sample("not_an_object", f"expected a mapping, got {type(item).__name__}", src,
                                  dumps_record(item))

    def _sample_of(self, record: Mapping[str, Any], source: Source, raw: bytes | None,
                   id_fallback: bool, fields: Mapping[str, str] | None = None) -> Sample:
        return sample_of(record, source, raw, self.spec, self.config.input.id, self.repairer, id_fallback, fields)

    def samples(self, records: Iterable[Any], *, id_fallback: bool = False,
                used: dict[str, dict[str, str]] | None = None, unparsed_after: int | None = None) -> Iterator[Sample]:
        """The Samples of ``records``, in order, each file's roles read from the fields its first records
        name them by (``FieldMap``); ``used`` collects, per file, the roles read from another field.
        ``unparsed_after``: deferred JSONL lines (``RawRecord.deferred``) after that many records stay unparsed
        (``Unparsed``, for worker processes to parse); the others are parsed here."""
        max_values = self.config.input.max_record_values
        for file, group in itertools.groupby(enumerate(records, start=1), key=lambda t: _file_of(t[1])):
            head = [(n, item.parsed(max_values) if isinstance(item, RawRecord) else item)
                    for n, item in itertools.islice(group, FieldMap.LOOK_AT if self.field_map.auto else 0)]
            fields = self.field_map.resolve(item.record if isinstance(item, RawRecord) else item for _, item in head)
            if fields and used is not None:
                used[file] = fields
            for n, item in itertools.chain(head, group):
                if unparsed_after is not None and n > unparsed_after and isinstance(item, RawRecord) and item.deferred:
                    yield Unparsed("", None, raw=item.raw, source=item.source, fields=fields)
                else:
                    yield self.sample(item, n, id_fallback=id_fallback, fields=fields)

    def read(self, paths: list[str], fmt: str | None = None) -> InputRecords:
        """The records of local ``paths`` under this config's input limits (``input.max_record_bytes``,
        ``input.max_document_bytes``, ``input.max_record_values``)."""
        limits = self.config.input
        return InputRecords(lambda defer: read_records(paths, fmt, limits.max_record_bytes, limits.max_document_bytes,
                                                       limits.max_record_values, defer))

    def _parses_in_workers(self) -> bool:
        """Whether worker processes parse the input (``engines.local.features_pooled``): a local run in processes,
        without per-sample checks (those run in the workers on samples the main process made), repairs (timed
        here) or a checkpoint (which stores scored batches of samples)."""
        return (self.engine == "local" and self.checkpoint_dir is None and self.workers > 1 and not self.pooled_checks
                and self.repairer is None and any(c.has_features for c in self.set_checks))

    def parsed(self, batch: list[Sample]) -> list[Sample]:
        """``batch`` with its unparsed lines (``Unparsed``) parsed here."""
        return [self.sample(RawRecord(s.source or Source("<records>", 0), None, s.raw, deferred=True), 0,
                            fields=s.fields) if isinstance(s, Unparsed) else s for s in batch]

    # ------------------------------------------------------------------------------------- baseline
    @property
    def set_checks(self) -> list[SetCheck[Any]]:
        return [c for c in self.checks if isinstance(c, SetCheck)]

    def _fresh_set_checks(self) -> None:
        """New index state for every run: the baseline (if loaded) and nothing else."""
        for i, check in enumerate(self.checks):
            if isinstance(check, SetCheck):
                fresh = self._build_set_check(check.name)
                if check.name in self.sets.state:
                    fresh.import_state(self.sets.state[check.name])
                self.checks[i] = fresh

    def load_baseline(self, paths: Sequence[str], *, fmt: str | None = None,
                      cache_dir: str | Path | None = None) -> dict[str, Any]:
        """Index the dataset new samples would join. Its records are compared with, never rejected."""
        return self.load_set("baseline", paths, fmt=fmt, cache_dir=cache_dir)

    def load_set(self, role: str, paths: Sequence[str], *, fmt: str | None = None,
                 cache_dir: str | Path | None = None) -> dict[str, Any]:
        """Index a set the checks compare with: ``baseline`` (the dataset the inputs join), ``private``
        (records nothing may copy) or ``reference`` (human data: outliers and the diversity report).

        Each set-aware check's index is cached in ``cache_dir`` under a key made of the files' content,
        the check's parameters and the text view, so a second run does not recompute it. Loading a role
        again replaces what was loaded for it before. ``input`` fits the checks that learn from the input
        itself (``input_fit_checks``) on these files, which the run then reads again.
        """
        import xxhash

        if role not in SET_ROLES and role != "input":
            raise ValueError(f"unknown set role {role!r}; one of {', '.join(SET_ROLES)}")
        for path in paths:  # before anything loaded earlier is replaced
            if not os.path.isfile(path):
                raise InputError(f"{role} file not found", file=path)
        digest = xxhash.xxh3_128()
        for path in paths:
            digest.update(f"{os.path.abspath(path)}|{fmt}|".encode("utf-8", "surrogatepass"))
            with open(path, "rb") as fh:
                while chunk := fh.read(1 << 22):
                    digest.update(chunk)
        info = self._index_set(role, lambda: self.read(list(paths), fmt), digest.hexdigest(),
                               Path(cache_dir) if cache_dir is not None else None, list(paths))
        if role == "input":
            self._auto_fit = False
        return info

    def load_benchmark(self, name: str, path: str | Path | None = None, *, text: str | None = None,
                       id: str | None = None, fmt: str | None = None,
                       cache_dir: str | Path | None = None, build: bool = True) -> list[dict[str, Any]]:
        """Load a named benchmark for the checks that compare with benchmarks (``contamination``): ``path`` is a data
        file (items read with ``text``, "auto" by default), an index from ``qualgate bench-index build``, or None for
        an index shipped in rules/benchmarks. Its hashed index is cached in ``cache_dir``, keyed by its content.
        ``build=False``: only open it (``build_benchmark_checks`` indexes what was loaded). Returns
        ``benchmarks_read()``: what the checks now read."""
        from qualgate.checks.contamination import BenchmarkCheck
        from qualgate.decontam import open_benchmark
        from qualgate.errors import ConfigError

        users = [c for c in self.set_checks if isinstance(c, BenchmarkCheck)]
        if not users:
            raise ConfigError(f"--benchmark {name}: config {self.config.label} has no check that compares with "
                              "benchmarks: use -c decontam, or add `- check: contamination` to the config",
                              file=self.config.source)
        if all(c.params.benchmarks for c in users) and not any(name in c.params.benchmarks for c in users):
            raise ConfigError(f"--benchmark {name}: no check of config {self.config.label} compares with it (they "
                              f"name {', '.join(sorted({b for c in users for b in c.params.benchmarks}))} in "
                              "`benchmarks`): pass " + " ".join(f"--benchmark {b}=PATH" for b in sorted(
                                  {b for c in users for b in c.params.benchmarks})), file=self.config.source)
        self.sets.benchmarks[name] = open_benchmark(name, path, text=text, id=id, fmt=fmt)
        if build:
            self.build_benchmark_checks(cache_dir)
        return self.benchmarks_read()

    def build_benchmark_checks(self, cache_dir: str | Path | None = None) -> None:
        """Index the loaded benchmarks for each check that compares with them (all it names must be loaded). The
        CLI loads every ``--benchmark`` with ``build=False`` first, then builds once: each build indexes (and
        ``contamination_rephrase`` embeds) every benchmark a check uses, not only the newest."""
        from qualgate.checks.contamination import BenchmarkCheck

        for check in self.set_checks:
            if isinstance(check, BenchmarkCheck) and (wanted := check.wanted(self.sets.benchmarks)) is not None:
                fresh = self._build_set_check(check.name, "benchmark")
                assert isinstance(fresh, BenchmarkCheck)
                fresh.use_benchmarks(wanted, cache_dir)
                self._install(fresh, fresh.export_state())

    def benchmarks_read(self) -> list[dict[str, Any]]:
        """Name, file and sha256 of each benchmark file the checks read (a shipped index: the one for their n)."""
        from qualgate.checks.contamination import BenchmarkCheck

        out: list[dict[str, Any]] = []
        for check in self.set_checks:
            if isinstance(check, BenchmarkCheck):
                for b in (check.describe() or {}).get("benchmarks", []):
                    entry = {"name": b["name"], "file": b.get("file"), "sha256": b.get("sha256")}
                    if entry["file"] is not None and entry not in out:
                        out.append(entry)
        named = {e["name"] for e in out}  # data files only other checks read (a shipped index is read per n above)
        out += [{"name": b.name, "file": b.path.name, "sha256": b.sha256} for b in self.sets.benchmarks.values()
                if b.name not in named and not b.shipped]
        return out

    def input_fit_checks(self) -> list[SetCheck[Any]]:
        """Checks that will fit on the input itself: they need their set, can fit, and have none loaded."""
        return [c for c in self.set_checks if c.fits_on_input and c.needs_set()
                and (c.name not in self.sets.state or c.set_role == "input")]

    @property
    def needs_input_fit(self) -> bool:
        return any(c.name not in self.sets.state for c in self.input_fit_checks())

    def fit_input(self, records: Iterable[Any]) -> dict[str, Any]:
        """Fit the checks that learn from the input itself (perplexity without a reference) on ``records``,
        which the run then reads again. ``load_set("input", paths)`` does the same from files, cached."""
        info = self._index_set("input", lambda: records, None, None, [])
        self._auto_fit = False
        return info

    def _index_set(self, role: str, records: Callable[[], Iterable[Any]], digest: str | None,
                   cache_dir: Path | None, files: list[str]) -> dict[str, Any]:
        info: dict[str, Any] = {"files": files, "records": 0, "skipped": 0, "not_indexed": {}, "cache": {}}
        self.sets.info[role] = info
        users = (self.input_fit_checks() if role == "input"
                 else [c for c in self.set_checks if c.compares_with == role])
        self.sets.forget([c.name for c in users])
        self._fresh_set_checks()  # a new set replaces the old one; nothing of earlier runs is kept
        users = [c for c in self.set_checks if c.name in {u.name for u in users}]
        tracker = None
        if role == "reference" and (self.config.diversity is not None or self.config.gate.needs_diversity):
            tracker = self.diversity = self._new_diversity()
            tracker.use_reference(files)
        if not users and tracker is None:
            info["note"] = f"no check in this config compares with a {role} set: it is not used"
            return info
        todo: list[tuple[SetCheck[Any], Path | None]] = []
        usage = SetUsage(self.spec)
        for check in users:
            cached = cache_path(cache_dir, digest, role, check, self.config, self.repairer)
            if cached is not None and cached.is_file():
                fresh = self._build_set_check(check.name, role)
                if (hit := load_cached(cached, fresh, usage, role)) is not None:
                    state, counts = hit
                    self._install(fresh, state)
                    info["skipped"], info["not_indexed"][check.name] = counts
                    info["cache"][check.name] = {"status": "hit", "path": str(cached)}
                    continue
            todo.append((self._build_set_check(check.name, role), cached))
        if todo or tracker is not None:
            restored, usage = usage, SetUsage(self.spec)
            usage.by_user.update(restored.by_user)
            samples = self.samples(records(), id_fallback=role != "input")
            skipped = 0
            not_indexed = {check.name: 0 for check, _ in todo}
            while batch := list(itertools.islice(samples, 4096)):
                good = usage.add(batch)
                skipped += len(batch) - len(good)
                for check, _ in todo:
                    if lost := check.add_baseline(good):
                        not_indexed[check.name] += lost
                        usage.add_field(check.name, good, getattr(check.params, "field", None))
                if tracker is not None and tracker.add_reference(good):
                    usage.add_field("diversity", good, tracker.cfg.field)
            try:
                names = [c.name for c in users] + (["diversity"] if tracker is not None else [])
                refuse_unusable(role, files, usage, names)
            except InputError:  # as if this set had never been loaded
                del self.sets.info[role]
                self.sets.forget([c.name for c in users])
                self._fresh_set_checks()
                if tracker is not None:
                    tracker.reference, tracker.reference_files = None, []
                raise
            info["skipped"] = skipped
            if tracker is not None and tracker.reference is not None:
                info["records"] = tracker.reference.seen
            for check, cached in todo:
                self._install(check, built_state(check, skipped, not_indexed[check.name], usage, cached))
                info["not_indexed"][check.name] = not_indexed[check.name]
                info["cache"][check.name] = {"status": "miss" if cached else "disabled", "path": str(cached or "")}
        info["records"] = max([info["records"], *(getattr(c, "n_baseline", 0) for c in self.set_checks
                                                    if c.name in {u.name for u in users})])
        self.sets.usage[role] = usage
        if tracker is not None:
            tracker.reference_unusable = usage.explain("diversity")
        if usage.causes or usage.by_user:
            info["unusable"] = usage.summary()
            if role != "input":
                warn_unusable(role, files, usage)
        return info

    def _build_set_check(self, name: str, role: str | None = None) -> SetCheck[Any]:
        check = self._specs[name].build()
        assert isinstance(check, SetCheck)
        check.bind(self.context)
        if role is not None:
            check.set_role = role
        return check

    def _require_sets(self) -> None:
        require_sets(self.sets, self.set_checks, self.config.source)

    def _install(self, check: SetCheck[Any], state: dict[str, Any]) -> None:
        """Make ``check`` (holding exactly the baseline) the gate's instance, and remember its state."""
        self.sets.state[check.name] = state
        self.checks = [check if c.name == check.name else c for c in self.checks]

    def report_sections(self) -> dict[str, Any]:
        """Dataset-level sections contributed by set-aware checks (duplicate clusters, ...)."""
        return {c.name: sec for c in self.set_checks if (sec := c.report_section()) is not None}

    def finish_report(self, builder: ReportBuilder, **run_info: Any) -> Report:
        if self.overrides is not None:
            builder.override_info = self.overrides.info()
        if self.repairer is not None:
            builder.repair_seconds = self.repairer.seconds
        diversity = self.diversity.finish() if self.diversity is not None else None
        limits = {f"{c.name}.{score}": values for c in self.checks for score, values in c.score_limits().items()}
        return builder.finish(sections=self.report_sections(), baseline=self.baseline_info, limits=limits,
                              private=self.sets_info.get("private"), reference=self.sets_info.get("reference"),
                              diversity=diversity, **run_info, **self.settings())

    # -------------------------------------------------------------------------------------- running
    def stream(self, records: Iterable[Any]) -> Iterator[Decision]:
        """One Decision per record, in input order, computed a batch at a time."""
        for batch in self.batches(records):
            yield from batch

    def batches(self, records: Iterable[Any]) -> Iterator[list[Decision]]:
        """``stream``'s decisions a batch at a time, in input order (``RunWriter.write_all`` and
        ``ReportBuilder.add_all`` take a batch whole)."""
        self._require_sets()
        self._fresh_set_checks()
        if self.diversity is not None:
            self.diversity.reset_run()
        if self.repairer is not None:
            self.repairer.seconds = 0.0
        # shared preambles (preamble.py) are detected on the input's head, read ahead once and put back
        self.fields_used = {}
        lines = records.lines() if isinstance(records, InputRecords) and self._parses_in_workers() else None
        samples = fit_on_input(self.set_checks, self.samples(lines if lines is not None else records,
                                                             used=self.fields_used, unparsed_after=PREAMBLE_HEAD))
        batches = iter(lambda: list(itertools.islice(samples, self.batch_size)), [])
        if self.overrides is not None:
            self.overrides.reset()
        watch = FieldWatch(self.spec, [c.name for c in self.checks], self.config.input.id)
        for batch in self._evaluate(batches):
            if not (watch.closed and _all_from(batch, watch.file)):  # a watched file's first records (or a new file)
                for d in batch:  # a field missing in nearly all of a file's first records: exit 2, not 100% rejected
                    watch.observe(d)
            if self.overrides is not None:  # last: a reviewer's word wins, and diversity sees the final set
                self.overrides.apply_all(batch)
            if self.diversity is not None:
                self.diversity.observe(batch)
            if self.strict:
                for k, d in enumerate(batch):
                    if d.findings and d.findings[0].check == MALFORMED:
                        yield batch[:k]  # the decisions before it stand, as ``stream`` gives them one by one
                        f, src = d.findings[0], d.sample.source
                        if src is None:
                            raise InputError(f.message, key=f.evidence.get("key"))
                        detail = f.message.removeprefix(f"{src}: ")
                        if src.unit != "line":
                            detail = f"{src.unit} {src.line}: {detail}"
                        raise InputError(detail, file=src.file, line=src.line if src.unit == "line" else None,
                                         key=f.evidence.get("key"))
            yield batch
        watch.finish()

    def run(self, records: Iterable[Any], *, engine: str | None = None) -> Result:
        """Evaluate all records in memory; see ``stream`` for a lazy variant. Checks that fit on the input
        itself (perplexity without a reference) are fitted on ``records`` first. ``engine`` ("local" or "ray")
        overrides the gate's for this run only."""
        if engine is not None and engine != self.engine:
            from qualgate.engines import check_engine

            previous, self.engine = self.engine, check_engine(engine)
            try:
                return self.run(records)
            finally:
                self.engine = previous
        if self.input_fit_checks() and (self.needs_input_fit or self._auto_fit):
            records = records if isinstance(records, Sequence) else list(records)
            self.fit_input(records)
            self._auto_fit = True
        builder = ReportBuilder(self.config, self.score_columns)
        decisions = []
        for d in self.stream(records):
            builder.add(d)
            decisions.append(d)
        return Result(decisions, self.finish_report(builder))

    def filter_dataset(self, dataset: Any, *, column: str = "qualgate") -> tuple[Any, Any]:
        """Split a Hugging Face ``datasets.Dataset`` into ``(accepted, rejected)`` datasets, rows in input order.

        ``rejected`` gains a ``column`` holding, per row, the JSON text of ``{"id": ..., "findings": [...]}``
        (the same object ``rejected.jsonl`` adds). Needs the ``datasets`` extra: ``pip install 'qualgate[datasets]'``.
        """
        from qualgate.models import require_modules

        require_modules("datasets", extra="pip install 'qualgate[datasets]'", who="Gate.filter_dataset")
        import json

        if column in getattr(dataset, "column_names", []):
            raise ValueError(f"the dataset already has a column {column!r}; pass column=... to name another")
        result = self.run(dataset)
        keep = [i for i, d in enumerate(result.decisions) if d.accepted]
        drop = [i for i, d in enumerate(result.decisions) if not d.accepted]
        why = [json.dumps({"id": result.decisions[i].id,
                           "findings": [f.to_dict() for f in result.decisions[i].findings]},
                          ensure_ascii=False, default=str) for i in drop]
        return dataset.select(keep), dataset.select(drop).add_column(column, why)

    def settings(self) -> dict[str, Any]:
        return {"all_findings": self.all_findings, "strict": self.strict, "workers": self.workers,
                "engine": self.engine, **({"checkpoint": self.checkpoint.info()} if self.checkpoint else {}),
                **({"engine_info": self.engine_info} if self.engine_info else {}),
                "batch_size": self.batch_size, "check_order": [c.name for c in self.checks],
                "text": self.config.input.text, "id": self.config.input.id, "fields": self.fields_used}

    def _evaluate(self, batches: Iterator[list[Sample]]) -> Iterator[list[Decision]]:
        """Decisions for ``batches`` by this gate's engine (``engines.local`` or ``engines.ray``)."""
        first = next(batches, None)
        if first is None:
            return
        second = next(batches, None)
        rest: Iterator[list[Sample]] = itertools.chain([first], [second] if second is not None else [], batches)
        with frozen_gc():
            self.checkpoint, self.engine_info = None, {}
            if self.checkpoint_dir is not None:
                from qualgate.engines.checkpoint import Checkpoint

                self.checkpoint = Checkpoint(self.checkpoint_dir, self)
            if self.engine == "ray":
                from qualgate.engines import ray as ray_engine

                yield from ray_engine.evaluate(self, map(self.parsed, rest), self.ray_address)
            else:
                yield from local_engine.evaluate(self, rest, second is not None)

    def run_config(self) -> dict[str, Any]:
        """The config workers, Ray actors and checkpoints build checks from: with the shared prefixes this run
        detected (``preamble.with_prefixes``), so they drop what this process drops."""
        return with_prefixes(self.config.to_dict(), self.set_checks)

    def scorer_args(self, model_features: bool = False) -> tuple[Any, ...]:
        """The arguments of ``engines.base.build_scorer`` (and ``init_worker``) for this gate's scorers."""
        return (self.run_config(), [c.name for c in self.pooled_checks], [c.name for c in self.set_checks],
                self.all_findings, model_features)


def _all_from(batch: list[Decision], file: str | None) -> bool:
    """Whether every decision of ``batch`` is of a sample read from ``file`` (``FieldWatch`` has nothing to add)."""
    return all((s.source.file if s.source is not None else "<records>") == file for s in [d.sample for d in batch])


def _file_of(item: Any) -> str:
    """The file an input item comes from, as its Sample's source names it."""
    return item.source.file if isinstance(item, RawRecord) else "<records>"


def named_fields(config: GateConfig) -> set[str]:
    """The roles (``ROLES``) the config's text view, checks and diversity report name as fields."""
    names = set(TextSpec(config.input.text).fields)
    for spec in config.checks:
        for key, value in spec.params.model_dump().items():
            if key in ("field", "fields") or key.endswith("_field"):
                names.update(v for v in (value if isinstance(value, list) else [value]) if isinstance(v, str))
    if config.diversity is not None and config.diversity.field:
        names.add(config.diversity.field)
    return names & set(ROLES)


def default_cache_dir() -> Path:
    """``$QUALGATE_CACHE_DIR``, else ``$XDG_CACHE_HOME/qualgate``, else ``~/.cache/qualgate``."""
    if env := os.environ.get("QUALGATE_CACHE_DIR"):
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "qualgate"
