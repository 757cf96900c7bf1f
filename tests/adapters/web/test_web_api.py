"""The web page's JSON API and forms over real HTTP: a real core and queue, a scripted engine.

Each test is a person (or two) with their own cookie jar talking to the real aiohttp server on
127.0.0.1 with an ephemeral port.
"""

from __future__ import annotations

import asyncio
import json
import re
import string
from urllib.parse import quote, unquote

import aiohttp
from pdfs import make_pdf
from web_harness import StartSite
from yarl import URL

from rag.types import Answer, Citation, Passage


async def test_healthz_needs_no_session(start_site: StartSite) -> None:
    site = await start_site()
    async with aiohttp.ClientSession() as http, http.get(site.url + "healthz") as response:
        assert response.status == 200
        assert await response.json() == {"ok": True}


async def test_ask_returns_the_folio_ask_json_object_with_links_to_the_cited_page(
    start_site: StartSite,
) -> None:
    site = await start_site()
    alice = site.person()
    await alice.open("/")
    status, body = await alice.call("POST", "/api/ask", json={"question": "What is it?"})
    assert status == 200, body
    for key in ("question", "answer", "citations", "retrieved", "abstained", "shortened",
                "seconds", "tokens", "model"):
        assert key in body, key
    assert body["answer"] == "In default: the answer to What is it? is forty two."
    assert body["citations"] == [["default.pdf", 3, "a quote"]]
    assert body["retrieved"] == [["default.pdf", 3], ["default.pdf", 5]]
    assert body["links"][0]["url"] == "/files/default/default.pdf#page=3"
    assert site.engine.calls[0].collection == "default"


async def test_every_write_needs_the_sessions_csrf_token(start_site: StartSite) -> None:
    site = await start_site()
    mallory = site.person()
    await mallory.open("/")
    mallory.csrf = "forged"
    status, body = await mallory.call("POST", "/api/ask", json={"question": "hi"})
    assert status == 403 and "another site" in body["error"]
    status, _ = await mallory.call("DELETE", "/api/docs/x.pdf")
    assert status == 403
    status, _ = await mallory.call("POST", "/ask", data={"question": "hi", "csrf": "forged"})
    assert status == 403
    assert site.engine.calls == []  # nothing was asked


async def test_the_stream_sends_queued_partials_and_the_answer(start_site: StartSite) -> None:
    site = await start_site(engine_options={"token_delay_s": 0.03})
    alice = site.person()
    await alice.open("/")
    events: list[tuple[str, dict[str, object]]] = []
    async with alice.http.post(
        alice.base + "/api/ask?stream=1", json={"question": "stream please"},
        headers={"X-CSRF-Token": alice.csrf},
    ) as response:
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("text/event-stream")
        name = ""
        async for raw in response.content:
            line = raw.decode().rstrip("\n")
            if line.startswith("event: "):
                name = line[7:]
            elif line.startswith("data: "):
                events.append((name, json.loads(line[6:])))
    names = [n for n, _ in events]
    assert names[0] == "queued" and events[0][1]["position"] == 1
    assert names[-1] == "answer"
    partials = [str(d["text"]) for n, d in events if n == "partial"]
    assert len(partials) >= 2 and len(partials[-1]) > len(partials[0])
    assert events[-1][1]["answer"].startswith("In default")  # type: ignore[union-attr]


async def test_answers_and_quotes_are_html_escaped(start_site: StartSite) -> None:
    site = await start_site()
    hostile = "<script>alert(1)</script><img src=x onerror=alert(2)>"
    site.engine.enqueue(Answer(
        text=f"The document says {hostile}.",
        citations=[Citation("evil.pdf", 1, hostile)],
        retrieved=[Passage(1, "evil.pdf", 1, "t", 0.9)], abstained=False,
    ))
    alice = site.person()
    await alice.open("/")
    async with alice.http.post(alice.base + "/ask", data={
        "question": "what <b>now</b>?", "csrf": alice.csrf,
    }) as response:
        page = await response.text()
        assert response.status == 200
        assert "default-src 'none'" in response.headers["Content-Security-Policy"]
    assert "<script>alert" not in page and "<img src=x" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "what &lt;b&gt;now&lt;/b&gt;?" in page


