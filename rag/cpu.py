"""What this CPU can do, read at run time (never assumed): the model name and the vector and
matrix instruction sets that decide which embedding precision is fast here."""

from __future__ import annotations

import os
import platform
from dataclasses import dataclass
from pathlib import Path

# The flags that matter for the embedder and llama.cpp, in the order they are reported.
RELEVANT_FLAGS = (
    "avx", "avx2", "fma", "f16c", "avx_vnni", "avx512f", "avx512bw", "avx512vl", "avx512_vnni",
    "avx512_bf16", "avx512_fp16", "amx_tile", "amx_int8", "amx_bf16", "neon", "asimd", "sve",
)


@dataclass(frozen=True, slots=True)
class CpuInfo:
    model: str
    flags: frozenset[str]

    @property
    def has_fast_bf16(self) -> bool:
        """AMX or AVX512-BF16: bfloat16 matrix products in hardware."""
        return bool({"amx_bf16", "avx512_bf16"} & self.flags)

    @property
    def has_amx_bf16(self) -> bool:
        return "amx_bf16" in self.flags

    @property
    def has_int8_dot(self) -> bool:
        """VNNI (AVX512 or AVX) or AMX int8: int8 dot products in hardware."""
        return bool({"avx512_vnni", "avx_vnni", "amx_int8"} & self.flags)

    def relevant_flags(self) -> list[str]:
        return [flag for flag in RELEVANT_FLAGS if flag in self.flags]


def read_cpu_info(cpuinfo: Path = Path("/proc/cpuinfo")) -> CpuInfo:
    """The first processor's model name and flags (x86 "flags", Arm "Features")."""
    model = ""
    flags: frozenset[str] = frozenset()
    try:
        text = cpuinfo.read_text(encoding="utf-8", errors="replace")
    except OSError:
        text = ""
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip().lower()
        if key in ("model name", "cpu model", "hardware") and not model:
            model = value.strip()
        elif key in ("flags", "features") and not flags:
            flags = frozenset(value.split())
    return CpuInfo(model or platform.processor() or platform.machine() or "unknown", flags)


def quiet_openmp_threads() -> None:
    """Make OpenMP threads sleep when they wait instead of spinning (an explicit setting wins).

    Call before the library that uses OpenMP loads: torch (after each embedding call) and
    llama.cpp (at every one of the hundreds of barriers per decoded token; this build of
    llama-cpp-python uses OpenMP). With GNU OpenMP's default (~3 ms of spinning before sleeping)
    a waiting thread spins while the thread it waits for has lost its core, so on 2 shared cores
    llama.cpp's two threads decoded at 1-7 tok/s instead of 17-29 with sleeping threads
    (measured, README "Performance").
    """
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    os.environ.setdefault("KMP_BLOCKTIME", "0")
