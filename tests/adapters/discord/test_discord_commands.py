"""Slash commands through the real client: deferral first, admin checks, ingest checks, expiry."""

from __future__ import annotations

import asyncio
import time

from discord_harness import Bot, StartBot
from fake_discord import EVERYONE_PERMISSIONS, MANAGE_GUILD
from fake_discord_core import answer_of, final_answer, wait_for

from bot.history import HistoryEntry
from bot.jobs import JobKind
from rag.types import DocumentInfo

PDF = b"%PDF-1.7\n" + b"x" * 1000


def _option(name: str, value: object, type_: int = 3) -> dict[str, object]:
    return {"name": name, "type": type_, "value": value}


async def test_commands_are_registered_at_start(bot: Bot) -> None:
    names = {c["name"] for c in bot.fake.commands}
    assert names == {"ask", "ingest", "docs", "forget", "cancel", "history"}
    ingest = next(c for c in bot.fake.commands if c["name"] == "ingest")
    assert ingest["options"][0]["type"] == 11  # an attachment option


async def test_ask_defers_first_then_answers_in_the_response(bot: Bot) -> None:
    record = await bot.fake.slash_command(
        bot.channel, bot.alice, "ask", [_option("question", "what is the refund window?")]
    )
    await bot.core.wait_finished()
    assert record.callbacks[0] == {"type": 5}  # deferred, public "thinking…", before any work
    # nothing was sent for this interaction before the deferral
    callback_at = next(i for i, r in enumerate(bot.fake.requests) if r.path.endswith("/callback"))
    assert not any(r.path.startswith("/webhooks/") for r in bot.fake.requests[:callback_at])
    [job] = bot.core.jobs
    assert job.kind is JobKind.QUESTION and job.collection == f"discord-{bot.guild['id']}"
    assert job.idempotency_key == f"interaction-{record.payload['id']}"
    assert record.original is not None
    assert record.original["content"] == (
        "Echo: what is the refund window?\n\nSources: [guide.pdf p.1]"
    )
    assert bot.fake.bot_messages(bot.channel["id"]) == []  # no channel message needed


async def test_an_answer_after_the_token_expired_is_a_channel_message(bot: Bot) -> None:
    release = asyncio.Event()
    bot.core.enqueue(wait_for(release), final_answer(answer_of("Thirty days.", ("p.pdf", 2))))
    record = await bot.fake.slash_command(
        bot.channel, bot.alice, "ask", [_option("question", "refund window?")]
    )
    await bot.fake.wait_until(lambda: record.original and "Queued" in record.original["content"])
    bot.fake.expire(record)  # 15 minutes pass
    release.set()
    await bot.core.wait_finished()
    header, message = bot.fake.bot_messages(bot.channel["id"])
    assert header["content"] == f"<@{bot.alice['id']}> asked: refund window?"
    assert message["content"] == "Thirty days.\n\nSources: [p.pdf p.2]"
    assert record.original is not None and "Thirty" not in record.original["content"]


async def test_a_token_about_to_expire_is_not_used(bot: Bot) -> None:
    # the interaction was created 14m50s ago: within the safety margin, straight to the channel
    record = await bot.fake.slash_command(
        bot.channel, bot.alice, "ask", [_option("question", "late?")], age_s=14 * 60 + 50
    )
    await bot.core.wait_finished()
    assert record.callbacks == [{"type": 5}]
    assert not bot.fake.bot_requests("PATCH", "/webhooks/")
    header, message = bot.fake.bot_messages(bot.channel["id"])
    assert header["content"] == f"<@{bot.alice['id']}> asked: late?"
    assert message["content"] == "Echo: late?\n\nSources: [guide.pdf p.1]"


async def test_ingest_by_a_non_admin_is_refused_ephemerally_without_download(bot: Bot) -> None:
    attachment = bot.fake.add_attachment(int(bot.channel["id"]), "guide.pdf", PDF)
    record = await bot.fake.slash_command(
        bot.channel,
        bot.alice,
        "ingest",
        [_option("file", attachment["id"], 11)],
        attachments=[attachment],
    )
    await bot.fake.wait_until(lambda: record.original and record.original["content"])
    assert record.callbacks == [{"type": 5, "data": {"flags": 64}}]  # ephemeral deferral
    assert record.original is not None and "Only admins" in record.original["content"]
    assert bot.fake.downloads == [] and bot.core.jobs == []


async def test_ingest_by_a_manage_server_member_indexes_the_pdf(bot: Bot) -> None:
    attachment = bot.fake.add_attachment(int(bot.channel["id"]), "guide.pdf", PDF)
    record = await bot.fake.slash_command(
        bot.channel,
        bot.boss,
        "ingest",
        [_option("file", attachment["id"], 11)],
        attachments=[attachment],
        permissions=EVERYONE_PERMISSIONS | MANAGE_GUILD,
    )
    await bot.core.wait_finished()
    [job] = bot.core.jobs
    assert job.kind is JobKind.INGEST and job.collection == f"discord-{bot.guild['id']}"
    assert job.attachment is not None and job.attachment.data == PDF
    assert record.original is not None
    assert record.original["content"].startswith("Indexed 1 of 1 file(s): 3 pages, 7 chunks")
    edits = [r.body["content"] for r in bot.fake.bot_requests("PATCH", "/webhooks/")]
    assert "Indexing guide.pdf: page 3 of 3…" in edits


