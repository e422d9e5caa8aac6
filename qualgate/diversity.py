"""Dataset-level diversity of the accepted set against a human reference: the early signs of collapse.

A collapsing generator loses the tails of the human distribution first and circles a few modes. So the
accepted set is compared with a reference set (``--reference``; else with the whole input) on:

- spread: cosine distance from each sample to its nearest neighbour (mean and quantiles), computed on
  equally many samples of both sets, since the distance shrinks as a set grows;
- coverage: k-means clusters (faiss, spherical) fitted on the reference; a cluster is covered when the
  accepted set holds at least ``coverage_fraction`` of the share the reference gives it; tail coverage
  is the same over the smallest clusters;
- cluster entropy of the accepted set over the reference clusters (1 = as even as possible);
- a Vendi score (exp of the entropy of the cosine kernel's eigenvalues: the effective number of
  distinct directions) and ``ratio`` = accepted Vendi / reference Vendi at equal sample size.

Sets larger than ``max_samples`` are reduced to the samples with the smallest id hashes (a bottom-k
sample): the same input gives the same sample whatever the batch size or engine.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import xxhash
from pydantic import BaseModel, ConfigDict, Field

from qualgate.checks.base import field_texts
from qualgate.embed import F32, Embedder, shared_embedder
from qualgate.findings import Decision
from qualgate.sample import Sample

QUANTILES = (0.05, 0.25, 0.5, 0.75, 0.95)
EXAMPLE_CHARS = 160
MAP_POINTS = 1500  # per set on the report's 2-D map


class DiversityConfig(BaseModel):
    """The ``diversity:`` section of a config (present, or implied by a diversity gate condition)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    field: str | None = Field(None, description="record field to embed; unset = the configured text view")
    model: str | None = Field(None, description="local sentence-transformers folder, or `wordllama` (static, "
                                                "torch-free); unset = the packaged all-MiniLM-L6-v2")
    device: str = "auto"
    batch_size: int = Field(64, ge=1, le=4096)
    clusters: int | None = Field(None, ge=2, le=10000, description="k-means clusters; unset = sqrt(n_reference / 2)")
    max_samples: int = Field(10000, ge=100, description="bottom-k sample size per set")
    coverage_fraction: float = Field(0.25, gt=0, le=1, description="accepted / reference share that covers a cluster")
    tail_share: float = Field(0.25, gt=0, le=1, description="smallest clusters (by reference size) forming the tail")
    vendi_samples: int = Field(5000, ge=10, description="samples per set for the Vendi score")
    seed: int = Field(0, ge=0, description="k-means seed")


class _Pool:
    """A bottom-k sample by id hash: vectors and short texts of at most ``cap`` samples."""

    def __init__(self, cap: int, dim: int) -> None:
        self.cap, self.dim, self.seen = cap, dim, 0
        self.hashes: list[np.uint64] = []
        self.vecs: list[F32] = []
        self.texts: list[str] = []

    def add(self, ids: Sequence[str], vecs: F32, texts: Sequence[str], shown: Sequence[str] | None = None) -> None:
        """``shown``: what the report may show of each sample (default: the start of its text)."""
        self.seen += len(ids)
        self.hashes.extend(np.uint64(xxhash.xxh3_64_intdigest(f"{i}\0{t}".encode("utf-8", "surrogatepass")))
                           for i, t in zip(ids, texts, strict=True))
        self.vecs.extend(vecs)
        self.texts.extend(t[:EXAMPLE_CHARS] for t in (texts if shown is None else shown))
        if len(self.hashes) > 2 * self.cap:
            self._prune()

    def _prune(self) -> None:
        order = np.argsort(np.asarray(self.hashes, dtype=np.uint64), kind="stable")[: self.cap]
        self.hashes = [self.hashes[i] for i in order]
        self.vecs = [self.vecs[i] for i in order]
        self.texts = [self.texts[i] for i in order]

    def arrays(self) -> tuple[F32, list[str]]:
        self._prune()
        if not self.vecs:
            return np.zeros((0, self.dim), dtype=np.float32), []
        return np.stack(self.vecs).astype(np.float32), list(self.texts)


