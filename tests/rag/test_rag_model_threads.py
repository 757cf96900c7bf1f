"""llama.cpp's OpenMP threads spin only briefly while they wait, in the model's own process,
whatever the parent process has loaded: long spinning costs most of the decode rate on shared
cores, and sleeping at once costs three quarters of it on free ones (rag.cpu)."""

from __future__ import annotations

import functools

import pytest

from rag.generate import LlamaCppGenerator
from rag.generate_isolated import IsolatedGenerator
from rag.models import default_generation_model

pytestmark = pytest.mark.slow


def _model_process_policy() -> tuple[object, object]:
    generator = IsolatedGenerator(functools.partial(
        LlamaCppGenerator, default_generation_model(), context_tokens=256, threads=1,
        batch_tokens=64, temperature=0.0, repeat_penalty=1.0,
    ))
    try:
        info = generator.info()
        return info["openmp_wait_policy"], info["openmp_spin_count"]
    finally:
        generator.close()


def test_the_model_process_spins_briefly_even_if_no_embedder_loaded_first(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
    monkeypatch.delenv("GOMP_SPINCOUNT", raising=False)
    assert _model_process_policy() == (None, "1000")


def test_an_explicit_wait_policy_gets_no_spin_count_of_ours(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("OMP_WAIT_POLICY", "PASSIVE")  # for a machine shared with heavy work
    monkeypatch.delenv("GOMP_SPINCOUNT", raising=False)
    assert _model_process_policy() == ("PASSIVE", None)


def test_an_explicit_wait_setting_is_kept(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OMP_WAIT_POLICY", "PASSIVE")
    monkeypatch.setenv("GOMP_SPINCOUNT", "300000")
    assert _model_process_policy() == ("PASSIVE", "300000")
