"""Each bench phase in its own spawned process, so each has its own peak memory."""

from __future__ import annotations

import multiprocessing
import resource
import sys
import threading
import traceback
from collections.abc import Callable
from typing import Any

from bot.errors import FolioError

# --- child processes -------------------------------------------------------------------------


def run_in_child(fn: Callable[..., dict[str, Any]], *args: Any) -> dict[str, Any]:
    """Run `fn(*args)` in a freshly spawned process (its own peak RSS); return its result.

    Not a daemon process: ingest parses each PDF in a child process of its own.
    """
    context = multiprocessing.get_context("spawn")
    receiver, sender = context.Pipe(duplex=False)
    child = context.Process(
        target=_child_main, args=(sender, fn, args), name=f"folio-bench-{fn.__name__}"
    )
    child.start()
    sender.close()
    try:
        ok, value = receiver.recv()
    except EOFError:
        child.join()
        raise FolioError(
            f"the benchmark's {fn.__name__} process died (exit code {child.exitcode})"
        ) from None
    finally:
        receiver.close()
    child.join()
    if not ok:
        raise FolioError(f"the benchmark's {fn.__name__} failed:\n{value}")
    return dict(value)


def _child_main(sender: Any, fn: Callable[..., dict[str, Any]], args: tuple[Any, ...]) -> None:
    import logging
    import warnings

    # The same quiet terminal as the CLI's own process (spawned children start from scratch).
    logging.basicConfig(level=logging.WARNING, format="folio bench: %(levelname)s: %(message)s")
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    try:
        result = fn(*args)
    except BaseException:  # reported to the parent, which raises it as a FolioError
        sender.send((False, traceback.format_exc()))
    else:
        sender.send((True, result))
    finally:
        sender.close()


class MemoryWatch:
    """This process's peak RSS: VmHWM and sampled VmRSS from /proc, and getrusage's ru_maxrss."""

    def __init__(self, interval_s: float = 0.05) -> None:
        self._interval = interval_s
        self._stop = threading.Event()
        self._sampled_kb = 0
        self._thread = threading.Thread(target=self._run, name="folio-bench-rss", daemon=True)

    def __enter__(self) -> MemoryWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while True:
            self._sampled_kb = max(self._sampled_kb, _status_kb("VmRSS") or 0)
            if self._stop.wait(self._interval):
                return

    def figures(self) -> dict[str, float]:
        self._sampled_kb = max(self._sampled_kb, _status_kb("VmRSS") or 0)
        maxrss_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        if sys.platform == "darwin":
            maxrss_kb //= 1024  # bytes there
        hwm_kb = _status_kb("VmHWM") or 0
        return {
            "peak_rss_mb": round(max(hwm_kb, self._sampled_kb, 0 if hwm_kb else maxrss_kb) / 1024, 1),
            "sampled_peak_rss_mb": round(self._sampled_kb / 1024, 1),
            "ru_maxrss_mb": round(maxrss_kb / 1024, 1),
        }


def _status_kb(key: str) -> int | None:
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None
