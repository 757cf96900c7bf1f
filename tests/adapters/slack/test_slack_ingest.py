"""Adding PDFs from Slack: admins only, real PDF bytes only, size checked before downloading."""

from __future__ import annotations

from fake_slack import (
    ADMIN,
    CHANNEL,
    USER,
    FakeFile,
    FakeSlack,
    app_mention,
    event_callback,
    small_pdf,
)
from fake_slack import slash_command as command
from fake_slack_core import FakeCore

from adapters.slack import SlackAdapter
from bot.jobs import JobKind
from rag.types import FileOutcome, IngestReport


async def mention_with(fake_slack: FakeSlack, user: str, *files: FakeFile) -> str:
    infos = [fake_slack.add_file(f) for f in files]
    event = app_mention("please add these", user=user, files=infos)
    await fake_slack.send_envelope("events_api", event_callback(event))
    return str(event["ts"])


async def test_non_admin_cannot_ingest_and_nothing_is_downloaded(
    adapter: SlackAdapter, fake_slack: FakeSlack, core: FakeCore
) -> None:
    thread = await mention_with(fake_slack, USER, FakeFile("F0NOPE", "guide.pdf", small_pdf()))
    refusal = await fake_slack.wait_for(lambda: fake_slack.thread(CHANNEL, thread))
    assert "Only workspace admins" in refusal[0].text
    assert fake_slack.calls_to("users.info")[0].params["user"] == USER
    assert fake_slack.downloads == []
    assert core.jobs == []


async def test_admin_ingest_downloads_with_the_bot_token_and_reports_in_the_thread(
    adapter: SlackAdapter, fake_slack: FakeSlack, core: FakeCore
) -> None:
    pdf = small_pdf()
    thread = await mention_with(fake_slack, ADMIN, FakeFile("F0GUIDE", "guide.pdf", pdf))
    job = await core.next_job()
    assert job.kind is JobKind.INGEST
    assert job.attachment is not None
    assert job.attachment.filename == "guide.pdf" and job.attachment.data == pdf
    assert job.collection == "slack-T0TEAM" and job.thread == thread
    assert fake_slack.downloads == ["F0GUIDE"]

    await adapter.post_ingest_progress(job, "guide.pdf", 1, 1)
    report = IngestReport([FileOutcome("guide.pdf", "added", pages=1, chunks=2)], seconds=0.5)
    await adapter.post_ingest_report(job, report)
    [message] = fake_slack.thread(CHANNEL, thread)
    assert message.thread_ts == thread
    assert "Indexed 1 of 1 file(s): 1 pages, 2 chunks" in message.text


async def test_a_sign_in_page_instead_of_the_pdf_is_rejected_with_the_reason(
    adapter: SlackAdapter, fake_slack: FakeSlack, core: FakeCore
) -> None:
    page = FakeFile("F0LOGIN", "manual.pdf", small_pdf(), login_page=True)
    thread = await mention_with(fake_slack, ADMIN, page)
    [message] = await fake_slack.wait_for(lambda: fake_slack.thread(CHANNEL, thread))
    assert "manual.pdf" in message.text
    assert "sign-in page" in message.text and "files:read" in message.text
    assert fake_slack.downloads == ["F0LOGIN"]
    assert core.jobs == []


async def test_an_oversize_file_is_rejected_before_downloading(
    adapter: SlackAdapter, fake_slack: FakeSlack, core: FakeCore
) -> None:
    big = FakeFile("F0BIG", "huge.pdf", small_pdf(), size=5 * 1024 * 1024)  # limit: 1 MB
    ok = FakeFile("F0OK", "small.pdf", small_pdf())
    thread = await mention_with(fake_slack, ADMIN, big, ok)
    job = await core.next_job()
    assert job.attachment is not None and job.attachment.filename == "small.pdf"
    rejection = await fake_slack.wait_for(
        lambda: [m for m in fake_slack.thread(CHANNEL, thread) if "huge.pdf" in m.text]
    )
    assert "5.0 MB is over the 1.0 MB limit; not downloaded" in rejection[0].text
    assert fake_slack.downloads == ["F0OK"]


async def test_a_file_larger_than_it_claimed_is_cut_off_while_downloading(
    adapter: SlackAdapter, fake_slack: FakeSlack, core: FakeCore
) -> None:
    liar = FakeFile("F0LIAR", "liar.pdf", b"%PDF-1.4\n" + b"0" * (2 * 1024 * 1024), size=1000)
    thread = await mention_with(fake_slack, ADMIN, liar)
    [message] = await fake_slack.wait_for(lambda: fake_slack.thread(CHANNEL, thread))
    assert "larger than the 1.0 MB limit; download stopped" in message.text
    assert core.jobs == []


async def test_ingest_command_takes_a_file_link(
    adapter: SlackAdapter, fake_slack: FakeSlack, core: FakeCore
) -> None:
    pdf = small_pdf()
    info = fake_slack.add_file(FakeFile("F0LINKED", "linked.pdf", pdf))
    payload = command(fake_slack, "/ingest", f"<{info['permalink']}>", user=ADMIN)
    ack = await fake_slack.wait_ack(await fake_slack.send_envelope("slash_commands", payload))
    assert "Fetching" in ack["payload"]["text"]
    job = await core.next_job()
    assert job.kind is JobKind.INGEST
    assert job.attachment is not None and job.attachment.data == pdf
    assert fake_slack.calls_to("files.info")[0].params["file"] == "F0LINKED"
    root = fake_slack.messages[(CHANNEL, job.thread)]
    assert "is adding linked.pdf" in root.text


async def test_ingest_command_from_a_non_admin_is_refused_privately(
    adapter: SlackAdapter, fake_slack: FakeSlack, core: FakeCore
) -> None:
    fake_slack.add_file(FakeFile("F0XFILE01", "x.pdf", small_pdf()))
    payload = command(fake_slack, "/ingest", "F0XFILE01", user=USER)
    await fake_slack.send_envelope("slash_commands", payload)
    [post] = await fake_slack.wait_for(lambda: fake_slack.response_url_posts)
    assert post["response_type"] == "ephemeral"
    assert "Only workspace admins" in post["text"]
    assert fake_slack.downloads == [] and core.jobs == []
