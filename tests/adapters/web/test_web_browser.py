"""The web page in a real browser: Playwright driving Debian's chromium (never a downloaded one)
against `folio run`'s own wiring — the real engine with the embedded models, a real core and
queue, the aiohttp server on 127.0.0.1:0 — over a small PDF this test makes.

Without chromium or Playwright these tests fail (scripts/setup --with-test-services installs
both); they are not skipped, so a CI machine without a browser can't pass by accident.
Set FOLIO_WEB_SCREENSHOTS=DIR to keep a screenshot of each page there (README: docs/web-*.png).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from pdfs import make_pdf

CHROMIUM = Path("/usr/bin/chromium")
LAUNCH_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run",
]
GUIDE_PAGES = [
    "Harbour guide. This guide describes the harbour of Port Averly and its services.",
    "The lighthouse keeper lights the lamp at dusk every evening and puts it out at dawn. "
    "The lamp can be seen from twenty nautical miles away in clear weather.",
    "Ferries to the islands leave from the north pier. Tickets are sold at the kiosk.",
]
QUESTION = "When does the lighthouse keeper light the lamp?"

pytestmark = [pytest.mark.slow, pytest.mark.asyncio(loop_scope="module")]


def _screenshot_dir() -> Path | None:
    target = os.environ.get("FOLIO_WEB_SCREENSHOTS")
    return Path(target) if target else None


async def _shoot(page: Any, name: str, tmp: Path) -> None:
    path = tmp / f"web-{name}.png"
    await page.screenshot(path=str(path), full_page=False)
    keep = _screenshot_dir()
    if keep is not None:
        keep.mkdir(parents=True, exist_ok=True)
        shutil.copy(path, keep / path.name)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def site(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[dict[str, Any]]:
    """The composition root's web adapter over the real engine, with the guide indexed."""
    from bot.app import build_adapters, load_settings
    from bot.core import BotCore
    from rag.factory import build_engine

    saved = {k: v for k, v in os.environ.items() if k.startswith(("FOLIO_", "DISCORD_", "SLACK_"))}
    for name in saved:
        del os.environ[name]
    data = tmp_path_factory.mktemp("web-data")
    try:
        # hybrid: the model writes, so the page has a draft to stream before the final answer
        settings = load_settings(
            data_dir=data, queue={"edit_interval_s": 0.1}, web={"port": 0},
            generator={"answer_mode": "hybrid", "threads": 1},
        )
    finally:
        os.environ.update(saved)
    engine = build_engine(settings)
    report = engine.ingest_bytes("harbour-guide.pdf", make_pdf(GUIDE_PAGES), collection="default")
    assert report.outcomes[0].status == "added", report
    core = BotCore.from_settings(settings, engine)
    [adapter] = build_adapters(settings, core, ["web"])
    core.register(adapter)
    await core.start()
    await adapter.start()
    try:
        yield {"url": adapter.url, "core": core, "tmp": tmp_path_factory.mktemp("shots")}
    finally:
        await adapter.stop()
        await core.stop()
        engine.close()


def _require_chromium() -> None:
    if not CHROMIUM.exists():
        pytest.fail(
            f"{CHROMIUM} is missing: run scripts/setup --with-test-services (as root it installs "
            "Debian's chromium), or apt-get install chromium"
        )


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def browser() -> AsyncIterator[Any]:
    _require_chromium()
    from playwright.async_api import async_playwright

    async with async_playwright() as playwright:
        chromium = await playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=LAUNCH_ARGS, headless=True,
        )
        try:
            yield chromium
        finally:
            await chromium.close()


async def _ask(page: Any, question: str) -> None:
    await page.fill("#question", question)
    await page.press("#question", "Enter")


async def test_ask_streams_the_answer_and_a_citation_opens_the_pdf_at_its_page(
    site: dict[str, Any], browser: Any
) -> None:
    context = await browser.new_context(viewport={"width": 1000, "height": 500})
    page = await context.new_page()
    await page.goto(site["url"])
    # Record every text the answer box shows while it streams (before the final answer).
    await page.evaluate("""() => {
        window.__partials = [];
        new MutationObserver(() => {
            for (const box of document.querySelectorAll('.answer.streaming'))
                window.__partials.push(box.textContent);
        }).observe(document.getElementById('turns'),
                   {childList: true, subtree: true, characterData: true});
    }""")
    await _ask(page, QUESTION)
    citation = page.locator(".citations a.cite").first
    await citation.wait_for(timeout=60_000)
    partials = await page.evaluate("window.__partials")
    assert partials, "no partial answer was shown before the final one"
    answer = await page.locator(".answer-text").first.text_content()
    assert "dusk" in (answer or "").lower(), answer
    label = await citation.text_content()
    assert label == "harbour-guide.pdf p.2", label
    quote = await page.locator(".citations q").first.text_content()
    assert quote and quote.lower() in " ".join(GUIDE_PAGES).lower()
    await _shoot(page, "chat", site["tmp"])

    async with context.expect_page() as opened:
        await citation.click()
    pdf_tab = await opened.value
    await pdf_tab.wait_for_load_state()
    assert pdf_tab.url == site["url"] + "files/default/harbour-guide.pdf#page=2"
    assert await pdf_tab.evaluate("document.contentType") == "application/pdf"
    await pdf_tab.wait_for_timeout(1500)  # let the viewer draw the page, for the screenshot
    await _shoot(pdf_tab, "pdf", site["tmp"])

    # An abstention names the closest pages instead, as links too.
    await _ask(page, "What colour is the harbour master's bicycle?")
    closest = page.locator(".closest a.cite").first
    await closest.wait_for(timeout=60_000)
    assert "harbour-guide.pdf p." in (await closest.text_content() or "")
    await context.close()


