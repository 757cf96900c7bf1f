"""`folio history`: recent conversations, or all of them as JSONL."""

from __future__ import annotations

import sys

from bot.commands.output import clip
from config.settings import Settings


async def cmd_history(settings: Settings, *, limit: int, export: bool) -> int:
    from bot.history import History
    from bot.migrations import BotDatabase

    db = await BotDatabase.open(settings.bot_db)
    try:
        history = History(db)
        if export:
            await history.export_jsonl(sys.stdout)
            return 0
        entries = await history.recent(limit=limit)
    finally:
        await db.close()
    if not entries:
        print("No conversations yet.")
        return 0
    from datetime import datetime

    for entry in entries:
        when = datetime.fromtimestamp(entry["asked_at"]).strftime("%Y-%m-%d %H:%M")
        answer = " ".join((entry["answer"] or f"({entry['status']})").split())
        took = f"{entry['total_s']:.1f}s" if entry["total_s"] is not None else "-"
        print(f"{when} {entry['platform']}/{entry['user_id']} [{entry['collection']}] ({took})")
        print(f"  Q: {clip(entry['question'], 100)}")
        print(f"  A: {clip(answer, 100)}")
    return 0
