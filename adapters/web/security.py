"""Sessions in signed cookies, CSRF tokens, per-user rate limits and the sign-in rules.

A session is a small JSON object (user id, display name, admin flag, CSRF token, issue time)
signed with HMAC-SHA256; nothing is stored on the server, so a restart keeps everyone signed in
as long as the key is the same (FOLIO_WEB_SECRET, else a random key kept in the data folder).
Every write (form or API) must carry the session's CSRF token, or an `Authorization: Bearer`
token a browser never sends by itself.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import json
import logging
import os
import re
import secrets
import time
from collections import deque
from dataclasses import asdict, dataclass, replace
from pathlib import Path

logger = logging.getLogger(__name__)

COOKIE = "folio_session"
CSRF_HEADER = "X-CSRF-Token"
CSRF_FIELD = "csrf"


@dataclass(frozen=True, slots=True)
class Session:
    """Who is on the other end. `user` empty = not signed in yet (only a CSRF token)."""

    csrf: str
    issued: float
    user: str = ""
    name: str = ""
    admin: bool = False
    mark: str = ""  # `secrets_mark` of the password and admin token it was signed in with

    @property
    def signed_in(self) -> bool:
        return bool(self.user)

    @classmethod
    def anonymous(cls) -> Session:
        return cls(csrf=secrets.token_urlsafe(24), issued=time.time())

    def sign_in(self, name: str, *, admin: bool, mark: str = "") -> Session:
        """A fresh identity and CSRF token (a token seen before signing in is not reused)."""
        return replace(
            self, user=user_id_for(name), name=name, admin=admin, mark=mark,
            csrf=secrets.token_urlsafe(24), issued=time.time(),
        )


def secrets_mark(password: str | None, admin_token: str | None) -> str:
    """A short digest of the sign-in secrets: a session signed in under other ones (the
    password or admin token was changed) is no longer valid."""
    both = f"{password or ''}\0{admin_token or ''}".encode()
    return hashlib.sha256(b"folio-web-mark\0" + both).hexdigest()[:16]


def user_id_for(name: str) -> str:
    """A stable-looking but unique id: the name's letters plus random hex, so two people typing
    the same name never share a history."""
    slug = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")[:24] or "user"
    return f"{slug}-{secrets.token_hex(4)}"


def clean_name(raw: str) -> str:
    """A display name from the sign-in form: printable, one line, at most 40 characters."""
    name = "".join(ch for ch in raw if ch.isprintable()).strip()
    return re.sub(r"\s+", " ", name)[:40]


class SessionSigner:
    """Turns a `Session` into a cookie value and back; a tampered or expired value is None."""

    def __init__(self, key: bytes, *, max_age_s: float) -> None:
        if len(key) < 16:
            raise ValueError("the session key must be at least 16 bytes")
        self._key = key
        self.max_age_s = max_age_s

    def dumps(self, session: Session) -> str:
        payload = base64.urlsafe_b64encode(
            json.dumps(asdict(session), separators=(",", ":")).encode("utf-8")
        ).decode("ascii").rstrip("=")
        return f"{payload}.{self._mac(payload)}"

    def loads(self, value: str | None) -> Session | None:
        if not value or value.count(".") != 1:
            return None
        payload, mac = value.split(".")
        if not hmac.compare_digest(mac, self._mac(payload)):
            return None
        try:
            data = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
            session = Session(
                csrf=str(data["csrf"]), issued=float(data["issued"]), user=str(data["user"]),
                name=str(data["name"]), admin=bool(data["admin"]), mark=str(data.get("mark", "")),
            )
        except (ValueError, KeyError, TypeError):
            return None
        if time.time() - session.issued > self.max_age_s:
            return None
        return session

    def _mac(self, payload: str) -> str:
        digest = hmac.new(self._key, payload.encode("ascii"), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest).decode("ascii").rstrip("=")


def session_key(secret: str | None, data_dir: Path) -> bytes:
    """FOLIO_WEB_SECRET if set; else a random key created once in the data folder (mode 0600),
    so sessions survive a restart without anyone having to configure a secret."""
    if secret:
        return hashlib.sha256(secret.encode("utf-8")).digest()
    path = data_dir / "web-session.key"
    with contextlib.suppress(FileNotFoundError):
        key = path.read_bytes()
        if len(key) >= 32:
            return key
    key = secrets.token_bytes(32)
    try:
        data_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as out:
            out.write(key)
    except OSError as exc:
        logger.warning("cannot keep the web session key in %s (%s): sessions end when Folio "
                       "restarts; set FOLIO_WEB_SECRET to keep them", path, exc.strerror or exc)
    return key


def same_secret(given: str, expected: str | None) -> bool:
    """Constant-time comparison; an unset secret never matches."""
    if not expected or not given:
        return False
    return hmac.compare_digest(given.encode("utf-8"), expected.encode("utf-8"))


class RateLimiter:
    """At most `limit` events per key in any `window_s` seconds (a sliding log per key)."""

    def __init__(self, limit: int, window_s: float = 60.0, *, max_keys: int = 10000) -> None:
        self._limit = limit
        self._window = window_s
        self._max_keys = max_keys
        self._events: dict[str, deque[float]] = {}

    def check(self, key: str, *, now: float | None = None) -> float:
        """Record one event; return 0 if allowed, else the seconds until the next is allowed."""
        now = time.monotonic() if now is None else now
        events = self._events.get(key)
        if events is None:
            if len(self._events) >= self._max_keys:  # bound memory: forget idle keys
                self._events = {k: v for k, v in self._events.items() if v and v[-1] > now - self._window}
            events = self._events[key] = deque()
        while events and events[0] <= now - self._window:
            events.popleft()
        if len(events) >= self._limit:
            return max(0.1, events[0] + self._window - now)
        events.append(now)
        return 0.0
