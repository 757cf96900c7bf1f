"""The embedded model never puts weights in llama.cpp's extra buffer types (AMX among them)
unless configured to, and `folio doctor`'s model check, run in a child process, proves it from
the load log. If a llama-cpp-python upgrade stopped the switch from taking effect, the
"off" check would show the extra types the default load tries, and these tests would fail."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import pytest

from rag.cpu import read_cpu_info
from rag.generate import LlamaCppGenerator
from rag.generate_isolated import IsolatedGenerator
from rag.model_check import check_model, parse_load_log
from rag.models import default_generation_model

pytestmark = pytest.mark.slow


def test_the_model_check_sees_extra_buffers_only_when_they_are_turned_on() -> None:
    model = default_generation_model()
    off = check_model(model, extra_buffers=False, threads=1)
    on = check_model(model, extra_buffers=True, threads=1)
    assert off.passed, off.error
    assert off.extra_buffers is False  # read back from the model
    assert off.extra_types == [] and not off.uses_amx
    assert off.buffers and off.generated.strip()
    if on.passed:
        assert on.extra_buffers is True
        assert on.extra_types, "with the switch on, llama.cpp should at least try CPU_REPACK"
    else:  # the crash the switch exists for: reported by the check, on AMX CPUs only
        assert read_cpu_info().has_amx, on.error
        assert "SIGSEGV" in on.error
    assert "CPU" in off.system_info and off.llama_cpp_version


def test_a_model_that_cannot_load_is_a_failed_check_not_a_crash(tmp_path: Path) -> None:
    broken = tmp_path / "broken.gguf"
    broken.write_bytes(b"GGUF" + b"\0" * 64)
    check = check_model(broken, extra_buffers=False, threads=1)
    assert not check.passed
    assert "broken.gguf" in check.error or "load" in check.error.lower(), check.error


def test_parse_load_log_reads_amx_buffers_and_repacks() -> None:
    log = (
        "load_tensors:   CPU_Mapped model buffer size =    92.10 MiB\n"
        "load_tensors:          AMX model buffer size =    95.34 MiB\n"
        "amx repack tensor blk.0.attn_q.weight of type q4_1\n"
    )
    buffers, extra = parse_load_log(log)
    assert buffers == {"CPU_Mapped": 92.10, "AMX": 95.34}
    assert extra == ["AMX"]


def test_settings_default_to_no_extra_buffers_and_an_isolated_model(settings_factory: Any,
                                                                     tmp_path: Path) -> None:
    settings = settings_factory(tmp_path)
    assert settings.generator.extra_buffer_types is False
    assert settings.generator.isolate is True


def test_a_long_prompt_runs_through_the_real_embedded_model_in_its_child_process() -> None:
    """CI covers the crash of issue 12 on every machine: ~400 prompt tokens crashed AMX."""
    generator = IsolatedGenerator(functools.partial(
        LlamaCppGenerator, default_generation_model(), context_tokens=2048, threads=1,
        batch_tokens=512, temperature=0.0, repeat_penalty=1.15,
    ))
    try:
        passages = " ".join(
            f"Section {n}: visitors must sign in at the front desk and wear a badge." for n in
            range(1, 31)
        )
        prompt = generator.render([{"role": "user", "content": passages + " Where do visitors "
                                    "sign in?"}])
        result = generator.generate(prompt, max_tokens=24)
        assert result.prompt_tokens >= 400
        assert result.completion_tokens > 0 and result.text.strip()
        assert generator.info()["extra_buffers"] is False
    finally:
        generator.close()


def test_the_bench_s_raw_baseline_loads_without_extra_buffers_too() -> None:
    """`folio bench` times raw llama-cpp-python beside Folio; with llama.cpp's default buffers
    that baseline segfaulted on an AMX Xeon. It loads the way Folio's model does."""
    from rag import rawbench

    llm = rawbench.load_raw_model(default_generation_model(), context_tokens=512, threads=1)
    try:
        assert llm.model_params.use_extra_bufts is False
        timed = rawbench.time_raw_completion(llm, "Hello", 2)
        assert timed["tokens"] >= 1 and timed["total_s"] >= timed["ttft_s"] > 0
    finally:
        llm.close()
