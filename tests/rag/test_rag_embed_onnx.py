"""The int8 ONNX embedder, from the packaged model: exported and quantised locally, cached,
checked against sentence-transformers' fp32 vectors, and refused when the cache is wrong."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from config.errors import ConfigError
from rag import embed_onnx
from rag.cpu import CpuInfo
from rag.embed import (
    SentenceTransformerEmbedder,
    identity_of,
    make_embedder,
    make_evidence_embedder,
)
from rag.embed_onnx import OnnxEmbedder, OnnxExportError
from rag.models import default_embedding_model

TEXTS = [
    "The harbour tax is seventeen euros per night for every visitor to the island.",
    "Ferries leave the north pier every hour.",
    "A much longer passage about the museum, which is closed on Mondays and on the first of "
    "January, and whose collection of maritime maps is the largest in the region, with more "
    "than four thousand charts drawn between 1650 and 1900.",
    "tax",
]


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    yield tmp_path_factory.mktemp("models")


@pytest.fixture(scope="module")
def onnx(cache: Path) -> OnnxEmbedder:
    return OnnxEmbedder(default_embedding_model(), cache_dir=cache, batch_size=2)


@pytest.mark.slow
def test_int8_vectors_match_fp32_and_keep_the_order(onnx: OnnxEmbedder) -> None:
    reference = SentenceTransformerEmbedder(default_embedding_model())
    expected = reference.embed_documents(TEXTS)
    got = onnx.embed_documents(TEXTS)
    assert got.shape == expected.shape and got.dtype == np.float32
    cosines = np.sum(got * expected, axis=1)
    assert cosines.min() >= embed_onnx.MIN_COSINE
    assert np.allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-4)
    # One text per call: a text's vector never depends on the texts embedded with it.
    np.testing.assert_allclose(onnx.embed_query(TEXTS[1]), got[1], atol=1e-6)
    np.testing.assert_allclose(onnx.embed_documents(TEXTS[::-1])[::-1], got, atol=1e-6)
    assert onnx.precision == "int8" and onnx.identity.endswith("/384/int8")
    assert identity_of(onnx) != identity_of(reference)  # a switch re-embeds the collections
    assert "tax" in onnx.vocabulary()


@pytest.mark.slow
def test_a_second_load_uses_the_cache(
    onnx: OnnxEmbedder, cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_export(*args: object) -> None:
        raise AssertionError("exported again")

    monkeypatch.setattr(embed_onnx, "_run_export_child", no_export)
    again = OnnxEmbedder(default_embedding_model(), cache_dir=cache)
    np.testing.assert_allclose(again.embed_documents(TEXTS), onnx.embed_documents(TEXTS), atol=1e-5)


@pytest.mark.slow
def test_a_cache_whose_vectors_differ_is_refused_and_auto_falls_back_to_torch(
    onnx: OnnxEmbedder, cache: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    [folder] = [p for p in cache.iterdir() if (p / embed_onnx.MANIFEST).is_file()]
    broken = tmp_path / "models"
    (broken / folder.name).mkdir(parents=True)
    for file in folder.iterdir():
        (broken / folder.name / file.name).write_bytes(file.read_bytes())
    reference = np.load(folder / embed_onnx.REFERENCE)
    np.save(broken / folder.name / embed_onnx.REFERENCE, np.roll(reference, 1, axis=0))
    with pytest.raises(OnnxExportError, match="matches the fp32 vectors"):
        OnnxEmbedder(default_embedding_model(), cache_dir=broken)
    with caplog.at_level(logging.WARNING):
        embedder = make_embedder(default_embedding_model(), backend="auto", cache_dir=broken)
    assert isinstance(embedder, SentenceTransformerEmbedder)
    assert "embedding with torch" in caplog.text and "gives other vectors" in caplog.text
    manifest = json.loads((folder / embed_onnx.MANIFEST).read_text())
    assert manifest["int8"]["ok"] and manifest["int8"]["min_cosine"] >= embed_onnx.MIN_COSINE


def cls_pooled_model(folder: Path) -> Path:
    """A model folder whose pooling is not the mean: the ONNX export refuses it."""
    (folder / "1_Pooling").mkdir(parents=True)
    (folder / "tokenizer.json").write_text("{}")
    (folder / "sentence_bert_config.json").write_text('{"max_seq_length": 128}')
    (folder / "modules.json").write_text(json.dumps([
        {"path": "", "type": "sentence_transformers.models.Transformer"},
        {"path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
    ]))
    (folder / "1_Pooling" / "config.json").write_text('{"pooling_mode_cls_token": true}')
    return folder


def test_a_model_folder_that_is_not_mean_pooled_is_refused(tmp_path: Path) -> None:
    with pytest.raises(OnnxExportError, match="not mean pooling"):
        OnnxEmbedder(cls_pooled_model(tmp_path / "model"), cache_dir=tmp_path / "cache")


class IndexEmbedder:
    """Stands for the index's embedder: only which object comes back is under test."""

    dimension = 384
    name = "index"

    def __init__(self, backend: str, precision: str = "fp32") -> None:
        self.backend, self.precision = backend, precision

    def embed_documents(self, texts: object) -> np.ndarray:
        raise AssertionError("not called")

    def embed_query(self, text: str) -> np.ndarray:
        raise AssertionError("not called")


