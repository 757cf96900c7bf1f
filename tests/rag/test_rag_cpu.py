"""CPU features are read at run time from /proc/cpuinfo, and bf16 is chosen only where the CPU
does it in hardware."""

from __future__ import annotations

from pathlib import Path

from rag.cpu import CpuInfo, read_cpu_info
from rag.embed import resolve_precision

XEON = """processor\t: 0
vendor_id\t: GenuineIntel
model name\t: Intel(R) Xeon(R) Processor
flags\t\t: fpu sse2 avx avx2 fma avx512f avx512_vnni avx512_bf16 avx512_fp16
processor\t: 1
model name\t: Intel(R) Xeon(R) Processor
flags\t\t: fpu sse2
"""
ARM = """processor\t: 0
Features\t: fp asimd evtstrm aes crc32
CPU implementer\t: 0x41
"""


def test_the_first_processor_s_model_and_flags_are_read(tmp_path: Path) -> None:
    (tmp_path / "cpuinfo").write_text(XEON)
    cpu = read_cpu_info(tmp_path / "cpuinfo")
    assert cpu.model == "Intel(R) Xeon(R) Processor"
    assert cpu.has_fast_bf16 and cpu.has_int8_dot and not cpu.has_amx_bf16
    assert cpu.relevant_flags() == [
        "avx", "avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16", "avx512_fp16",
    ]


def test_arm_features_and_a_missing_file(tmp_path: Path) -> None:
    (tmp_path / "cpuinfo").write_text(ARM)
    arm = read_cpu_info(tmp_path / "cpuinfo")
    assert arm.relevant_flags() == ["asimd"] and not arm.has_fast_bf16
    missing = read_cpu_info(tmp_path / "nowhere")
    assert missing.flags == frozenset() and missing.model  # platform's name, never empty


def test_bf16_only_where_the_hardware_does_it() -> None:
    plain = CpuInfo("old", frozenset({"avx2"}))
    avx512_bf16 = CpuInfo("xeon", frozenset({"avx512f", "avx512_bf16"}))
    amx = CpuInfo("sapphire rapids", frozenset({"avx512_bf16", "amx_tile", "amx_bf16"}))
    assert resolve_precision("fp32", amx) == "fp32"
    assert resolve_precision("bf16", plain) == "fp32"
    assert resolve_precision("bf16", avx512_bf16) == "bf16"
    # Without AMX it pays on some CPUs and not on others: the embedder times both.
    assert resolve_precision("auto", avx512_bf16) == "timed"
    assert resolve_precision("auto", plain) == "fp32"
    assert resolve_precision("auto", amx) == "bf16"
