"""What a test needs from the machine (a font, root to mount a file system): when it is missing,
the test skips with the reason on a developer's machine, and fails in CI (the environment
variable CI is set), where `scripts/setup --with-test-services` should have provided it."""

from __future__ import annotations

import os
from pathlib import Path
from typing import NoReturn

import pytest

UNICODE_FONT = Path("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf")


def missing(reason: str) -> NoReturn:
    if os.environ.get("CI"):
        pytest.fail(f"{reason} (CI is set, so this fails instead of skipping)")
    pytest.skip(reason)


def unicode_font() -> Path:
    """DejaVu Sans, to write text beyond Latin-1 (fpdf2's core fonts stop there)."""
    if not UNICODE_FONT.is_file():
        missing(
            f"no Unicode TrueType font at {UNICODE_FONT}: run scripts/setup --with-test-services "
            "(apt-get install fonts-dejavu-core)"
        )
    return UNICODE_FONT
