"""llama.cpp's OpenMP threads sleep while they wait, in the model's own process, whatever the
parent process has loaded: spinning threads cost most of the decode rate on shared cores."""

from __future__ import annotations

import functools

import pytest

from rag.generate import LlamaCppGenerator
from rag.generate_isolated import IsolatedGenerator
from rag.models import default_generation_model

pytestmark = pytest.mark.slow


def _model_process_policy() -> object:
    generator = IsolatedGenerator(functools.partial(
        LlamaCppGenerator, default_generation_model(), context_tokens=256, threads=1,
        batch_tokens=64, temperature=0.0, repeat_penalty=1.0,
    ))
    try:
        return generator.info()["openmp_wait_policy"]
    finally:
        generator.close()


def test_the_model_process_waits_passively_even_if_no_embedder_loaded_first(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
    assert _model_process_policy() == "PASSIVE"


def test_an_explicit_wait_policy_is_kept(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OMP_WAIT_POLICY", "ACTIVE")
    assert _model_process_policy() == "ACTIVE"
