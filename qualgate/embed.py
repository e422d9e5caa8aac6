"""Sentence embeddings: batched, L2-normalised, float32, cached on disk by model and text.

One Embedder per (model, device, batch size) is shared by every check of a process, and it remembers
the vectors of recent texts, so a batch embedded for ``semantic_duplicate`` costs nothing again for
``private_leak`` or the diversity report. The disk cache is an SQLite file keyed by a hash of the
model's files and the text: re-runs and baselines are not re-embedded, and other weights never reuse
these vectors.

Two backends: a sentence-transformers model (the packaged all-MiniLM-L6-v2 or a local folder), and
``wordllama``, the static token embeddings the ``wordllama`` wheel carries, mean-pooled in numpy: no torch,
no network, ~50x faster on a CPU, for a coarser notion of "says the same".
"""

from __future__ import annotations

import contextlib
import functools
import importlib.util
import itertools
import sqlite3
import threading
import warnings
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import xxhash

from qualgate.errors import ConfigError
from qualgate.lm.text import model_input
from qualgate.models import (
    embedding_model_path,
    load_sentence_transformer,
    model_fingerprint,
    require_modules,
    resolve_device,
)
from qualgate.vectors import unit_rows

F32 = npt.NDArray[np.float32]
_MEMO = 16384  # recent texts kept in memory (384 floats each: ~25 MiB)
#: ``model:`` value that selects the static backend (``StaticModel``)
STATIC_MODEL = "wordllama"
_STATIC_FILES = ("weights/l2_supercat_256.safetensors", "tokenizers/l2_supercat_tokenizer_config.json")
_POOL_TOKENS = 16384  # token rows gathered at once by the static model (16 MiB of float32 at 256 dims)
_STATIC_INSTALL = "pip install 'qualgate[static]' (torch-free: wordllama and faiss-cpu)"


class EmbeddingCache:
    """An SQLite table ``key (16 bytes) -> float32 vector``.

    The cache only ever saves time: a file that is not a database (or is malformed) is moved aside and
    started afresh; any other SQLite or file-system problem (locked, read-only, disk full, damage found
    later, a symlink at its name) turns the cache off for the rest of the run with a warning, and embedding
    goes on. A stored vector that is not one of ours (not ``dim`` finite float32s of unit length) is a miss:
    recomputed and stored again, with one warning per run.
    """

    def __init__(self, path: Path, dim: int) -> None:
        self.path, self.dim = path, dim
        self._lock = threading.Lock()
        self._db: sqlite3.Connection | None = None
        self._damaged_seen = 0
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = self._open()
        except sqlite3.DatabaseError as exc:
            if not _damaged(exc):
                self._off(exc)
                return
            aside = path.with_suffix(path.suffix + ".damaged")
            try:
                for suffix in ("-wal", "-shm"):
                    Path(f"{path}{suffix}").unlink(missing_ok=True)
                path.replace(aside)
                warnings.warn(f"embedding cache {path} was damaged; moved to {aside} and started afresh",
                              stacklevel=2)
                self._db = self._open()
            except (OSError, sqlite3.Error) as again:
                self._off(again)
        except OSError as exc:
            self._off(exc)

    @property
    def enabled(self) -> bool:
        return self._db is not None

    def _off(self, exc: BaseException) -> None:
        warnings.warn(f"embedding cache {self.path} is not usable ({exc}); embedding without it", stacklevel=3)
        if self._db is not None:
            with contextlib.suppress(sqlite3.Error):
                self._db.close()
        self._db = None

    def _open(self) -> sqlite3.Connection:
        for name in (self.path, *(Path(f"{self.path}{x}") for x in ("-wal", "-shm", "-journal"))):
            if name.is_symlink():  # SQLite would write through it, to wherever it points
                raise OSError(f"{name} is a symbolic link")
        db = sqlite3.connect(self.path, timeout=60, check_same_thread=False)
        try:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            db.execute("CREATE TABLE IF NOT EXISTS vectors (key BLOB PRIMARY KEY, vec BLOB NOT NULL) WITHOUT ROWID")
            db.execute("SELECT count(*) FROM (SELECT 1 FROM vectors LIMIT 1)").fetchone()
        except BaseException:
            db.close()
            raise
        return db

    def get(self, keys: Sequence[bytes]) -> dict[bytes, F32]:
        out: dict[bytes, F32] = {}
        with self._lock:
            try:
                for start in range(0, len(keys), 500):
                    if self._db is None:
                        break
                    chunk = keys[start:start + 500]
                    rows = self._db.execute(f"SELECT key, vec FROM vectors WHERE key IN "
                                            f"({','.join('?' * len(chunk))})", chunk).fetchall()
                    good = _unit_vectors([vec for _, vec in rows], self.dim)
                    out.update((bytes(key), v) for (key, _), v in zip(rows, good, strict=True) if v is not None)
                    self._damaged(sum(v is None for v in good))
            except sqlite3.Error as exc:
                self._off(exc)
                return {}
        return out

    def _damaged(self, n: int) -> None:
        if n and not self._damaged_seen:
            warnings.warn(f"embedding cache {self.path} holds damaged vectors (not {self.dim} finite float32s of "
                          "unit length); they are recomputed and stored again", stacklevel=4)
        self._damaged_seen += n

    def put(self, items: Sequence[tuple[bytes, F32]]) -> None:
        with self._lock:
            if self._db is None:
                return
            try:
                with self._db:
                    self._db.executemany("INSERT OR REPLACE INTO vectors VALUES (?, ?)",
                                         [(k, np.ascontiguousarray(v, dtype=np.float32).tobytes()) for k, v in items])
            except sqlite3.Error as exc:
                self._off(exc)

    def close(self) -> None:
        with self._lock:
            if self._db is not None:
                self._db.close()
                self._db = None


