"""A fake Slack on 127.0.0.1 for the adapter tests: the Web API, file downloads, response_url and a
Socket Mode websocket, in one aiohttp server the tests start and stop.

It records every request it receives (`calls`), keeps the messages posted and edited (`messages`)
and the acks of the Socket Mode envelopes it sent (`acks`). Tests wait on conditions over that
record (`wait_for`), never on a fixed sleep.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import itertools
import json
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

from aiohttp import WSMsgType, web
from fpdf import FPDF

BOT_TOKEN = "xoxb-fake-bot-token"
APP_TOKEN = "xapp-fake-app-token"
SIGNING_SECRET = "8f742231b10e8888abcd99yyyzzz85a5"
TEAM_ID = "T0TEAM"
BOT_USER_ID = "U0BOT"
BOT_ID = "B0BOT"
USER = "U0USER"
ADMIN = "U0ADMIN"
CHANNEL = "C0GENERAL"

LOGIN_PAGE = (
    b"<!DOCTYPE html><html><head><title>Slack</title></head>"
    b"<body><form action='/signin'>Sign in to your workspace</form></body></html>"
)


@dataclass(slots=True)
class Call:
    """One Web API request the fake received."""

    method: str
    params: dict[str, Any]
    headers: dict[str, str]


@dataclass(slots=True)
class FakeFile:
    id: str
    name: str
    content: bytes
    size: int | None = None  # what files.info reports; defaults to len(content)
    login_page: bool = False  # serve Slack's HTML sign-in page with 200 instead of the bytes

    def info(self, base: str) -> dict[str, Any]:
        url = f"{base}/files-pri/{TEAM_ID}-{self.id}/{self.name}"
        return {
            "id": self.id,
            "name": self.name,
            "title": self.name,
            "mimetype": "application/pdf",
            "filetype": "pdf",
            "size": self.size if self.size is not None else len(self.content),
            "url_private": url,
            "url_private_download": url + "?download=1",
            "permalink": f"https://fake.slack.com/files/{BOT_USER_ID}/{self.id}/{self.name}",
        }


@dataclass(slots=True)
class Message:
    channel: str
    ts: str
    text: str
    thread_ts: str | None
    edits: int = 0


@dataclass
class FakeSlack:
    host: str = "127.0.0.1"
    calls: list[Call] = field(default_factory=list)
    messages: dict[tuple[str, str], Message] = field(default_factory=dict)
    response_url_posts: list[dict[str, Any]] = field(default_factory=list)
    downloads: list[str] = field(default_factory=list)
    acks: dict[str, dict[str, Any]] = field(default_factory=dict)
    users: dict[str, dict[str, Any]] = field(default_factory=dict)
    files: dict[str, FakeFile] = field(default_factory=dict)
    # method -> scripted failures to answer before the real response: (HTTP status, headers)
    failures: dict[str, list[tuple[int, dict[str, str]]]] = field(default_factory=dict)
    ws_connections: int = 0
    sent_envelopes: list[str] = field(default_factory=list)
    storm_replies: list[tuple[str, int]] = field(default_factory=list)  # (method, status) refused
    # envelope id -> time.monotonic() when it was sent and when its ack arrived
    sent_at: dict[str, float] = field(default_factory=dict)
    acked_at: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._changed = asyncio.Condition()
        self._ts = itertools.count(1)
        self._ws: web.WebSocketResponse | None = None
        self._runner: web.AppRunner | None = None
        self.port = 0
        self._storm_until = 0.0
        self._storm_statuses: tuple[int, ...] = ()
        self._storm_methods: frozenset[str] = frozenset()
        self._storm_retry_after = 1

    # ---- lifecycle -------------------------------------------------------------------------

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/api/{method}", self._api)
        app.router.add_get("/api/{method}", self._api)
        app.router.add_get("/files-pri/{key}/{name}", self._download)
        app.router.add_post("/response/{key}", self._response_url)
        app.router.add_get("/link", self._socket)
        self._runner = web.AppRunner(app, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, 0)
        await site.start()
        server = site._server
        assert server is not None and server.sockets  # type: ignore[attr-defined]
        self.port = server.sockets[0].getsockname()[1]  # type: ignore[attr-defined]

    async def stop(self) -> None:
        if self._ws is not None and not self._ws.closed:
            await self._ws.close()
        if self._runner is not None:
            await self._runner.cleanup()

    @property
    def base(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def api_url(self) -> str:
        return f"{self.base}/api/"

    def response_url(self) -> str:
        return f"{self.base}/response/{uuid.uuid4().hex}"

    # ---- scripting ---------------------------------------------------------------------------

    def add_user(self, user_id: str, *, admin: bool = False, owner: bool = False) -> None:
        self.users[user_id] = {
            "id": user_id,
            "team_id": TEAM_ID,
            "name": user_id.lower(),
            "is_admin": admin,
            "is_owner": owner,
            "is_bot": False,
        }

    def add_file(self, file: FakeFile) -> dict[str, Any]:
        self.files[file.id] = file
        return file.info(self.base)

    def fail(self, method: str, status: int, headers: dict[str, str] | None = None) -> None:
        self.failures.setdefault(method, []).append((status, headers or {}))

    def storm(
        self,
        seconds: float,
        statuses: tuple[int, ...] = (429, 500, 502, 503),
        *,
        methods: tuple[str, ...] = ("chat.postMessage", "chat.update", "chat.delete"),
        retry_after: int = 1,
    ) -> None:
        """For `seconds`, refuse calls to `methods` without acting on them, answering `statuses`
        in turn: 429 `ratelimited` with Retry-After, 500 `internal_error` as JSON, 502/503 as the
        HTML page of a load balancer (as Slack's edge does)."""
        self._storm_until = time.monotonic() + seconds
        self._storm_statuses = statuses
        self._storm_methods = frozenset(methods)
        self._storm_retry_after = retry_after

    def storm_over(self) -> bool:
        return time.monotonic() >= self._storm_until

    def _storm_reply(self, method: str) -> web.Response | None:
        if self.storm_over() or method not in self._storm_methods:
            return None
        status = self._storm_statuses[len(self.storm_replies) % len(self._storm_statuses)]
        self.storm_replies.append((method, status))
        if status == 429:
            return web.json_response(
                {"ok": False, "error": "ratelimited"},
                status=429,
                headers={"Retry-After": str(self._storm_retry_after)},
            )
        if status == 500:
            return web.json_response({"ok": False, "error": "internal_error"}, status=500)
        return web.Response(
            status=status,
            text=f"<html><body><h1>{status}</h1>Slack is having trouble.</body></html>",
            content_type="text/html",
        )

    # ---- queries -------------------------------------------------------------------------------

    def calls_to(self, method: str) -> list[Call]:
        return [c for c in self.calls if c.method == method]

    def thread(self, channel: str, thread_ts: str) -> list[Message]:
        """The root message and its replies, oldest first."""
        found = [
            m
            for (ch, ts), m in self.messages.items()
            if ch == channel and (ts == thread_ts or m.thread_ts == thread_ts)
        ]
        return sorted(found, key=lambda m: float(m.ts))

    async def wait_for(self, predicate: Callable[[], Any], within: float = 10.0) -> Any:
        """Wait until `predicate()` is truthy (checked after every request); return its value."""

        async def _wait() -> Any:
            async with self._changed:
                while not (value := predicate()):
                    await self._changed.wait()
                return value

        return await asyncio.wait_for(_wait(), within)

    async def _notify(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    # ---- Socket Mode ---------------------------------------------------------------------------

    async def send_envelope(
        self,
        kind: str,
        payload: dict[str, Any],
        *,
        envelope_id: str | None = None,
        retry_attempt: int = 0,
        accepts_response_payload: bool | None = None,
    ) -> str:
        """Push one envelope to the connected app; returns its envelope_id (see `wait_ack`)."""
        ws = await self.wait_for(lambda: self._ws if self._ws and not self._ws.closed else None)
        envelope_id = envelope_id or str(uuid.uuid4())
        envelope: dict[str, Any] = {
            "envelope_id": envelope_id,
            "type": kind,
            "payload": payload,
            "accepts_response_payload": (
                kind != "events_api"
                if accepts_response_payload is None
                else accepts_response_payload
            ),
        }
        if kind == "events_api":
            envelope["retry_attempt"] = retry_attempt
            envelope["retry_reason"] = "timeout" if retry_attempt else ""
        self.sent_at[envelope_id] = time.monotonic()
        await ws.send_str(json.dumps(envelope))
        self.sent_envelopes.append(envelope_id)
        return envelope_id

    async def wait_ack(self, envelope_id: str, within: float = 3.0) -> dict[str, Any]:
        """The ack the app sent for an envelope; Slack's own deadline is 3 seconds."""
        ack: dict[str, Any] = await self.wait_for(lambda: self.acks.get(envelope_id), within)
        return ack

    def all_acked(self) -> bool:
        return all(e in self.acks for e in self.sent_envelopes)

    async def _socket(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(autoping=True)
        await ws.prepare(request)
        self._ws = ws
        self.ws_connections += 1
        await ws.send_str(
            json.dumps(
                {
                    "type": "hello",
                    "num_connections": 1,
                    "debug_info": {"host": "fake", "approximate_connection_time": 18060},
                    "connection_info": {"app_id": "A0APP"},
                }
            )
        )
        await self._notify()
        async for msg in ws:
            if msg.type == WSMsgType.TEXT:
                data = json.loads(msg.data)
                if "envelope_id" in data:
                    self.acked_at.setdefault(data["envelope_id"], time.monotonic())
                    self.acks[data["envelope_id"]] = data
                    await self._notify()
        await self._notify()
        return ws

    # ---- Web API -------------------------------------------------------------------------------

    async def _api(self, request: web.Request) -> web.Response:
        method = request.match_info["method"]
        params: dict[str, Any] = dict(request.query)
        if request.can_read_body:
            raw = await request.read()
            if request.content_type == "application/json":
                params.update(json.loads(raw or b"{}"))
            else:
                params.update(parse_qsl(raw.decode()))
        self.calls.append(Call(method, params, dict(request.headers)))
        try:
            refused = self._storm_reply(method)
            if refused is not None:
                return refused
            scripted = self.failures.get(method)
            if scripted:
                status, headers = scripted.pop(0)
                error = "ratelimited" if status == 429 else "fatal_error"
                return web.json_response(
                    {"ok": False, "error": error}, status=status, headers=headers
                )
            auth = request.headers.get("Authorization", "")
            expected = APP_TOKEN if method == "apps.connections.open" else BOT_TOKEN
            if auth != f"Bearer {expected}":
                return web.json_response({"ok": False, "error": "invalid_auth"})
            handler = getattr(self, "_m_" + method.replace(".", "_"), None)
            if handler is None:
                return web.json_response({"ok": False, "error": "unknown_method"})
            body: dict[str, Any] = handler(params)
            return web.json_response(body)
        finally:
            await self._notify()

    def _next_ts(self) -> str:
        return f"{int(time.time())}.{next(self._ts):06d}"

    def _m_auth_test(self, params: dict[str, Any]) -> dict[str, Any]:
        return {
            "ok": True,
            "url": "https://fake.slack.com/",
            "team": "Fake",
            "user": "folio",
            "team_id": TEAM_ID,
            "user_id": BOT_USER_ID,
            "bot_id": BOT_ID,
        }

    def _m_apps_connections_open(self, params: dict[str, Any]) -> dict[str, Any]:
        return {"ok": True, "url": f"ws://{self.host}:{self.port}/link"}

    def _m_chat_postMessage(self, params: dict[str, Any]) -> dict[str, Any]:
        channel = params["channel"]
        if channel.startswith("CPRIVATE"):
            return {"ok": False, "error": "not_in_channel"}
        ts = self._next_ts()
        thread_ts = params.get("thread_ts")
        self.messages[(channel, ts)] = Message(channel, ts, params.get("text", ""), thread_ts)
        return {"ok": True, "channel": channel, "ts": ts, "message": {"text": params.get("text")}}

    def _m_chat_update(self, params: dict[str, Any]) -> dict[str, Any]:
        key = (params["channel"], params["ts"])
        message = self.messages.get(key)
        if message is None:
            return {"ok": False, "error": "message_not_found"}
        message.text = params.get("text", "")
        message.edits += 1
        return {"ok": True, "channel": key[0], "ts": key[1], "text": message.text}

    def _m_chat_delete(self, params: dict[str, Any]) -> dict[str, Any]:
        key = (params["channel"], params["ts"])
        if self.messages.pop(key, None) is None:
            return {"ok": False, "error": "message_not_found"}
        return {"ok": True, "channel": key[0], "ts": key[1]}

    def _m_chat_postEphemeral(self, params: dict[str, Any]) -> dict[str, Any]:
        return {"ok": True, "message_ts": self._next_ts()}

    def _m_users_info(self, params: dict[str, Any]) -> dict[str, Any]:
        user = self.users.get(params.get("user", ""))
        if user is None:
            return {"ok": False, "error": "user_not_found"}
        return {"ok": True, "user": user}

    def _m_files_info(self, params: dict[str, Any]) -> dict[str, Any]:
        file = self.files.get(params.get("file", ""))
        if file is None:
            return {"ok": False, "error": "file_not_found"}
        return {"ok": True, "file": file.info(self.base)}

    # ---- downloads and response_url --------------------------------------------------------

    async def _download(self, request: web.Request) -> web.StreamResponse:
        file_id = request.match_info["key"].split("-", 1)[1]
        self.downloads.append(file_id)
        await self._notify()
        file = self.files.get(file_id)
        authorized = request.headers.get("Authorization") == f"Bearer {BOT_TOKEN}"
        if file is None or file.login_page or not authorized:
            # Slack answers a bad or missing token with its sign-in page, and status 200.
            return web.Response(body=LOGIN_PAGE, content_type="text/html")
        return web.Response(body=file.content, content_type="application/pdf")

    async def _response_url(self, request: web.Request) -> web.Response:
        body = await request.json()
        body["_key"] = request.match_info["key"]
        self.response_url_posts.append(body)
        await self._notify()
        return web.Response(text="ok")


# ---- payloads as Slack sends them --------------------------------------------------------------

_ids = itertools.count(1)


def slash_command(
    fake: FakeSlack,
    command: str,
    text: str,
    *,
    user: str = USER,
    channel: str = CHANNEL,
    trigger_id: str | None = None,
) -> dict[str, Any]:
    return {
        "token": "legacy-verification-token",
        "team_id": TEAM_ID,
        "team_domain": "fake",
        "channel_id": channel,
        "channel_name": "general",
        "user_id": user,
        "user_name": user.lower(),
        "command": command,
        "text": text,
        "api_app_id": "A0APP",
        "is_enterprise_install": "false",
        "response_url": fake.response_url(),
        "trigger_id": trigger_id or f"{next(_ids)}.{next(_ids)}.trigger",
    }


def signed(
    body: str, *, secret: str = SIGNING_SECRET, timestamp: float | None = None
) -> dict[str, str]:
    """The headers with which Slack signs a request to an app in HTTP mode."""
    ts = str(int(time.time() if timestamp is None else timestamp))
    digest = hmac.new(secret.encode(), f"v0:{ts}:{body}".encode(), hashlib.sha256).hexdigest()
    return {"X-Slack-Request-Timestamp": ts, "X-Slack-Signature": f"v0={digest}"}


def event_callback(event: dict[str, Any], *, event_id: str | None = None) -> dict[str, Any]:
    return {
        "token": "legacy-verification-token",
        "team_id": TEAM_ID,
        "api_app_id": "A0APP",
        "event": event,
        "type": "event_callback",
        "event_id": event_id or f"Ev{next(_ids):08d}",
        "event_time": int(time.time()),
        "authorizations": [
            {
                "team_id": TEAM_ID,
                "user_id": BOT_USER_ID,
                "is_bot": True,
                "is_enterprise_install": False,
            }
        ],
        "is_ext_shared_channel": False,
    }


def app_mention(
    text: str,
    *,
    user: str = USER,
    channel: str = CHANNEL,
    ts: str | None = None,
    thread_ts: str | None = None,
    files: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    ts = ts or f"{int(time.time())}.{next(_ids):06d}"
    event: dict[str, Any] = {
        "type": "app_mention",
        "user": user,
        "text": f"<@{BOT_USER_ID}> {text}",
        "ts": ts,
        "channel": channel,
        "event_ts": ts,
        "team": TEAM_ID,
    }
    if thread_ts:
        event["thread_ts"] = thread_ts
    if files is not None:
        event["files"] = files
    return event


@contextlib.asynccontextmanager
async def running_fake_slack() -> AsyncIterator[FakeSlack]:
    """A started fake Slack with a member (USER) and a workspace admin (ADMIN); stopped after."""
    server = FakeSlack()
    await server.start()
    server.add_user(USER)
    server.add_user(ADMIN, admin=True)
    try:
        yield server
    finally:
        await server.stop()


def small_pdf(text: str = "Refunds take 14 days.") -> bytes:
    """A real one-page PDF."""
    pdf = FPDF()
    pdf.add_page()
    pdf.set_font("Helvetica", size=12)
    pdf.cell(text=text)
    return bytes(pdf.output())
