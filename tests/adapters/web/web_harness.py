"""The web page under test: a real `BotCore` and the real aiohttp server on loopback (port 0),
driven over HTTP by aiohttp clients (one cookie jar per person), with a fake engine that keeps
the PDFs it is given. Imported by name (tests/adapters/web is put on sys.path by conftest)."""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import aiohttp
from fakes import FakeEngine

from adapters.web import WebAdapter, WebOptions
from bot.core import BotCore, CoreOptions
from rag.types import IngestProgressCallback, IngestReport


@dataclass
class FilesEngine(FakeEngine):
    """The bot tests' scripted engine, plus the stored originals the web page serves."""

    files_dir: Path = Path(".")
    originals: dict[tuple[str, str], Path] = field(default_factory=dict)

    def ingest_bytes(
        self, name: str, data: bytes, *, collection: str,
        on_progress: IngestProgressCallback | None = None,
    ) -> IngestReport:
        report = super().ingest_bytes(name, data, collection=collection, on_progress=on_progress)
        if report.outcomes[0].status == "added":
            path = self.files_dir / f"{len(self.originals)}.pdf"
            path.write_bytes(data)
            self.originals[(collection, name)] = path
        return report

    def original_file(self, name: str, *, collection: str) -> Path | None:
        return self.originals.get((collection, name))


class Person:
    """One browser's worth of state: a cookie jar and the page's CSRF token."""

    def __init__(self, base: str) -> None:
        self.base = base
        self.http = aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))
        self.csrf = ""

    async def open(self, path: str = "/") -> str:
        async with self.http.get(self.base + path) as response:
            text = await response.text()
        found = re.search(r'name="csrf-token" content="([^"]*)"', text)
        if found:
            self.csrf = found.group(1)
        return text

    async def sign_in(self, name: str, **fields: str) -> aiohttp.ClientResponse:
        await self.open("/login")
        async with self.http.post(
            self.base + "/login", data={"csrf": self.csrf, "name": name, **fields},
            allow_redirects=False,
        ) as response:
            await response.read()
        await self.open("/")
        return response

    async def call(self, method: str, path: str, **kwargs: Any) -> tuple[int, Any]:
        headers = {"X-CSRF-Token": self.csrf, **kwargs.pop("headers", {})}
        async with self.http.request(method, self.base + path, headers=headers,
                                     **kwargs) as response:
            body = await response.text()
            try:
                return response.status, json.loads(body)
            except ValueError:
                return response.status, body

    async def close(self) -> None:
        await self.http.close()


@dataclass
class Site:
    core: BotCore
    adapter: WebAdapter
    engine: Any
    url: str

    def person(self) -> Person:
        person = Person(self.url.rstrip("/"))
        self._people.append(person)
        return person

    _people: list[Person] = field(default_factory=list)


StartSite = Callable[..., Awaitable[Site]]




class Sites:
    """Starts sites on demand and stops them all at the end (the `start_site` fixture)."""

    def __init__(self, tmp_path: Path) -> None:
        self._tmp = tmp_path
        self.sites: list[Site] = []

    async def start(self, engine: Any = None, **changes: Any) -> Site:
        """`await start_site(engine=None, **web_options)`: core + web page on 127.0.0.1:0."""
        n = len(self.sites)
        if engine is None:
            files = self._tmp / f"files{n}"
            files.mkdir()
            engine = FilesEngine(files_dir=files, **changes.pop("engine_options", {}))
        core_options = changes.pop("core_options", {})
        core = BotCore(engine, self._tmp / f"bot{n}.sqlite", CoreOptions(
            **{"edit_interval_s": 0.0, "stop_grace_s": 2.0, **core_options}
        ))
        options = replace(
            WebOptions(host="127.0.0.1", port=0, collections=("default",),
                       max_file_bytes=200_000, data_dir=self._tmp / "data"),
            **changes,
        )
        adapter = WebAdapter(core, options)
        core.register(adapter)
        await core.start()
        await adapter.start()
        site = Site(core, adapter, engine, adapter.url)
        self.sites.append(site)
        return site

    async def stop(self) -> None:
        for site in self.sites:
            for person in site._people:
                await person.close()
            await site.adapter.stop()
            await site.core.stop()
