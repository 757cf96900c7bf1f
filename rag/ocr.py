"""OCR at ingest: text read from page images (scans) and from large figures, offline.

The recogniser is RapidOCR (PP-OCR detection and recognition networks on ONNX Runtime). Its PyPI
wheel carries the model files, and they are loaded by path, so nothing is ever downloaded; the
OCR process also refuses any network connection outright. This is the only module that imports
rapidocr or onnxruntime.

OCR runs in its own child process with an address-space cap and a time budget per page. A page
that times out, crashes the recogniser or blows the memory cap (a decompression bomb in an
image) is skipped with a reason, and a fresh child carries on with the pages after it.
"""

from __future__ import annotations

import importlib.util
import logging
import multiprocessing
import multiprocessing.connection
import os
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rag.pdfium import ImageBox

logger = logging.getLogger(__name__)

INSTALL_HINT = "pip install rapidocr onnxruntime"
# The PP-OCR networks inside the rapidocr wheel (rapidocr/models/).
DETECTION_MODEL = "PP-OCRv6_det_small.onnx"
RECOGNITION_MODEL = "PP-OCRv6_rec_small.onnx"
CLASSIFIER_MODEL = "ch_ppocr_mobile_v2.0_cls_mobile.onnx"
# A rendered page is scaled down to at most this many pixels (a 200 x 200 inch page at 100 dpi
# would otherwise be 400 M pixels).
MAX_PIXELS = 12_000_000
# A restarted OCR child reloads the models; after this many restarts for one file the rest of
# its pages are skipped rather than retried forever.
MAX_RESTARTS = 3

ProgressCallback = Callable[[int, int], None]
"""Called as (pages read from images so far, pages to read) while a file is OCR'd."""


@dataclass(frozen=True, slots=True)
class OcrOptions:
    """When and how pages are read from images (the `[ingest]` ocr_* settings)."""

    enabled: bool = True
    figures: bool = False
    page_timeout_s: float = 30.0
    max_pages: int = 50
    min_confidence: float = 0.8
    memory_mb: int = 2048
    threads: int = 2
    dpi: int = 100
    figure_dpi: int = 150
    figure_min_area: float = 0.05
    load_timeout_s: float = 60.0


@dataclass(frozen=True, slots=True)
class OcrTask:
    """One page to read: the whole page (a scan) or only the given figures of a text page."""

    page: int  # 1-based
    figures: tuple[ImageBox, ...] = ()

    @property
    def whole_page(self) -> bool:
        return not self.figures


@dataclass(frozen=True, slots=True)
class OcrResult:
    page: int
    whole_page: bool
    text: str = ""
    skipped: str = ""  # why nothing was read, when nothing was
    dropped_lines: int = 0  # lines under the confidence threshold
    seconds: float = 0.0


@dataclass(slots=True)
class _Run:
    tasks: list[OcrTask]
    results: dict[int, OcrResult] = field(default_factory=dict)


def unavailable_reason() -> str | None:
    """Why OCR cannot run here (a missing package or model file), or None if it can."""
    for module in ("rapidocr", "onnxruntime", "cv2"):
        if importlib.util.find_spec(module) is None:
            return f"OCR is not installed ({INSTALL_HINT})"
    missing = [name for name, path in model_files().items() if not path.is_file()]
    if missing:
        return f"the OCR model files are missing from the rapidocr package ({', '.join(missing)})"
    return None


def model_files() -> dict[str, Path]:
    """The model files shipped inside the rapidocr wheel, found without importing it."""
    spec = importlib.util.find_spec("rapidocr")
    root = Path(spec.origin).parent / "models" if spec and spec.origin else Path("/nonexistent")
    return {
        "detection": root / DETECTION_MODEL,
        "recognition": root / RECOGNITION_MODEL,
        "classifier": root / CLASSIFIER_MODEL,
    }


# --- the recogniser (runs in the OCR child) -------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Line:
    text: str
    score: float
    top: float
    bottom: float
    left: float


