"""The int8 ONNX embedder (embedding.backend = "onnx-int8", or "auto" with onnxruntime
installed) is prepared once per install; a data dir indexed by torch (fp32, the default) and
reopened with it is re-embedded once, with a log line, and still answers."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pdfs
import pytest

from bot.app import load_settings
from rag import embed_onnx
from rag.factory import build_engine
from rag.models import default_embedding_model


def _no_export(*args: object) -> None:
    raise AssertionError("exported again")


def _fake_export(folder: Path) -> Path:
    folder.mkdir(parents=True)
    (folder / embed_onnx.MANIFEST).write_text(json.dumps({"recipe": embed_onnx.RECIPE}))
    return folder


def test_the_install_s_export_is_used_when_the_data_dir_has_none(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(embed_onnx, "_run_export_child", _no_export)
    model = default_embedding_model()
    name = f"{model.name if model.name != 'model' else model.parent.name}-onnx-"
    name += embed_onnx.cache_key(model)
    installed = _fake_export(tmp_path / "install" / name)
    data = tmp_path / "data" / "models"
    assert embed_onnx.ensure_exported(model, data, tmp_path / "install") == installed
    # The data dir's own export (another recipe run, a configured cache_dir) comes first.
    own = _fake_export(data / name)
    assert embed_onnx.ensure_exported(model, data, tmp_path / "install") == own


def test_an_export_for_other_model_files_is_not_taken_from_the_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    model = tmp_path / "model"
    for file in default_embedding_model().rglob("*"):
        if file.is_file():
            target = model / file.relative_to(default_embedding_model())
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(file.read_bytes())
    packaged = embed_onnx.cache_key(default_embedding_model())
    _fake_export(tmp_path / "install" / f"model-onnx-{packaged}")
    exported: list[Path] = []

    def export(path: Path, out: Path) -> None:
        exported.append(path)
        (out / embed_onnx.MANIFEST).write_text("{}")

    monkeypatch.setattr(embed_onnx, "_run_export_child", export)
    folder = embed_onnx.ensure_exported(model, tmp_path / "data", tmp_path / "install")
    assert exported == [model]  # copied files have other times: another key, exported anew
    assert folder.parent == tmp_path / "data" and (folder / embed_onnx.MANIFEST).is_file()


@pytest.mark.slow
def test_an_index_embedded_by_torch_is_re_embedded_once_by_int8(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    data = tmp_path / "data"
    text = "The ferry to the island leaves the north pier every ninety minutes."
    old = build_engine(load_settings(data_dir=data, embedding={"backend": "torch"}))
    try:
        [outcome] = old.ingest_bytes("ferry.pdf", pdfs.make_pdf([text]), collection="c").outcomes
        assert outcome.status == "added"
        assert old.embedder.identity.endswith("/fp32")
    finally:
        old.close()
    settings = load_settings(data_dir=data, embedding={"backend": "auto"})
    new = build_engine(settings)
    try:
        assert new.embedder.identity.endswith("/int8")
        with caplog.at_level(logging.WARNING):
            passages = new.retrieve("How often does the ferry leave?", collection="c")
        assert passages and passages[0].document == "ferry.pdf"
        assert "re-embedding its 1 chunks once" in caplog.text
        assert "/fp32" in caplog.text and "/int8" in caplog.text
        caplog.clear()
        with caplog.at_level(logging.WARNING):
            assert new.retrieve("Where does the ferry leave from?", collection="c")
        assert "re-embedding" not in caplog.text  # once only
    finally:
        new.close()
