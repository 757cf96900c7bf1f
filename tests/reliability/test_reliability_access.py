"""Access: one user's /history is never shown to another, and secrets never reach a log, the
terminal or a settings dump (the CLI at DEBUG, and the real BotCore + Slack adapter in HTTP mode
with tokens from the environment, against the fake Slack on loopback).

Collection isolation with the real engine is in test_reliability_engine_safety.py.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlencode

import aiohttp
import pdfs
import pytest
from fake_slack import APP_TOKEN, BOT_TOKEN, USER, FakeSlack, slash_command
from fakes import FakeEngine, RecordingAdapter, make_job
from logging_support import restored_root_logger
from reliability_env import drop_settings_env

from adapters.discord.settings import DiscordSettings
from adapters.slack.settings import SlackSettings
from bot.app import load_settings
from bot.core import BotCore, CoreOptions

DISCORD_SECRET = "MTIzNDU2Nzg5.discord-SENTINEL-token.abcdef"
SIGNING_SECRET = "sentinel0signing0secret0f00ba4"
SECRETS = (DISCORD_SECRET, SIGNING_SECRET, BOT_TOKEN, APP_TOKEN)
TOKEN_ENV = {
    "DISCORD_BOT_TOKEN": DISCORD_SECRET,
    "SLACK_BOT_TOKEN": BOT_TOKEN,  # the fake Slack accepts only its own tokens
    "SLACK_APP_TOKEN": APP_TOKEN,
    "SLACK_SIGNING_SECRET": SIGNING_SECRET,
}


@pytest.fixture
def token_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    drop_settings_env(monkeypatch)
    for name, value in TOKEN_ENV.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("FOLIO_GENERATOR__THREADS", "1")
    monkeypatch.chdir(tmp_path)
    yield


def assert_no_secret(where: str, text: str) -> None:
    for secret in SECRETS:
        assert secret not in text, f"{secret[:12]}… appears in {where}"


# --- /history ------------------------------------------------------------------------------


async def test_history_shows_each_user_only_their_own_requests(tmp_path: Path) -> None:
    slack, discord = RecordingAdapter("slack"), RecordingAdapter("discord")
    core = BotCore(FakeEngine(), tmp_path / "bot.sqlite", CoreOptions(edit_interval_s=0.0))
    core.register(slack)
    core.register(discord)
    async with core:
        asked = [
            (slack, make_job("slack", "alice", "alice private question about 7741")),
            (slack, make_job("slack", "bob", "bob question about ferries")),
            # the same user id on another platform is another person
            (discord, make_job("discord", "alice", "discord alice question")),
        ]
        for adapter, job in asked:
            accepted = await core.submit(job)
            await adapter.wait_final(accepted.job_id)

        alice = await core.history("slack", "alice")
        bob = await core.history("slack", "bob")
        other_alice = await core.history("discord", "alice")
        nobody = await core.history("slack", "mallory")

    assert [e.question for e in alice] == ["alice private question about 7741"]
    assert alice[0].answer and "7741" in alice[0].answer  # control: the answer was logged
    assert [e.question for e in bob] == ["bob question about ferries"]
    assert [e.question for e in other_alice] == ["discord alice question"]
    assert nobody == []


# --- settings ------------------------------------------------------------------------------


def test_settings_dumps_and_reprs_never_reveal_the_tokens(token_env: None) -> None:
    settings = load_settings()
    discord = settings.section("discord", DiscordSettings)
    assert discord.token is not None
    assert discord.token.get_secret_value() == DISCORD_SECRET  # control: they are read
    assert settings.section("slack", SlackSettings).signing_secret is not None
    for where, text in {
        "repr": repr(settings),
        "str": str(settings),
        "model_dump": repr(settings.model_dump()),
        "model_dump_json": settings.model_dump_json(),
        "json": json.dumps(settings.model_dump(mode="json")),
    }.items():
        assert_no_secret(where, text)


# --- the CLI -------------------------------------------------------------------------------


@pytest.mark.slow
def test_cli_commands_at_debug_never_log_or_print_a_token(
    token_env: None, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from bot.cli import main

    guide = tmp_path / "guide.pdf"
    guide.write_bytes(
        pdfs.make_pdf(["The ferry to Marrow Island departs every ninety minutes from Pier 7."])
    )
    data = tmp_path / "data"
    base = ["--data-dir", str(data), "--log-level", "DEBUG"]
    commands = [
        ["ingest", str(guide)],
        ["docs", "--json"],
        ["ask", "--json", "How often does the ferry to Marrow Island depart?"],
        ["history"],
        ["doctor", "--json"],
        ["forget", "nothing.pdf"],  # a failure path too (exit 1)
    ]
    printed = []
    for command in commands:
        with restored_root_logger():
            code = main([*base, *command])
        captured = capsys.readouterr()
        printed.append(captured.out + captured.err)
        assert code == (1 if command[0] == "forget" else 0), (command, captured.err)
    log = (data / "logs" / "folio.log").read_text(encoding="utf-8")
    assert " INFO " in log and " DEBUG " in log  # control: it logged, at DEBUG
    assert_no_secret("data/logs/folio.log", log)
    assert_no_secret("the CLI's output", "\n".join(printed))


# --- Slack HTTP mode with the real BotCore ---------------------------------------------------


def signed(body: str) -> dict[str, str]:
    ts = str(int(time.time()))
    digest = hmac.new(
        SIGNING_SECRET.encode(), f"v0:{ts}:{body}".encode(), hashlib.sha256
    ).hexdigest()
    return {
        "X-Slack-Request-Timestamp": ts,
        "X-Slack-Signature": f"v0={digest}",
        "Content-Type": "application/x-www-form-urlencoded",
    }


async def test_slack_http_mode_with_env_tokens_never_logs_them(
    token_env: None,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    from bot.app import build_adapters, configured_platforms

    fake = FakeSlack()
    await fake.start()
    fake.add_user(USER)
    for name, value in {
        "FOLIO_SLACK__MODE": "http",
        "FOLIO_SLACK__HTTP_HOST": "127.0.0.1",
        "FOLIO_SLACK__HTTP_PORT": "0",
        "FOLIO_SLACK__API_BASE_URL": fake.api_url,
        "FOLIO_SLACK__EDIT_INTERVAL_S": "0",
        "FOLIO_QUEUE__EDIT_INTERVAL_S": "0",
    }.items():
        monkeypatch.setenv(name, value)
    caplog.set_level(logging.DEBUG)
    settings = load_settings(data_dir=tmp_path / "data")
    assert configured_platforms(settings) == ["discord", "slack"]  # control: tokens were read
    core = BotCore.from_settings(settings, FakeEngine())
    [adapter] = build_adapters(settings, core, ["slack"])  # the composition root's own wiring
    core.register(adapter)
    try:
        await core.start()
        await adapter.start()
        url = f"http://127.0.0.1:{adapter.http_port}/slack/events"
        body = urlencode(slash_command(fake, "/ask", "what is the warranty?"))
        async with (
            aiohttp.ClientSession() as session,
            session.post(url, data=body, headers=signed(body)) as response,
        ):
            assert response.status == 200, await response.text()
        await fake.wait_for(
            lambda: any("forty two" in str(c.params.get("text", "")) for c in fake.calls)
        )
        # A forged request is refused (and that is logged too).
        async with (
            aiohttp.ClientSession() as session,
            session.post(
                url, data=body, headers={**signed(body), "X-Slack-Signature": "v0=0"}
            ) as response,
        ):
            assert response.status == 401
    finally:
        await adapter.stop()
        await core.stop()
        await fake.stop()
        await asyncio.sleep(0)

    assert any(r.levelno == logging.DEBUG for r in caplog.records)  # control: DEBUG captured
    assert_no_secret("the log", caplog.text)
    for record in caplog.records:
        assert_no_secret(f"log record {record.name}", repr(record.args) + str(record.exc_text))