class DiversityTracker:
    """Collects embeddings of the reference and of accepted samples during a run; ``finish`` measures."""

    def __init__(self, cfg: DiversityConfig, cache_dir: Path | None) -> None:
        self.cfg = cfg
        self.embedder: Embedder = shared_embedder(cfg.model, cfg.device, cfg.batch_size, cache_dir)
        self.reference: _Pool | None = None
        self.reference_files: list[str] = []
        self.reference_unusable = ""
        self.reset_run()

    def reset_run(self) -> None:
        """Forget the accepted, rejected and input samples of an earlier run; keep the reference."""
        self.accepted = _Pool(self.cfg.max_samples, 0)
        self.inputs = _Pool(self.cfg.max_samples, 0)
        self.rejected = _Pool(MAP_POINTS, 0)  # for the report's map only

    def _texts(self, samples: Sequence[Sample]) -> tuple[list[Sample], list[str]]:
        """The samples that have the field, and their texts."""
        texts, problems = field_texts(samples, self.cfg.field)
        ok = [i for i, p in enumerate(problems) if p is None]
        return [samples[i] for i in ok], [texts[i] for i in ok]

    def _pools(self) -> None:
        dim = self.embedder.dim
        for pool in (self.accepted, self.inputs, self.rejected):
            pool.dim = dim

    def use_reference(self, files: list[str]) -> None:
        """Measure against these files' samples (even when they turn out to hold none)."""
        self.reference_files = files
        self.reference = _Pool(self.cfg.max_samples, 0)
        self.reference_unusable = ""  # why reference records were left out (Gate.load_set): for the note

    def add_reference(self, samples: Sequence[Sample]) -> int:
        """Embed reference samples; returns how many lacked the field."""
        if self.reference is None:
            self.use_reference([])
        assert self.reference is not None
        self.reference.dim = self.embedder.dim
        keep, texts = self._texts(samples)
        self.reference.add([s.id for s in keep], self.embedder.encode(texts), texts)
        return len(samples) - len(keep)

    def observe(self, decisions: Sequence[Decision]) -> None:
        """Fold in one decided batch: accepted samples, and (without a reference) every parsed sample."""
        self._pools()
        pools = [(self.accepted, [d.sample for d in decisions if d.accepted]),
                 (self.rejected, [d.sample for d in decisions if not d.accepted and d.sample.problem is None])]
        if self.reference is None:
            pools.append((self.inputs, [d.sample for d in decisions if d.sample.problem is None]))
        for pool, samples in pools:
            keep, texts = self._texts(samples)
            if keep:
                ids = [s.id for s in keep]
                # input texts are never shown (a rejected one may copy a private record): only their ids
                shown = texts if pool is self.accepted else ids
                pool.add(ids, self.embedder.encode(texts), texts, shown)

    def finish(self) -> dict[str, Any]:
        ref_pool = self.reference or self.inputs
        ref, ref_texts = ref_pool.arrays()
        acc, _ = self.accepted.arrays()
        out: dict[str, Any] = {
            "against": "reference" if self.reference is not None else "input",
            # input texts are never written (a rejected one may copy a private record): examples are ids then
            "examples_are": "texts" if self.reference is not None else "ids",
            "reference_files": self.reference_files,
            "model": self.embedder.name, "reference_size": ref_pool.seen, "accepted_size": self.accepted.seen,
            "sampled": {"reference": len(ref), "accepted": len(acc)},
        }
        if len(ref) < 2 or len(acc) < 2:
            out["note"] = "too few samples to measure diversity (need at least 2 in each set)"
            if len(ref) < 2 and self.reference is not None and self.reference_unusable:
                out["note"] += f"; reference records left out: {self.reference_unusable}"
            return out
        m = min(len(ref), len(acc))
        nn_ref, nn_acc = nn_distances(ref[:m]), nn_distances(acc[:m])
        out["nn_distance"] = {"accepted": _describe(nn_acc), "reference": _describe(nn_ref), "compared_at": m}
        v = min(m, self.cfg.vendi_samples)
        vendi_acc, vendi_ref = vendi(acc[:v]), vendi(ref[:v])
        out["vendi"] = {"accepted": round(vendi_acc, 4), "reference": round(vendi_ref, 4), "compared_at": v}
        out["ratio"] = round(vendi_acc / vendi_ref, 6) if vendi_ref > 0 else None
        out["nn_ratio"] = round(float(nn_acc.mean() / nn_ref.mean()), 6) if nn_ref.mean() > 0 else None
        out.update(self._coverage(ref, ref_texts, acc))
        out["map"] = pca_map(ref, acc, self.rejected.arrays()[0])
        return out

    def _coverage(self, ref: F32, ref_texts: list[str], acc: F32) -> dict[str, Any]:
        cfg = self.cfg
        k = cfg.clusters or int(np.clip(round(math.sqrt(len(ref) / 2)), 2, 100))
        k = min(k, len(ref))
        centroids = kmeans(ref, k, cfg.seed)
        ref_lab, acc_lab = assign(ref, centroids), assign(acc, centroids)
        ref_n = np.bincount(ref_lab, minlength=k)
        acc_n = np.bincount(acc_lab, minlength=k)
        ref_share, acc_share = ref_n / ref_n.sum(), acc_n / acc_n.sum()
        covered = (acc_n >= 1) & (acc_share >= cfg.coverage_fraction * ref_share)
        live = ref_n > 0
        by_size = [c for c in np.argsort(ref_n, kind="stable") if live[c]]
        tail = by_size[: max(1, round(cfg.tail_share * len(by_size)))]
        missing = []
        for c in sorted(np.flatnonzero(live & ~covered), key=lambda c: (-ref_n[c], c)):
            members = np.flatnonzero(ref_lab == c)
            nearest = members[np.argsort(-(ref[members] @ centroids[c]), kind="stable")[:2]]
            missing.append({"cluster": int(c), "reference_share": round(float(ref_share[c]), 4),
                            "accepted_share": round(float(acc_share[c]), 4),
                            "examples": [ref_texts[i] for i in nearest]})
        return {
            "clusters": k,
            "reference_coverage": round(float(covered[live].mean()), 6),
            "tail_coverage": round(float(covered[tail].mean()), 6),
            "tail_clusters": [int(c) for c in tail],
            "entropy": {"accepted": round(_entropy(acc_n, k), 6), "reference": round(_entropy(ref_n, k), 6)},
            "missing_clusters": missing,
        }


