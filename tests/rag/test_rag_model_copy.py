"""The generator's Q8_0 copy: made once by llama.cpp's quantizer from the real embedded model,
reused, loaded in its place, and never the reason an answer fails."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from config.settings import GeneratorSettings
from rag.generate import LlamaCppGenerator
from rag.model_copy import copy_path, model_file
from rag.models import default_generation_model

pytestmark = pytest.mark.slow

Q8_0 = 7  # llama.cpp's LLAMA_FTYPE_MOSTLY_Q8_0, as general.file_type in the GGUF


@pytest.fixture(autouse=True)
def no_installed_copy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An install without the copy scripts/setup makes, so each test sees its own cache."""
    installed = tmp_path / "install"
    installed.mkdir()
    monkeypatch.setattr("rag.models.installed_cache_dir", lambda: installed)
    return installed


def file_type(path: Path) -> int:
    import llama_cpp

    model = llama_cpp.Llama(model_path=str(path), vocab_only=True, verbose=False)
    return int(model.metadata["general.file_type"])


def test_the_copy_is_q8_0_made_once_and_reused(tmp_path: Path) -> None:
    source = default_generation_model()
    first = model_file(source, "q8_0", tmp_path)
    assert first != source and first.parent == tmp_path and first.is_file()
    assert file_type(first) == Q8_0 != file_type(source)
    made = first.stat().st_mtime_ns
    assert model_file(source, "q8_0", tmp_path) == first
    assert first.stat().st_mtime_ns == made  # not made again
    assert sorted(p.name for p in tmp_path.iterdir()) == [first.name, "install"]  # no .part


def test_as_is_loads_the_file_itself_and_an_installed_copy_is_preferred(
    tmp_path: Path, no_installed_copy: Path
) -> None:
    source = default_generation_model()
    assert model_file(source, "as-is", tmp_path) == source
    prepared = copy_path(source, no_installed_copy)
    prepared.write_bytes(b"stand-in for the copy scripts/setup makes")
    assert model_file(source, "q8_0", tmp_path / "data") == prepared
    assert not (tmp_path / "data").exists()


def test_a_copy_that_cannot_be_made_loads_the_source(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    not_a_folder = tmp_path / "models"
    not_a_folder.write_text("a file where the cache folder should be")
    with caplog.at_level(logging.WARNING):
        loaded = model_file(default_generation_model(), "q8_0", not_a_folder / "cache")
    assert loaded == default_generation_model()
    assert "no Q8_0 copy" in caplog.text


def test_a_broken_source_gets_no_copy_and_a_reason(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    broken = tmp_path / "broken.gguf"
    broken.write_bytes(b"GGUF" + b"\0" * 64)
    with caplog.at_level(logging.WARNING):
        assert model_file(broken, "q8_0", tmp_path / "cache") == broken
    assert "no Q8_0 copy of broken.gguf" in caplog.text
    assert not any((tmp_path / "cache").glob("*.part"))


def test_auto_copies_the_embedded_model_only() -> None:
    assert GeneratorSettings().weights_to_load == "q8_0"
    own = GeneratorSettings(model_path=Path("/models/big.gguf"))
    assert own.weights_to_load == "as-is"
    assert GeneratorSettings(model_path=Path("/m.gguf"), weights="q8_0").weights_to_load == "q8_0"


def test_the_generator_loads_the_copy_and_answers(tmp_path: Path) -> None:
    generator = LlamaCppGenerator(
        default_generation_model(), context_tokens=512, threads=1, batch_tokens=512,
        temperature=0.0, repeat_penalty=1.0, weights="q8_0", cache_dir=tmp_path,
    )
    assert generator.loaded_file.parent == tmp_path
    assert generator.name == default_generation_model().name
    prompt = generator.render([{"role": "user", "content": "Say hello."}])
    assert generator.generate(prompt, max_tokens=8).text.strip()

