"""Fixtures for the Slack adapter tests: a fake Slack on loopback, the real Bolt app against it."""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

_HERE = Path(__file__).resolve().parent
# This folder (the fake Slack), the bot tests' folder (their FakeEngine), the repository root.
for path in (_HERE, _HERE.parents[1] / "bot", _HERE.parents[2]):
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))

from fake_slack import APP_TOKEN, BOT_TOKEN, FakeSlack, running_fake_slack  # noqa: E402
from fake_slack_core import FakeCore, StartAdapter  # noqa: E402

from adapters.slack import SlackAdapter, SlackSettings  # noqa: E402
from bot.core import BotCore  # noqa: E402


@pytest.fixture
async def fake_slack() -> AsyncIterator[FakeSlack]:
    async with running_fake_slack() as server:
        yield server


@pytest.fixture
def core() -> FakeCore:
    return FakeCore()


@pytest.fixture
async def start_adapter(
    fake_slack: FakeSlack, core: FakeCore | BotCore
) -> AsyncIterator[StartAdapter]:
    """Start a SlackAdapter (Socket Mode unless told otherwise) against the fake; stopped after."""
    started: list[SlackAdapter] = []

    async def start(**overrides: object) -> SlackAdapter:
        options: dict[str, object] = {
            "api_base_url": fake_slack.api_url,
            "edit_interval_s": 0.0,
            "max_file_mb": 1.0,
            "max_rate_limit_retries": 2,
        }
        secret = overrides.pop("signing_secret", None)
        options.update(overrides)
        adapter = SlackAdapter(
            core,
            SlackSettings.model_validate(options),
            bot_token=BOT_TOKEN,
            app_token=APP_TOKEN,
            signing_secret=secret if isinstance(secret, str) else None,
        )
        started.append(adapter)
        core.register(adapter)
        await adapter.start()
        return adapter

    try:
        yield start
    finally:
        try:
            # Bolt sends an ack a moment after the listener calls ack(): let the last ones
            # arrive (an envelope never acked fails the test here).
            await fake_slack.wait_for(fake_slack.all_acked, within=3.0)
        finally:
            for adapter in started:  # else a failed test hangs on the open websocket
                await adapter.stop()


@pytest.fixture
async def adapter(start_adapter: StartAdapter, fake_slack: FakeSlack) -> SlackAdapter:
    """A Socket Mode adapter whose websocket is connected to the fake."""
    started = await start_adapter()
    await fake_slack.wait_for(lambda: fake_slack.ws_connections >= 1)
    return started
