"""The sets a gate's set-aware checks compare with (the design's ``Index``): what was loaded for each role, each
check's index of it, the disk cache of those indexes, and the refusals when a set is missing, too small or
unusable. ``Gate.load_set`` and ``Gate.fit_input`` read the records and build the indexes; this module keeps
what they built and says whether a run may start."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from qualgate.errors import ConfigError, InputError
from qualgate.npz import load_npz, save_npz
from qualgate.sample import SetUsage

if TYPE_CHECKING:
    from qualgate.checks import SetCheck
    from qualgate.config import GateConfig
    from qualgate.decontam import Benchmark
    from qualgate.repair import Repairer

#: The sets a gate can load for its set-aware checks (``SetCheck.compares_with``).
SET_ROLES = ("baseline", "private", "reference")
#: In every set index's cache key: 2 = records of a set without the id field are indexed (by content hash),
#: 3 = the roles a config names are found in each file (``input.fields``, ``FieldMap``)
SET_INDEX_VERSION = 3


class LoadedSets:
    """What a gate loaded: per check, the exported index state of its set (a fresh instance of the check
    imports it at the start of every run); per role, what was loaded (``info``, in the report) and why
    records were unusable (``usage``)."""

    def __init__(self) -> None:
        self.state: dict[str, dict[str, Any]] = {}
        self.info: dict[str, dict[str, Any]] = {}
        self.usage: dict[str, SetUsage] = {}
        #: named benchmarks (``Gate.load_benchmark``), for the checks that compare with benchmarks
        self.benchmarks: dict[str, Benchmark] = {}

    def forget(self, names: Sequence[str]) -> None:
        for name in names:
            self.state.pop(name, None)


def cache_path(cache_dir: Path | None, digest: str | None, role: str, check: SetCheck[Any], config: GateConfig,
               repairer: Repairer | None) -> Path | None:
    """Where ``check``'s index of a set is cached: keyed by the set's files (``digest``), the check's parameters,
    the text view, the id field, the field roles and the repairs. None: not cached."""
    import xxhash

    if cache_dir is None or not digest:
        return None
    repaired = f"|{repairer.config.token()}" if repairer is not None else ""  # repaired texts
    key = xxhash.xxh3_128_hexdigest(f"{role}|{digest}|{check.cache_token()}|{config.input.text}|"
                                    f"{config.input.id}|{SET_INDEX_VERSION}{repaired}|"
                                    f"{sorted(config.input.fields.items())}".encode())
    return cache_dir / f"{check.kind}-{key}.npz"


def load_cached(path: Path, fresh: SetCheck[Any], usage: SetUsage,
                role: str) -> tuple[dict[str, Any], list[int]] | None:
    """Import the cached index at ``path`` into ``fresh``: its state and counts (skipped, not indexed), and the
    usage it recorded into ``usage``. None when it is damaged (or foreign): said, then rebuilt by the caller."""
    try:
        state = load_npz(path)
        fresh.import_state(state)
        counts = state["_qualgate_counts"].tolist()
        if "_qualgate_usage" in state:
            usage.restore(str(state["_qualgate_usage"]), fresh.name)
    except Exception as exc:  # damaged (or foreign): rebuilt from the files and stored again
        warnings.warn(f"cached {role} index {path} is not usable ({type(exc).__name__}: {exc}); "
                      "rebuilding it", stacklevel=4)
        return None
    return state, counts


def built_state(check: SetCheck[Any], skipped: int, not_indexed: int, usage: SetUsage,
                path: Path | None) -> dict[str, Any]:
    """``check``'s index state with the counts and usage a cache hit restores; stored at ``path`` (if any)."""
    import numpy as np

    state = check.export_state()
    state["_qualgate_counts"] = np.asarray([skipped, not_indexed], dtype=np.int64)
    state["_qualgate_usage"] = np.asarray(usage.to_json())
    if path is not None:
        save_npz(path, state)
    return state


def refuse_unusable(role: str, files: list[str], usage: SetUsage, users: list[str]) -> None:
    """A set of which a check (or the diversity report) can use no record is a mistake to report, naming
    the cause, not an empty index to run with. The input (fitting on itself) only has its records rejected."""
    if role == "input" or not usage.records:
        return
    for user in users:
        if usage.usable_by(user) == 0:
            who = "" if usage.usable == 0 else (" by the diversity report" if user == "diversity"
                                                else f" by check '{user}'")
            raise InputError(f"{role} set: 0 of {usage.records} records usable{who}: {usage.explain(user)}",
                             file=", ".join(files) or None)


def warn_unusable(role: str, files: list[str], usage: SetUsage) -> None:
    """Records of a set left out (a private one is then not protected): said, not silent."""
    where = f"{role} set {', '.join(files)}"
    if usage.usable < usage.records:
        warnings.warn(f"{where}: {usage.records - usage.usable} of {usage.records} records left out: "
                      f"{usage.explain()}", stacklevel=4)
    for user in sorted(usage.by_user):
        if usage.by_user[user]:
            who = "the diversity report" if user == "diversity" else f"check '{user}'"
            warnings.warn(f"{where}: {sum(usage.by_user[user].values())} usable records not used by {who}: "
                          f"{usage.explain(user, whole_set=False)}", stacklevel=4)


def require_sets(sets: LoadedSets, checks: Sequence[SetCheck[Any]], source: str | None) -> None:
    """Checks that only make sense against a private or reference set refuse to run without one."""
    for check in checks:
        role = check.compares_with
        if role == "baseline" or not check.needs_set():
            continue
        if check.name not in sets.state:
            if check.fits_on_input:
                raise ConfigError(f"check '{check.name}' ({check.kind}) learns from a {role} set, and none is "
                                  f"loaded: pass --{role} PATH, or let it fit on the input itself "
                                  "(the CLI does when the input is a file; library: gate.run(records), or "
                                  "gate.fit_input(records) before gate.stream(records))", file=source)
            raise ConfigError(f"check '{check.name}' ({check.kind}) compares with a {role} set, and none is "
                              f"loaded: {check.how_to_load()}", file=source)
        have = getattr(check, "n_baseline", 0)
        if have < check.min_set_size and check.set_role != "input":  # too small an input: the check abstains
            usage = sets.usage.get(role)
            why = f" of {usage.records}: {cause}" if usage and (cause := usage.explain(check.name)) else ""
            raise ConfigError(f"check '{check.name}' ({check.kind}) needs at least {check.min_set_size} "
                              f"usable records in the {role} set, got {have}{why}", file=source)
