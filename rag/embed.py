"""Sentence embeddings behind a small interface; sentence-transformers is imported only here
(the ONNX Runtime embedder is in rag/embed_onnx.py, chosen by `make_embedder`)."""

from __future__ import annotations

import copy
import json
import logging
import os
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Literal, Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt

from config.errors import ConfigError
from rag.cpu import CpuInfo, quiet_openmp_threads, read_cpu_info
from rag.vector_cache import VectorCache

logger = logging.getLogger(__name__)

Vectors = npt.NDArray[np.float32]


Backend = Literal["auto", "torch", "onnx-int8"]
Precision = Literal["auto", "fp32", "bf16"]
# Sequence lengths padded up to a multiple of this: oneDNN builds (and caches) a kernel per
# matrix shape, so with bf16 on AMX every new batch length cost time and memory (1178 chunks:
# 103 -> 125 chunks/s, peak 909 -> 601 MB; fp32 unchanged in speed, 758 -> 656 MB). Padding is
# masked: the vectors are the same.
PAD_TO_MULTIPLE = 16
# precision = "auto" on AVX512-BF16 without AMX: bf16 is used if it embeds a batch of this text
# at least PROBE_GAIN times as fast as fp32 (best of PROBE_RUNS after a first run),
# with every vector within PROBE_COSINE of fp32's.
PROBE_TEXT = (
    "The retention period for uploaded documents is ninety days, after which they are removed "
    "from the index and from backups. Table 3 lists the accuracy (91.2%), the F1 score (0.874) "
    "and the latency (12 ms on 2 cores, batch size 8) of each model; the validation loss stops "
    "improving after epoch 7, so training ends there. Each interrupt source has a priority "
    "register at offset 0x000004, and a pending bit that the gateway sets when it forwards "
    "the interrupt to the core."
)
PROBE_RUNS = 3
PROBE_GAIN = 1.25
PROBE_COSINE = 0.999
TIMINGS_FILE = "embedding-timings.json"  # in the models cache: what the timing decided


class Embedder(Protocol):
    """Turns texts into L2-normalised float32 vectors (cosine similarity = dot product)."""

    @property
    def dimension(self) -> int: ...

    @property
    def name(self) -> str: ...

    # Optional: `identity` (str), what produced the vectors (model, dimension, precision);
    # vectors of two embedders with the same identity are interchangeable. See identity_of.

    def embed_documents(self, texts: Sequence[str]) -> Vectors: ...

    def embed_query(self, text: str) -> Vectors: ...


@runtime_checkable
class SharesCores(Protocol):
    """An embedder whose thread count can follow other work on the same cores."""

    def yield_cores(self, count: int) -> None:
        """Use `count` fewer threads than configured (at least one) until called with 0."""
        ...