class Recognizer:
    """RapidOCR loaded from the wheel's own model files; `read` turns pixels into lines."""

    def __init__(self, min_confidence: float, threads: int) -> None:
        try:
            from rapidocr import RapidOCR
        except ImportError as exc:
            raise RuntimeError(f"OCR is not installed ({INSTALL_HINT})") from exc
        files = model_files()
        self._min_confidence = min_confidence
        self._engine = RapidOCR(
            params={
                "Global.log_level": "error",
                "Global.use_cls": False,  # upside-down pages are rare; it costs time on every line
                "Global.text_score": 0.0,  # low-confidence lines are dropped (and counted) here
                "Det.model_path": str(files["detection"]),
                "Rec.model_path": str(files["recognition"]),
                "Cls.model_path": str(files["classifier"]),
                "EngineConfig.onnxruntime.intra_op_num_threads": threads,
                "EngineConfig.onnxruntime.inter_op_num_threads": 1,
            }
        )

    def read(self, image: Any) -> tuple[str, int]:
        """The text of an RGB image in reading order (paragraphs as blank lines), and how many
        lines were dropped for low confidence."""
        output = self._engine(image)
        texts = getattr(output, "txts", None) or ()
        scores = getattr(output, "scores", None) or ()
        boxes = getattr(output, "boxes", None)
        lines: list[_Line] = []
        dropped = 0
        for index, (text, score) in enumerate(zip(texts, scores, strict=False)):
            text = " ".join(str(text).split())
            if float(score) < self._min_confidence:
                dropped += 1
                continue
            if sum(ch.isalnum() for ch in text) < 2:
                continue  # a speck or a rule line, not words
            top, bottom, left = _extent(boxes, index)
            lines.append(_Line(text, float(score), top, bottom, left))
        return join_lines(lines), dropped


def _extent(boxes: Any, index: int) -> tuple[float, float, float]:
    try:
        points = boxes[index]
        ys = [float(p[1]) for p in points]
        xs = [float(p[0]) for p in points]
        return min(ys), max(ys), min(xs)
    except (TypeError, IndexError, ValueError):
        return float(index), float(index) + 1.0, 0.0


def join_lines(lines: Sequence[_Line]) -> str:
    """Lines top to bottom; a vertical gap of more than one line height starts a paragraph."""
    ordered = sorted(lines, key=lambda line: (round(line.top / 8), line.left))
    parts: list[str] = []
    previous: _Line | None = None
    for line in ordered:
        if previous is not None:
            height = max(1.0, previous.bottom - previous.top)
            parts.append("\n\n" if line.top - previous.bottom > height else "\n")
        parts.append(line.text)
        previous = line
    return "".join(parts)


def crop(image: Any, box: ImageBox) -> Any:
    """The part of a rendered page that a figure covers (box in page fractions)."""
    height, width = image.shape[:2]
    top, bottom = int(box.top * height), int(box.bottom * height) + 1
    left, right = int(box.left * width), int(box.right * width) + 1
    return image[max(0, top) : min(height, bottom), max(0, left) : min(width, right)]


# --- the OCR child process --------------------------------------------------------------------


def _forbid_network() -> None:
    """Make any attempt to open a connection fail: the models must come from the wheel."""

    def hook(event: str, args: tuple[Any, ...]) -> None:
        if event in ("socket.connect", "socket.getaddrinfo"):
            raise RuntimeError("network access is not allowed in the OCR process")

    sys.addaudithook(hook)


def _limit_resources(options: OcrOptions) -> None:
    for name in ("OMP_NUM_THREADS", "OPENCV_FOR_THREADS_NUM"):
        os.environ[name] = str(options.threads)
    try:  # one malloc arena: each thread's own arena reserves 64 MB of address space (glibc)
        import ctypes

        ctypes.CDLL(None).mallopt(-8, 1)  # M_ARENA_MAX
    except (OSError, AttributeError):
        pass
    try:
        import resource

        cap = options.memory_mb * 1024 * 1024
        resource.setrlimit(resource.RLIMIT_AS, (cap, cap))
    except (ImportError, ValueError, OSError):  # not on this platform: the timeouts still apply
        pass


def _child_main(
    sender: multiprocessing.connection.Connection,
    data: bytes,
    tasks: Sequence[OcrTask],
    options: OcrOptions,
) -> None:
    """Entry point of the OCR process: ("ready"), then ("start", page) and ("done", result) per
    task, then ("end"); or ("fatal", reason) if OCR cannot run at all."""
    _limit_resources(options)
    _forbid_network()
    try:
        try:
            from rag import pdfium
            from rag.errors import BadDocumentError

            recognizer = Recognizer(options.min_confidence, options.threads)
            document = pdfium.open_document(data)
        except BadDocumentError as exc:
            sender.send(("fatal", exc.message))
            return
        except MemoryError:
            sender.send(("fatal", f"the OCR models need more than {options.memory_mb} MB"))
            return
        except Exception as exc:
            sender.send(("fatal", f"OCR could not start ({_short(exc)})"))
            return
        sender.send(("ready",))
        for task in tasks:
            sender.send(("start", task.page))
            sender.send(("done", _read_task(recognizer, pdfium, document, task, options)))
        sender.send(("end",))
    finally:
        sender.close()


