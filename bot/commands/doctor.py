"""`folio doctor`: the vector index against SQLite (repaired if they differ), then the model."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING

from bot.commands.output import open_engine, print_json
from config.settings import Settings

if TYPE_CHECKING:
    from rag.model_check import ModelCheck


def cmd_doctor(settings: Settings, *, as_json: bool) -> int:
    """The vector index against SQLite (repaired if they differ), then the model, in a child."""
    engine = open_engine(settings)
    try:
        results = {collection: engine.check(collection) for collection in engine.collections()}
    finally:
        engine.close()
    from rag.model_check import cpu_flags, cpu_model

    model = _check_model(settings)
    if as_json:
        print_json({
            "collections": {c: ("rebuilt" if r else "ok") for c, r in results.items()},
            "model": None if model is None else {**asdict(model), "uses_amx": model.uses_amx},
            "cpu": {"model": cpu_model(), "flags": cpu_flags()},
        })
    else:
        for collection, rebuilt in results.items():
            state = "vector index rebuilt from SQLite" if rebuilt else "ok"
            print(f"{collection}: {state}")
        if not results:
            print("No collections yet.")
        print(f"CPU: {cpu_model()} ({', '.join(cpu_flags()) or 'no AVX2/AVX-512/AMX flags'})")
        if model is None:
            print(f"model: served by {settings.generator.base_url} (not checked here)")
        else:
            _print_model_check(model)
    return 0 if model is None or model.passed else 1


def _check_model(settings: Settings) -> ModelCheck | None:
    from rag.model_check import check_model
    from rag.models import default_generation_model

    generation = settings.generator
    if generation.backend != "local":
        return None
    return check_model(
        generation.model_path or default_generation_model(),
        extra_buffers=generation.extra_buffer_types,
        threads=generation.threads,
        weights=generation.weights_to_load,
        cache_dir=settings.model_cache_dir,
    )


def _print_model_check(check: ModelCheck) -> None:
    print(f"llama.cpp: llama-cpp-python {check.llama_cpp_version or '?'}; "
          f"{check.system_info.strip() or 'no system info'}")
    buffers = ", ".join(f"{name} {mib:.0f} MiB" for name, mib in check.buffers.items())
    setting = {True: "on", False: "off", None: "?"}[check.extra_buffers]
    tried = ", ".join(check.extra_types) or "none"
    amx = "; AMX IN USE (see README: AMX)" if check.uses_amx else ""
    print(f"weights: {buffers or 'no buffer lines in the load log'}; extra buffer types "
          f"{setting} (tried: {tried}){amx}")
    if check.passed:
        copy = (f" (loaded as {Path(check.loaded).name})"
                if check.loaded and Path(check.loaded) != Path(check.model) else "")
        print(f"model check: passed, {Path(check.model).name}{copy} generated "
              f"{check.generated.strip()[:40]!r} in {check.seconds:.1f}s")
    else:
        print(f"model check: FAILED, {Path(check.model).name}: {check.error}")
