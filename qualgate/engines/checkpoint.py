"""Per-stage checkpoints (``--checkpoint DIR``): a killed run, started again, resumes after the work it finished.

Both engines store each scored batch; the Ray engine also stores its shuffle results. What the folder holds:

- ``score/<key>.npz``, one per batch: the per-sample verdicts (as JSON) and the set checks' features (numpy
  arrays). ``key`` hashes the run's settings and the batch's records, so a resumed run re-scores only the
  batches without a file, and a changed config, input or batch size never picks up a stale one.
- ``pairs/<key>.npz``, one per near-duplicate check (the verified candidate pairs) and per partitioned
  semantic-duplicate check (the neighbour lists), keyed by every batch key, the check and its set.

Deciding is not checkpointed: it is cheap from stored verdicts and pairs, and the outputs are written
atomically at the end, so a run killed while deciding leaves no partial output and simply decides again.
Files appear under their final name only when complete (temp file, then rename) and load without pickle.
"""

from __future__ import annotations

import json
import zipfile
from collections.abc import Sequence
from dataclasses import fields
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np

from qualgate.engines.base import BatchFeatures, BatchResult, Verdict
from qualgate.findings import Finding
from qualgate.npz import load_npz, save_npz

if TYPE_CHECKING:
    from qualgate.gate import Gate
    from qualgate.sample import Sample

T = TypeVar("T")

#: Bump when what a checkpoint file holds changes: older files are then ignored, not misread.
FORMAT = 1


def _features_classes() -> dict[str, type]:
    from qualgate.checks.embedding import EmbeddingFeatures
    from qualgate.checks.minhash import MinhashFeatures

    return {"MinhashFeatures": MinhashFeatures, "EmbeddingFeatures": EmbeddingFeatures}


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def _check_vectors(vecs: Any, rows: int) -> None:
    """Stored embeddings must be what the embedder gave: a float32 row per live sample, each of unit length (or
    zeros, where the sample lacked the field); anything else is a damaged file, and the batch is scored again."""
    from qualgate.vectors import unit_rows

    if not (isinstance(vecs, np.ndarray) and vecs.dtype == np.float32 and vecs.ndim == 2 and len(vecs) == rows
            and (unit_rows(vecs) | ~vecs.any(axis=1)).all()):
        raise ValueError("stored embeddings are damaged")


