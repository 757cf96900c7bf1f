"""Mentions, replies and thread messages: who triggers the bot, where it answers, how it streams."""

from __future__ import annotations

import asyncio

from discord_harness import Bot, StartBot
from fake_discord_core import answer_of, final_answer, partial, status

from bot.jobs import JobKind


async def test_mention_answers_in_a_thread_streaming_then_citations(bot: Bot) -> None:
    # The core's relay decides when to edit (bot/relay.py); the adapter edits each time it is
    # asked, one message that grows.
    bot.core.enqueue(
        status("searching the documents…"),
        partial("The refund window"),
        partial("The refund window is 30 days"),
        final_answer(answer_of("The refund window is 30 days.", ("policy.pdf", 13))),
    )
    question = await bot.mention("what is the refund window?")
    await bot.core.wait_finished()

    job = bot.core.jobs[0]
    assert job.kind is JobKind.QUESTION and job.text == "what is the refund window?"
    assert job.collection == f"discord-{bot.guild['id']}"
    assert job.user == bot.alice["id"] and job.idempotency_key == f"message-{question['id']}"

    [thread] = bot.fake.threads_of(bot.channel["id"])
    assert thread["id"] == question["id"] and thread["name"] == "what is the refund window?"
    assert job.thread == thread["id"] and job.channel == bot.channel["id"]

    [message] = bot.fake.bot_messages(thread["id"])  # one message, grown by edits
    assert message["content"] == ("The refund window is 30 days.\n\nSources: [policy.pdf p.13]")
    assert message["flags"] & 4  # SUPPRESS_EMBEDS: no link previews
    patches = bot.fake.bot_requests("PATCH", f"/messages/{message['id']}")
    edits = [r.body["content"] for r in patches]
    assert edits == [
        "Searching the documents…",
        "The refund window …",
        "The refund window is 30 days …",
        "The refund window is 30 days.\n\nSources: [policy.pdf p.13]",
    ]
    [post] = bot.fake.bot_requests("POST", f"/channels/{thread['id']}/messages")
    assert post.body["content"].startswith("Queued (position 1")


async def test_only_a_real_mention_of_the_bot_triggers(bot: Bot) -> None:
    other_bot = bot.fake.make_user("otherbot", bot=True)
    await bot.fake.user_message(
        bot.channel, bot.alice, "@everyone look at this", mention_everyone=True
    )
    await bot.fake.user_message(bot.channel, bot.alice, "@here and <@&123>", mention_everyone=True)
    await bot.fake.user_message(
        bot.channel, bot.boss, f"hey <@{bot.alice['id']}>", mentions=[bot.alice]
    )
    await bot.mention("are bots ignored?", author=other_bot)
    await bot.mention("the only real question")
    await bot.core.wait_finished()

    assert [job.text for job in bot.core.jobs] == ["the only real question"]
    # its own messages came back over the Gateway (MESSAGE_CREATE) and were ignored too
    assert len(bot.core.jobs) == 1


async def test_reply_in_place_where_threads_are_not_allowed(bot: Bot) -> None:
    bot.fake.threads_forbidden.add(int(bot.channel["id"]))
    question = await bot.mention("where do I file expenses?")
    await bot.core.wait_finished()

    assert bot.fake.threads_of(bot.channel["id"]) == []
    [answer] = bot.fake.bot_messages(bot.channel["id"])
    assert str(answer["message_reference"]["message_id"]) == question["id"]
    assert answer["content"].startswith("Echo: where do I file expenses?")
    assert bot.core.jobs[0].thread == ""


async def test_replies_to_the_bot_and_thread_messages_are_follow_ups(bot: Bot) -> None:
    await bot.mention("first question")
    await bot.core.wait_finished(1)
    [thread] = bot.fake.threads_of(bot.channel["id"])
    [answer] = bot.fake.bot_messages(thread["id"])

    # a reply that pings the bot (so Discord gives us its text), in the bot's thread
    await bot.fake.user_message(
        thread, bot.alice, "and for contractors?", mentions=[bot.me], reply_to=answer
    )
    await bot.core.wait_finished(2)
    # a mention inside the thread
    await bot.mention("and interns?", channel=thread)
    await bot.core.wait_finished(3)

    follow_ups = bot.core.jobs[1:]
    assert [j.text for j in follow_ups] == ["and for contractors?", "and interns?"]
    assert {j.thread for j in follow_ups} == {thread["id"]}
    assert {j.channel for j in follow_ups} == {bot.channel["id"]}
    assert len(bot.fake.threads_of(bot.channel["id"])) == 1  # no thread in a thread