def _unit_vectors(blobs: Sequence[object], dim: int) -> list[F32 | None]:
    """Each stored value as a vector if it is one the model could have given (``dim`` float32s, finite, unit
    length), else None: damage on disk must cost a recomputation, never a NaN in a score or a report."""
    out: list[F32 | None] = [None] * len(blobs)
    sized = [(i, b) for i, b in enumerate(blobs) if isinstance(b, bytes) and len(b) == dim * 4]
    if sized:
        vecs = np.frombuffer(b"".join(b for _, b in sized), dtype=np.float32).reshape(len(sized), dim)
        for j, good in enumerate(unit_rows(vecs)):
            if good:
                out[sized[j][0]] = vecs[j]
    return out


def _damaged(exc: sqlite3.DatabaseError) -> bool:
    """Not a database, or a malformed one (as opposed to locked, read-only, full...)."""
    text = str(exc).lower()
    return "not a database" in text or "malformed" in text


def static_model_path() -> Path:
    """The folder of the installed ``wordllama`` package, found without importing it (its ``__init__`` sets up
    the root logger), checked to hold the weights and tokenizer this backend reads."""
    spec = importlib.util.find_spec(STATIC_MODEL)
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError(f"model: {STATIC_MODEL} needs the wordllama package, which is not installed: "
                          f"{_STATIC_INSTALL}")
    path = Path(next(iter(spec.submodule_search_locations)))
    missing = [f for f in _STATIC_FILES if not (path / f).is_file()]
    if missing:
        raise ConfigError(f"the wordllama package at {path} has no {', '.join(missing)}: "
                          "pip install wordllama==0.4.0.post1")
    return path


def model_path(model: str | None) -> Path:
    """Where ``model`` is: the wordllama package for ``wordllama``, else a sentence-transformers folder."""
    return static_model_path() if model == STATIC_MODEL else embedding_model_path(model)


def check_model(model: str | None, who: str) -> None:
    """Fail before any work starts when ``model``'s backend or files are missing."""
    if model == STATIC_MODEL:
        require_modules("tokenizers", "safetensors", "faiss", extra=_STATIC_INSTALL, who=who)
    else:
        require_modules("sentence_transformers", "faiss", who=who)
    model_path(model)