class SentenceTransformerEmbedder:
    """all-MiniLM-L6-v2 (or any sentence-transformers folder), loaded by path, fully offline."""

    def __init__(
        self,
        model_path: Path,
        *,
        batch_size: int = 32,
        query_cache_size: int = 256,
        precision: Precision = "fp32",
        threads: int | None = None,
        timings_file: Path | None = None,
    ):
        """`timings_file` keeps what the bf16-or-fp32 timing decided on this CPU (see
        `_faster_precision`), so later starts skip it and every start embeds alike."""
        offline_and_quiet_threads()
        try:
            import torch
            from sentence_transformers import SentenceTransformer
        except ImportError as exc:
            raise ConfigError(
                "sentence-transformers is not installed: run scripts/setup "
                "(pip install sentence-transformers torch==2.13.0)."
            ) from exc
        if (
            not (model_path / "config.json").is_file()
            and not (model_path / "modules.json").is_file()
        ):
            raise ConfigError(
                f"No sentence-transformers model at {model_path}: set embedding.model_path "
                "to a model folder, or leave it empty for the embedded default."
            )
        # Data-parallel, one torch thread per worker: on 2 cores two workers embedding their
        # own share of a batch beat two threads splitting each matrix product (papers, AMX
        # Xeon, bf16: 202 against 131 chunks/s; fp32 69 against 61), because OpenMP's threads
        # wait for each other after every small operation.
        torch.set_num_threads(1)
        self._workers = max(1, threads if threads is not None else (os.cpu_count() or 1))
        self._yielded = 0
        self._replicas: list[Any] = []
        self._pool: ThreadPoolExecutor | None = None
        self._replicas_lock = threading.Lock()
        self._model: Any = SentenceTransformer(str(model_path), device="cpu", local_files_only=True)
        self._model_path = model_path
        self._batch_size = batch_size
        self._timings_file = timings_file
        self._precision = resolve_precision(precision)
        if self._precision == "timed":
            self._precision = self._faster_precision(torch)
        if self._precision == "bf16":
            self._model.to(torch.bfloat16)
        self._name = model_path.name if model_path.name != "model" else model_path.parent.name
        measure = getattr(self._model, "get_embedding_dimension", None) or (
            self._model.get_sentence_embedding_dimension
        )
        self._dimension: int = int(measure() or 0)
        self._queries = VectorCache(query_cache_size)

    @property
    def dimension(self) -> int:
        return self._dimension

    @property
    def name(self) -> str:
        return self._name

    @property
    def identity(self) -> str:
        return vector_identity(self._name, self._dimension, self._precision)

    @property
    def backend(self) -> str:
        return "torch"

    @property
    def precision(self) -> str:
        return self._precision

    def runtime_info(self) -> str:
        import torch

        return f"torch {torch.__version__}, {self._workers} worker(s) of 1 thread"

    def yield_cores(self, count: int) -> None:
        """Leave `count` cores to other work (a parse child during an ingest): a worker that
        shares its core with another process holds the other workers up."""
        self._yielded = max(0, count)

    def vocabulary(self) -> frozenset[str]:
        """Whole words the model's tokenizer knows: a proxy for common English words."""
        vocab: dict[str, int] = getattr(self._model.tokenizer, "get_vocab", dict)()
        return frozenset(word for word in vocab if word.isalpha())

    def embed_documents(self, texts: Sequence[str]) -> Vectors:
        if not texts:
            return np.zeros((0, self._dimension), dtype=np.float32)
        workers = min(
            max(1, self._workers - self._yielded), -(-len(texts) // self._batch_size)
        )
        if workers == 1:
            return self._encode(self._model, list(texts))
        replicas = self._replicas_for(workers)
        # Each worker takes every n-th text by length, so the shares cost about the same.
        by_length = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        shares = [by_length[k::workers] for k in range(workers)]
        pool = self._pool
        assert pool is not None
        others = [
            pool.submit(self._encode, replica, [texts[i] for i in share])
            for replica, share in zip(replicas[1:], shares[1:], strict=True)
        ]
        vectors = np.empty((len(texts), self._dimension), dtype=np.float32)
        vectors[shares[0]] = self._encode(replicas[0], [texts[i] for i in shares[0]])
        for share, future in zip(shares[1:], others, strict=True):
            vectors[share] = future.result()
        return vectors

    def _encode(self, model: Any, texts: list[str]) -> Vectors:
        encoded = model.encode(  # sorts by length within the call: less padding
            texts,
            batch_size=self._batch_size,
            normalize_embeddings=True,
            convert_to_tensor=True,
            show_progress_bar=False,
            processing_kwargs={"text": {"pad_to_multiple_of": PAD_TO_MULTIPLE}},
        )
        vectors = np.ascontiguousarray(encoded.float().numpy(), dtype=np.float32)
        # In bf16 the model normalises to within 0.4% of unit length: again in fp32.
        vectors /= np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
        return vectors

    def _faster_precision(self, torch: Any) -> str:
        """bf16 if it embeds a sample at least PROBE_GAIN times faster than fp32, with vectors
        within PROBE_COSINE of fp32's, else fp32. Without AMX, AVX512-BF16 alone pays on some
        CPUs and not on others (the papers' chunks: 1.8x fp32 on a 2-core AMD EPYC, 35% slower
        on a 2-core Intel Xeon), so it is timed here (about 1 s), once per CPU, torch and model
        when a timings file is given. The model itself stays fp32: the caller converts it."""
        key = _timing_key(torch.__version__, self._model_path)
        known = _read_timings(self._timings_file).get(key)
        if known in ("bf16", "fp32"):
            logger.info("embedding in %s, as timed on this CPU before (%s)", known,
                        self._timings_file)
            return str(known)
        texts = [PROBE_TEXT] * self._batch_size
        candidate = copy.deepcopy(self._model).to(torch.bfloat16)

        def fastest(model: Any) -> tuple[float, Vectors]:
            times = []
            for _ in range(PROBE_RUNS):
                started = time.perf_counter()
                vectors = self._encode(model, texts)
                times.append(time.perf_counter() - started)
            return min(times[1:] or times), vectors  # the first run builds the kernels

        fp32_s, fp32 = fastest(self._model)
        bf16_s, bf16 = fastest(candidate)
        cosine = float(np.min(np.sum(fp32 * bf16, axis=1)))
        gain = fp32_s / max(bf16_s, 1e-9)
        chosen = "bf16" if gain >= PROBE_GAIN and cosine >= PROBE_COSINE else "fp32"
        logger.info("embedding in %s: bf16 timed %.2fx fp32 here (cosine %.5f)",
                    chosen, gain, cosine)
        _write_timing(self._timings_file, key, chosen)
        return chosen

    def _replicas_for(self, workers: int) -> list[Any]:
        """The model once per worker, all sharing one set of weights; each has its own
        tokenizer, whose settings transformers rewrites on every call (not thread-safe)."""
        with self._replicas_lock:
            if not self._replicas:
                self._replicas.append(self._model)
            while len(self._replicas) < workers:
                replica = copy.deepcopy(self._model)
                for mine, theirs in zip(
                    self._model.parameters(), replica.parameters(), strict=True
                ):
                    theirs.data = mine.data  # the copy's own weights are freed here
                self._replicas.append(replica)
            if self._pool is None:
                self._pool = ThreadPoolExecutor(
                    max_workers=max(1, self._workers - 1), thread_name_prefix="folio-embed"
                )
            return self._replicas[:workers]

    def embed_query(self, text: str) -> Vectors:
        """One query vector; repeated questions reuse a small LRU cache."""
        cached = self._queries.get(text)
        if cached is not None:
            return cached
        vector: Vectors = self.embed_documents([text])[0]
        self._queries.put(text, vector)
        return vector

    def forget_cached_queries(self) -> None:
        """Empty the query cache, so a benchmark embeds every question it times for real."""
        self._queries.clear()


def identity_of(embedder: Embedder) -> str:
    """What produced an embedder's vectors; an embedder without `identity` is named by its
    model name and dimension (its precision unknown, taken as fp32)."""
    identity = getattr(embedder, "identity", None)
    if isinstance(identity, str) and identity:
        return identity
    return vector_identity(embedder.name, embedder.dimension, "fp32")


def vector_identity(name: str, dimension: int, precision: str) -> str:
    """fp32 vectors of one model are the same whichever runtime made them (within ~1e-6), so the
    runtime is not part of the identity. bf16 vectors reproduce fp32's (worst cosine 0.9999 on
    the papers' 1178 chunks, above reembed.SAME_VECTORS), so they share fp32's identity and an
    index moves between CPUs with and without AMX without re-embedding; int8's (worst 0.995)
    do not."""
    return f"{name}/{dimension}/{_vector_family(precision)}"


def same_vectors(recorded: str, current: str) -> bool:
    """Whether a stored identity names the vectors `current` makes; identities recorded before
    bf16 shared fp32's identity (".../bf16") count as fp32."""
    name, _, precision = recorded.rpartition("/")
    return current in (recorded, f"{name}/{_vector_family(precision)}")


def _vector_family(precision: str) -> str:
    return "fp32" if precision == "bf16" else precision


def offline_and_quiet_threads() -> None:
    """Environment for the ML libraries, set before they load (an explicit setting wins).

    No hub: the model is a local folder. OpenMP threads sleep as soon as an embedding call ends
    instead of spinning for ~200 ms: on 2 cores a spinning torch thread takes a core from
    llama.cpp while it decodes (measured, see README "Performance").
    """
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    quiet_openmp_threads()


def _timing_key(torch_version: str, model_path: Path) -> str:
    """What a bf16-or-fp32 timing holds for: this CPU, this torch and this model."""
    cpu = read_cpu_info()
    return "|".join([cpu.model, " ".join(cpu.relevant_flags()), f"torch {torch_version}",
                     str(model_path.resolve())])


def _read_timings(path: Path | None) -> dict[str, Any]:
    if path is None:
        return {}
    try:
        found = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}  # none yet, or unreadable: time again
    return found if isinstance(found, dict) else {}


