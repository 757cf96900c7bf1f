"""Slack text in and out: make document-derived text inert, read users' text, split long replies.

Slack's mrkdwn gives `<...>` a meaning (`<!channel>`, `<@U123>`, `<http://x|label>`), so every piece
of text Folio did not write itself is escaped (`&`, `<`, `>`, as Slack documents) before it is
sent; that is the only escaping Slack needs, and it turns those sequences into plain visible text.
"""

from __future__ import annotations

import re

_ESCAPES = {"&": "&amp;", "<": "&lt;", ">": "&gt;"}
_ESCAPE_RE = re.compile(r"[&<>]")


def escape(text: str) -> str:
    """Escape `& < >` so the text shows as typed and cannot mention, link or notify anyone."""
    return _ESCAPE_RE.sub(lambda m: _ESCAPES[m.group(0)], text)


def unescape(text: str) -> str:
    """Undo Slack's escaping of the text it sends us (the inverse of `escape`)."""
    return text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")


_ENTITY = re.compile(r"<([^<>]*)>")


def _plain_entity(match: re.Match[str]) -> str:
    inner = match.group(1)
    target, _, label = inner.partition("|")
    if target.startswith("@"):
        return "@" + (label or target[1:])
    if target.startswith("#"):
        return "#" + (label or target[1:])
    if target.startswith("!"):
        return "@" + (label or target[1:].split("^")[0])
    return label or target


def to_plain(text: str, *, bot_user_id: str | None = None) -> str:
    """A user's message as plain text for the engine: the bot's own mention dropped, other
    mentions, channels and links as their readable form, Slack's escaping undone."""
    if bot_user_id:
        text = re.sub(rf"<@{re.escape(bot_user_id)}(\|[^>]*)?>", " ", text)
    text = _ENTITY.sub(_plain_entity, text)
    return " ".join(unescape(text).split())


def split_message(text: str, limit: int) -> list[str]:
    """Split text into pieces of at most `limit` characters, preferring paragraph, then line, then
    word boundaries, and never cutting an `&amp;`-style entity in two."""
    if limit < 20:
        raise ValueError("limit is too small")
    pieces: list[str] = []
    rest = text.strip()
    while len(rest) > limit:
        window = rest[:limit]
        cut = -1
        for sep in ("\n\n", "\n", " "):
            at = window.rfind(sep)
            if at > limit // 3:
                cut = at
                break
        if cut == -1:
            cut = limit
            amp = window.rfind("&", limit - 6)
            if amp != -1 and ";" not in window[amp:]:
                cut = amp
        pieces.append(rest[:cut].rstrip())
        rest = rest[cut:].lstrip()
    if rest:
        pieces.append(rest)
    return pieces or [""]