class StaticModel:
    """WordLlama's static token embeddings (``l2_supercat``, 256-d, Llama-2 tokenizer), mean-pooled and L2-normalised.

    What ``WordLlamaInference.embed(norm=True)`` computes, in numpy, with no padding: an embedding is a table
    lookup and an average, so a CPU embeds thousands of texts a second and nothing imports torch. The wheel
    carries both files, but ``WordLlama.load()`` looks for the tokenizer in the wrong folder and then goes to the
    hub, so the files are read here directly. Whitespace runs become single spaces first: newline and indentation
    tokens otherwise weigh so much in the mean that a list re-joined on one line fell to cosine 0.76 with itself.
    Word order is lost: it sees shared vocabulary (reworded and reordered copies), not paraphrase in other words.
    """

    max_seq_length = 512  #: tokens read per text (the model itself has no limit; a 5 MB text must not cost 5 MB)
    device = "cpu"

    def __init__(self, folder: Path) -> None:
        from safetensors.numpy import load_file
        from tokenizers import Tokenizer

        weights, tokenizer = (folder / f for f in _STATIC_FILES)
        self.table = np.ascontiguousarray(load_file(str(weights))["embedding.weight"], dtype=np.float32)
        self.tokenizer = Tokenizer.from_file(str(tokenizer))
        self.tokenizer.no_padding()
        self.tokenizer.enable_truncation(self.max_seq_length)

    def get_embedding_dimension(self) -> int:
        return int(self.table.shape[1])

    def encode(self, texts: Sequence[str], batch_size: int = 64, **_: Any) -> F32:
        """Unit vectors, one per text; a text without tokens gets the first basis vector (two empty texts are
        the same, and like nothing else). One tokenizer call for all texts (it runs on every core), then sums of
        table rows over slices of about ``_POOL_TOKENS`` tokens."""
        dim = self.table.shape[1]
        out = np.zeros((len(texts), dim), dtype=np.float32)
        encs = self.tokenizer.encode_batch([" ".join(t.split()) for t in texts], add_special_tokens=False)
        lengths = np.fromiter((len(e.ids) for e in encs), dtype=np.int64, count=len(encs))
        flat = np.fromiter(itertools.chain.from_iterable(e.ids for e in encs), dtype=np.int64, count=int(lengths.sum()))
        np.clip(flat, 0, len(self.table) - 1, out=flat)
        ends = np.cumsum(lengths)
        start = 0
        while start < len(texts):
            stop = max(start + 1, int(np.searchsorted(ends, ends[start] - lengths[start] + _POOL_TOKENS, "right")))
            rows = start + np.flatnonzero(lengths[start:stop])
            if len(rows):
                bounds = ends[rows] - lengths[rows]
                sums = np.add.reduceat(self.table[flat[bounds[0]:ends[rows[-1]]]], bounds - bounds[0], axis=0)
                out[rows] = sums / lengths[rows, None].astype(np.float32)
            start = stop
        norms = np.linalg.norm(out, axis=1)
        empty = norms == 0
        out[empty, 0], norms[empty] = 1.0, 1.0
        out /= norms[:, None]
        return out


def _file_fingerprint(folder: Path, files: Sequence[str], salt: str) -> str:
    digest = xxhash.xxh3_128(salt.encode())
    for name in files:
        digest.update(name.encode() + b"\0")
        digest.update((folder / name).read_bytes())
    return digest.hexdigest()