def pca_map(ref: F32, acc: F32, rej: F32) -> dict[str, Any]:
    """A 2-D picture of the three sets: the reference's first two principal components, each set's points
    projected onto them (at most MAP_POINTS each, the first of the bottom-k samples). Collapse shows as the
    accepted points crowding part of the reference cloud."""
    mean = ref.mean(axis=0)
    _, sv, vt = np.linalg.svd((ref - mean).astype(np.float64), full_matrices=False)
    axes = vt[:2]
    # an axis's sign is arbitrary, and float noise in the vectors can flip it: fix it (largest component
    # positive) so the same data draws the same map
    axes = axes * np.where(axes[np.arange(len(axes)), np.abs(axes).argmax(axis=1)] < 0, -1.0, 1.0)[:, None]
    var = sv**2
    explained = float(var[:2].sum() / var.sum()) if var.sum() > 0 else 0.0

    def project(x: F32) -> list[list[float]]:
        if not len(x):
            return []
        xy = (x[:MAP_POINTS].astype(np.float64) - mean) @ axes.T
        return [[round(float(a), 4), round(float(b), 4)] for a, b in xy]

    return {"method": "PCA of the reference embeddings", "explained_variance": round(explained, 4),
            "reference": project(ref), "accepted": project(acc), "rejected": project(rej)}


def nn_distances(x: F32) -> F32:
    """Cosine distance from each (unit) vector to its nearest other vector, exact (faiss flat)."""
    import faiss

    index = faiss.IndexFlatIP(x.shape[1])
    index.add(x)
    sims, ids = index.search(x, 2)
    own = np.arange(len(x))
    nn = np.where(ids[:, 0] == own, sims[:, 1], sims[:, 0])
    return np.clip(1.0 - nn, 0.0, 2.0).astype(np.float32)


def vendi(x: F32) -> float:
    """Vendi score with the cosine kernel: exp(entropy of the eigenvalues of K/n), via the d x d Gram matrix."""
    n = len(x)
    if n == 0:
        return 0.0
    gram = (x.astype(np.float64).T @ x.astype(np.float64)) / n
    lam = np.clip(np.linalg.eigvalsh(gram), 0, None)
    lam = lam[lam > 1e-12]
    lam = lam / lam.sum()
    return float(np.exp(-(lam * np.log(lam)).sum()))


def kmeans(x: F32, k: int, seed: int) -> F32:
    """Spherical k-means centroids (faiss), deterministic for a seed; the best of 5 starts (one start often
    lands in a poor local optimum on small sets)."""
    import faiss

    km = faiss.Kmeans(x.shape[1], k, niter=25, nredo=5, seed=seed, spherical=True, verbose=False,
                      min_points_per_centroid=1, max_points_per_centroid=100000)
    km.train(np.ascontiguousarray(x, dtype=np.float32))
    return np.asarray(km.centroids, dtype=np.float32)


def assign(x: F32, centroids: F32) -> Any:
    return np.argmax(x @ centroids.T, axis=1)


def _entropy(counts: Any, k: int) -> float:
    p = counts[counts > 0] / counts.sum()
    return float(-(p * np.log(p)).sum() / math.log(k)) if k > 1 else 0.0


def _describe(d: F32) -> dict[str, float]:
    out = {"mean": round(float(d.mean()), 6)}
    for q, v in zip(QUANTILES, np.quantile(d, QUANTILES), strict=True):
        out[f"p{round(q * 100)}"] = round(float(v), 6)
    return out