class Checkpoint:
    """One run's checkpoint folder, and what this run loaded from it and stored in it."""

    def __init__(self, root: str | Path, gate: Gate) -> None:
        import xxhash

        from qualgate import __version__
        from qualgate.config import referenced_files

        self.root = Path(root)
        config = gate.run_config()  # with the shared prefixes the run detected
        settings = {"format": FORMAT, "version": __version__, "config": config, "files": referenced_files(config),
                    "all_findings": gate.all_findings, "checks": [c.name for c in gate.checks]}
        self.run_key = xxhash.xxh3_128_hexdigest(json.dumps(settings, sort_keys=True, default=str).encode())
        self.stats: dict[str, dict[str, int]] = {"score": {"loaded": 0, "computed": 0},
                                                 "pairs": {"loaded": 0, "computed": 0}}
        self._remove_dead_temps()

    def _remove_dead_temps(self) -> None:
        """Temp files (``.KEY.npz.PID.XXXX.tmp``, ``npz.save_npz``) of writers that were killed mid-write."""
        from qualgate.io import remove_dead_temps

        for folder in (self.root / "score", self.root / "pairs"):
            remove_dead_temps(folder, ".*.npz.*.tmp")

    def info(self) -> dict[str, Any]:
        return {"path": str(self.root), **self.stats}

    # ------------------------------------------------------------------------------------- keys
    def batch_key(self, batch: Sequence[Sample]) -> str:
        """A hash of the run's settings and every record of the batch (its bytes, id and place)."""
        import xxhash

        h = xxhash.xxh3_128(self.run_key.encode())
        for s in batch:
            body = s.raw if s.raw is not None else json.dumps(s.record, sort_keys=True, default=str).encode(
                "utf-8", "surrogatepass")
            h.update(f"\x00{s.id}\x00{s.source}\x00{len(body)}\x00".encode("utf-8", "surrogatepass"))
            if s.fields:  # roles read from other fields (input.fields, found per file): they change the scores
                h.update(json.dumps(sorted(s.fields.items())).encode("utf-8", "surrogatepass"))
            h.update(body)
        return h.hexdigest()

    def pairs_key(self, name: str, batch_keys: Sequence[str], baseline: Any) -> str:
        import xxhash

        h = xxhash.xxh3_128(f"{self.run_key}\x00{name}\x00{baseline}".encode())
        for key in batch_keys:
            h.update(key.encode())
        return h.hexdigest()

    # ---------------------------------------------------------------------------------- scoring
    def load_scored(self, key: str) -> BatchResult | None:
        arrays = self._load(self.root / "score" / f"{key}.npz")
        if arrays is None:
            return None
        try:
            result = self._scored(arrays)
        except (KeyError, ValueError, TypeError):  # damaged or foreign: score the batch again
            return None
        self.stats["score"]["loaded"] += 1
        return result

    @staticmethod
    def _scored(arrays: dict[str, Any]) -> BatchResult:
        meta = json.loads(arrays["meta"].tobytes().decode("utf-8", "surrogatepass"))
        verdicts: list[Verdict] = [([Finding.from_dict(f) for f in findings], scores, skipped, evidence)
                                   for findings, scores, skipped, evidence in meta["verdicts"]]
        from qualgate.checks.base import Measurement
        from qualgate.checks.perplexity import ScoredFeatures

        classes = _features_classes()
        features: BatchFeatures = {}
        for i, (name, cls_name, attrs) in enumerate(meta["features"]):
            feats: Any
            if cls_name == "ScoredFeatures":  # measurements, not arrays: kept in the JSON part
                feats = ScoredFeatures([None if m is None else Measurement(*m) for m in attrs[0]], attrs[1])
            else:
                feats = object.__new__(classes[cls_name])
                feats.__dict__.update({a: arrays[f"f{i}.{a}"] for a in attrs})
            live = arrays[f"f{i}.live"].tolist()
            if cls_name == "EmbeddingFeatures":
                _check_vectors(feats.vecs, len(live))
            features[name] = (live, feats)
        return BatchResult(verdicts, features)

    def save_scored(self, key: str, result: BatchResult) -> None:
        from qualgate.checks.perplexity import ScoredFeatures

        verdicts, features = result.verdicts, result.features
        arrays: dict[str, Any] = {}
        described = []
        classes = {cls: name for name, cls in _features_classes().items()}
        for i, (name, (live, feats)) in enumerate(features.items()):
            arrays[f"f{i}.live"] = np.asarray(live, dtype=np.int64)
            if isinstance(feats, ScoredFeatures):
                described.append([name, "ScoredFeatures", [[None if m is None else [m.values, m.evidence]
                                                              for m in feats.measured], feats.model]])
                continue
            attrs = sorted(vars(feats))
            described.append([name, classes[type(feats)], attrs])
            arrays.update({f"f{i}.{a}": getattr(feats, a) for a in attrs})
        meta = {"verdicts": [[[f.to_dict() for f in findings], scores, skipped, evidence]
                             for findings, scores, skipped, evidence in verdicts], "features": described}
        text = json.dumps(meta, ensure_ascii=False, default=_json_default).encode("utf-8", "surrogatepass")
        arrays["meta"] = np.frombuffer(text, dtype=np.uint8)
        save_npz(self.root / "score" / f"{key}.npz", arrays)
        self.stats["score"]["computed"] += 1

    # ------------------------------------------------------------------------- shuffle results
    def load_table(self, key: str, cls: type[T]) -> T | None:
        """A stored shuffle result (``PairTable``, ``NeighbourTable``: dataclasses of arrays and numbers)."""
        arrays = self._load(self.root / "pairs" / f"{key}.npz")
        if arrays is None:
            return None
        try:
            table = cls(**{f.name: arrays[f.name].item() if arrays[f.name].ndim == 0 else arrays[f.name]
                           for f in fields(cls)})  # type: ignore[arg-type]
        except (KeyError, TypeError):
            return None
        self.stats["pairs"]["loaded"] += 1
        return table

    def save_table(self, key: str, table: Any) -> None:
        save_npz(self.root / "pairs" / f"{key}.npz", {f.name: np.asarray(getattr(table, f.name))
                                                       for f in fields(table)})
        self.stats["pairs"]["computed"] += 1

    # -------------------------------------------------------------------------------------- files
    @staticmethod
    def _load(path: Path) -> dict[str, Any] | None:
        if not path.is_file():
            return None
        try:
            return load_npz(path)
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):  # damaged: recompute, not fail
            return None