def _write_timing(path: Path | None, key: str, chosen: str) -> None:
    """Add one decision to the timings file (written whole, then renamed: never half)."""
    if path is None:
        return
    timings = {**_read_timings(path), key: chosen}
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(f".{path.name}.{os.getpid()}")
        partial.write_text(json.dumps(timings, indent=1), encoding="utf-8")
        os.replace(partial, path)
    except OSError as exc:
        logger.warning("could not keep the embedding timing in %s: %s", path, exc)


def resolve_precision(precision: Precision, cpu: CpuInfo | None = None) -> str:
    """bf16 only where the CPU does bfloat16 in hardware, else fp32. "bf16" accepts AMX or
    AVX512-BF16; "auto" takes AMX, and on AVX512-BF16 alone says "timed": whether it pays
    there depends on the CPU, so the embedder times both (`_faster_precision`)."""
    if precision == "fp32":
        return "fp32"
    if cpu is None:
        cpu = read_cpu_info()
    if cpu.has_amx_bf16 or (precision == "bf16" and cpu.has_fast_bf16):
        return "bf16"
    if cpu.has_fast_bf16:
        return "timed"
    if precision == "bf16":
        logger.info("embedding in fp32: this CPU (%s) has neither AMX nor AVX512-BF16", cpu.model)
    return "fp32"


