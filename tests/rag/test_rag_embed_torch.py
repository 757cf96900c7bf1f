"""The torch embedder on the packaged all-MiniLM-L6-v2: padding batches to a multiple of 16
tokens leaves every vector as it is alone, and bf16 (where this CPU does it) makes the fp32
vectors within the cosine that lets the two share an index."""

from __future__ import annotations

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
