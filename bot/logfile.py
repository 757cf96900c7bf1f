"""Logging for every `folio` command: the full log in the data folder, warnings on the terminal."""

from __future__ import annotations

import contextlib
import logging
import sys
import time
from pathlib import Path

from config.settings import Settings


class LogFileHandler(logging.FileHandler):
    """The log file, which must never be the thing that breaks: on a full or read-only disk it
    says so once on stderr, drops records for a minute, then tries the file again."""

    RETRY_S = 60.0

    def __init__(self, path: Path) -> None:
        super().__init__(path, encoding="utf-8", delay=True)
        self._paused_until = 0.0

    def emit(self, record: logging.LogRecord) -> None:
        if time.monotonic() < self._paused_until:
            return
        super().emit(record)

    def handleError(self, record: logging.LogRecord) -> None:
        error = sys.exc_info()[1]
        if not isinstance(error, OSError):
            super().handleError(record)
            return
        if self._paused_until == 0.0:
            print(f"folio: cannot write the log file {self.baseFilename} "
                  f"({error.strerror or error}); logging to the terminal only for now",
                  file=sys.stderr)
        self._paused_until = time.monotonic() + self.RETRY_S
        with contextlib.suppress(OSError):
            self.close()  # reopened (delay=True) on the next try


def setup_logging(settings: Settings, *, interactive: bool) -> None:
    """Full log to data_dir/logs/folio.log; the terminal only gets warnings (chat stays clean)."""
    root = logging.getLogger()
    root.setLevel(settings.log_level)
    console = logging.StreamHandler(sys.stderr)
    console.setLevel(logging.WARNING if interactive else logging.ERROR)
    console.setFormatter(logging.Formatter("folio: %(levelname)s: %(message)s"))
    handlers: list[logging.Handler] = [console]
    log_dir = settings.data_dir / "logs"
    try:
        log_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        print(f"folio: no log file: cannot create {log_dir} ({exc.strerror or exc})",
              file=sys.stderr)
    else:
        file_handler = LogFileHandler(log_dir / "folio.log")
        file_handler.setFormatter(
            logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
        )
        handlers.insert(0, file_handler)
    root.handlers[:] = handlers
    for noisy in ("sentence_transformers", "transformers", "faiss", "httpx", "huggingface_hub"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    _quiet_vendor_output()


def _quiet_vendor_output() -> None:
    """Hide the vendor progress bars and warnings that would clutter a human's terminal."""
    import os
    import warnings

    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("TQDM_DISABLE", "0")
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", category=DeprecationWarning)