async def test_upload_is_listed_then_forgotten(
    site: dict[str, Any], browser: Any, tmp_path: Path
) -> None:
    upload = tmp_path / "ferry-times.pdf"
    upload.write_bytes(make_pdf(["The first ferry to Gull Island leaves at seven."]))
    junk = tmp_path / "notes.pdf"
    junk.write_bytes(b"<html>this is not a PDF</html>")
    context = await browser.new_context(viewport={"width": 1000, "height": 500})
    page = await context.new_page()
    await page.goto(site["url"] + "documents")
    await page.set_input_files("#upload input[type=file]", [str(upload), str(junk)])
    await page.click("#upload button")
    outcome = page.locator("#upload-result tr.added td").first
    await outcome.wait_for(timeout=60_000)
    assert await outcome.text_content() == "ferry-times.pdf"
    refused = await page.locator("#upload-result tr.failed").text_content()
    assert "notes.pdf" in (refused or "") and "not a PDF" in (refused or "")
    listed = page.locator("#documents td a", has_text="ferry-times.pdf")
    await listed.wait_for()
    await _shoot(page, "documents", site["tmp"])

    await page.locator("#documents button[data-name='ferry-times.pdf']").click()
    await listed.wait_for(state="detached", timeout=30_000)
    notice = await page.locator("#upload-result .notice").text_content()
    assert "ferry-times.pdf" in (notice or "")
    assert "harbour-guide.pdf" in (await page.locator("#documents").text_content() or "")
    await context.close()


async def test_a_second_user_cannot_see_the_first_users_history(
    site: dict[str, Any], browser: Any
) -> None:
    first = await browser.new_context(viewport={"width": 1000, "height": 500})
    second = await browser.new_context(viewport={"width": 1000, "height": 500})
    mine = await first.new_page()
    await mine.goto(site["url"] + "login")
    await mine.fill("input[name=name]", "Ada")
    await mine.click("#login button")
    await _ask(mine, "Where do the ferries to the islands leave from?")
    await mine.locator(".answer-text").first.wait_for(timeout=60_000)

    await mine.goto(site["url"] + "history")
    assert "Where do the ferries" in (await mine.locator("#history").text_content() or "")
    await _shoot(mine, "history", site["tmp"])

    theirs = await second.new_page()
    await theirs.goto(site["url"] + "history")
    table = await theirs.locator("#history").text_content() or ""
    assert "Where do the ferries" not in table and "No questions yet" in table

    # The queue page, with a few of the second user's questions waiting: an admin (everyone
    # on a loopback page without an admin token) cancels the last one from the page.
    # (Questions the guide answers, so each one takes a model call and the queue holds them;
    # one to three seconds each on two cores, so six keep some waiting while the page loads.)
    asked = [
        "Where are the ferry tickets sold?",
        "How far away can the lighthouse lamp be seen?",
        "When does the keeper put the lamp out?",
        "Which pier do the island ferries leave from?",
        "When does the lighthouse keeper light the lamp?",
        "What services does the harbour of Port Averly have?",
    ]
    await theirs.evaluate("""(questions) => { window.__asks = questions.map((q) => fetch(
        '/api/ask', {method: 'POST',
        headers: {'Content-Type': 'application/json',
                  'X-CSRF-Token': document.querySelector('meta[name=csrf-token]').content},
        body: JSON.stringify({question: q})}).then((r) => r.json())); }""", asked)
    errors: list[str] = []
    mine.on("pageerror", lambda error: errors.append(str(error)))
    await mine.goto(site["url"] + "queue")
    try:
        await mine.locator("#queue tbody tr").nth(1).wait_for(timeout=10_000)  # one is waiting
    except Exception:
        raise AssertionError(
            f"{errors} {await mine.locator('#queue').inner_html()} "
            f"{await theirs.evaluate('Promise.all(window.__asks)')}"
        ) from None
    last = mine.locator("#queue tbody tr").last
    await _shoot(mine, "queue", site["tmp"])
    await last.locator("button.danger").click()
    results = await theirs.evaluate("Promise.all(window.__asks)")
    assert [r.get("error") for r in results].count("Cancelled.") == 1, results
    assert sum(1 for r in results if "answer" in r) == len(asked) - 1, results
    await first.close()
    await second.close()
