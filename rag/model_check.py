"""`folio doctor`'s model check: load the GGUF and generate a few tokens in a child process.

A broken llama.cpp build, an unsupported CPU path (AMX) or a corrupt model segfaults; in a child
that is a line in a report instead of a dead bot. The child loads the model with llama.cpp's
verbose log on, so the parent can read which weight buffer types the load used (CPU_Mapped, CPU,
CPU_REPACK, AMX...), and prints llama.cpp's own system info (the CPU features it was built for
and sees). Run as `python -m rag.model_check MODEL.gguf [--extra-buffers] [--threads N]`.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import get_args

from rag.generate_isolated import describe_exit
from rag.model_copy import Weights

_BUFFER = re.compile(r"\b([A-Za-z0-9_]+) model buffer size\s*=\s*([0-9.]+) MiB")
# An extra buffer type shows in the load log as a repack line ("amx repack tensor ..."), as the
# preferred type a tensor could not use ("... cannot be used with preferred buffer type
# CPU_REPACK"), or as a weight buffer of its own ("AMX model buffer size = ...").
_REPACK = re.compile(r"\b([A-Za-z0-9_]+) repack tensor\b", re.IGNORECASE)
_PREFERRED = re.compile(r"preferred buffer type ([A-Za-z0-9_]+)")
_PLAIN_BUFFERS = frozenset({"CPU", "CPU_MAPPED"})
CPU_FLAGS_OF_INTEREST = ("avx2", "avx512f", "avx512_bf16", "avx512_vnni", "amx_tile",
                         "amx_int8", "amx_bf16")
PROMPT = "Say hello."


@dataclass
class ModelCheck:
    """What the child saw; `passed` is False with `error` naming why."""

    model: str
    passed: bool
    error: str = ""
    seconds: float = 0.0
    llama_cpp_version: str = ""
    system_info: str = ""
    buffers: dict[str, float] = field(default_factory=dict)  # buffer type -> MiB of weights
    extra_types: list[str] = field(default_factory=list)  # extra buffer types the load tried
    extra_buffers: bool | None = None  # the loaded model's parameter, read back
    generated: str = ""
    loaded: str = ""  # the file llama.cpp loaded (the Q8_0 copy, generator.weights)

    @property
    def uses_amx(self) -> bool:
        return any("AMX" in name.upper() for name in [*self.buffers, *self.extra_types])


def cpu_flags(cpuinfo: Path = Path("/proc/cpuinfo")) -> list[str]:
    """The flags of interest that this CPU reports (empty where /proc/cpuinfo is missing)."""
    try:
        text = cpuinfo.read_text(errors="replace")
    except OSError:
        return []
    match = re.search(r"^flags\s*:(.*)$", text, re.MULTILINE)
    present = set(match.group(1).split()) if match else set()
    return [flag for flag in CPU_FLAGS_OF_INTEREST if flag in present]


def cpu_model(cpuinfo: Path = Path("/proc/cpuinfo")) -> str:
    try:
        text = cpuinfo.read_text(errors="replace")
    except OSError:
        return "unknown"
    match = re.search(r"^model name\s*:\s*(.*)$", text, re.MULTILINE)
    return match.group(1).strip() if match else "unknown"


def parse_load_log(log: str) -> tuple[dict[str, float], list[str]]:
    """Weight buffer types with their sizes, and the extra buffer types the load tried."""
    buffers: dict[str, float] = {}
    for name, mib in _BUFFER.findall(log):
        buffers[name] = buffers.get(name, 0.0) + float(mib)
    extra = {name.upper() for name in _REPACK.findall(log)} | set(_PREFERRED.findall(log))
    extra |= {name for name in buffers if name.upper() not in _PLAIN_BUFFERS}
    return buffers, sorted(extra)


def check_model(
    model_path: Path,
    *,
    extra_buffers: bool,
    threads: int,
    timeout_s: float = 120.0,
    weights: Weights = "as-is",
    cache_dir: Path | None = None,
) -> ModelCheck:
    """Run the check in a child Python process; a crash or a hang is reported, not raised."""
    command = [sys.executable, "-m", "rag.model_check", str(model_path), "--threads", str(threads),
               "--weights", weights]
    if cache_dir is not None:
        command += ["--cache-dir", str(cache_dir)]
    if extra_buffers:
        command.append("--extra-buffers")
    started = time.perf_counter()
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout_s,
                              check=False)
    except subprocess.TimeoutExpired as exc:
        log = exc.stderr.decode(errors="replace") if isinstance(exc.stderr, bytes) else ""
        buffers, extra = parse_load_log(log or "")
        return ModelCheck(str(model_path), False, f"no answer within {timeout_s:.0f}s",
                          time.perf_counter() - started, buffers=buffers, extra_types=extra)
    buffers, extra = parse_load_log(done.stderr)
    result = ModelCheck(str(model_path), False, seconds=time.perf_counter() - started,
                        buffers=buffers, extra_types=extra)
    report = _last_json_line(done.stdout)
    if report is not None:
        result.llama_cpp_version = str(report.get("llama_cpp_version", ""))
        result.system_info = str(report.get("system_info", ""))
        reported = report.get("extra_buffers")
        result.extra_buffers = reported if isinstance(reported, bool) else None
        result.generated = str(report.get("generated", ""))
        result.loaded = str(report.get("loaded", ""))
        result.error = str(report.get("error", ""))
    if done.returncode != 0:
        if done.returncode < 0 or not result.error:  # a signal says more than a half report
            result.error = f"the model process ended: {describe_exit(done.returncode)}"
        return result
    result.passed = report is not None and not result.error
    if report is None:
        result.error = "the model process printed no report"
    return result


def _last_json_line(stdout: str) -> dict[str, object] | None:
    for line in reversed(stdout.splitlines()):
        line = line.strip()
        if line.startswith("{"):
            try:
                value = json.loads(line)
            except ValueError:
                continue
            if isinstance(value, dict):
                return value
    return None


def _child(argv: list[str]) -> int:
    """In the child: load verbosely (the log goes to stderr), generate, print one JSON line."""
    parser = argparse.ArgumentParser(prog="python -m rag.model_check")
    parser.add_argument("model", type=Path)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--extra-buffers", action="store_true")
    parser.add_argument("--weights", choices=get_args(Weights), default="as-is")
    parser.add_argument("--cache-dir", type=Path, default=None)
    args = parser.parse_args(argv)
    report: dict[str, object] = {}
    try:
        import llama_cpp

        from rag.generate import LlamaCppGenerator

        report["llama_cpp_version"] = getattr(llama_cpp, "__version__", "")
        report["system_info"] = llama_cpp.llama_print_system_info().decode(errors="replace")
        generator = LlamaCppGenerator(
            args.model, context_tokens=512, threads=args.threads, batch_tokens=512,
            temperature=0.0, repeat_penalty=1.0, extra_buffers=args.extra_buffers, verbose=True,
            weights=args.weights, cache_dir=args.cache_dir,
        )
        report["loaded"] = str(generator.loaded_file)
        report["extra_buffers"] = generator.uses_extra_buffers
        prompt = generator.render([{"role": "user", "content": PROMPT}])
        report["generated"] = generator.generate(prompt, max_tokens=8).text
    except Exception as exc:  # reported to the parent as a line
        report["error"] = f"{type(exc).__name__}: {exc}"
        print(json.dumps(report), flush=True)
        return 1
    print(json.dumps(report), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(_child(sys.argv[1:]))
