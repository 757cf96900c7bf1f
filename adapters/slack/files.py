"""Fetching PDFs that users share in Slack, with the bot token, refusing anything that is not one.

Slack serves a file's `url_private` only with `Authorization: Bearer <bot token>`; with a wrong
token, a missing `files:read` scope or a file not shared where the bot is, it answers 200 with its
HTML sign-in page. So the bytes must start with `%PDF-` before anything else looks at them, and
the size is checked twice: the `size` Slack reports before downloading, and the bytes received.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import aiohttp

from config.errors import FolioError

PDF_MAGIC = b"%PDF-"
_FILE_ID = re.compile(r"/files/[A-Z0-9]+/(F[A-Z0-9]+)|\b(F[A-Z0-9]{6,})\b")


class FileRejected(FolioError):
    """A shared file cannot be ingested; the message says why, in one line."""


@dataclass(frozen=True, slots=True)
class SlackFile:
    """What the adapter needs from a Slack file object (from an event or files.info)."""

    id: str
    name: str
    size: int | None
    url: str | None
    filetype: str

    @classmethod
    def from_api(cls, data: dict[str, Any]) -> SlackFile:
        size = data.get("size")
        return cls(
            id=str(data.get("id", "")),
            name=str(data.get("name") or data.get("title") or data.get("id") or "file.pdf"),
            size=int(size) if isinstance(size, int | float | str) and str(size).isdigit() else None,
            url=data.get("url_private_download") or data.get("url_private"),
            filetype=str(data.get("filetype") or ""),
        )


def file_id_from_link(link: str) -> str | None:
    """The file id (F...) in a Slack file link or a bare id, as `/ingest <link>` receives it."""
    link = link.strip().strip("<>").split("|", 1)[0]
    match = _FILE_ID.search(link)
    if match is None:
        return None
    return match.group(1) or match.group(2)


def _mb(size: int) -> str:
    return f"{size / (1024 * 1024):.1f} MB"


def check_before_download(file: SlackFile, max_bytes: int) -> None:
    """Reject what can be refused without downloading: not a PDF by name/type, or too large."""
    if file.filetype not in ("", "pdf") and not file.name.lower().endswith(".pdf"):
        raise FileRejected(f"{file.name}: only PDF files can be added (this is {file.filetype}).")
    if file.size is not None and file.size > max_bytes:
        raise FileRejected(
            f"{file.name}: {_mb(file.size)} is over the {_mb(max_bytes)} limit; not downloaded."
        )
    if not file.url:
        raise FileRejected(f"{file.name}: Slack gave no download link for this file.")


async def download_pdf(
    session: aiohttp.ClientSession,
    file: SlackFile,
    *,
    token: str,
    max_bytes: int,
    timeout_s: float = 60.0,
) -> bytes:
    """Download a shared PDF with the bot token; raise FileRejected with the reason otherwise."""
    check_before_download(file, max_bytes)
    assert file.url is not None
    headers = {"Authorization": f"Bearer {token}"}
    timeout = aiohttp.ClientTimeout(total=timeout_s)
    try:
        async with session.get(file.url, headers=headers, timeout=timeout) as response:
            if response.status != 200:
                raise FileRejected(
                    f"{file.name}: Slack answered {response.status} to the download."
                )
            data = bytearray()
            async for chunk in response.content.iter_chunked(64 * 1024):
                data += chunk
                if len(data) > max_bytes:
                    raise FileRejected(
                        f"{file.name}: larger than the {_mb(max_bytes)} limit; download stopped."
                    )
                if len(data) >= len(PDF_MAGIC) and not data.startswith(PDF_MAGIC):
                    break
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise FileRejected(f"{file.name}: the download failed ({type(exc).__name__}).") from exc
    if not data.startswith(PDF_MAGIC):
        head = bytes(data[:512]).lstrip().lower()
        if head.startswith((b"<!doctype html", b"<html")):
            raise FileRejected(
                f"{file.name}: Slack sent a sign-in page instead of the file. The bot token is "
                "wrong or lacks the files:read scope (reinstall the app from slack-manifest.yaml)."
            )
        raise FileRejected(f"{file.name}: this is not a PDF (it does not start with %PDF-).")
    return bytes(data)