def test_answers_sentences_are_scored_by_int8_and_the_index_is_left_alone(
    cache: Path, onnx: OnnxEmbedder
) -> None:
    index = IndexEmbedder("torch")
    evidence = make_evidence_embedder(index, "auto", default_embedding_model(), cache_dir=cache)
    assert isinstance(evidence, OnnxEmbedder) and evidence.precision == "int8"
    # Its vectors are the int8 embedder's: the same as the index's within MIN_COSINE.
    assert np.allclose(evidence.embed_documents(TEXTS), onnx.embed_documents(TEXTS), atol=1e-5)
    assert make_evidence_embedder(index, "same", default_embedding_model(),
                                  cache_dir=cache) is index
    # An index already embedded by ONNX Runtime is not loaded twice.
    already = IndexEmbedder("onnx")
    assert make_evidence_embedder(already, "auto", default_embedding_model(),
                                  cache_dir=cache) is already


def test_a_bf16_index_embedder_scores_the_sentences_itself_on_amx_only(cache: Path) -> None:
    """On AMX the index's bf16 torch model is faster than int8 one text at a time, so "auto"
    loads no second model; on AVX512-BF16 alone it was slower, so int8 is loaded there;
    "onnx-int8" always asks for int8."""
    bf16 = IndexEmbedder("torch", precision="bf16")
    amx = CpuInfo("sapphire rapids", frozenset({"avx512_bf16", "amx_tile", "amx_bf16"}))
    no_amx = CpuInfo("epyc", frozenset({"avx512_bf16", "avx512_vnni"}))
    model = default_embedding_model()
    assert make_evidence_embedder(bf16, "auto", model, cache_dir=cache, cpu=amx) is bf16
    plain = make_evidence_embedder(bf16, "auto", model, cache_dir=cache, cpu=no_amx)
    assert isinstance(plain, OnnxEmbedder) and plain.precision == "int8"
    asked = make_evidence_embedder(bf16, "onnx-int8", model, cache_dir=cache, cpu=amx)
    assert isinstance(asked, OnnxEmbedder) and asked.precision == "int8"


def test_without_a_usable_onnx_model_auto_keeps_the_index_embedder(tmp_path: Path) -> None:
    """A model ONNX Runtime cannot run means no second model: "auto" scores sentences with the
    index's embedder; "onnx-int8" says why it cannot."""
    model = cls_pooled_model(tmp_path / "model")
    index = IndexEmbedder("torch")
    assert make_evidence_embedder(index, "auto", model, cache_dir=tmp_path / "cache") is index
    with pytest.raises(ConfigError, match=r"embedding\.evidence_backend .*ONNX Runtime"):
        make_evidence_embedder(index, "onnx-int8", model, cache_dir=tmp_path / "cache")
