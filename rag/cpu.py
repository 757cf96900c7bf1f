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
    def has_amx(self) -> bool:
        """AMX tiles: where llama.cpp's AMX weight buffers run, and crash (README, "Native
        crashes, and AMX")."""
        return "amx_int8" in self.flags

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
    """Bound how long a waiting OpenMP thread spins before it sleeps (an explicit setting wins).

    Call before the library that uses OpenMP loads: torch (after each embedding call) and
    llama.cpp (at every one of the hundreds of barriers per decoded token; this build of
    llama-cpp-python uses GNU OpenMP). Decode tok/s of the embedded model, 2 cores, 2 threads
    (README "Performance"): on free cores, sleeping at once (OMP_WAIT_POLICY=PASSIVE) gives
    17-22, 1000 spins 76-95, 10000 spins 70-77; with six CPU-bound processes beside it,
    19-22 / 10.6-12 / 6-18, and the default (~3 ms of spinning) 1.5-6. A bot's machine is mostly
    its own, so a short spin: four times the speed on free cores, half on badly shared ones.
    (KMP_BLOCKTIME: the same for Intel's OpenMP, which a torch build may use.)
    """
    if "OMP_WAIT_POLICY" not in os.environ:  # an explicit policy decides the spinning itself
        os.environ.setdefault("GOMP_SPINCOUNT", "1000")
    os.environ.setdefault("KMP_BLOCKTIME", "0")
