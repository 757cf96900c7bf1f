"""PDFs uploaded in chat: the declared size is checked before download, the bytes after."""

from __future__ import annotations

from typing import TYPE_CHECKING

from bot.jobs import Attachment
from config.errors import FolioError

if TYPE_CHECKING:
    import discord

PDF_MAGIC = b"%PDF-"


class AttachmentRejectedError(FolioError):
    """The upload is not something we index (too large, not a PDF); the message is for the user."""


def check_declared(attachment: discord.Attachment, max_bytes: int) -> None:
    """Refuse before downloading anything: Discord tells us the size up front."""
    if attachment.size > max_bytes:
        raise AttachmentRejectedError(
            f"{attachment.filename} is {_mb(attachment.size)}; the limit is {_mb(max_bytes)}."
        )


async def download_pdf(attachment: discord.Attachment, max_bytes: int) -> Attachment:
    """Check the declared size, download, then check the size again and the `%PDF-` signature."""
    check_declared(attachment, max_bytes)
    data = await attachment.read()
    if len(data) > max_bytes:
        raise AttachmentRejectedError(
            f"{attachment.filename} is larger than declared; the limit is {_mb(max_bytes)}."
        )
    if not data.startswith(PDF_MAGIC):
        raise AttachmentRejectedError(
            f"{attachment.filename} does not look like a PDF (it does not start with %PDF-)."
        )
    return Attachment(filename=attachment.filename, data=data)


def pdf_attachments(attachments: list[discord.Attachment]) -> list[discord.Attachment]:
    """The attachments of a message that claim to be PDFs (by name or content type)."""
    return [
        a
        for a in attachments
        if a.filename.lower().endswith(".pdf")
        or (a.content_type or "").startswith("application/pdf")
    ]


def _mb(size: int) -> str:
    return f"{size / (1024 * 1024):.1f} MB"
