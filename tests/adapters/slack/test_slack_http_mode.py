"""HTTP mode: requests signed with the signing secret are served; anything else gets 401."""

from __future__ import annotations

import json
import time
from urllib.parse import urlencode

import aiohttp
import pytest
from fake_slack import (
    BOT_TOKEN,
    SIGNING_SECRET,
    FakeSlack,
    app_mention,
    event_callback,
    signed,
    slash_command,
)
from fake_slack_core import FakeCore, StartAdapter

from adapters.slack import SlackAdapter, SlackSettings
from config.errors import ConfigError


async def http_adapter(start_adapter: StartAdapter) -> tuple[SlackAdapter, str]:
    adapter = await start_adapter(
        mode="http", http_host="127.0.0.1", http_port=0, signing_secret=SIGNING_SECRET
    )
    return adapter, f"http://127.0.0.1:{adapter.http_port}/slack/events"


async def post(url: str, body: str, headers: dict[str, str], content_type: str) -> tuple[int, str]:
    async with (
        aiohttp.ClientSession() as session,
        session.post(url, data=body, headers={**headers, "Content-Type": content_type}) as resp,
    ):
        return resp.status, await resp.text()


FORM = "application/x-www-form-urlencoded"


async def test_a_signed_command_is_acked_and_queued(
    start_adapter: StartAdapter, fake_slack: FakeSlack, core: FakeCore
) -> None:
    _, url = await http_adapter(start_adapter)
    body = urlencode(slash_command(fake_slack, "/ask", "what is the warranty?"))
    status, _ = await post(url, body, signed(body), FORM)
    assert status == 200
    job = await core.next_job()
    assert job.text == "what is the warranty?"
    root = await fake_slack.wait_for(lambda: fake_slack.messages.get((job.channel, job.thread)))
    await fake_slack.wait_for(lambda: "position 1" in root.text)


async def test_a_signed_event_retry_is_acked_and_answered_once(
    start_adapter: StartAdapter, fake_slack: FakeSlack, core: FakeCore
) -> None:
    _, url = await http_adapter(start_adapter)
    body = json.dumps(event_callback(app_mention("warranty?"), event_id="Ev0HTTP"))
    assert (await post(url, body, signed(body), "application/json"))[0] == 200
    retry_headers = {**signed(body), "X-Slack-Retry-Num": "1", "X-Slack-Retry-Reason": "timeout"}
    assert (await post(url, body, retry_headers, "application/json"))[0] == 200
    await core.next_job()
    marker = json.dumps(event_callback(app_mention("marker")))
    await post(url, marker, signed(marker), "application/json")
    assert (await core.next_job()).text == "marker"
    assert [j.idempotency_key for j in core.jobs] == ["event:Ev0HTTP", core.jobs[1].idempotency_key]


async def test_a_bad_signature_is_rejected(
    start_adapter: StartAdapter, fake_slack: FakeSlack, core: FakeCore
) -> None:
    _, url = await http_adapter(start_adapter)
    body = urlencode(slash_command(fake_slack, "/ask", "let me in"))
    status, _ = await post(url, body, signed(body, secret="not-the-secret"), FORM)
    assert status == 401
    status, _ = await post(url, body, {}, FORM)
    assert status == 401
    assert core.jobs == []


async def test_a_stale_timestamp_is_rejected_even_when_correctly_signed(
    start_adapter: StartAdapter, fake_slack: FakeSlack, core: FakeCore
) -> None:
    _, url = await http_adapter(start_adapter)
    body = urlencode(slash_command(fake_slack, "/ask", "replayed"))
    status, _ = await post(url, body, signed(body, timestamp=time.time() - 6 * 60), FORM)
    assert status == 401
    assert core.jobs == []


def test_missing_secrets_are_reported_before_connecting(core: FakeCore) -> None:
    with pytest.raises(ConfigError, match="SLACK_APP_TOKEN"):
        SlackAdapter(core, SlackSettings(), bot_token="xoxb-1")
    with pytest.raises(ConfigError, match="SLACK_SIGNING_SECRET"):
        SlackAdapter(core, SlackSettings(mode="http"), bot_token="xoxb-1")
    with pytest.raises(ConfigError, match="SLACK_BOT_TOKEN"):
        SlackAdapter(core, SlackSettings(), bot_token="", app_token="xapp-1")


async def test_a_rejected_bot_token_is_a_config_error(
    fake_slack: FakeSlack, core: FakeCore
) -> None:
    settings = SlackSettings(api_base_url=fake_slack.api_url)
    adapter = SlackAdapter(core, settings, bot_token="xoxb-wrong", app_token="xapp-1")
    with pytest.raises(ConfigError, match="invalid_auth"):
        await adapter.start()
    await adapter.stop()


async def test_a_rejected_app_token_is_a_config_error(
    fake_slack: FakeSlack, core: FakeCore
) -> None:
    settings = SlackSettings(api_base_url=fake_slack.api_url)
    adapter = SlackAdapter(core, settings, bot_token=BOT_TOKEN, app_token="xapp-wrong")
    with pytest.raises(ConfigError, match="SLACK_APP_TOKEN"):
        await adapter.start()
    await adapter.stop()
    assert fake_slack.ws_connections == 0
