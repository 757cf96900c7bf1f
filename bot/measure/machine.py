"""What the bench ran on: CPU, instruction-set features, llama.cpp and the embedder."""

from __future__ import annotations

import os
import platform
from typing import Any

# --- the machine -----------------------------------------------------------------------------


def machine_info() -> dict[str, Any]:
    from rag.cpu import read_cpu_info

    cpu = read_cpu_info()
    return {
        "cores": os.cpu_count(),
        "cpu_model": cpu.model,
        "cpu_flags": cpu.relevant_flags(),
        "python": platform.python_version(),
        "load_avg_start": load_average(),
    }


def embedder_info(embedder: Any) -> dict[str, Any]:
    """Which embedder ran: backend, precision, identity, and its runtime's view of the CPU."""
    from rag.embed import identity_of

    backend = getattr(embedder, "backend", None)
    info: dict[str, Any] = {
        "backend": backend,
        "precision": getattr(embedder, "precision", None),
        "identity": identity_of(embedder),
    }
    runtime = getattr(embedder, "runtime_info", None)
    if callable(runtime):
        info["runtime"] = runtime()
    return info


def load_average() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None
