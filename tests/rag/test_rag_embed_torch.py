"""The torch embedder on the packaged all-MiniLM-L6-v2: padding batches to a multiple of 16
tokens leaves every vector as it is alone, bf16 (where this CPU does it) makes the fp32
vectors within the cosine that lets the two share an index, and a call split between two
workers gives each text its one-worker vector, in order, with one copy of the weights."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest

from rag.embed import SentenceTransformerEmbedder, identity_of, resolve_precision
from rag.models import default_embedding_model
from rag.reembed import SAME_VECTORS

TEXTS = [
    "tax",
    "Ferries leave the north pier every hour.",
    "A much longer passage about the museum, which is closed on Mondays and on the first of "
    "January, and whose collection of maritime maps is the largest in the region, with more "
    "than four thousand charts drawn between 1650 and 1900, most of them by hand.",
]


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.sum(a * b, axis=1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)


@pytest.fixture(scope="module")
def fp32() -> SentenceTransformerEmbedder:
    return SentenceTransformerEmbedder(default_embedding_model(), batch_size=8, precision="fp32")


def test_a_text_s_vector_does_not_depend_on_the_padding_of_its_batch(
    fp32: SentenceTransformerEmbedder,
) -> None:
    batched = fp32.embed_documents(TEXTS)  # "tax" padded to the longest text's multiple of 16
    alone = np.stack([fp32.embed_documents([text])[0] for text in TEXTS])
    assert batched.shape == (3, fp32.dimension)
    assert cosines(batched, alone).min() > 0.99999


def test_bf16_vectors_are_the_fp32_ones_within_the_index_s_tolerance(
    fp32: SentenceTransformerEmbedder,
) -> None:
    if resolve_precision("bf16") != "bf16":
        pytest.skip("this CPU has neither AMX nor AVX512-BF16: bf16 is never used here")
    bf16 = SentenceTransformerEmbedder(default_embedding_model(), batch_size=8, precision="bf16")
    assert bf16.precision == "bf16"
    assert cosines(bf16.embed_documents(TEXTS), fp32.embed_documents(TEXTS)).min() >= SAME_VECTORS
    assert identity_of(bf16) == identity_of(fp32)  # so an index moves between the two as it is


def test_auto_on_a_cpu_without_amx_takes_bf16_only_where_timed_faster_and_as_close(
    fp32: SentenceTransformerEmbedder, monkeypatch: pytest.MonkeyPatch
) -> None:
    import rag.embed

    monkeypatch.setattr(rag.embed, "resolve_precision", lambda precision: "timed")
    monkeypatch.setattr(rag.embed, "PROBE_GAIN", 1000.0)  # no CPU is that much faster
    slow = SentenceTransformerEmbedder(default_embedding_model(), batch_size=8, precision="auto")
    assert slow.precision == "fp32"
    assert cosines(slow.embed_documents(TEXTS), fp32.embed_documents(TEXTS)).min() > 0.99999
    monkeypatch.setattr(rag.embed, "PROBE_GAIN", 0.0)  # any speed will do
    fast = SentenceTransformerEmbedder(default_embedding_model(), batch_size=8, precision="auto")
    assert fast.precision == "bf16"
    vectors = fast.embed_documents(TEXTS)
    assert cosines(vectors, fp32.embed_documents(TEXTS)).min() >= SAME_VECTORS
    # Normalised again in fp32: bf16's own normalisation is off by up to 0.4%.
    assert np.abs(np.linalg.norm(vectors, axis=1) - 1).max() < 1e-5
    monkeypatch.setattr(rag.embed, "PROBE_COSINE", 1.01)  # no bf16 vector is that close
    assert SentenceTransformerEmbedder(default_embedding_model(), batch_size=8,
                                       precision="auto").precision == "fp32"


def test_what_the_timing_decided_is_kept_so_later_starts_embed_alike(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import rag.embed

    timings = tmp_path / "models" / "embedding-timings.json"
    monkeypatch.setattr(rag.embed, "resolve_precision", lambda precision: "timed")
    monkeypatch.setattr(rag.embed, "PROBE_GAIN", 0.0)  # this start: bf16 wins
    first = SentenceTransformerEmbedder(default_embedding_model(), batch_size=8,
                                        precision="auto", timings_file=timings)
    assert first.precision == "bf16" and timings.is_file()
    monkeypatch.setattr(rag.embed, "PROBE_GAIN", 1000.0)  # timed again, bf16 would lose
    later = SentenceTransformerEmbedder(default_embedding_model(), batch_size=8,
                                        precision="auto", timings_file=timings)
    assert later.precision == "bf16"  # kept, not timed again
    assert np.allclose(later.embed_documents(TEXTS), first.embed_documents(TEXTS), atol=1e-6)
    timings.write_text("not json")  # a broken file is timed again, and rewritten
    assert SentenceTransformerEmbedder(default_embedding_model(), batch_size=8,
                                       precision="auto", timings_file=timings).precision == "fp32"
    assert "fp32" in timings.read_text()


# Texts of many lengths, more than two batches of 4, so two workers each get several batches.
MIXED = [
    " ".join(f"word{n}" for n in range(length)) + f" ends text {index}."
    for index, length in enumerate([1, 40, 3, 90, 7, 15, 60, 2, 33, 120, 5, 9, 71, 26, 48, 11, 4])
]


@pytest.fixture(scope="module")
def two_workers() -> SentenceTransformerEmbedder:
    return SentenceTransformerEmbedder(
        default_embedding_model(), batch_size=4, precision="fp32", threads=2
    )


def encoding_threads(
    embedder: SentenceTransformerEmbedder, monkeypatch: pytest.MonkeyPatch
) -> list[str]:
    """The names of the threads each share of an embed_documents call ran on."""
    names: list[str] = []
    encode = embedder._encode

    def recording(model: object, texts: list[str]) -> np.ndarray:
        names.append(threading.current_thread().name)
        return encode(model, texts)

    monkeypatch.setattr(embedder, "_encode", recording)
    return names


def test_two_workers_give_every_text_the_vector_one_worker_gives_in_order(
    two_workers: SentenceTransformerEmbedder, monkeypatch: pytest.MonkeyPatch
) -> None:
    names = encoding_threads(two_workers, monkeypatch)
    two_workers.yield_cores(1)
    try:
        alone = two_workers.embed_documents(MIXED)
    finally:
        two_workers.yield_cores(0)
    assert names == [threading.current_thread().name]
    names.clear()
    shared = two_workers.embed_documents(MIXED)
    assert len(names) == 2 and any(name.startswith("folio-embed") for name in names)
    assert shared.shape == (len(MIXED), two_workers.dimension)
    # Distinct texts are far apart, so this also says no row moved.
    assert cosines(shared, alone).min() > 0.99999


def test_one_batch_or_less_is_not_split(
    two_workers: SentenceTransformerEmbedder, monkeypatch: pytest.MonkeyPatch
) -> None:
    names = encoding_threads(two_workers, monkeypatch)
    two_workers.embed_documents(MIXED[:4])
    assert names == [threading.current_thread().name]


def test_a_second_worker_shares_the_weights_but_has_its_own_tokenizer(
    two_workers: SentenceTransformerEmbedder,
) -> None:
    first, second = two_workers._replicas_for(2)
    pairs = list(zip(first.parameters(), second.parameters(), strict=True))
    assert pairs and all(mine.data_ptr() == theirs.data_ptr() for mine, theirs in pairs)
    assert first.tokenizer is not second.tokenizer