async def test_an_abstention_shows_the_closest_pages_as_links(start_site: StartSite) -> None:
    site = await start_site()
    site.engine.enqueue(Answer(
        text="", citations=[], abstained=True,
        retrieved=[Passage(1, "guide.pdf", 4, "t", 0.3), Passage(2, "guide.pdf", 9, "t", 0.2)],
    ))
    alice = site.person()
    await alice.open("/")
    status, body = await alice.call("POST", "/api/ask", json={"question": "unknowable?"})
    assert status == 200 and body["abstained"] is True
    assert body["answer"] == "The documents don't say."
    assert [c["url"] for c in body["closest"]] == [
        "/files/default/guide.pdf#page=4", "/files/default/guide.pdf#page=9",
    ]


async def test_a_collection_the_page_does_not_serve_is_refused(start_site: StartSite) -> None:
    site = await start_site()
    alice = site.person()
    await alice.open("/")
    status, body = await alice.call(
        "POST", "/api/ask", json={"question": "secret?", "collection": "discord-1"}
    )
    assert status == 403 and "discord-1" in body["error"]
    status, _ = await alice.call("GET", "/api/docs?collection=discord-1")
    assert status == 403
    assert site.engine.calls == []


async def test_questions_are_rate_limited_per_user(start_site: StartSite) -> None:
    site = await start_site(questions_per_minute=2)
    alice, bob = site.person(), site.person()
    await alice.open("/")
    await bob.open("/")
    for _ in range(2):
        status, _ = await alice.call("POST", "/api/ask", json={"question": "again?"})
        assert status == 200
    status, body = await alice.call("POST", "/api/ask", json={"question": "again?"})
    assert status == 429 and "Too many questions" in body["error"]
    status, _ = await bob.call("POST", "/api/ask", json={"question": "mine?"})
    assert status == 200  # bob has his own allowance


async def test_a_second_user_never_sees_the_first_users_history(start_site: StartSite) -> None:
    site = await start_site(admin_token="admin-secret-123")
    alice, bob, admin = site.person(), site.person(), site.person()
    await alice.sign_in("Alice")
    await bob.sign_in("Bob")
    await admin.sign_in("Root", admin_token="admin-secret-123")
    status, _ = await alice.call("POST", "/api/ask", json={"question": "alice private question"})
    assert status == 200
    status, mine = await alice.call("GET", "/api/history")
    assert [h["question"] for h in mine] == ["alice private question"]
    status, theirs = await bob.call("GET", "/api/history")
    assert status == 200 and theirs == []
    assert "alice private question" not in await bob.open("/history")
    status, _ = await bob.call("GET", "/api/history?all=1")
    assert status == 403
    assert (await bob.call("GET", "/history/export"))[0] == 403
    status, everyone = await admin.call("GET", "/api/history?all=1")
    assert status == 200 and [h["question"] for h in everyone] == ["alice private question"]
    status, export = await admin.call("GET", "/history/export")
    assert status == 200 and "alice private question" in str(export)


async def test_upload_reports_each_file_and_queues_only_the_good_ones(
    start_site: StartSite,
) -> None:
    site = await start_site(max_file_bytes=50_000)
    admin = site.person()
    await admin.open("/")  # loopback without an admin token: everyone is admin
    good = make_pdf(["The ferry leaves at seven."])
    form = aiohttp.FormData()
    form.add_field("collection", "default")
    form.add_field("files", good, filename="ferry.pdf", content_type="application/pdf")
    form.add_field("files", b"<html>not a pdf</html>", filename="page.pdf")
    form.add_field("files", b"%PDF-1.4" + b"0" * 60_000, filename="huge.pdf")
    form.add_field("files", good, filename="notes.txt")
    status, body = await admin.call("POST", "/api/docs", data=form)
    assert status == 200, body
    outcomes = {f["name"]: f for f in body["files"]}
    assert outcomes["ferry.pdf"]["status"] == "added"
    assert outcomes["page.pdf"]["reason"] == "not a PDF (it does not start with %PDF-)"
    assert outcomes["huge.pdf"]["reason"] == "larger than the 0.05 MB limit"
    assert outcomes["notes.txt"]["reason"] == "not a PDF (the name must end in .pdf)"
    assert [name for name, _, _ in site.engine.ingested] == ["ferry.pdf"]
    status, docs = await admin.call("GET", "/api/docs")
    assert [d["name"] for d in docs] == ["ferry.pdf"]

    status, forgot = await admin.call("DELETE", "/api/docs/ferry.pdf")
    assert status == 200 and forgot["ok"] is True
    status, docs = await admin.call("GET", "/api/docs")
    assert docs == []
    status, missing = await admin.call("DELETE", "/api/docs/ferry.pdf")
    assert status == 404 and "ferry.pdf" in missing["error"]


