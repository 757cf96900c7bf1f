"""Start/stop, a refused token, lazy import, and the adapter with the real BotCore end to end."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest
from discord_harness import TOKEN
from fake_discord import FakeDiscord
from fake_discord_core import FakeCore

from adapters.discord.adapter import DiscordAdapter
from adapters.discord.settings import DiscordSettings
from bot.core import BotCore, CoreOptions
from config.errors import ConfigError

ROOT = Path(__file__).resolve().parents[3]


def _bot_fakes() -> object:
    """tests/bot/fakes.py (the scripted engine), loaded under a name of its own."""
    spec = importlib.util.spec_from_file_location("folio_bot_fakes", ROOT / "tests/bot/fakes.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_importing_the_adapter_does_not_import_discord() -> None:
    code = (
        "import sys; import adapters.discord, adapters.discord.adapter, "
        "adapters.discord.settings, adapters.discord.platform; "
        "assert 'discord' not in sys.modules, 'imported'"
    )
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True)


async def test_a_refused_token_is_a_config_error(fake_discord: FakeDiscord) -> None:
    adapter = DiscordAdapter(FakeCore(), DiscordSettings(), token="wrong-token")
    with pytest.raises(ConfigError, match="rejected DISCORD_BOT_TOKEN"):
        await adapter.start()
    await adapter.stop()  # harmless after a failed start


def test_an_empty_token_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="DISCORD_BOT_TOKEN"):
        DiscordAdapter(FakeCore(), DiscordSettings(), token="")


async def test_start_then_stop_closes_everything(fake_discord: FakeDiscord) -> None:
    adapter = DiscordAdapter(FakeCore(), DiscordSettings(sync_commands=False), token=TOKEN)
    await adapter.start()
    await fake_discord.wait_until(lambda: fake_discord.identify_payloads)
    client = adapter.client
    assert fake_discord.identify_payloads[0]["intents"] == (1 << 0) | (1 << 9) | (1 << 12)
    assert not fake_discord.bot_requests("PUT", "/commands")
    await adapter.stop()
    assert client.is_closed()
    await adapter.stop()


async def test_with_the_real_core_a_mention_is_answered_with_citations(
    fake_discord: FakeDiscord, tmp_path: Path
) -> None:
    fakes = _bot_fakes()
    engine = fakes.FakeEngine()  # type: ignore[attr-defined]
    engine.enqueue("The refund window is 30 days.")
    core = BotCore(engine, tmp_path / "bot.sqlite", CoreOptions(edit_interval_s=0.0))
    adapter = DiscordAdapter(core, DiscordSettings(), token=TOKEN)
    core.register(adapter)
    guild = fake_discord.add_guild()
    channel = fake_discord.text_channel(guild)
    await core.start()
    try:
        await adapter.start()
        await fake_discord.ready.wait()
        alice = fake_discord.make_user("alice")
        me = fake_discord.bot_user
        await fake_discord.user_message(
            channel, alice, f"<@{me['id']}> what is the refund window?", mentions=[me]
        )
        thread = await fake_discord.wait_until(lambda: fake_discord.threads_of(channel["id"]))
        [message] = await fake_discord.wait_until(
            lambda: [
                m for m in fake_discord.bot_messages(thread[0]["id"]) if "Sources:" in m["content"]
            ]
        )
        assert message["content"].startswith("The refund window is 30 days.")
        assert f"[discord-{guild['id']}.pdf p.3]" in message["content"]
        [call] = engine.calls
        assert call.collection == f"discord-{guild['id']}"
    finally:
        await adapter.stop()
        await core.stop()