class Embedder:
    """Embeds texts with one local model (sentence-transformers, or ``wordllama``); loads it at first use."""

    def __init__(self, model: str | None, device: str = "auto", batch_size: int = 64,
                 cache_dir: Path | None = None) -> None:
        self.static = model == STATIC_MODEL
        self.path = model_path(model)
        self.name = model or "all-MiniLM-L6-v2"
        self.device_setting = device
        self.batch_size = batch_size
        self.cache_dir = cache_dir
        self._model: Any = None
        self._cache: EmbeddingCache | None = None
        self._memo: OrderedDict[bytes, F32] = OrderedDict()
        self.stats = {"embedded": 0, "cache_hits": 0, "memo_hits": 0}

    @functools.cached_property
    def fingerprint(self) -> str:
        if self.static:  # the two files it reads (the package folder holds sources and builds too) and the pooling
            return _file_fingerprint(self.path, _STATIC_FILES, f"mean-v2:{StaticModel.max_seq_length}")
        return model_fingerprint(self.path)

    @property
    def model(self) -> Any:
        if self._model is None:
            self._model = StaticModel(self.path) if self.static else \
                load_sentence_transformer(self.path, self.device_setting)
        return self._model

    @property
    def device(self) -> str:
        if self.static:
            return "cpu"
        return str(self.model.device) if self._model is not None else resolve_device(self.device_setting)

    @property
    def dim(self) -> int:
        return int(self.model.get_embedding_dimension() if hasattr(self.model, "get_embedding_dimension")
                   else self.model.get_sentence_embedding_dimension())

    @property
    def max_tokens(self) -> int:
        return int(self.model.max_seq_length)

    def describe(self) -> dict[str, Any]:
        return {"model": self.name, "path": str(self.path), "fingerprint": self.fingerprint[:16],
                "device": self.device, "dim": self.dim, "max_tokens": self.max_tokens,
                "cache": str(self._cache.path) if self._cache else None, **self.stats}

    def _disk(self) -> EmbeddingCache | None:
        if self._cache is None and self.cache_dir is not None:
            self._cache = EmbeddingCache(Path(self.cache_dir) / "embeddings.sqlite", self.dim)
        return self._cache

    def key(self, text: str) -> bytes:
        return xxhash.xxh3_128_digest(f"{self.fingerprint}\0{text}".encode("utf-8", "surrogatepass"))

    def _forward(self, inputs: list[str]) -> F32:
        """The model's vectors, in forward passes of texts of near-equal token counts.

        sentence-transformers sorts a call's texts by characters before cutting them into batches; on Alpaca
        that pads to 1.53x the real tokens (a character count misjudges code, numbers, and texts cut at 256
        tokens). Sorting by the tokenizer's own counts pads to 1.02x; each pass is then one call, in which its
        own sort changes nothing. Vectors are those of any other grouping (padding is masked), to float rounding.
        """
        bs = self.batch_size
        lengths = None if self.static or len(inputs) <= bs else self._token_counts(inputs)
        if lengths is None:
            return np.asarray(self.model.encode(inputs, batch_size=bs, normalize_embeddings=True,
                                                convert_to_numpy=True, show_progress_bar=False), dtype=np.float32)
        order = np.argsort(-lengths, kind="stable")
        out = np.empty((len(inputs), self.dim), dtype=np.float32)
        for start in range(0, len(order), bs):
            rows = order[start:start + bs]
            out[rows] = self.model.encode([inputs[i] for i in rows], batch_size=bs, normalize_embeddings=True,
                                          convert_to_numpy=True, show_progress_bar=False)
        return out

    def _token_counts(self, inputs: list[str]) -> npt.NDArray[np.int64] | None:
        """Tokens each text gives the model (capped at its limit); None when the model has no callable tokenizer."""
        tokenizer = getattr(self.model, "tokenizer", None)
        if not callable(tokenizer):
            return None
        ids = tokenizer(inputs, add_special_tokens=True, truncation=True, max_length=self.max_tokens,
                        return_attention_mask=False, return_token_type_ids=False)["input_ids"]
        return np.fromiter((len(x) for x in ids), dtype=np.int64, count=len(inputs))

    def encode(self, texts: Sequence[str]) -> F32:
        """Unit-length float32 vectors, one row per text, in order."""
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        keys = [self.key(t) for t in texts]
        found: dict[bytes, F32] = {}
        for k in keys:
            if k in self._memo:
                found[k] = self._memo[k]
                self._memo.move_to_end(k)
        self.stats["memo_hits"] += len(found)
        todo = [k for k in dict.fromkeys(keys) if k not in found]
        disk = self._disk() if todo else None
        if disk is not None:
            hits = disk.get(todo)
            self.stats["cache_hits"] += len(hits)
            found.update(hits)
            todo = [k for k in todo if k not in hits]
        if todo:
            text_of = dict(zip(keys, texts, strict=True))
            # cut to what the model reads (the tokenizer would split all of a 5 MB text first), UTF-8 safe
            inputs = [model_input(text_of[k], self.max_tokens) for k in todo]
            vecs = self._forward(inputs)
            self.stats["embedded"] += len(todo)
            new = list(zip(todo, vecs, strict=True))
            found.update(new)
            if disk is not None:
                disk.put(new)
        for k in keys:
            self._memo[k] = found[k]
        while len(self._memo) > _MEMO:
            self._memo.popitem(last=False)
        return np.stack([found[k] for k in keys]).astype(np.float32, copy=False)


_SHARED: dict[tuple[str, str, int, str], Embedder] = {}
_SHARED_LOCK = threading.Lock()


def shared_embedder(model: str | None, device: str, batch_size: int, cache_dir: Path | None) -> Embedder:
    """One Embedder per model, device, batch size and cache folder in this process (the model loads once)."""
    key = (str(model_path(model)), device, batch_size, str(cache_dir))
    with _SHARED_LOCK:
        if key not in _SHARED:
            _SHARED[key] = Embedder(model, device, batch_size, cache_dir)
        return _SHARED[key]