async def test_only_admins_upload_or_forget(start_site: StartSite) -> None:
    site = await start_site(admin_token="admin-secret-123")
    bob = site.person()
    await bob.sign_in("Bob")
    form = aiohttp.FormData()
    form.add_field("files", make_pdf(["x"]), filename="x.pdf")
    status, body = await bob.call("POST", "/api/docs", data=form)
    assert status == 403 and "Only admins" in body["error"]
    assert (await bob.call("DELETE", "/api/docs/x.pdf"))[0] == 403
    assert (await bob.call("GET", "/documents"))[0] == 403
    assert site.engine.ingested == []
    status, _ = await bob.call("POST", "/login", data={
        "csrf": bob.csrf, "name": "Bob", "admin_token": "guess",
    })
    assert status == 403


async def test_stored_pdfs_are_served_safely_and_names_never_become_paths(
    start_site: StartSite,
) -> None:
    site = await start_site()
    alice = site.person()
    await alice.open("/")
    pdf = make_pdf(["Page one.", "Page two."])
    form = aiohttp.FormData()
    form.add_field("files", pdf, filename='we"ird name.pdf')
    status, body = await alice.call("POST", "/api/docs", data=form)
    assert status == 200 and body["files"][0]["status"] == "added", body
    name = body["files"][0]["name"]  # as the client sent it (aiohttp escapes the quote)
    async with alice.http.get(alice.base + "/files/default/" + quote(name, safe="")) as response:
        assert response.status == 200
        assert await response.read() == pdf
        assert response.headers["Content-Type"] == "application/pdf"
        disposition = response.headers["Content-Disposition"]
        plain = re.fullmatch(r'inline; filename="([^"]*)"; filename\*=UTF-8\'\'(\S+)', disposition)
        assert plain is not None, disposition
        assert set(plain.group(1)) <= set(string.ascii_letters + string.digits + "._ -")
        assert unquote(plain.group(2)) == name
        assert "default-src 'none'" in response.headers["Content-Security-Policy"]
        assert response.headers["X-Content-Type-Options"] == "nosniff"
    for path in ("/files/default/..%2F..%2Fbot0.sqlite", "/files/default/%2Fetc%2Fpasswd",
                 "/files/default/nothing.pdf"):
        async with alice.http.get(alice.base + path) as response:
            assert response.status == 404, path
    async with alice.http.get(alice.base + "/files/other/x.pdf") as response:
        assert response.status == 403


async def test_the_queue_shows_positions_and_only_admins_cancel_others(
    start_site: StartSite,
) -> None:
    site = await start_site(admin_token="admin-secret-123")
    gate = site.engine.hold()
    alice, bob, admin = site.person(), site.person(), site.person()
    await alice.sign_in("Alice")
    await bob.sign_in("Bob")
    await admin.sign_in("Root", admin_token="admin-secret-123")

    async def queue_of(person: object, count: int) -> list[dict[str, object]]:
        rows: list[dict[str, object]] = []
        for _ in range(250):
            status, rows = await person.call("GET", "/api/queue")  # type: ignore[attr-defined]
            assert status == 200
            if len(rows) == count:
                return rows
            await asyncio.sleep(0.02)
        raise AssertionError(f"the queue never showed {count} jobs: {rows}")

    asks = []
    for person, question in ((alice, "alice 1"), (alice, "alice 2"), (bob, "bob 1")):
        asks.append(asyncio.create_task(
            person.call("POST", "/api/ask", json={"question": question})
        ))
        await queue_of(bob, len(asks))  # one at a time, so the order is known

    seen_by_bob = await queue_of(bob, 3)
    assert [r["position"] for r in seen_by_bob] == [0, 1, 2]
    by_text = {r["text"]: r for r in seen_by_bob if r["text"]}
    assert set(by_text) == {"bob 1"}  # alice's questions are not shown to bob
    assert by_text["bob 1"]["position"] == 1  # fair order: bob before alice's second
    assert by_text["bob 1"]["mine"] is True
    alices_second = next(r for r in seen_by_bob if r["position"] == 2)
    assert alices_second["who"] == "someone" and alices_second["can_cancel"] is False

    status, refused = await bob.call("POST", f"/api/queue/{alices_second['job']}/cancel")
    assert status == 403 and "not yours" in refused["error"]
    status, _ = await admin.call("POST", f"/api/queue/{alices_second['job']}/cancel")
    assert status == 200
    gate.set()
    results = await asyncio.gather(*asks)
    assert results[0][0] == 200 and results[2][0] == 200
    assert results[1][0] == 409 and results[1][1]["error"] == "Cancelled."


