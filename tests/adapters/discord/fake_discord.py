"""A fake Discord on 127.0.0.1: the REST API and the Gateway websocket that discord.py really uses.

The real discord.py client talks to it over loopback (see `point_discord_py_at`). The fake keeps
the state a test needs to look at (channels, messages, threads, interaction responses) and records
every REST request, so tests assert on what Discord would have received.

The Gateway speaks JSON without compression: discord.py asks for `compress=zlib-stream`, but it
only decompresses binary frames, and this fake always sends text frames.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from aiohttp import WSMsgType, web

DISCORD_EPOCH_MS = 1420070400000
API_PREFIX = "/api/v10"

# Permission bits (https://discord.com/developers/docs/topics/permissions).
VIEW_CHANNEL = 1 << 10
SEND_MESSAGES = 1 << 11
MANAGE_GUILD = 1 << 5
ADMINISTRATOR = 1 << 3
EVERYONE_PERMISSIONS = VIEW_CHANNEL | SEND_MESSAGES

Json = dict[str, Any]
BODY: web.RequestKey[Any] = web.RequestKey("body", object)


@dataclass(frozen=True)
class Request:
    """One REST request the fake received."""

    method: str
    path: str  # without the /api/v10 prefix
    query: dict[str, str]
    body: Any  # parsed JSON (or the payload_json part of a multipart body), else None
    files: list[str] = field(default_factory=list)  # file names of multipart uploads


@dataclass
class InteractionRecord:
    """One interaction the fake dispatched, and what the bot did with it."""

    payload: Json
    callbacks: list[Json] = field(default_factory=list)  # bodies POSTed to .../callback
    original: Json | None = None  # the @original message, once there is one
    followups: list[Json] = field(default_factory=list)
    expired: bool = False
    dispatched_at: float = 0.0  # time.monotonic() when INTERACTION_CREATE was sent
    responded_at: float | None = None  # ... and when the first callback (e.g. the deferral) came


class FakeDiscord:
    """State, REST routes and Gateway of a tiny Discord with one bot user."""

    def __init__(self) -> None:
        self._ids = itertools.count(1)
        self._start_ms = int(time.time() * 1000)
        self.bot_user: Json = self.make_user("folio", bot=True)
        self.application_id = self.snowflake()
        self.owner: Json = self.make_user("owner")
        self.guilds: dict[int, Json] = {}
        self.channels: dict[int, Json] = {}
        self.messages: dict[int, dict[int, Json]] = {}  # channel id -> message id -> message
        self.attachments: dict[str, bytes] = {}  # URL path -> bytes
        self.downloads: list[str] = []  # URL paths of attachment downloads
        self.requests: list[Request] = []
        self.interactions: dict[str, InteractionRecord] = {}  # by token
        self.commands: list[Json] = []
        self.threads_forbidden: set[int] = set()  # channel ids where thread creation is refused
        self.identify_payloads: list[Json] = []
        self.resumes: list[Json] = []
        self.ready = asyncio.Event()
        self._changed = asyncio.Condition()
        self._ws: web.WebSocketResponse | None = None
        self._seq = 0
        self._session_id = "fake-session"
        self._runner: web.AppRunner | None = None
        self.port = 0
        # An outage (see `storm`): until `_storm_until`, matching requests get these statuses.
        self._storm_until = 0.0
        self._storm_statuses: tuple[int, ...] = ()
        self._storm_paths: tuple[str, ...] = ()
        self._storm_retry_after = 0.0
        self.storm_replies: list[tuple[str, str, int]] = []  # (method, path, status) refused

    # ---- identifiers and payload builders -------------------------------------------------------

    def snowflake(self, *, age_s: float = 0.0) -> int:
        """A new unique id whose timestamp is `age_s` seconds in the past."""
        ms = int(time.time() * 1000 - age_s * 1000) - DISCORD_EPOCH_MS
        return (ms << 22) | (next(self._ids) & 0x3FFFFF)

    def make_user(self, name: str, *, bot: bool = False) -> Json:
        return {
            "id": str(self.snowflake()),
            "username": name,
            "global_name": name,
            "discriminator": "0",
            "avatar": None,
            "bot": bot,
        }

    @staticmethod
    def timestamp() -> str:
        return datetime.now(UTC).isoformat()

    def member(self, user: Json, roles: Sequence[int] = ()) -> Json:
        return {
            "user": user,
            "roles": [str(r) for r in roles],
            "joined_at": self.timestamp(),
            "deaf": False,
            "mute": False,
            "flags": 0,
        }

    def add_guild(self, name: str = "team") -> Json:
        """A guild with one text channel, an @everyone role and an 'admins' role (Manage Server)."""
        guild_id = self.snowflake()
        admin_role = self.snowflake()
        plain_role = self.snowflake()
        channel: Json = {
            "id": str(self.snowflake()),
            "type": 0,
            "guild_id": str(guild_id),
            "name": "general",
            "position": 0,
            "permission_overwrites": [],
            "nsfw": False,
            "parent_id": None,
        }
        guild: Json = {
            "id": str(guild_id),
            "name": name,
            "owner_id": self.owner["id"],
            "unavailable": False,
            "member_count": 3,
            "roles": [
                self._role(guild_id, "@everyone", EVERYONE_PERMISSIONS, 0),
                self._role(admin_role, "admins", MANAGE_GUILD, 2),
                self._role(plain_role, "readers", 0, 1),
            ],
            "channels": [channel],
            "threads": [],
            "members": [self.member(self.bot_user)],
            "emojis": [],
            "stickers": [],
            "features": [],
        }
        self.guilds[guild_id] = guild
        self.channels[int(channel["id"])] = channel
        self.messages[int(channel["id"])] = {}
        return guild

    @staticmethod
    def _role(role_id: int, name: str, permissions: int, position: int) -> Json:
        return {
            "id": str(role_id),
            "name": name,
            "permissions": str(permissions),
            "position": position,
            "color": 0,
            "hoist": False,
            "managed": False,
            "mentionable": False,
            "flags": 0,
        }

    @staticmethod
    def role_id(guild: Json, name: str) -> int:
        return next(int(r["id"]) for r in guild["roles"] if r["name"] == name)

    @staticmethod
    def text_channel(guild: Json) -> Json:
        channel: Json = guild["channels"][0]
        return channel

    def add_dm_channel(self, user: Json) -> Json:
        channel: Json = {"id": str(self.snowflake()), "type": 1, "recipients": [user]}
        self.channels[int(channel["id"])] = channel
        self.messages[int(channel["id"])] = {}
        return channel

    def add_attachment(
        self,
        channel_id: int,
        filename: str,
        data: bytes,
        *,
        size: int | None = None,
        content_type: str = "application/pdf",
    ) -> Json:
        """An uploaded attachment served by the fake CDN. `size` may lie, to test the size check."""
        attachment_id = self.snowflake()
        path = f"/attachments/{channel_id}/{attachment_id}/{filename}"
        self.attachments[path] = data
        url = f"{self.base_url}{path}"
        return {
            "id": str(attachment_id),
            "filename": filename,
            "size": len(data) if size is None else size,
            "url": url,
            "proxy_url": url,
            "content_type": content_type,
        }

    # ---- what a user does -----------------------------------------------------------------------

    async def user_message(
        self,
        channel: Json,
        author: Json,
        content: str,
        *,
        roles: Sequence[int] = (),
        mentions: Sequence[Json] = (),
        mention_everyone: bool = False,
        attachments: Sequence[Json] = (),
        reply_to: Json | None = None,
    ) -> Json:
        """A user posts a message; it is stored and dispatched as MESSAGE_CREATE."""
        channel_id = int(channel["id"])
        message = self._message(channel, author, content, attachments=list(attachments))
        guild_id = channel.get("guild_id")
        if guild_id is not None:
            message["member"] = {k: v for k, v in self.member(author, roles).items() if k != "user"}
        message["mentions"] = [dict(m) for m in mentions]
        message["mention_everyone"] = mention_everyone
        if reply_to is not None:
            message["type"] = 19
            message["message_reference"] = {
                "message_id": reply_to["id"],
                "channel_id": reply_to["channel_id"],
                "guild_id": guild_id,
            }
            message["referenced_message"] = reply_to
        self.messages.setdefault(channel_id, {})[int(message["id"])] = message
        await self.dispatch("MESSAGE_CREATE", message)
        return message

    async def slash_command(
        self,
        channel: Json,
        user: Json,
        name: str,
        options: Sequence[Json] = (),
        *,
        roles: Sequence[int] = (),
        permissions: int = EVERYONE_PERMISSIONS,
        attachments: Sequence[Json] = (),
        age_s: float = 0.0,
    ) -> InteractionRecord:
        """A user runs a slash command; dispatched as INTERACTION_CREATE (type 2)."""
        token = f"itoken-{self.snowflake()}"
        data: Json = {
            "id": str(self._command_id(name)),
            "name": name,
            "type": 1,
            "options": list(options),
        }
        if attachments:
            data["resolved"] = {"attachments": {a["id"]: a for a in attachments}}
        payload: Json = {
            "id": str(self.snowflake(age_s=age_s)),
            "application_id": str(self.application_id),
            "type": 2,
            "data": data,
            "channel_id": channel["id"],
            "channel": {k: v for k, v in channel.items() if k != "recipients"},
            "token": token,
            "version": 1,
            "locale": "en-US",
            "attachment_size_limit": 10 * 1024 * 1024,
            "app_permissions": str(EVERYONE_PERMISSIONS),
            "entitlements": [],
            "authorizing_integration_owners": {"0": channel.get("guild_id", user["id"])},
        }
        if channel.get("guild_id") is not None:
            payload["guild_id"] = channel["guild_id"]
            payload["guild_locale"] = "en-US"
            payload["context"] = 0
            payload["member"] = {**self.member(user, roles), "permissions": str(permissions)}
        else:
            payload["user"] = user
            payload["context"] = 1
        record = InteractionRecord(payload, dispatched_at=time.monotonic())
        self.interactions[token] = record
        await self.dispatch("INTERACTION_CREATE", payload)
        return record

    def _command_id(self, name: str) -> int:
        for command in self.commands:
            if command["name"] == name:
                return int(command["id"])
        return self.snowflake()

    def _message(self, channel: Json, author: Json, content: str, **extra: Any) -> Json:
        message: Json = {
            "id": str(self.snowflake()),
            "channel_id": channel["id"],
            "author": author,
            "content": content,
            "timestamp": self.timestamp(),
            "edited_timestamp": None,
            "tts": False,
            "mention_everyone": False,
            "mentions": [],
            "mention_roles": [],
            "attachments": [],
            "embeds": [],
            "pinned": False,
            "type": 0,
            "flags": 0,
        }
        if channel.get("guild_id") is not None:
            message["guild_id"] = channel["guild_id"]
        message.update(extra)
        return message

    # ---- what the bot did -----------------------------------------------------------------------

    def bot_requests(self, method: str, fragment: str = "") -> list[Request]:
        return [r for r in self.requests if r.method == method and fragment in r.path]

    def sending_requests(self) -> list[Request]:
        """Requests that put text in front of people: messages, edits, followups, callbacks."""
        out = []
        for r in self.requests:
            if r.method not in ("POST", "PATCH") or not isinstance(r.body, dict):
                continue
            if r.path.endswith("/callback"):
                if r.body.get("type") in (4, 7):  # a message in the response itself
                    out.append(r)
            elif r.path.endswith("/threads"):
                continue
            elif "/messages" in r.path or r.path.startswith("/webhooks/"):
                out.append(r)
        return out

    def channel_messages(self, channel_id: int | str) -> list[Json]:
        return list(self.messages.get(int(channel_id), {}).values())

    def bot_messages(self, channel_id: int | str) -> list[Json]:
        return [
            m for m in self.channel_messages(channel_id) if m["author"]["id"] == self.bot_user["id"]
        ]

    def threads_of(self, channel_id: int | str) -> list[Json]:
        return [c for c in self.channels.values() if c.get("parent_id") == str(channel_id)]

    async def wait_until(self, check: Callable[[], Any], within: float = 5.0) -> Any:
        """Wait until `check()` is truthy (re-checked after every request); return its value."""

        async def _wait() -> Any:
            async with self._changed:
                while not (value := check()):
                    await self._changed.wait()
                return value

        return await asyncio.wait_for(_wait(), within)

    async def _notify(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    def storm(
        self,
        seconds: float,
        statuses: Sequence[int] = (429, 500, 502, 503),
        *,
        paths: Sequence[str] = ("/channels/", "/webhooks/"),
        retry_after: float = 0.5,
    ) -> None:
        """For `seconds`, refuse REST requests whose path contains one of `paths`, answering
        `statuses` in turn without acting on them: 429 with Discord's rate-limit body and headers
        (`retry_after` seconds), 5xx with an error body. Interaction callbacks, the Gateway and
        login are not in the default paths."""
        self._storm_until = time.monotonic() + seconds
        self._storm_statuses = tuple(statuses)
        self._storm_paths = tuple(paths)
        self._storm_retry_after = retry_after

    def storm_over(self) -> bool:
        return time.monotonic() >= self._storm_until

    def _storm_reply(self, method: str, path: str) -> web.Response | None:
        if self.storm_over() or not any(p in path for p in self._storm_paths):
            return None
        status = self._storm_statuses[len(self.storm_replies) % len(self._storm_statuses)]
        self.storm_replies.append((method, path, status))
        if status == 429:
            after = self._storm_retry_after
            headers = {
                "Retry-After": str(max(1, round(after))),
                "X-RateLimit-Limit": "5",
                "X-RateLimit-Remaining": "0",
                "X-RateLimit-Reset": f"{time.time() + after:.3f}",
                "X-RateLimit-Reset-After": f"{after:.3f}",
                "X-RateLimit-Scope": "user",
                "Via": "1.1 google",  # discord.py takes a 429 without it for a Cloudflare ban
            }
            body = {"message": "You are being rate limited.", "retry_after": after, "global": False}
            response = _json(body, status=429)
            response.headers.update(headers)
            return response
        return _error(status, 0, f"{status}: Server Error")

    def expire(self, record: InteractionRecord) -> None:
        """From now on, the interaction token is refused, as after 15 minutes."""
        record.expired = True

    # ---- server lifecycle -----------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def api_base(self) -> str:
        return f"{self.base_url}{API_PREFIX}"

    @property
    def gateway_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/gateway"

    async def start(self) -> None:
        app = web.Application(middlewares=[self._record])
        app.router.add_get("/gateway", self._gateway)
        app.router.add_get("/attachments/{tail:.+}", self._attachment)
        r = app.router
        p = API_PREFIX
        r.add_get(f"{p}/users/@me", self._me)
        r.add_get(f"{p}/oauth2/applications/@me", self._application)
        r.add_get(f"{p}/gateway", self._gateway_info)
        r.add_get(f"{p}/gateway/bot", self._gateway_info)
        r.add_get(f"{p}/applications/{{app}}/commands", self._get_commands)
        r.add_put(f"{p}/applications/{{app}}/commands", self._put_commands)
        r.add_post(f"{p}/channels/{{channel}}/messages", self._create_message)
        r.add_patch(f"{p}/channels/{{channel}}/messages/{{message}}", self._edit_message)
        r.add_post(f"{p}/channels/{{channel}}/messages/{{message}}/threads", self._create_thread)
        r.add_post(f"{p}/channels/{{channel}}/typing", self._typing)
        r.add_post(f"{p}/users/@me/channels", self._open_dm)
        r.add_post(f"{p}/interactions/{{iid}}/{{token}}/callback", self._callback)
        r.add_post(f"{p}/webhooks/{{app}}/{{token}}", self._followup)
        r.add_patch(f"{p}/webhooks/{{app}}/{{token}}/messages/{{message}}", self._edit_webhook)
        r.add_get(f"{p}/webhooks/{{app}}/{{token}}/messages/{{message}}", self._get_webhook)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        server = site._server
        assert server is not None
        self.port = server.sockets[0].getsockname()[1]  # type: ignore[attr-defined]

    async def close(self) -> None:
        if self._ws is not None and not self._ws.closed:
            await self._ws.close()
        if self._runner is not None:
            await self._runner.cleanup()

    # ---- REST -----------------------------------------------------------------------------------

    @web.middleware
    async def _record(
        self, request: web.Request, handler: Callable[[web.Request], Any]
    ) -> web.StreamResponse:
        if request.path.startswith(API_PREFIX):
            body: Any = None
            files: list[str] = []
            if request.content_type == "application/json":
                body = await request.json()
            elif request.content_type.startswith("multipart/"):
                reader = await request.multipart()
                async for part in reader:
                    if part.name == "payload_json":  # type: ignore[union-attr]
                        body = json.loads(await part.text())  # type: ignore[union-attr]
                    else:
                        files.append(part.filename or "")  # type: ignore[union-attr]
                        await part.read()  # type: ignore[union-attr]
            request[BODY] = body
            path = request.path[len(API_PREFIX) :]
            self.requests.append(Request(request.method, path, dict(request.query), body, files))
            refused = self._storm_reply(request.method, path)
            if refused is not None:
                await self._notify()
                return refused
        try:
            response: web.StreamResponse = await handler(request)
            return response
        finally:
            await self._notify()

    async def _me(self, request: web.Request) -> web.Response:
        if request.headers.get("Authorization") != "Bot fake-token":
            return _error(401, 0, "401: Unauthorized")
        return _json(self.bot_user)

    async def _application(self, request: web.Request) -> web.Response:
        return _json(
            {
                "id": str(self.application_id),
                "name": "Folio",
                "description": "",
                "icon": None,
                "bot_public": False,
                "bot_require_code_grant": False,
                "owner": self.owner,
                "verify_key": "0" * 64,
                "flags": 0,
                "summary": "",
            }
        )

    async def _gateway_info(self, request: web.Request) -> web.Response:
        return _json(
            {
                "url": self.gateway_url,
                "shards": 1,
                "session_start_limit": {
                    "total": 1000,
                    "remaining": 999,
                    "reset_after": 0,
                    "max_concurrency": 1,
                },
            }
        )

    async def _get_commands(self, request: web.Request) -> web.Response:
        return _json(self.commands)

    async def _put_commands(self, request: web.Request) -> web.Response:
        self.commands = [
            {
                "id": str(self.snowflake()),
                "application_id": str(self.application_id),
                "version": str(self.snowflake()),
                "type": 1,
                "options": [],
                "default_member_permissions": None,
                "nsfw": False,
                **command,
            }
            for command in request[BODY]
        ]
        return _json(self.commands)

    def _channel(self, request: web.Request) -> Json | None:
        return self.channels.get(int(request.match_info["channel"]))

    async def _create_message(self, request: web.Request) -> web.Response:
        channel = self._channel(request)
        if channel is None:
            return _error(404, 10003, "Unknown Channel")
        body: Json = request[BODY] or {}
        message = self._bot_message(channel, body)
        self.messages.setdefault(int(channel["id"]), {})[int(message["id"])] = message
        await self.dispatch("MESSAGE_CREATE", message)
        return _json(message)

    def _bot_message(self, channel: Json, body: Json, **extra: Any) -> Json:
        message = self._message(channel, self.bot_user, body.get("content") or "", **extra)
        message["flags"] = body.get("flags") or 0
        if "message_reference" in body:
            message["type"] = 19
            message["message_reference"] = body["message_reference"]
        return message

    async def _edit_message(self, request: web.Request) -> web.Response:
        channel_id = int(request.match_info["channel"])
        message = self.messages.get(channel_id, {}).get(int(request.match_info["message"]))
        if message is None:
            return _error(404, 10008, "Unknown Message")
        if message["author"]["id"] != self.bot_user["id"]:
            return _error(403, 50005, "Cannot edit a message authored by another user")
        self._apply_edit(message, request[BODY] or {})
        return _json(message)

    def _apply_edit(self, message: Json, body: Json) -> None:
        if "content" in body:
            message["content"] = body["content"] or ""
        if body.get("flags") is not None:
            message["flags"] = body["flags"]
        message["edited_timestamp"] = self.timestamp()

    async def _create_thread(self, request: web.Request) -> web.Response:
        parent = self._channel(request)
        if parent is None:
            return _error(404, 10003, "Unknown Channel")
        if int(parent["id"]) in self.threads_forbidden or parent["type"] not in (0, 5):
            return _error(403, 50013, "Missing Permissions")
        if int(request.match_info["message"]) in self.channels:
            return _error(400, 160004, "A thread has already been created for this message")
        body: Json = request[BODY]
        thread = {
            "id": request.match_info["message"],  # a thread started from a message has its id
            "type": 11,
            "guild_id": parent["guild_id"],
            "parent_id": parent["id"],
            "owner_id": self.bot_user["id"],
            "name": body["name"],
            "last_message_id": None,
            "message_count": 0,
            "member_count": 1,
            "rate_limit_per_user": 0,
            "thread_metadata": {
                "archived": False,
                "auto_archive_duration": body.get("auto_archive_duration") or 1440,
                "archive_timestamp": self.timestamp(),
                "locked": False,
            },
            "member": {
                "id": request.match_info["message"],
                "user_id": self.bot_user["id"],
                "join_timestamp": self.timestamp(),
                "flags": 0,
            },
        }
        self.channels[int(thread["id"])] = thread
        self.messages[int(thread["id"])] = {}
        await self.dispatch("THREAD_CREATE", {**thread, "newly_created": True})
        return _json(thread, status=201)

    async def _typing(self, request: web.Request) -> web.Response:
        return web.Response(status=204)

    async def _open_dm(self, request: web.Request) -> web.Response:
        recipient = str(request[BODY]["recipient_id"])
        for channel in self.channels.values():
            if channel["type"] == 1 and channel["recipients"][0]["id"] == recipient:
                return _json(channel)
        return _error(404, 10013, "Unknown User")

    async def _callback(self, request: web.Request) -> web.Response:
        record = self.interactions.get(request.match_info["token"])
        if record is None or record.expired:
            return _error(404, 10062, "Unknown interaction")
        if record.callbacks:
            return _error(400, 40060, "Interaction has already been acknowledged.")
        body: Json = request[BODY]
        record.responded_at = time.monotonic()
        record.callbacks.append(body)
        response_type = body["type"]
        data: Json = body.get("data") or {}
        flags = data.get("flags") or 0
        channel = self.channels[int(record.payload["channel_id"])]
        message = self._bot_message(channel, data)
        if response_type == 5:
            message["flags"] = flags | 128  # LOADING
        record.original = message
        return _json(
            {
                "interaction": {
                    "id": record.payload["id"],
                    "type": 2,
                    "response_message_id": message["id"],
                    "response_message_loading": response_type == 5,
                    "response_message_ephemeral": bool(flags & 64),
                },
                "resource": {"type": response_type, "message": message},
            }
        )

    def _webhook_record(self, request: web.Request) -> InteractionRecord | web.Response:
        record = self.interactions.get(request.match_info["token"])
        if record is None:
            return _error(404, 10015, "Unknown Webhook")
        if record.expired:
            return _error(401, 50027, "Invalid Webhook Token")
        if not record.callbacks:
            return _error(404, 10015, "Unknown Webhook")
        return record

    async def _followup(self, request: web.Request) -> web.Response:
        record = self._webhook_record(request)
        if isinstance(record, web.Response):
            return record
        channel = self.channels[int(record.payload["channel_id"])]
        body = request[BODY] or {}
        message = self._bot_message(channel, body, webhook_id=str(self.application_id))
        record.followups.append(message)
        return _json(message)

    def _find_webhook_message(self, record: InteractionRecord, message_id: str) -> Json | None:
        if message_id == "@original" or (record.original and record.original["id"] == message_id):
            return record.original
        return next((m for m in record.followups if m["id"] == message_id), None)

    async def _edit_webhook(self, request: web.Request) -> web.Response:
        record = self._webhook_record(request)
        if isinstance(record, web.Response):
            return record
        message = self._find_webhook_message(record, request.match_info["message"])
        if message is None:
            return _error(404, 10008, "Unknown Message")
        self._apply_edit(message, request[BODY] or {})
        message["flags"] = message["flags"] & ~128
        return _json(message)

    async def _get_webhook(self, request: web.Request) -> web.Response:
        record = self._webhook_record(request)
        if isinstance(record, web.Response):
            return record
        message = self._find_webhook_message(record, request.match_info["message"])
        if message is None:
            return _error(404, 10008, "Unknown Message")
        return _json(message)

    async def _attachment(self, request: web.Request) -> web.Response:
        data = self.attachments.get(request.path)
        if data is None:
            return web.Response(status=404)
        self.downloads.append(request.path)
        return web.Response(body=data, content_type="application/octet-stream")

    # ---- Gateway --------------------------------------------------------------------------------

    async def dispatch(self, event: str, data: Json) -> None:
        """Send a DISPATCH (op 0) to the connected bot, as Discord does after a change."""
        if self._ws is None or self._ws.closed:
            return
        self._seq += 1
        await self._ws.send_str(json.dumps({"op": 0, "t": event, "s": self._seq, "d": data}))

    async def send_reconnect(self) -> None:
        """Ask the bot to reconnect (op 7); it should come back with RESUME."""
        assert self._ws is not None
        await self._ws.send_str(json.dumps({"op": 7, "d": None}))

    async def _gateway(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        self._ws = ws
        await ws.send_str(json.dumps({"op": 10, "d": {"heartbeat_interval": 41250}}))
        async for msg in ws:
            if msg.type is not WSMsgType.TEXT:
                continue
            payload = json.loads(msg.data)
            op = payload["op"]
            if op == 1:
                await ws.send_str(json.dumps({"op": 11}))
            elif op == 2:
                self.identify_payloads.append(payload["d"])
                await self._send_ready()
            elif op == 6:
                self.resumes.append(payload["d"])
                await self.dispatch("RESUMED", {})
            await self._notify()
        return ws

    async def _send_ready(self) -> None:
        await self.dispatch(
            "READY",
            {
                "v": 10,
                "user": self.bot_user,
                "guilds": [{"id": str(g), "unavailable": True} for g in self.guilds],
                "session_id": self._session_id,
                "resume_gateway_url": self.gateway_url,
                "application": {"id": str(self.application_id), "flags": 0},
                "private_channels": [],
                "relationships": [],
            },
        )
        for guild in self.guilds.values():
            await self.dispatch("GUILD_CREATE", guild)
        self.ready.set()


def _json(data: Any, status: int = 200) -> web.Response:
    # Exactly "application/json": discord.py only parses a body whose content-type is that string.
    return web.Response(
        body=json.dumps(data).encode(), status=status, headers={"Content-Type": "application/json"}
    )


def _error(status: int, code: int, message: str) -> web.Response:
    return _json({"code": code, "message": message}, status=status)


def iter_text(requests: list[Request]) -> Iterator[str]:
    for r in requests:
        body = r.body or {}
        data = body.get("data") if r.path.endswith("/callback") else body
        if isinstance(data, dict) and data.get("content"):
            yield str(data["content"])
