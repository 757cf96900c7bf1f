"""HTTP mode: Slack POSTs events and commands to a public URL, served here with aiohttp.

Bolt's request verification checks every request's `X-Slack-Signature` against the signing secret
and refuses timestamps more than 5 minutes old (replays) with 401, before any listener runs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web

if TYPE_CHECKING:
    from slack_bolt.async_app import AsyncApp

MAX_BODY_BYTES = 1024 * 1024  # Slack's payloads are a few kilobytes


def build_web_app(app: AsyncApp, path: str) -> web.Application:
    from slack_bolt.adapter.aiohttp import to_aiohttp_response, to_bolt_request

    async def events(request: web.Request) -> web.Response:
        bolt_response = await app.async_dispatch(await to_bolt_request(request))
        return await to_aiohttp_response(bolt_response)

    async def health(request: web.Request) -> web.Response:
        return web.Response(text="ok")

    web_app = web.Application(client_max_size=MAX_BODY_BYTES)
    web_app.router.add_post(path, events)
    web_app.router.add_get("/healthz", health)
    return web_app
