"""The bot process of the load test: `folio run` (the real composition root: models, BotCore, the
Discord and Slack adapters) with discord.py pointed at the fake Discord. Settings and tokens come
from the environment, as in production. On exit it writes its peak RSS as JSON.

    python tests/reliability/load_bot.py API_BASE GATEWAY_URL DATA_DIR REPORT_JSON

It runs in its own process so the memory figure is the bot's alone, not pytest's.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))


def main(argv: list[str]) -> int:
    api_base, gateway_url, data_dir, report = argv
    import discord.gateway
    import discord.http
    import yarl

    discord.http.Route.BASE = api_base  # type: ignore[misc]
    discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(gateway_url)

    from bot.cli import main as folio
    from bot.measure.processes import MemoryWatch

    with MemoryWatch() as watch:
        code = folio(["--data-dir", data_dir, "run"])
    Path(report).write_text(json.dumps({"exit_code": code, **watch.figures()}), encoding="utf-8")
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
