"""Starting the web page: on by default on loopback, refused when exposed without a password,
one line (not a crash) when its port is taken."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from adapters.web.platform import web_collections
from adapters.web.settings import WebSettings
from bot.app import build_adapters, load_settings
from config.errors import ConfigError

ROOT = Path(__file__).resolve().parents[3]


def _clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("FOLIO_", "DISCORD_", "SLACK_", "REDIS_URL"))}
    return {**env, **extra}


@pytest.fixture
def no_folio_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith(("FOLIO_", "DISCORD_", "SLACK_")):
            monkeypatch.delenv(name)


def test_the_page_is_on_by_default_on_loopback(no_folio_env: None, tmp_path: Path) -> None:
    settings = load_settings(data_dir=tmp_path)
    web = settings.section("web", WebSettings)
    assert web.enabled and web.host == "127.0.0.1" and web.loopback
    assert web_collections(settings) == ["default"]
    assert settings.ingest.max_file_bytes == 50_000_000  # the limit uploads share with ingest


def test_env_turns_it_off_and_sets_the_port(
    no_folio_env: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FOLIO_WEB__ENABLED", "false")
    monkeypatch.setenv("FOLIO_WEB__PORT", "9123")
    settings = load_settings(data_dir=tmp_path)
    web = settings.section("web", WebSettings)
    assert web.enabled is False and web.port == 9123


def test_an_exposed_bind_without_a_password_is_refused(
    no_folio_env: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FOLIO_WEB__HOST", "0.0.0.0")
    with pytest.raises(ConfigError, match="FOLIO_WEB_PASSWORD"):
        load_settings(data_dir=tmp_path)
    monkeypatch.setenv("FOLIO_WEB_PASSWORD", "a long shared password")
    settings = load_settings(data_dir=tmp_path)
    assert settings.section("web", WebSettings).password is not None
    assert "a long shared password" not in repr(settings)


def test_a_password_in_the_config_file_is_refused(
    no_folio_env: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "folio.toml"
    config.write_text('[web]\npassword = "oops"\n')
    monkeypatch.setenv("FOLIO_CONFIG", str(config))
    with pytest.raises(ConfigError, match="FOLIO_WEB_PASSWORD"):
        load_settings(data_dir=tmp_path)


def test_folio_run_refuses_to_start_exposed_without_a_password(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "bot", "--data-dir", str(tmp_path), "run"],
        cwd=ROOT, env=_clean_env(FOLIO_WEB__HOST="0.0.0.0"), stdin=subprocess.DEVNULL,
        capture_output=True, text=True, timeout=60,
    )
    assert done.returncode == 2, done.stdout + done.stderr
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "FOLIO_WEB_PASSWORD" in lines[0], done.stderr
    assert "Traceback" not in done.stderr


async def test_a_taken_port_costs_the_page_not_the_bot(
    no_folio_env: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    from fakes import FakeEngine

    from bot.app import start_beside
    from bot.core import BotCore

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        monkeypatch.setenv("FOLIO_WEB__PORT", str(taken.getsockname()[1]))
        settings = load_settings(data_dir=tmp_path)
        core = BotCore.from_settings(settings, FakeEngine())
        [adapter] = build_adapters(settings, core, ["web"])
        assert await start_beside(adapter, "web page") is False
    assert any("web page not started" in r.getMessage() for r in caplog.records)


async def test_folio_run_serves_the_page_beside_the_terminal_chat_and_prints_its_url(
    tmp_path: Path,
) -> None:
    import asyncio

    import aiohttp

    bot = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bot", "--data-dir", str(tmp_path), "run",
        cwd=ROOT, env=_clean_env(FOLIO_WEB__PORT="0", FOLIO_GENERATOR__THREADS="1"),
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        assert bot.stderr is not None and bot.stdin is not None and bot.stdout is not None
        url = ""
        while not url:
            line = (await asyncio.wait_for(bot.stderr.readline(), 120)).decode()
            assert line, "folio run ended before printing the web page's URL"
            if line.startswith("Folio web page: "):
                url = line.split(": ", 1)[1].strip()
        assert url.startswith("http://127.0.0.1:")
        async with aiohttp.ClientSession() as http:
            async with http.get(url + "healthz") as response:
                assert response.status == 200
            async with http.get(url) as response:
                assert response.status == 200 and "Ask a question" in await response.text()
        bot.stdin.write(b"/quit\n")
        await bot.stdin.drain()
        assert await asyncio.wait_for(bot.wait(), 60) == 0
        assert "Folio chat" in (await bot.stdout.read()).decode()
    finally:
        if bot.returncode is None:
            bot.kill()
            await bot.wait()


def test_with_a_shared_queue_the_pages_jobs_are_named_after_the_host() -> None:
    from adapters.web import web_platform

    assert web_platform(shared_queue=False) == "web"
    shared = web_platform(shared_queue=True)
    assert shared.startswith("web-") and shared == web_platform(shared_queue=True)
    assert "/" not in shared and " " not in shared