async def test_ingest_checks_size_before_download_and_pdf_magic_after(start_bot: StartBot) -> None:
    bot = await start_bot(admin_user_ids=[], max_attachment_mb=1)
    admin = EVERYONE_PERMISSIONS | MANAGE_GUILD
    big = bot.fake.add_attachment(int(bot.channel["id"]), "big.pdf", PDF, size=5 * 1024 * 1024)
    fake_pdf = bot.fake.add_attachment(int(bot.channel["id"]), "notes.pdf", b"hello, not a pdf")
    too_big = await bot.fake.slash_command(
        bot.channel,
        bot.boss,
        "ingest",
        [_option("file", big["id"], 11)],
        attachments=[big],
        permissions=admin,
    )
    not_pdf = await bot.fake.slash_command(
        bot.channel,
        bot.boss,
        "ingest",
        [_option("file", fake_pdf["id"], 11)],
        attachments=[fake_pdf],
        permissions=admin,
    )
    await bot.fake.wait_until(
        lambda: all(r.original and r.original["content"] for r in (too_big, not_pdf))
    )
    assert too_big.original
    assert "big.pdf is 5.0 MB; the limit is 1.0 MB" in too_big.original["content"]
    assert not_pdf.original and "does not look like a PDF" in not_pdf.original["content"]
    assert bot.fake.downloads == [fake_pdf["url"].removeprefix(bot.fake.base_url)]
    assert bot.core.jobs == []


async def test_admins_from_settings_by_user_or_role(start_bot: StartBot) -> None:
    bot = await start_bot()
    bot.adapter.settings.admin_role_ids.append(bot.fake.role_id(bot.guild, "readers"))
    attachment = bot.fake.add_attachment(int(bot.channel["id"]), "guide.pdf", PDF)
    await bot.fake.slash_command(
        bot.channel,
        bot.alice,
        "ingest",
        [_option("file", attachment["id"], 11)],
        attachments=[attachment],
        roles=[bot.fake.role_id(bot.guild, "readers")],
    )
    await bot.core.wait_finished()
    assert [j.kind for j in bot.core.jobs] == [JobKind.INGEST]


async def test_an_admin_mention_with_a_pdf_ingests_it(bot: Bot) -> None:
    attachment = bot.fake.add_attachment(int(bot.channel["id"]), "handbook.pdf", PDF)
    await bot.mention(
        "here is the handbook", author=bot.boss, roles=[bot.admin_role], attachments=[attachment]
    )
    await bot.core.wait_finished()
    [job] = bot.core.jobs
    assert job.kind is JobKind.INGEST and job.attachment is not None
    assert job.attachment.filename == "handbook.pdf"
    [reply] = bot.fake.bot_messages(bot.channel["id"])
    assert reply["content"].startswith("Indexed 1 of 1 file(s)")


async def test_a_non_admin_mention_with_a_pdf_is_refused(bot: Bot) -> None:
    attachment = bot.fake.add_attachment(int(bot.channel["id"]), "handbook.pdf", PDF)
    await bot.mention("index this", attachments=[attachment])
    await bot.fake.wait_until(lambda: bot.fake.bot_messages(bot.channel["id"]))
    [reply] = bot.fake.bot_messages(bot.channel["id"])
    assert "Only admins" in reply["content"]
    assert bot.fake.downloads == [] and bot.core.jobs == []


async def test_forget_is_for_admins(bot: Bot) -> None:
    refused = await bot.fake.slash_command(
        bot.channel, bot.alice, "forget", [_option("name", "guide.pdf")]
    )
    await bot.fake.wait_until(lambda: refused.original and refused.original["content"])
    assert refused.original and "Only admins" in refused.original["content"]
    done = await bot.fake.slash_command(
        bot.channel,
        bot.boss,
        "forget",
        [_option("name", "guide.pdf")],
        roles=[bot.admin_role],
        permissions=EVERYONE_PERMISSIONS | MANAGE_GUILD,
    )
    await bot.core.wait_finished()
    assert [(j.kind, j.text) for j in bot.core.jobs] == [(JobKind.FORGET, "guide.pdf")]
    assert done.original and done.original["content"] == "Forgot guide.pdf."


async def test_docs_history_and_cancel_answer_ephemerally(bot: Bot) -> None:
    collection = f"discord-{bot.guild['id']}"
    bot.core.documents_by_collection[collection] = [
        DocumentInfo("guide.pdf", pages=12, chunks=40, sha256="0", added_at="2025-01-02T03:04:05")
    ]
    bot.core.history_entries.append(
        HistoryEntry(
            1,
            "question",
            "done",
            collection,
            "what is the refund window?",
            "30 days",
            [{"document": "p.pdf", "page": 2}],
            "",
            time.time(),
        )
    )
    docs = await bot.fake.slash_command(bot.channel, bot.alice, "docs")
    history = await bot.fake.slash_command(bot.channel, bot.alice, "history")
    cancel = await bot.fake.slash_command(bot.channel, bot.alice, "cancel")
    records = (docs, history, cancel)
    await bot.fake.wait_until(lambda: all(r.original and r.original["content"] for r in records))
    assert all(r.callbacks == [{"type": 5, "data": {"flags": 64}}] for r in records)
    assert docs.original and "guide.pdf (12 pages, added 2025-01-02)" in docs.original["content"]
    assert history.original
    assert "what is the refund window? [p.pdf p.2]" in history.original["content"]
    assert cancel.original
    assert cancel.original["content"] == "You have nothing waiting or being answered."
    assert bot.core.cancelled == [("discord", bot.alice["id"])]


async def test_slash_commands_in_dms_follow_the_dm_policy(bot: Bot) -> None:
    dm = bot.fake.add_dm_channel(bot.alice)
    record = await bot.fake.slash_command(dm, bot.alice, "ask", [_option("question", "hi?")])
    await bot.fake.wait_until(lambda: record.original and record.original["content"])
    assert record.original
    assert "only answer questions in server channels" in record.original["content"]
    assert bot.core.jobs == []