def _read_task(
    recognizer: Recognizer, pdfium: Any, document: Any, task: OcrTask, options: OcrOptions
) -> OcrResult:
    started = time.perf_counter()
    try:
        dpi = options.dpi if task.whole_page else options.figure_dpi
        image = pdfium.render_page(document, task.page - 1, dpi, MAX_PIXELS)
        pieces = [image] if task.whole_page else [crop(image, box) for box in task.figures]
        del image
        texts, dropped = [], 0
        for piece in pieces:
            if min(piece.shape[:2]) < 8:
                continue
            text, lost = recognizer.read(piece)
            dropped += lost
            if text:
                texts.append(text)
        text = "\n\n".join(texts)
        skipped = ""
        if not text:
            skipped = (
                f"no text could be read with confidence ≥ {options.min_confidence:g}"
                if dropped
                else "no text was found in its image"
            )
        return OcrResult(
            task.page, task.whole_page, text, skipped, dropped, time.perf_counter() - started
        )
    except MemoryError:
        reason = _too_big(options)
    except Exception as exc:  # a broken image must not lose the other pages
        message = str(exc).strip()
        if "alloc" in message.lower():  # ONNX Runtime or OpenCV out of memory
            reason = _too_big(options)
        else:
            last = message.splitlines()[-1] if message else type(exc).__name__
            reason = f"its image could not be read ({last[:100]})"
    return OcrResult(
        task.page, task.whole_page, skipped=reason, seconds=time.perf_counter() - started
    )


def _too_big(options: OcrOptions) -> str:
    return f"its image needed more than {options.memory_mb} MB to read (a decompression bomb?)"


def _short(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text[:100]


# --- the supervisor (runs in the ingesting process) -------------------------------------------


def read_images(
    data: bytes,
    tasks: Sequence[OcrTask],
    options: OcrOptions,
    on_progress: ProgressCallback | None = None,
) -> list[OcrResult]:
    """OCR the tasks in a limited child process; one result per task, in task order.

    A page that hangs past its budget or kills the child is skipped with a reason, and a new
    child goes on with the pages after it.
    """
    run = _Run(list(tasks))
    remaining = list(tasks)
    restarts = 0
    total = len(tasks)
    while remaining:
        remaining = _run_child(data, remaining, options, run, on_progress, total)
        if remaining:
            restarts += 1
            if restarts > MAX_RESTARTS:
                for task in remaining:
                    run.results[task.page] = OcrResult(
                        task.page, task.whole_page,
                        skipped=f"OCR stopped after {MAX_RESTARTS} failures in this file",
                    )
                break
    return [run.results[task.page] for task in tasks]


def _run_child(
    data: bytes,
    tasks: list[OcrTask],
    options: OcrOptions,
    run: _Run,
    on_progress: ProgressCallback | None,
    total: int,
) -> list[OcrTask]:
    """One OCR child over `tasks`; returns the tasks still to do after a failure (else [])."""
    ctx = multiprocessing.get_context("spawn")
    receiver, sender = ctx.Pipe(duplex=False)
    child = ctx.Process(
        target=_child_main, args=(sender, data, tasks, options), name="folio-ocr", daemon=True
    )
    child.start()
    sender.close()
    position = 0  # index in `tasks` of the next task to finish
    loaded = False
    timeout = options.load_timeout_s

    def skip_rest(reason: str) -> list[OcrTask]:
        for task in tasks[position:]:
            run.results[task.page] = OcrResult(task.page, task.whole_page, skipped=reason)
        return []

    try:
        while True:
            ready = multiprocessing.connection.wait([receiver, child.sentinel], timeout)
            message: tuple[Any, ...] | None = None
            if receiver in ready or child.sentinel in ready:
                try:
                    message = receiver.recv()
                except (EOFError, OSError):
                    message = None
            if not ready or message is None:
                if not loaded:  # the models did not load
                    reason = (
                        f"OCR did not start within {options.load_timeout_s:.0f} s"
                        if not ready
                        else f"OCR could not start (it needs more than {options.memory_mb} MB?)"
                    )
                    return skip_rest(reason)
                task = tasks[position]
                run.results[task.page] = OcrResult(
                    task.page,
                    task.whole_page,
                    skipped=(
                        f"reading it from its image took longer than {options.page_timeout_s:g} s"
                        if not ready
                        else "the recogniser crashed or ran out of memory on it "
                        "(a decompression bomb?)"
                    ),
                )
                if on_progress is not None:
                    on_progress(len(run.results), total)
                return tasks[position + 1 :]
            kind = message[0]
            if kind == "fatal":
                return skip_rest(str(message[1]))
            if kind == "ready":
                loaded = True
                timeout = options.page_timeout_s
            elif kind == "done":
                result: OcrResult = message[1]
                run.results[result.page] = result
                position += 1
                if on_progress is not None:
                    on_progress(len(run.results), total)
            elif kind == "end":
                return []
    finally:
        receiver.close()
        if child.is_alive():
            child.kill()
        child.join(5)