async def test_a_tampered_cookie_is_a_stranger(start_site: StartSite) -> None:
    site = await start_site(password="letmein-please")
    eve = site.person()
    async with eve.http.get(eve.base + "/", allow_redirects=False) as response:
        assert response.status == 303 and response.headers["Location"] == "/login"
    assert (await eve.call("GET", "/api/docs"))[0] == 401
    bad = await eve.sign_in("Eve", password="wrong")
    assert bad.status == 403
    good = await eve.sign_in("Eve", password="letmein-please")
    assert good.status == 303
    assert (await eve.call("GET", "/api/docs"))[0] == 200
    cookie = next(c for c in eve.http.cookie_jar if c.key == "folio_session")
    payload, mac = cookie.value.split(".")
    eve.http.cookie_jar.clear()
    eve.http.cookie_jar.update_cookies(
        {"folio_session": payload + "x." + mac}, response_url=URL(eve.base)
    )
    assert [c.value for c in eve.http.cookie_jar] == [payload + "x." + mac]
    assert (await eve.call("GET", "/api/docs"))[0] == 401


async def test_a_bearer_token_works_for_scripts_without_csrf(start_site: StartSite) -> None:
    site = await start_site(password="letmein-please", admin_token="admin-secret-123")
    async with aiohttp.ClientSession() as http:
        async with http.post(site.url + "api/ask", json={"question": "scripted?"},
                             headers={"Authorization": "Bearer letmein-please"}) as response:
            assert response.status == 200
            assert (await response.json())["answer"].endswith("forty two.")
        async with http.delete(site.url + "api/docs/x.pdf",
                               headers={"Authorization": "Bearer letmein-please"}) as response:
            assert response.status == 403  # the password is not the admin token
        async with http.get(site.url + "api/queue",
                            headers={"Authorization": "Bearer nope"}) as response:
            assert response.status == 401


async def test_follow_ups_in_a_conversation_carry_its_earlier_turns_only(
    start_site: StartSite,
) -> None:
    site = await start_site()
    alice, bob = site.person(), site.person()
    await alice.open("/")
    await bob.open("/")
    first = {"question": "What is the harbour fee?", "conversation": "c1"}
    assert (await alice.call("POST", "/api/ask", json=first))[0] == 200
    assert (await alice.call("POST", "/api/ask",
                             json={"question": "and in May?", "conversation": "c1"}))[0] == 200
    assert (await alice.call("POST", "/api/ask",
                             json={"question": "fresh start", "conversation": "c2"}))[0] == 200
    # Bob using alice's conversation id gets a conversation of his own, not her turns.
    assert (await bob.call("POST", "/api/ask",
                           json={"question": "and then?", "conversation": "c1"}))[0] == 200
    history = {call.question: call.history for call in site.engine.calls}
    assert [t.question for t in history["and in May?"]] == ["What is the harbour fee?"]
    assert history["fresh start"] == ()
    assert history["and then?"] == ()
    status, body = await alice.call("POST", "/api/ask",
                                    json={"question": "x", "conversation": "../../etc"})
    assert status == 400 and "conversation" in body["error"]


async def test_files_beyond_the_per_upload_count_get_a_reason(start_site: StartSite) -> None:
    site = await start_site(max_files_per_upload=1)
    admin = site.person()
    await admin.open("/")
    form = aiohttp.FormData()
    form.add_field("files", make_pdf(["one"]), filename="one.pdf")
    form.add_field("files", make_pdf(["two"]), filename="two.pdf")
    status, body = await admin.call("POST", "/api/docs", data=form)
    assert status == 200, body
    assert {f["name"]: f["reason"] for f in body["files"]} == {
        "one.pdf": "", "two.pdf": "more than 1 files in one upload",
    }
    assert [name for name, _, _ in site.engine.ingested] == ["one.pdf"]


async def test_changing_the_password_or_admin_token_ends_the_old_sessions(
    start_site: StartSite,
) -> None:
    before = await start_site(password="first-password", admin_token="first-admin-token")
    ada = before.person()
    await ada.sign_in("Ada", password="first-password", admin_token="first-admin-token")
    assert (await ada.call("GET", "/api/docs"))[0] == 200
    # Same data folder, so the same session key: only the secrets differ.
    after = await start_site(password="second-password", admin_token="first-admin-token")
    ada.base = after.url.rstrip("/")
    status, body = await ada.call("GET", "/api/docs")
    assert status == 401, body