async def test_everything_sent_disables_mentions_even_with_pings_in_the_documents(
    bot: Bot,
) -> None:
    nasty = f"@everyone @here <@{bot.alice['id']}> <@&{bot.admin_role}> read https://x.example/a"
    bot.core.enqueue(partial(nasty), final_answer(answer_of(nasty, ("a.pdf", 1))))
    await bot.mention("ping test")
    await bot.core.wait_finished()
    [thread] = bot.fake.threads_of(bot.channel["id"])
    [message] = bot.fake.bot_messages(thread["id"])
    assert "<https://x.example/a>" in message["content"]  # no preview, even on edits
    # `start_bot` checks on teardown: every request that sent text had allowed_mentions parse=[]
    sent = bot.fake.sending_requests()
    assert sent and all(r.body["allowed_mentions"]["parse"] == [] for r in sent)


async def test_a_long_answer_is_split_under_2000_characters(bot: Bot) -> None:
    sentence = "This sentence is part of a very long answer about the handbook. "
    long_text = (sentence * 70).strip()  # ~4,500 characters
    bot.core.enqueue(final_answer(answer_of(long_text, ("handbook.pdf", 2))))
    await bot.mention("tell me everything")
    await bot.core.wait_finished()
    [thread] = bot.fake.threads_of(bot.channel["id"])
    messages = [m["content"] for m in bot.fake.bot_messages(thread["id"])]
    assert len(messages) == 3
    assert all(len(m) <= 2000 for m in messages)
    assert messages[-1].endswith("Sources: [handbook.pdf p.2]")
    assert " ".join(messages).replace("\n\nSources", " Sources").count("handbook") == 71


async def test_an_empty_mention_gets_help_and_no_job(bot: Bot) -> None:
    await bot.fake.user_message(bot.channel, bot.alice, f"<@{bot.me['id']}>", mentions=[bot.me])
    await bot.fake.wait_until(lambda: bot.fake.bot_messages(bot.channel["id"]))
    [reply] = bot.fake.bot_messages(bot.channel["id"])
    assert "Ask me a question" in reply["content"]
    assert bot.core.jobs == []


async def test_dms_are_declined_by_default(bot: Bot) -> None:
    dm = bot.fake.add_dm_channel(bot.alice)
    await bot.fake.user_message(dm, bot.alice, "what is the policy?", mentions=[])
    await bot.fake.wait_until(lambda: bot.fake.bot_messages(dm["id"]))
    [reply] = bot.fake.bot_messages(dm["id"])
    assert "only answer questions in server channels" in reply["content"]
    assert bot.core.jobs == []


async def test_dms_use_the_configured_collection(start_bot: StartBot) -> None:
    bot = await start_bot(dm_collection="handbook")
    dm = bot.fake.add_dm_channel(bot.alice)
    await bot.fake.user_message(dm, bot.alice, "what is the policy?")
    await bot.core.wait_finished()
    [job] = bot.core.jobs
    assert job.collection == "handbook" and job.text == "what is the policy?"
    [reply] = bot.fake.bot_messages(dm["id"])
    assert reply["content"].startswith("Echo: what is the policy?")


async def test_a_queue_refusal_is_said_in_the_thread(bot: Bot) -> None:
    first = await bot.mention("same question")
    await bot.core.wait_finished()
    # Discord re-delivers the same message (e.g. after a RESUME): the core says it is a duplicate
    await bot.fake.dispatch("MESSAGE_CREATE", first)
    await bot.fake.wait_until(lambda: len(bot.fake.bot_messages(bot.channel["id"])) == 1)
    [refusal] = bot.fake.bot_messages(bot.channel["id"])
    assert refusal["content"] == "That request is already being answered."


async def test_the_bot_keeps_answering_after_a_gateway_resume(bot: Bot) -> None:
    await bot.fake.send_reconnect()
    await bot.fake.wait_until(lambda: bot.fake.resumes)
    await bot.mention("still there?")
    await asyncio.wait_for(bot.core.wait_finished(), 5)
    assert bot.core.jobs[0].text == "still there?"


async def test_deleting_the_question_cancels_its_job(bot: Bot) -> None:
    bot.core.enqueue(final_answer(answer_of("The refund window is 30 days.", ("policy.pdf", 13))))
    question = await bot.mention("what is the refund window?")
    await bot.core.wait_finished()
    await bot.fake.dispatch(
        "MESSAGE_DELETE",
        {"id": question["id"], "channel_id": bot.channel["id"], "guild_id": bot.guild["id"]},
    )
    for _ in range(500):  # the core is told from the bot's event handler: poll, bounded (5 s)
        if bot.core.deleted_messages:
            break
        await asyncio.sleep(0.01)
    assert bot.core.deleted_messages == [("discord", str(question["id"]))]
