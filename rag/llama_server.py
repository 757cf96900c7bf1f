"""`python -m rag.llama_server ARGS`: llama-cpp-python's OpenAI server, without AMX weights.

The server runs the same llama.cpp as the embedded generator, so on Xeons with AMX it crashes
the same way (see `rag.generate.extra_buffer_types`). This wrapper turns the extra buffer types
off for every model the server loads, then hands its arguments, unchanged, to
`python -m llama_cpp.server`. `--extra-buffers` (ours, removed before the server sees it) keeps
llama.cpp's default, for when upstream has fixed the AMX path.
"""

from __future__ import annotations

import sys

from config.errors import ConfigError


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    keep_extra = "--extra-buffers" in args
    args = [a for a in args if a != "--extra-buffers"]
    try:
        from llama_cpp.server.__main__ import main as serve
    except ImportError:
        print("rag.llama_server: the server extra is missing: pip install 'llama-cpp-python[server]'",
              file=sys.stderr)
        return 2
    from rag.generate import disable_extra_buffer_types_for_process

    if not keep_extra:
        try:
            disable_extra_buffer_types_for_process()
        except ConfigError as exc:
            print(f"rag.llama_server: {exc}", file=sys.stderr)
            return 2
    sys.argv = ["python -m rag.llama_server", *args]
    serve()  # type: ignore[no-untyped-call]
    return 0


if __name__ == "__main__":
    sys.exit(main())