def make_evidence_embedder(
    index_embedder: Embedder,
    choice: Literal["auto", "same", "onnx-int8"],
    model_path: Path,
    *,
    cache_dir: Path,
    installed_cache: Path | None = None,
    threads: int | None = None,
    cpu: CpuInfo | None = None,
) -> Embedder:
    """The embedder that scores an answer's candidate sentences against its question. Their
    vectors are never stored, so they need not be the index's: int8 embeds an answer's ~50
    sentences in half the time, with the same answer figures. The index's embedder when it is
    already run by ONNX Runtime, when `choice` is "same", or ("auto") when int8 cannot run here:
    a second torch model would only cost memory. Also ("auto") when the index's embedder runs
    bf16 on AMX: faster there than int8 one text at a time (evidence answer p50 0.19 -> 0.15 s
    on a 2-core Xeon, same figures on both dev sets). Not on AVX512-BF16 alone: bf16 there was
    slower than int8 (team documents' p50 0.15 -> 0.21 s on a 2-core AMD EPYC)."""
    if choice == "same" or getattr(index_embedder, "backend", "") == "onnx":
        return index_embedder
    if (choice == "auto" and getattr(index_embedder, "precision", "") == "bf16"
            and (cpu or read_cpu_info()).has_amx_bf16):
        return index_embedder
    evidence = _onnx_embedder(model_path, choice, cache_dir=cache_dir,
                              installed_cache=installed_cache, threads=threads,
                              batch_size=8, query_cache_size=0,
                              setting="embedding.evidence_backend")
    return evidence if evidence is not None else index_embedder


def _onnx_embedder(
    model_path: Path,
    backend: Literal["auto", "onnx-int8"],
    *,
    cache_dir: Path,
    installed_cache: Path | None,
    threads: int | None,
    batch_size: int,
    query_cache_size: int,
    setting: str = "embedding.backend",
) -> Embedder | None:
    """The int8 ONNX embedder, or None ("auto", with a log line) when onnxruntime is missing or
    the model cannot be exported; "onnx-int8" raises ConfigError naming `setting` instead."""
    import importlib.util

    if importlib.util.find_spec("onnxruntime") is None:
        if backend == "onnx-int8":
            raise ConfigError(
                f'{setting} = "onnx-int8" needs onnxruntime and onnx: run '
                "scripts/setup (pip install 'onnxruntime>=1.17' onnx)."
            )
        logger.info("onnxruntime is not installed: embedding with torch")
        return None
    from rag.embed_onnx import OnnxEmbedder, OnnxExportError

    try:
        return OnnxEmbedder(
            model_path,
            cache_dir=cache_dir,
            batch_size=batch_size,
            query_cache_size=query_cache_size,
            threads=threads,
            installed_cache=installed_cache,
        )
    except OnnxExportError as exc:
        if backend == "onnx-int8":
            raise ConfigError(
                f"{setting} = \"onnx-int8\": cannot run {model_path} in ONNX Runtime: {exc}"
            ) from exc
        logger.warning("embedding with torch: the ONNX model is not usable (%s)", exc)
        return None


def make_embedder(
    model_path: Path,
    *,
    backend: Backend = "torch",
    precision: Precision = "fp32",
    batch_size: int = 8,
    query_cache_size: int = 256,
    threads: int | None = None,
    cache_dir: Path,
    installed_cache: Path | None = None,
) -> Embedder:
    """The embedder the settings ask for. "auto" prefers the int8 ONNX embedder and falls back to
    torch (with a log line) when onnxruntime is missing or the model cannot be exported."""
    if backend in ("auto", "onnx-int8"):
        onnx = _onnx_embedder(model_path, "onnx-int8" if backend == "onnx-int8" else "auto",
                              cache_dir=cache_dir, installed_cache=installed_cache,
                              threads=threads, batch_size=batch_size,
                              query_cache_size=query_cache_size)
        if onnx is not None:
            return onnx
    return SentenceTransformerEmbedder(
        model_path,
        batch_size=batch_size,
        query_cache_size=query_cache_size,
        precision=precision,
        threads=threads,
        timings_file=cache_dir / TIMINGS_FILE,
    )
